/* The subcommands of the elliott binary. Each takes the arguments after its
 * name (argv[0] is the subcommand name) and returns the process exit status. */
#ifndef ELLIOTT_CLI_COMMANDS_H
#define ELLIOTT_CLI_COMMANDS_H

int cmd_serve(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_make_model(int argc, char **argv);
int cmd_pull(int argc, char **argv);

#endif
