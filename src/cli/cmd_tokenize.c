/* Placeholder until this command lands: it is replaced, never shipped. */
#include <stdio.h>

#include "cli/commands.h"

int cmd_tokenize(int argc, char **argv)
{
    (void)argc;
    fprintf(stderr, "elliott %s: not built yet\n", argv[0]);
    return 1;
}
