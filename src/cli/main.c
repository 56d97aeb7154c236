/* elliott: one binary, several subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "kernels/kernels.h"

#ifndef ELLIOTT_VERSION
#define ELLIOTT_VERSION "0.1.0"
#endif

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"serve", cmd_serve, "serve the chat completion API over HTTP"},
    {"run", cmd_run, "answer one prompt on stdout"},
    {"chat", cmd_chat, "chat in the terminal"},
    {"pull", cmd_pull, "download a GGUF model from a Hugging Face repository"},
    {"bench", cmd_bench, "measure prompt and generation speed"},
    {"inspect", cmd_inspect, "show a GGUF file's metadata and tensors"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"logits", cmd_logits, "print the top logits for a sequence of token ids"},
    {"quantize", cmd_quantize, "convert a GGUF model to another tensor type"},
    {"make-model", cmd_make_model, "write a random-weight model at a real shape"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: elliott COMMAND [OPTIONS]\n\n"
                 "Runs Gemma (and llama) GGUF models on the CPU and serves an OpenAI-style\n"
                 "chat completion API.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-11s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'elliott COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(name, "--version")) {
        printf("elliott %s\n", ELLIOTT_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(name, commands[i].name))
            continue;
        el_err err = {{0}};
        if (kernels_init_from_env(&err) != 0) { /* a forced kernel path this CPU cannot run */
            fprintf(stderr, "elliott: %s\n", err.msg);
            return 2;
        }
        return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "elliott: unknown command '%s'\n\n", name);
    usage(stderr);
    return 2;
}
