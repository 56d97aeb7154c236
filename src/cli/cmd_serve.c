/* elliott serve: the chat completion API over HTTP (docs/api.md). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/args.h"
#include "cli/cli_engine.h"
#include "cli/commands.h"
#include "cli/embedded_model.h"
#include "cli/serve_models.h"
#include "cli/serve_secrets.h"
#include "engine/engine.h"
#include "registry/registry.h"
#include "server/server.h"

static const char CMD[] = "serve";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: elliott serve [-m [NAME=]MODEL.gguf]... [--models-dir DIR] [OPTIONS]\n\n"
            "Serves the elliott-1 chat completion API (POST /v1/ai/chat/completions,\n"
            "POST /v1/chat/completions, GET /v1/models, /health, /metrics, /) over HTTP.\n"
            "Each option may also come from the environment variable shown; flags win.\n\n"
            "options:\n"
            "  -m, --model [NAME=]FILE  a GGUF model (ELLIOTT_MODEL), answering to NAME too; repeat\n"
            "                         for more; the first is the default; default: the built-in %s\n"
            "      --models-dir DIR   serve every *.gguf in DIR too, named by file (ELLIOTT_MODELS_DIR)\n"
            "      --host HOST        address to bind (ELLIOTT_HOST), default 127.0.0.1\n"
            "      --port N           port (ELLIOTT_PORT), default 8080; 0 picks a free one\n"
            "      --alias NAME       the default model's name (ELLIOTT_ALIAS), default elliott-1;\n"
            "      --alias NAME=FILE  another name for the model in FILE (served too if not yet)\n"
            "      --max-models N     models loaded at once (ELLIOTT_MAX_MODELS), default 0: no limit;\n"
            "                         the least recently used idle one is unloaded for another\n"
            "      --models-memory BYTES  model file bytes loaded at once, K/M/G suffixes\n"
            "                         (ELLIOTT_MODELS_MEMORY), default 0: no limit\n"
            "      --load-timeout S   how long a request waits for its model to load (ELLIOTT_LOAD_TIMEOUT),\n"
            "                         default 120\n"
            "  -t, --threads N        compute threads per loaded model (ELLIOTT_THREADS), default: all CPUs\n"
            "  -c, --ctx N            KV cache positions shared by a model's slots (ELLIOTT_CTX); one\n"
            "                         conversation uses up to min(N, model's context); default: min(model,\n"
            "                         4096) per slot, within --kv-memory\n"
            "      --parallel N|auto  conversations a model evaluates together (ELLIOTT_PARALLEL), default\n"
            "                         auto: as many as --kv-memory holds at min(model, 4096) positions each,\n"
            "                         at most max(4, 2 x threads)\n"
            "      --kv-memory BYTES  memory for a model's KV cache when -c or --parallel is automatic, K/M/G\n"
            "                         suffixes (ELLIOTT_KV_MEMORY), default half of what is available\n"
            "                         beyond the weights\n"
            "      --cache-type T     how the KV cache stores keys and values: f16 or q8_0 (about half the\n"
            "                         memory; heads must be multiples of 32) (ELLIOTT_CACHE_TYPE), default f16\n"
            "      --max-queue N      requests waiting for a slot before 503 (ELLIOTT_MAX_QUEUE), default 16\n"
            "      --max-tokens N     default completion length (ELLIOTT_MAX_TOKENS), default 512\n"
            "      --api-key KEY      require 'Authorization: Bearer KEY' (ELLIOTT_API_KEY)\n"
            "      --api-key-file F   accept the keys in F, one a line, '#' comments; reread on SIGHUP\n"
            "                         (ELLIOTT_API_KEY_FILE)\n"
            "      --tls-cert FILE    serve HTTPS with this PEM certificate chain (ELLIOTT_TLS_CERT)\n"
            "      --tls-key FILE     and this PEM private key (ELLIOTT_TLS_KEY)\n"
            "      --max-body BYTES   request body limit, K/M/G suffixes (ELLIOTT_MAX_BODY), default 1M\n"
            "      --history full|last  whole conversation, or only the last user message\n"
            "                         (ELLIOTT_HISTORY), default full\n"
            "      --cors ORIGIN      send Access-Control-Allow-Origin: ORIGIN (ELLIOTT_CORS)\n"
            "      --no-prefix-cache  never reuse a previous request's KV cache (ELLIOTT_NO_PREFIX_CACHE=1)\n"
            "      --mlock            lock the model in memory (ELLIOTT_MLOCK=1)\n"
            "      --grace-ms N       on SIGINT/SIGTERM, time in-flight requests get (ELLIOTT_GRACE_MS),\n"
            "                         default 10000\n"
            "      --max-connections N  open connections at once (ELLIOTT_MAX_CONNECTIONS), default 16384\n"
            "      --max-connections-per-ip N  per client address (ELLIOTT_MAX_CONNECTIONS_PER_IP),\n"
            "                         default 0: no limit\n"
            "      --request-timeout S  a request's head and body must arrive within S seconds of its\n"
            "                         request line (ELLIOTT_REQUEST_TIMEOUT), default 10\n"
            "      --idle-timeout S   a connection must send a request line within S seconds of opening\n"
            "                         or of its previous answer (ELLIOTT_IDLE_TIMEOUT), default 10\n"
            "      --http-threads N   event loops serving connections (ELLIOTT_HTTP_THREADS), default 4\n"
            "  -h, --help             this help\n",
            EMBEDDED_MODEL_NAME);
}

typedef struct serve_options {
    serve_model_args models;
    const char *max_models, *models_memory, *load_timeout;
    const char *host, *api_key, *api_key_file, *cors, *history, *cache_type;
    const char *port, *threads, *ctx, *parallel, *kv_memory, *max_queue, *max_tokens, *max_body, *grace_ms;
    const char *max_connections, *max_per_ip, *request_timeout, *idle_timeout, *http_threads;
    const char *tls_cert, *tls_key;
    bool no_prefix_cache, mlock;
} serve_options;

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static bool env_flag(const char *name)
{
    const char *v = env(name);
    return v && strcmp(v, "0") != 0 && strcasecmp(v, "false") != 0 && strcasecmp(v, "no") != 0;
}

static void options_from_env(serve_options *o)
{
    o->models.models[0] = env("ELLIOTT_MODEL");
    o->models.n_models = o->models.models[0] ? 1 : 0;
    o->models.models_dir = env("ELLIOTT_MODELS_DIR");
    o->max_models = env("ELLIOTT_MAX_MODELS");
    o->models_memory = env("ELLIOTT_MODELS_MEMORY");
    o->load_timeout = env("ELLIOTT_LOAD_TIMEOUT");
    o->host = env("ELLIOTT_HOST");
    o->port = env("ELLIOTT_PORT");
    o->models.default_name = env("ELLIOTT_ALIAS");
    o->threads = env("ELLIOTT_THREADS");
    o->ctx = env("ELLIOTT_CTX");
    o->parallel = env("ELLIOTT_PARALLEL");
    o->kv_memory = env("ELLIOTT_KV_MEMORY");
    o->cache_type = env("ELLIOTT_CACHE_TYPE");
    o->max_queue = env("ELLIOTT_MAX_QUEUE");
    o->max_tokens = env("ELLIOTT_MAX_TOKENS");
    o->api_key = env("ELLIOTT_API_KEY");
    o->api_key_file = env("ELLIOTT_API_KEY_FILE");
    o->max_body = env("ELLIOTT_MAX_BODY");
    o->history = env("ELLIOTT_HISTORY");
    o->cors = env("ELLIOTT_CORS");
    o->grace_ms = env("ELLIOTT_GRACE_MS");
    o->max_connections = env("ELLIOTT_MAX_CONNECTIONS");
    o->max_per_ip = env("ELLIOTT_MAX_CONNECTIONS_PER_IP");
    o->request_timeout = env("ELLIOTT_REQUEST_TIMEOUT");
    o->idle_timeout = env("ELLIOTT_IDLE_TIMEOUT");
    o->http_threads = env("ELLIOTT_HTTP_THREADS");
    o->tls_cert = env("ELLIOTT_TLS_CERT");
    o->tls_key = env("ELLIOTT_TLS_KEY");
    o->no_prefix_cache = env_flag("ELLIOTT_NO_PREFIX_CACHE");
    o->mlock = env_flag("ELLIOTT_MLOCK");
}

enum { OPT_HOST = 256, OPT_PORT, OPT_ALIAS, OPT_PARALLEL, OPT_MAX_QUEUE, OPT_MAX_TOKENS, OPT_API_KEY,
       OPT_API_KEY_FILE, OPT_MAX_BODY, OPT_HISTORY, OPT_CORS, OPT_NO_PREFIX_CACHE, OPT_MLOCK, OPT_GRACE,
       OPT_MAX_CONNECTIONS, OPT_MAX_PER_IP, OPT_REQUEST_TIMEOUT, OPT_IDLE_TIMEOUT, OPT_HTTP_THREADS, OPT_TLS_CERT,
       OPT_TLS_KEY, OPT_MODELS_DIR, OPT_MAX_MODELS, OPT_MODELS_MEMORY, OPT_LOAD_TIMEOUT, OPT_KV_MEMORY, OPT_CACHE_TYPE };

/* -m and --alias NAME=FILE, which may be repeated. Returns -1 to continue, else the exit status. */
static int take_model_flag(serve_options *o, int c, const char *arg, bool *first_m)
{
    serve_model_args *m = &o->models;
    if (c == OPT_ALIAS && !strchr(arg, '=')) {
        m->default_name = arg;
        return -1;
    }
    if (c == 'm' && *first_m) {
        m->n_models = 0; /* the flags replace ELLIOTT_MODEL */
        *first_m = false;
    }
    size_t *n = c == 'm' ? &m->n_models : &m->n_aliases;
    if (*n == SERVE_MAX_MODEL_ARGS)
        return args_usage_error(CMD, "more than %d %s flags", SERVE_MAX_MODEL_ARGS, c == 'm' ? "-m" : "--alias");
    (c == 'm' ? m->models : m->aliases)[(*n)++] = arg;
    return -1;
}

