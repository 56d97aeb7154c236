/* Reading a whole text input (a prompt, a text to tokenize) from a file or from
 * standard input. Such text may be private, so every buffer that held it is
 * wiped before it is freed. */
#ifndef ELLIOTT_CLI_INPUT_H
#define ELLIOTT_CLI_INPUT_H

#include <stddef.h>

/* The whole of the file at path, or of standard input when path is NULL, at most
 * limit bytes; NUL-terminated (the NUL not counted in *len). NULL with the reason
 * on stderr ("elliott CMD: ...") on failure. */
char *cli_read_input(const char *cmd, const char *path, size_t limit, size_t *len);
/* Wipes and frees what cli_read_input returned; NULL is fine. */
void cli_input_free(char *text, size_t len);

#endif
