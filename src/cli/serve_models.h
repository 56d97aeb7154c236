/* elliott serve's models: -m (repeatable, FILE or NAME=FILE), --models-dir and
 * --alias turned into the registry's list, and the names each model answers to. */
#ifndef ELLIOTT_CLI_SERVE_MODELS_H
#define ELLIOTT_CLI_SERVE_MODELS_H

#include <stddef.h>

#include "registry/registry.h"

enum { SERVE_MAX_MODEL_ARGS = 64 };

typedef struct serve_model_args {
    const char *models[SERVE_MAX_MODEL_ARGS];  /* -m values, in order: FILE or NAME=FILE */
    size_t n_models;
    const char *aliases[SERVE_MAX_MODEL_ARGS]; /* --alias NAME=FILE values */
    size_t n_aliases;
    const char *default_name;                  /* --alias NAME: the default model's id; NULL: elliott-1 */
    const char *models_dir;                    /* every *.gguf in it, in name order */
} serve_model_args;

/* Adds every model to r with the engine settings of base, the default model
 * first: the first -m, else the directory's first file, else the built-in model.
 * The default answers to its id (--alias NAME, default elliott-1); every model to
 * the NAME it was given, its file's name without .gguf and with it, and its
 * --alias names. Reports a problem on stderr and returns -1. */
int serve_models_add(registry *r, const serve_model_args *a, const engine_config *base);

#endif