/* Returns -1 to continue, else the exit status. */
static int parse_flags(int argc, char **argv, serve_options *o)
{
    static const struct option longs[] = {
        {"model", required_argument, NULL, 'm'},
        {"host", required_argument, NULL, OPT_HOST},
        {"port", required_argument, NULL, OPT_PORT},
        {"alias", required_argument, NULL, OPT_ALIAS},
        {"threads", required_argument, NULL, 't'},
        {"ctx", required_argument, NULL, 'c'},
        {"parallel", required_argument, NULL, OPT_PARALLEL},
        {"kv-memory", required_argument, NULL, OPT_KV_MEMORY},
        {"cache-type", required_argument, NULL, OPT_CACHE_TYPE},
        {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
        {"max-tokens", required_argument, NULL, OPT_MAX_TOKENS},
        {"api-key", required_argument, NULL, OPT_API_KEY},
        {"api-key-file", required_argument, NULL, OPT_API_KEY_FILE},
        {"max-body", required_argument, NULL, OPT_MAX_BODY},
        {"history", required_argument, NULL, OPT_HISTORY},
        {"cors", required_argument, NULL, OPT_CORS},
        {"no-prefix-cache", no_argument, NULL, OPT_NO_PREFIX_CACHE},
        {"mlock", no_argument, NULL, OPT_MLOCK},
        {"grace-ms", required_argument, NULL, OPT_GRACE},
        {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
        {"max-connections-per-ip", required_argument, NULL, OPT_MAX_PER_IP},
        {"request-timeout", required_argument, NULL, OPT_REQUEST_TIMEOUT},
        {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"http-threads", required_argument, NULL, OPT_HTTP_THREADS},
        {"models-dir", required_argument, NULL, OPT_MODELS_DIR},
        {"max-models", required_argument, NULL, OPT_MAX_MODELS},
        {"models-memory", required_argument, NULL, OPT_MODELS_MEMORY},
        {"load-timeout", required_argument, NULL, OPT_LOAD_TIMEOUT},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    bool key_flag = false, key_file_flag = false, first_m = true;
    int rc;
    while ((c = getopt_long(argc, argv, ":m:t:c:h", longs, NULL)) != -1) {
        switch (c) {
        case 'm':
        case OPT_ALIAS:
            if ((rc = take_model_flag(o, c, optarg, &first_m)) >= 0)
                return rc;
            break;
        case OPT_MODELS_DIR: o->models.models_dir = optarg; break;
        case OPT_MAX_MODELS: o->max_models = optarg; break;
        case OPT_MODELS_MEMORY: o->models_memory = optarg; break;
        case OPT_LOAD_TIMEOUT: o->load_timeout = optarg; break;
        case OPT_HOST: o->host = optarg; break;
        case OPT_PORT: o->port = optarg; break;
        case 't': o->threads = optarg; break;
        case 'c': o->ctx = optarg; break;
        case OPT_PARALLEL: o->parallel = optarg; break;
        case OPT_KV_MEMORY: o->kv_memory = optarg; break;
        case OPT_CACHE_TYPE: o->cache_type = optarg; break;
        case OPT_MAX_QUEUE: o->max_queue = optarg; break;
        case OPT_MAX_TOKENS: o->max_tokens = optarg; break;
        case OPT_API_KEY: o->api_key = optarg; key_flag = true; break;
        case OPT_API_KEY_FILE: o->api_key_file = optarg; key_file_flag = true; break;
        case OPT_MAX_BODY: o->max_body = optarg; break;
        case OPT_HISTORY: o->history = optarg; break;
        case OPT_CORS: o->cors = optarg; break;
        case OPT_NO_PREFIX_CACHE: o->no_prefix_cache = true; break;
        case OPT_MLOCK: o->mlock = true; break;
        case OPT_GRACE: o->grace_ms = optarg; break;
        case OPT_MAX_CONNECTIONS: o->max_connections = optarg; break;
        case OPT_MAX_PER_IP: o->max_per_ip = optarg; break;
        case OPT_REQUEST_TIMEOUT: o->request_timeout = optarg; break;
        case OPT_IDLE_TIMEOUT: o->idle_timeout = optarg; break;
        case OPT_HTTP_THREADS: o->http_threads = optarg; break;
        case OPT_TLS_CERT: o->tls_cert = optarg; break;
        case OPT_TLS_KEY: o->tls_key = optarg; break;
        case 'h': usage(stdout); return 0;
        default: return args_option_error(CMD, c, argv);
        }
    }
    if (optind < argc)
        return args_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (key_flag && key_file_flag)
        return args_usage_error(CMD, "give --api-key or --api-key-file, not both");
    /* A flag overrides the environment's other way of giving the key. */
    if (key_flag)
        o->api_key_file = NULL;
    if (key_file_flag)
        o->api_key = NULL;
    if (o->api_key && o->api_key_file)
        return args_usage_error(CMD, "ELLIOTT_API_KEY and ELLIOTT_API_KEY_FILE are both set");
    if (!o->tls_cert != !o->tls_key)
        return args_usage_error(CMD, "give both --tls-cert and --tls-key, or neither");
    return -1;
}

/* --max-models, --models-memory and --load-timeout. Returns -1 on success, else the exit status. */
static int build_models_config(const serve_options *o, registry_config *rc, server_config *sc)
{
    memset(rc, 0, sizeof *rc);
    size_t budget = 0;
    int seconds;
    if ((o->max_models && args_int(CMD, "--max-models", o->max_models, 0, 1024, &rc->max_loaded) < 0) ||
        (o->models_memory && args_size(CMD, "--models-memory", o->models_memory, 0, SIZE_MAX, &budget) < 0))
        return 2;
    rc->memory_budget = budget;
    if (o->load_timeout) {
        if (args_int(CMD, "--load-timeout", o->load_timeout, 0, 3600, &seconds) < 0)
            return 2;
        sc->model_wait_ms = seconds * 1000;
    }
    const char *name = o->models.default_name;
    if (name && (!*name || strlen(name) > REGISTRY_MAX_NAME))
        return args_usage_error(CMD, "--alias must be 1 to %d characters", REGISTRY_MAX_NAME);
    return -1;
}

/* Turns the options into the configurations. Returns -1 on success, else
 * the exit status. */
static int build_config(const serve_options *o, engine_config *ec, server_config *sc, registry_config *rc)
{
    engine_config_default(ec);
    server_config_default(sc);
    int status = build_models_config(o, rc, sc);
    if (status >= 0)
        return status;
    if (o->host)
        sc->host = o->host;
    if (o->cors)
        sc->cors_origin = o->cors;
    if ((o->port && args_int(CMD, "--port", o->port, 0, 65535, &sc->port) < 0) ||
        (o->threads && args_int(CMD, "--threads", o->threads, 1, 1024, &ec->n_threads) < 0) ||
        (o->ctx && args_int(CMD, "--ctx", o->ctx, 16, 1 << 20, &ec->n_ctx) < 0) ||
        (o->parallel && strcmp(o->parallel, "auto") != 0 &&
         args_int(CMD, "--parallel", o->parallel, 1, 256, &ec->n_slots) < 0) ||
        (o->max_queue && args_int(CMD, "--max-queue", o->max_queue, 1, 100000, &ec->max_queue) < 0) ||
        (o->max_tokens && args_int(CMD, "--max-tokens", o->max_tokens, 1, 1 << 20, &ec->max_tokens_default) < 0) ||
        (o->grace_ms && args_int(CMD, "--grace-ms", o->grace_ms, 0, 600000, &sc->shutdown_grace_ms) < 0) ||
        (o->max_body && args_size(CMD, "--max-body", o->max_body, 1024, (size_t)1 << 30, &sc->max_body) < 0) ||
        (o->max_connections &&
         args_int(CMD, "--max-connections", o->max_connections, 1, 1000000, &sc->max_connections) < 0) ||
        (o->max_per_ip &&
         args_int(CMD, "--max-connections-per-ip", o->max_per_ip, 0, 1000000, &sc->max_connections_per_ip) < 0) ||
        (o->http_threads && args_int(CMD, "--http-threads", o->http_threads, 1, 64, &sc->http_threads) < 0))
        return 2;
    if (!o->parallel || !strcmp(o->parallel, "auto"))
        ec->n_slots = ENGINE_SLOTS_AUTO;
    if (o->kv_memory) {
        size_t bytes;
        if (args_size(CMD, "--kv-memory", o->kv_memory, (size_t)1 << 20, (size_t)1 << 50, &bytes) < 0)
            return 2;
        ec->kv_memory = bytes;
    }
    int seconds;
    if (o->request_timeout) {
        if (args_int(CMD, "--request-timeout", o->request_timeout, 1, 3600, &seconds) < 0)
            return 2;
        sc->request_timeout_ms = seconds * 1000;
    }
    if (o->idle_timeout) {
        if (args_int(CMD, "--idle-timeout", o->idle_timeout, 1, 3600, &seconds) < 0)
            return 2;
        sc->idle_timeout_ms = seconds * 1000;
    }
    if (o->history) {
        if (!strcmp(o->history, "full"))
            ec->history = CHAT_HISTORY_FULL;
        else if (!strcmp(o->history, "last"))
            ec->history = CHAT_HISTORY_LAST;
        else
            return args_usage_error(CMD, "--history must be 'full' or 'last', not '%s'", o->history);
    }
    if (o->cache_type && args_cache_type(CMD, "--cache-type", o->cache_type, &ec->cache_q8_0) < 0)
        return 2;
    if (o->no_prefix_cache)
        ec->prefix_cache = false;
    if (o->mlock)
        ec->mlock = true;
    return -1;
}

/* Each connection is a descriptor: the soft limit is raised to the hard one,
 * and the connection limit lowered, with a warning, to what that allows. */
static void fit_descriptor_limit(server_config *sc)
{
    enum { RESERVED_FDS = 64 }; /* the model, listening socket, event loops, stdio */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)sc->max_connections + RESERVED_FDS)
        return;
    int fit = rl.rlim_cur > RESERVED_FDS * 2 ? (int)(rl.rlim_cur - RESERVED_FDS) : RESERVED_FDS;
    fprintf(stderr,
            "elliott serve: the descriptor limit (%llu, ulimit -n) allows %d connections, not %d: serving %d\n",
            (unsigned long long)rl.rlim_cur, fit, sc->max_connections, fit);
    sc->max_connections = fit;
}

static void say_listening(const char *host, int port, bool tls)
{
    bool v6 = strchr(host, ':') != NULL;
    fprintf(stderr, "elliott serve: listening on %s://%s%s%s:%d\n", tls ? "https" : "http", v6 ? "[" : "", host,
            v6 ? "]" : "", port);
}

static void say_model_ready(registry *r, int model)
{
    engine *e = registry_acquire_loaded(r, model);
    if (!e)
        return;
    engine_info info;
    engine_get_info(e, &info);
    registry_release(r, model);
    fprintf(stderr,
            "elliott serve: model ready: %s = %s (%s, chat format %s), %d slots sharing a KV cache of %d positions "
            "(%llu bytes each, %llu MiB at most), up to %d per conversation, %d threads, default max_tokens %d\n",
            registry_name(r, model), info.model_name, info.arch, info.chat_format, info.n_slots, info.n_ctx_pool,
            (unsigned long long)info.kv_bytes_per_token,
            (unsigned long long)(info.kv_bytes_per_token * (uint64_t)info.n_ctx_pool >> 20), info.n_ctx,
            info.n_threads, info.max_tokens_default);
}

/* Says what changed since last (one state per model): a load ended, a model
 * was unloaded. */
static void say_model_changes(registry *r, enum registry_state *last)
{
    for (size_t i = 0; i < registry_count(r); i++) {
        registry_status st;
        registry_get_status(r, (int)i, &st);
        if (st.state == last[i])
            continue;
        if (st.state == REGISTRY_READY)
            say_model_ready(r, (int)i);
        else if (st.state == REGISTRY_FAILED)
            fprintf(stderr, "elliott serve: the model failed to load (%s): %s (answering 503 for it)\n", st.name,
                    st.error.msg);
        else if (st.state == REGISTRY_LOADING)
            fprintf(stderr, "elliott serve: loading %s in the background\n", st.name);
        else if (st.state == REGISTRY_UNLOADED && last[i] != REGISTRY_UNLOADED)
            fprintf(stderr, "elliott serve: unloaded %s (unloads: %llu)\n", st.name, (unsigned long long)st.unloads);
        last[i] = st.state;
    }
}

/* What SIGHUP rereads: the key file, when keys come from one. */
typedef struct reload_ctx {
    server *srv;
    const char *key_file;
} reload_ctx;

static void reload_keys(const reload_ctx *r)
{
    if (!r->key_file) {
        fprintf(stderr, "elliott serve: SIGHUP: no --api-key-file to reread\n");
        return;
    }
    keyset keys;
    if (keyset_read(r->key_file, &keys) < 0) {
        fprintf(stderr, "elliott serve: SIGHUP: keeping the keys in use\n");
        return;
    }
    el_err err = {{0}};
    if (server_set_api_keys(r->srv, (const char *const *)keys.keys, keys.n, &err) < 0)
        fprintf(stderr, "elliott serve: SIGHUP: %s; keeping the keys in use\n", err.msg);
    else
        fprintf(stderr, "elliott serve: SIGHUP: %zu API key%s loaded from %s\n", keys.n, keys.n == 1 ? "" : "s",
                r->key_file);
    keyset_free(&keys);
}

/* Waits for SIGINT or SIGTERM (blocked in every thread, so they stay pending
 * until taken here), saying when a model has loaded, failed or been unloaded,
 * and rereading the keys on SIGHUP. */
static void wait_for_stop(registry *models, const sigset_t *signals, const reload_ctx *reload)
{
    enum registry_state *last = calloc(registry_count(models), sizeof *last);
    for (;;) {
        if (last)
            say_model_changes(models, last);
        struct timespec tick = {0, 100 * 1000000L};
        int sig = sigtimedwait(signals, NULL, &tick);
        if (sig == SIGHUP)
            reload_keys(reload);
        else if (sig > 0)
            break;
        else if (errno != EAGAIN && errno != EINTR)
            break;
    }
    free(last);
}

/* The registry of the models, nothing loaded yet; its thread starts with the
 * stop signals blocked, so that they reach the main thread. NULL after saying why. */
static registry *list_models(const registry_config *rc, const serve_model_args *models, const engine_config *ec)
{
    sigset_t block, saved;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &saved);
    el_err err = {{0}};
    registry *r = registry_create(rc, &err);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (!r) {
        fprintf(stderr, "elliott serve: %s\n", err.msg);
        return NULL;
    }
    if (serve_models_add(r, models, ec) < 0) {
        registry_free(r);
        return NULL;
    }
    return r;
}

