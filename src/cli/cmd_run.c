/* elliott run: one prompt, the reply streamed to stdout, speed figures to stderr. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/embedded_model.h"
#include "engine/engine.h"

/* Sampling defaults for a person reading the output: some variety without
 * wandering off (llama.cpp's choices). --temp 0 is greedy and reproducible. */
#define RUN_DEFAULT_TEMP 0.8f
#define RUN_DEFAULT_TOP_P 0.95f
#define RUN_DEFAULT_TOP_K 40
#define RUN_DEFAULT_MAX_TOKENS 256
#define RUN_MAX_STDIN_PROMPT (16u << 20)

static void usage(FILE *out)
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
            "  -p, --prompt TEXT   the prompt; '-' reads it from stdin\n"
            "      --system TEXT   a system message before the prompt\n"
            "      --raw           no chat template: continue the text as it is\n"
            "  -n, --max-tokens N  generate at most N tokens (default %d; never beyond the context)\n"
            "      --temp T        temperature, 0 = greedy and reproducible (default %.1f)\n"
            "      --top-p P       nucleus sampling threshold, 1 = off (default %.2f)\n"
            "      --top-k K       sample among the K most likely tokens, 0 = off (default %d)\n"
            "      --seed S        random seed (default: from the OS)\n"
            "  -t, --threads N     threads (default: every CPU available)\n"
            "      --ctx N         context size in tokens (default 4096; at most the training context)\n"
            "  -h, --help          this help\n",
            EMBEDDED_MODEL_NAME, RUN_DEFAULT_MAX_TOKENS, (double)RUN_DEFAULT_TEMP,
            (double)RUN_DEFAULT_TOP_P, RUN_DEFAULT_TOP_K);
}

typedef struct run_options {
    const char *model;
    const char *prompt;
    const char *system;
    bool raw;
    int max_tokens;
    int threads;
    int ctx;
    sampler_params sampling;
} run_options;

enum { OPT_TEMP = 256, OPT_TOP_P, OPT_TOP_K, OPT_SEED, OPT_RAW, OPT_CTX, OPT_SYSTEM };

/* 0 to run, 1 when --help was shown, 2 on a usage error. */
static int parse_options(int argc, char **argv, run_options *o)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},   {"prompt", required_argument, NULL, 'p'},
        {"max-tokens", required_argument, NULL, 'n'}, {"threads", required_argument, NULL, 't'},
        {"temp", required_argument, NULL, OPT_TEMP}, {"top-p", required_argument, NULL, OPT_TOP_P},
        {"top-k", required_argument, NULL, OPT_TOP_K}, {"seed", required_argument, NULL, OPT_SEED},
        {"raw", no_argument, NULL, OPT_RAW},       {"ctx", required_argument, NULL, OPT_CTX},
        {"system", required_argument, NULL, OPT_SYSTEM}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *cmd = argv[0];
    memset(o, 0, sizeof *o);
    o->max_tokens = RUN_DEFAULT_MAX_TOKENS;
    sampler_params_default(&o->sampling);
    o->sampling.temperature = RUN_DEFAULT_TEMP;
    o->sampling.top_p = RUN_DEFAULT_TOP_P;
    o->sampling.top_k = RUN_DEFAULT_TOP_K;
    optind = 0;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":m:p:n:t:h", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'm': o->model = optarg; break;
        case 'p': o->prompt = optarg; break;
        case OPT_SYSTEM: o->system = optarg; break;
        case OPT_RAW: o->raw = true; break;
        case 'n': rc = args_int(cmd, "--max-tokens", optarg, 1, 1 << 20, &o->max_tokens); break;
        case 't': rc = args_int(cmd, "--threads", optarg, 1, 1024, &o->threads); break;
        case OPT_CTX: rc = args_int(cmd, "--ctx", optarg, 2, 1 << 20, &o->ctx); break;
        case OPT_TEMP: rc = args_float(cmd, "--temp", optarg, 0, 100, &o->sampling.temperature); break;
        case OPT_TOP_P: rc = args_float(cmd, "--top-p", optarg, 0, 1, &o->sampling.top_p); break;
        case OPT_TOP_K: rc = args_int(cmd, "--top-k", optarg, 0, 1 << 24, &o->sampling.top_k); break;
        case OPT_SEED: rc = args_u64(cmd, "--seed", optarg, &o->sampling.seed); break;
        case 'h': usage(stdout); return 1;
        case ':': return args_usage_error(cmd, "%s needs a value", argv[optind - 1]);
        default: return args_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
        if (rc < 0)
            return 2;
    }
    if (optind < argc)
        return args_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (!o->prompt)
        return args_usage_error(cmd, "-p TEXT is required (-p - reads stdin)");
    return 0;
}

