/* What the commands that run a model share: choosing the model (a file, or the
 * built-in one when no -m is given), starting the engine, and the generation
 * options of the two terminal commands, run and chat. */
#ifndef ELLIOTT_CLI_ENGINE_H
#define ELLIOTT_CLI_ENGINE_H

#include <stdbool.h>
#include <stdio.h>

#include "engine/engine.h"

/* Points cfg at the GGUF file at path, or at the built-in model when path is
 * NULL, which it says on stderr so that a forgotten -m does not go unnoticed. */
void cli_engine_use_model(const char *cmd, engine_config *cfg, const char *path);

/* Starts the engine with SIGINT and SIGTERM blocked in its threads, so that they
 * reach the main thread; with wait_ready, also waits until the model is loaded.
 * Reports a failure on stderr and returns NULL. */
engine *cli_engine_start(const char *cmd, const engine_config *cfg, bool wait_ready);

/* ---- run and chat's options ------------------------------------------------------ */

typedef struct cli_gen_options {
    const char *model;
    const char *system;
    int max_tokens;
    int threads;
    int ctx;
    bool cache_q8_0;
    sampler_params sampling;
} cli_gen_options;

/* getopt_long values of the shared long-only options; a command numbers its own
 * from CLI_OPT_OWN. */
enum { CLI_OPT_TEMP = 256, CLI_OPT_TOP_P, CLI_OPT_TOP_K, CLI_OPT_SEED, CLI_OPT_CTX, CLI_OPT_SYSTEM, CLI_OPT_CACHE_TYPE, CLI_OPT_OWN };

/* The shared options, for a command's getopt_long tables. */
#define CLI_GEN_SHORTOPTS "m:n:t:h"
#define CLI_GEN_LONGOPTS                                                                            \
    {"model", required_argument, NULL, 'm'}, {"max-tokens", required_argument, NULL, 'n'},         \
    {"threads", required_argument, NULL, 't'}, {"temp", required_argument, NULL, CLI_OPT_TEMP},    \
    {"top-p", required_argument, NULL, CLI_OPT_TOP_P}, {"top-k", required_argument, NULL, CLI_OPT_TOP_K}, \
    {"seed", required_argument, NULL, CLI_OPT_SEED}, {"ctx", required_argument, NULL, CLI_OPT_CTX},       \
    {"system", required_argument, NULL, CLI_OPT_SYSTEM},                                            \
    {"cache-type", required_argument, NULL, CLI_OPT_CACHE_TYPE}, {"help", no_argument, NULL, 'h'}

/* Defaults for a person reading the output: some variety without wandering off
 * (llama.cpp's temperature 0.8, top-p 0.95, top-k 40); --temp 0 is greedy. */
void cli_gen_defaults(cli_gen_options *o, int max_tokens);

/* Takes getopt_long's c and optarg if c is a shared option other than -h:
 * 1 when taken, 0 when c is not one of them, -1 on a bad value (reported). */
int cli_gen_option(const char *cmd, int c, const char *arg, cli_gen_options *o);

/* The help lines of the shared options from -n to --cache-type, with the defaults in o. */
void cli_gen_usage(FILE *out, const cli_gen_options *defaults);

/* One slot for the one person at the terminal. */
void cli_gen_engine_config(const char *cmd, const cli_gen_options *o, bool prefix_cache, engine_config *cfg);
void cli_gen_params(const cli_gen_options *o, gen_params *p);

#endif