/* Begins loading the default model. */
static int start_models(registry *r)
{
    el_err err = {{0}};
    if (registry_start(r, &err) < 0) {
        fprintf(stderr, "elliott serve: %s\n", err.msg);
        return -1;
    }
    if (registry_count(r) > 1)
        fprintf(stderr, "elliott serve: %zu models; the default is %s; the others load on first use\n",
                registry_count(r), registry_name(r, 0));
    return 0;
}

static int serve(registry *r, server_config *sc, const char *key_file)
{
    /* Blocked before any thread starts, so that every thread inherits the mask
     * and the signals wait for wait_for_stop instead of interrupting I/O. */
    sigset_t stop_signals, saved;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, &saved);
    if (start_models(r) < 0) {
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        return 1;
    }
    el_err err = {{0}};
    server *srv = server_start(sc, r, &err);
    if (srv) {
        say_listening(sc->host, server_port(srv), sc->tls_cert_pem != NULL);
        reload_ctx reload = {srv, key_file};
        wait_for_stop(r, &stop_signals, &reload);
        fprintf(stderr, "elliott serve: shutting down\n");
        server_stop(srv);
    } else {
        fprintf(stderr, "elliott serve: %s\n", err.msg);
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    return srv ? 0 : 1;
}

/* The rest of cmd_serve, once the options are read: keys, TLS, the models, serving. */
static int serve_configured(const serve_options *op, server_config *psc, const engine_config *ec,
                            const registry_config *models_cfg)
{
    const serve_options o = *op;
    server_config sc = *psc;
    keyset keys = {0};
    if (o.api_key_file && keyset_read(o.api_key_file, &keys) < 0)
        return 1;
    const char *one_key[1] = {o.api_key};
    if (o.api_key && !key_is_valid(o.api_key)) {
        fprintf(stderr, "elliott serve: the API key must be 1 to 512 printable characters without spaces\n");
        return 2;
    }
    sc.api_keys = o.api_key ? one_key : (const char *const *)keys.keys;
    sc.n_api_keys = o.api_key ? 1 : keys.n;
    char *cert = NULL, *key = NULL;
    if (o.tls_cert) {
        cert = pem_read(o.tls_cert, "cert");
        key = cert ? pem_read(o.tls_key, "key") : NULL;
        el_err err = {{0}};
        if (!key || server_check_tls(cert, key, &err) < 0) {
            if (key)
                fprintf(stderr, "elliott serve: %s (%s, %s)\n", err.msg, o.tls_cert, o.tls_key);
            pem_free(cert);
            pem_free(key);
            keyset_free(&keys);
            return 1;
        }
        sc.tls_cert_pem = cert;
        sc.tls_key_pem = key;
    }
    registry *models = list_models(models_cfg, &o.models, ec);
    int rc = 1;
    if (models) {
        signal(SIGPIPE, SIG_IGN);
        fit_descriptor_limit(&sc);
        if (!sc.n_api_keys)
            fprintf(stderr, "elliott serve: no API key set: requests are not authenticated\n");
        rc = serve(models, &sc, o.api_key_file);
        registry_free(models);
    }
    keyset_free(&keys);
    pem_free(cert);
    pem_free(key);
    return rc;
}

int cmd_serve(int argc, char **argv)
{
    serve_options o;
    memset(&o, 0, sizeof o);
    options_from_env(&o);
    int rc = parse_flags(argc, argv, &o);
    if (rc >= 0)
        return rc;
    engine_config ec;
    server_config sc;
    registry_config models_cfg;
    rc = build_config(&o, &ec, &sc, &models_cfg);
    if (rc >= 0)
        return rc;
    return serve_configured(&o, &sc, &ec, &models_cfg);
}