/* The whole of stdin, at most `limit` bytes; NULL with a message on failure. */
static char *read_stdin(const char *cmd, size_t limit, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= limit) {
                fprintf(stderr, "elliott %s: the prompt on stdin is longer than %zu bytes\n", cmd, limit);
                break;
            }
            char *bigger = malloc(cap * 2);
            if (bigger)
                memcpy(bigger, buf, n);
            explicit_bzero(buf, cap);
            free(buf);
            buf = bigger;
            cap *= 2;
            continue;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) {
            if (ferror(stdin)) {
                fprintf(stderr, "elliott %s: cannot read the prompt from stdin\n", cmd);
                break;
            }
            *len = n;
            return buf;
        }
    }
    if (!buf)
        fprintf(stderr, "elliott %s: out of memory\n", cmd);
    else {
        explicit_bzero(buf, cap);
        free(buf);
    }
    return NULL;
}

static engine *start_engine(const char *cmd, const run_options *o)
{
    engine_config cfg;
    engine_config_default(&cfg);
    if (o->model) {
        cfg.model_path = o->model;
    } else {
        fprintf(stderr, "elliott: no -m given; using the built-in model %s\n", EMBEDDED_MODEL_NAME);
        cfg.model_data = embedded_model_data();
        cfg.model_size = embedded_model_size();
    }
    cfg.n_threads = o->threads;
    cfg.n_ctx = o->ctx;
    cfg.n_slots = 1;
    cfg.prefix_cache = false;
    cfg.max_tokens_default = o->max_tokens;
    el_err err = {{0}};
    engine *e = engine_start(&cfg, &err);
    if (!e) {
        fprintf(stderr, "elliott %s: %s\n", cmd, err.msg);
        return NULL;
    }
    if (engine_wait_ready(e, &err) < 0) {
        fprintf(stderr, "elliott %s: cannot load the model: %s\n", cmd, err.msg);
        engine_free(e);
        return NULL;
    }
    return e;
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
        stdin_prompt = read_stdin(cmd, RUN_MAX_STDIN_PROMPT, &prompt_len);
        if (!stdin_prompt)
            return 1;
    } else {
        prompt_len = strlen(o.prompt);
    }

    engine *e = start_engine(cmd, &o);
    if (!e) {
        if (stdin_prompt) {
            explicit_bzero(stdin_prompt, prompt_len);
            free(stdin_prompt);
        }
        return 1;
    }

    chat_message messages[2];
    size_t n = 0;
    if (o.system)
        messages[n++] = (chat_message){CHAT_ROLE_SYSTEM, o.system, strlen(o.system)};
    messages[n++] = (chat_message){CHAT_ROLE_USER, stdin_prompt ? stdin_prompt : o.prompt, prompt_len};

    gen_params params;
    gen_params_default(&params);
    params.max_tokens = o.max_tokens;
    params.sampling = o.sampling;
    params.raw = o.raw;

    el_err err = {{0}};
    gen_request *r = NULL;
    enum gen_status status = engine_submit(e, messages, n, &params, &r, &err);
    if (status == GEN_OK) {
        rc = stream_reply(cmd, r);
        gen_release(r);
    } else {
        fprintf(stderr, "elliott %s: %s\n", cmd, err.msg);
        rc = 1;
    }
    engine_free(e);
    if (stdin_prompt) {
        explicit_bzero(stdin_prompt, prompt_len);
        free(stdin_prompt);
    }
    return rc;
}
