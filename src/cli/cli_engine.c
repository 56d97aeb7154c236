#include "cli/cli_engine.h"

#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "cli/args.h"
#include "cli/embedded_model.h"

void cli_engine_use_model(const char *cmd, engine_config *cfg, const char *path)
{
    if (path) {
        cfg->model_path = path;
        return;
    }
    fprintf(stderr, "elliott %s: no -m given; using the built-in model %s\n", cmd, EMBEDDED_MODEL_NAME);
    cfg->model_path = NULL;
    cfg->model_data = embedded_model_data();
    cfg->model_size = embedded_model_size();
}

engine *cli_engine_start(const char *cmd, const engine_config *cfg, bool wait_ready)
{
    sigset_t block, saved;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &saved);
    el_err err = {{0}};
    engine *e = engine_start(cfg, &err);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (!e) {
        fprintf(stderr, "elliott %s: %s\n", cmd, err.msg);
        return NULL;
    }
    if (wait_ready && engine_wait_ready(e, &err) < 0) {
        fprintf(stderr, "elliott %s: cannot load the model: %s\n", cmd, err.msg);
        engine_free(e);
        return NULL;
    }
    return e;
}

/* ---- run and chat's options ------------------------------------------------------ */

void cli_gen_defaults(cli_gen_options *o, int max_tokens)
{
    memset(o, 0, sizeof *o);
    o->max_tokens = max_tokens;
    sampler_params_default(&o->sampling);
    o->sampling.temperature = 0.8f;
    o->sampling.top_p = 0.95f;
    o->sampling.top_k = 40;
}

int cli_gen_option(const char *cmd, int c, const char *arg, cli_gen_options *o)
{
    int rc;
    switch (c) {
    case 'm': o->model = arg; return 1;
    case CLI_OPT_SYSTEM: o->system = arg; return 1;
    case 'n': rc = args_int(cmd, "--max-tokens", arg, 1, 1 << 20, &o->max_tokens); break;
    case 't': rc = args_int(cmd, "--threads", arg, 1, 1024, &o->threads); break;
    case CLI_OPT_CTX: rc = args_int(cmd, "--ctx", arg, 2, 1 << 20, &o->ctx); break;
    case CLI_OPT_TEMP: rc = args_float(cmd, "--temp", arg, 0, 100, &o->sampling.temperature); break;
    case CLI_OPT_TOP_P: rc = args_float(cmd, "--top-p", arg, 0, 1, &o->sampling.top_p); break;
    case CLI_OPT_TOP_K: rc = args_int(cmd, "--top-k", arg, 0, 1 << 24, &o->sampling.top_k); break;
    case CLI_OPT_SEED: rc = args_u64(cmd, "--seed", arg, &o->sampling.seed); break;
    case CLI_OPT_CACHE_TYPE: rc = args_cache_type(cmd, "--cache-type", arg, &o->cache_q8_0); break;
    default: return 0;
    }
    return rc < 0 ? -1 : 1;
}

void cli_gen_usage(FILE *out, const cli_gen_options *d)
{
    fprintf(out,
            "  -n, --max-tokens N  at most N tokens per reply (default %d; never beyond the context)\n"
            "      --temp T        temperature, 0 = greedy and reproducible (default %.1f)\n"
            "      --top-p P       nucleus sampling threshold, 1 = off (default %.2f)\n"
            "      --top-k K       sample among the K most likely tokens, 0 = off (default %d)\n"
            "      --seed S        random seed (default: from the OS)\n"
            "  -t, --threads N     threads (default: every CPU available)\n"
            "      --ctx N         context size in tokens (default 4096; at most the training context)\n"
            "      --cache-type T  KV cache storage: f16 (default) or q8_0 (half the memory)\n",
            d->max_tokens, (double)d->sampling.temperature, (double)d->sampling.top_p, d->sampling.top_k);
}

void cli_gen_engine_config(const char *cmd, const cli_gen_options *o, bool prefix_cache, engine_config *cfg)
{
    engine_config_default(cfg);
    cli_engine_use_model(cmd, cfg, o->model);
    cfg->n_threads = o->threads;
    cfg->n_ctx = o->ctx;
    cfg->n_slots = 1;
    cfg->cache_q8_0 = o->cache_q8_0;
    cfg->prefix_cache = prefix_cache;
    cfg->max_tokens_default = o->max_tokens;
}

void cli_gen_params(const cli_gen_options *o, gen_params *p)
{
    gen_params_default(p);
    p->max_tokens = o->max_tokens;
    p->sampling = o->sampling;
}
