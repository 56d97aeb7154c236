/* elliott run: one prompt, the reply streamed to stdout, speed figures to stderr. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli_engine.h"
#include "cli/cli_input.h"
#include "cli/commands.h"
#include "cli/embedded_model.h"
#include "engine/engine.h"

#define RUN_DEFAULT_MAX_TOKENS 256
#define RUN_MAX_STDIN_PROMPT (16u << 20)

static void usage(FILE *out, const cli_gen_options *defaults)
{
    fprintf(out,
            "usage: elliott run [-m MODEL.gguf] -p TEXT [options]\n"
            "\n"
            "Answers one prompt: the reply goes to stdout as it is generated, then the\n"
            "prompt and generation speeds (tokens/s) go to stderr. The prompt goes through\n"
            "the model's chat template unless --raw is given.\n"
            "\n"
            "options:\n"
            "  -m, --model FILE    GGUF model (default: the built-in %s)\n"
            "  -p, --prompt TEXT   the prompt; '-' reads it from stdin (at most %u MiB)\n"
            "      --system TEXT   a system message before the prompt\n"
            "      --raw           no chat template: continue the text as it is\n",
            EMBEDDED_MODEL_NAME, RUN_MAX_STDIN_PROMPT >> 20);
    cli_gen_usage(out, defaults);
    fprintf(out, "  -h, --help          this help\n");
}

typedef struct run_options {
    cli_gen_options gen;
    const char *prompt;
    bool raw;
} run_options;

enum { OPT_RAW = CLI_OPT_OWN };

/* 0 to run, 1 when --help was shown, 2 on a usage error. */
static int parse_options(int argc, char **argv, run_options *o)
{
    static const struct option longopts[] = {
        CLI_GEN_LONGOPTS, {"prompt", required_argument, NULL, 'p'}, {"raw", no_argument, NULL, OPT_RAW},
        {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    memset(o, 0, sizeof *o);
    cli_gen_defaults(&o->gen, RUN_DEFAULT_MAX_TOKENS);
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":p:" CLI_GEN_SHORTOPTS, longopts, NULL)) != -1) {
        int taken = cli_gen_option(cmd, c, optarg, &o->gen);
        if (taken < 0)
            return 2;
        if (taken)
            continue;
        switch (c) {
        case 'p': o->prompt = optarg; break;
        case OPT_RAW: o->raw = true; break;
        case 'h': {
            cli_gen_options defaults;
            cli_gen_defaults(&defaults, RUN_DEFAULT_MAX_TOKENS);
            usage(stdout, &defaults);
            return 1;
        }
        default: return args_option_error(cmd, c, argv);
        }
    }
    if (optind < argc)
        return args_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!o->prompt)
        return args_usage_error(cmd, "-p TEXT is required (-p - reads stdin)");
    return 0;
}

static double per_second(double count, double ms)
{
    return ms > 0 ? count * 1000.0 / ms : 0.0;
}

static void print_speed(const gen_event *done)
{
    int evaluated = done->prompt_tokens - done->cached_tokens;
    /* The first generated token comes out of the prompt pass; decode speed counts the rest. */
    int decoded = done->completion_tokens > 1 ? done->completion_tokens - 1 : 0;
    fprintf(stderr, "elliott: prompt: %d tokens, %.1f ms, %.1f tok/s\n", done->prompt_tokens,
            done->prompt_ms, per_second(evaluated, done->prompt_ms));
    fprintf(stderr, "elliott: generated: %d tokens, %.1f ms, %.1f tok/s\n", done->completion_tokens,
            done->generate_ms, per_second(decoded, done->generate_ms));
}

/* Streams the reply to stdout; returns the exit status. */
static int stream_reply(const char *cmd, gen_request *r)
{
    gen_event ev;
    bool ends_with_newline = true;
    for (;;) {
        gen_next(r, &ev, -1);
        if (ev.kind == GEN_EVENT_DONE)
            break;
        fwrite(ev.text, 1, ev.len, stdout);
        fflush(stdout);
        if (ev.len)
            ends_with_newline = ev.text[ev.len - 1] == '\n';
    }
    if (!ends_with_newline)
        fputc('\n', stdout);
    fflush(stdout);
    if (ev.finish == GEN_FINISH_ERROR) {
        fprintf(stderr, "elliott %s: generation failed\n", cmd);
        return 1;
    }
    print_speed(&ev);
    return 0;
}

static int answer(const char *cmd, engine *e, const run_options *o, const char *prompt, size_t prompt_len)
{
    chat_message messages[2];
    size_t n = 0;
    if (o->gen.system)
        messages[n++] =
            (chat_message){.role = CHAT_ROLE_SYSTEM, .text = o->gen.system, .len = strlen(o->gen.system)};
    messages[n++] = (chat_message){.role = CHAT_ROLE_USER, .text = prompt, .len = prompt_len};
    gen_params params;
    cli_gen_params(&o->gen, &params);
    params.raw = o->raw;

    el_err err = {{0}};
    gen_request *r = NULL;
    if (engine_submit(e, messages, n, &params, &r, &err) != GEN_OK) {
        fprintf(stderr, "elliott %s: %s\n", cmd, err.msg);
        return 1;
    }
    int rc = stream_reply(cmd, r);
    gen_release(r);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    const char *cmd = argv[0];
    run_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc == 1 ? 0 : rc;

    char *stdin_prompt = NULL;
    size_t prompt_len = 0;
    if (!strcmp(o.prompt, "-")) {
        stdin_prompt = cli_read_input(cmd, NULL, RUN_MAX_STDIN_PROMPT, &prompt_len);
        if (!stdin_prompt)
            return 1;
    } else {
        prompt_len = strlen(o.prompt);
    }
    engine_config cfg;
    cli_gen_engine_config(cmd, &o.gen, false, &cfg);
    engine *e = cli_engine_start(cmd, &cfg, true);
    rc = e ? answer(cmd, e, &o, stdin_prompt ? stdin_prompt : o.prompt, prompt_len) : 1;
    engine_free(e);
    cli_input_free(stdin_prompt, prompt_len);
    return rc;
}
