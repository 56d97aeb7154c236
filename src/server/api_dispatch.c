/* The routes beside chat completions: /v1/completions, /v1/embeddings and
 * Ollama's API. Each parses its body with the shared helpers, wipes the body
 * once parsed, and answers through completion.c (generation) or the engine's
 * embedding entry point. */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/server_internal.h"

static void wipe_request_body(request_ctx *ctx)
{
    if (ctx->body)
        explicit_bzero(ctx->body, ctx->body_cap);
}

/* 413 and shutdown, as chat completions answer them. */
static bool refused_early(struct MHD_Connection *conn, request_ctx *ctx, enum MHD_Result *ok)
{
    if (ctx->too_large) {
        *ok = http_fail(conn, ctx, 413, NULL, NULL, NULL, "request body is larger than the server's limit");
        return true;
    }
    if (atomic_load(&ctx->srv->draining)) {
        *ok = http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
        return true;
    }
    return false;
}

/* ---- /v1/completions ------------------------------------------------------------------ */

/* The echo of each prompt, one after the other, copied: it outlives the parsed
 * request, which is wiped before the answer starts. */
static int copy_echo(const text_request *req, answer_options *opts, wipebuf *echo)
{
    if (!req->echo)
        return 0;
    if (req->n_prompts <= 1) {
        if (wipebuf_append(echo, req->prompt.text, req->prompt.len) < 0)
            return -1;
    } else {
        for (size_t i = 0; i < req->n_prompts; i++) {
            if (wipebuf_append(echo, req->prompts[i].text, req->prompts[i].len) < 0)
                return -1;
            opts->echo_end[i] = echo->len;
        }
    }
    opts->echo = echo->data;
    opts->echo_len = echo->len;
    return 0;
}

static enum MHD_Result handle_text_completion(struct MHD_Connection *conn, request_ctx *ctx)
{
    gen_params defaults;
    gen_params_default(&defaults);
    text_request req;
    api_error e;
    int rc = api_parse_text_request(ctx->body ? ctx->body : "", ctx->body_len, &defaults, &req, &e);
    wipe_request_body(ctx);
    if (rc < 0)
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    int n_prompts = req.n_prompts > 1 ? (int)req.n_prompts : 1;
    answer_options opts = {.format = API_FORMAT_TEXT,
                           .stream = req.base.stream,
                           .include_usage = req.base.include_usage,
                           .logprobs = req.legacy_logprobs >= 0,
                           .top_logprobs = req.legacy_logprobs > 0 ? req.legacy_logprobs : 0,
                           .n_choices = n_prompts * (req.base.params.n_choices > 1 ? req.base.params.n_choices : 1),
                           .prompt_param = "prompt",
                           .n_prompts = n_prompts};
    enum MHD_Result refused = MHD_NO;
    gen_request *g = completion_submit(conn, ctx, &req.prompt, 1, &req.base.params, &opts, "prompt", &refused);
    wipebuf echo = {0};
    bool oom = g && copy_echo(&req, &opts, &echo) < 0;
    text_request_free(&req);
    enum MHD_Result ok = refused;
    if (oom) {
        gen_release(g);
        ok = http_fail_unavailable(conn, ctx);
    } else if (g) {
        ok = completion_start(conn, ctx, g, &opts);
    }
    wipebuf_free(&echo);
    return ok;
}

/* ---- Ollama's /api/chat and /api/generate ------------------------------------------------- */

static enum MHD_Result answer_loaded(struct MHD_Connection *conn, request_ctx *ctx)
{
    /* Ollama answers a generate without a prompt once the model is loaded, or, with
     * keep_alive 0, as it is to be unloaded (when the request ends). */
    char stamp[40];
    api_ollama_timestamp(stamp);
    bool unload = ctx->keep_alive_set && ctx->keep_alive_ms == 0;
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:s}", "model", ctx->model_name, "created_at", stamp,
                          "response", "", "done", 1, "done_reason", unload ? "unload" : "load");
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return text ? http_respond_json(conn, ctx, 200, text, strlen(text)) : MHD_NO;
}

static enum MHD_Result handle_ollama_generation(struct MHD_Connection *conn, request_ctx *ctx, bool generate)
{
    gen_params defaults;
    gen_params_default(&defaults);
    engine_info info;
    engine_get_info(ctx->eng, &info);
    chat_request req;
    api_error e;
    bool empty = false;
    int rc = api_parse_ollama_request(ctx->body ? ctx->body : "", ctx->body_len, generate, &defaults, info.n_ctx,
                                      &req, &empty, &e);
    wipe_request_body(ctx);
    if (rc < 0)
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    enum MHD_Result ok;
    if (empty) {
        ok = answer_loaded(conn, ctx);
    } else {
        answer_options opts = {.format = generate ? API_FORMAT_OLLAMA_GENERATE : API_FORMAT_OLLAMA_CHAT,
                               .stream = req.stream,
                               .prompt_param = generate ? "prompt" : "messages",
                               .n_choices = 1};
        enum MHD_Result refused = MHD_NO;
        gen_request *g = completion_submit(conn, ctx, req.messages, req.n_messages, &req.params, &opts,
                                           req.constraint_param ? req.constraint_param : "format", &refused);
        chat_request_free(&req);
        return g ? completion_start(conn, ctx, g, &opts) : refused;
    }
    chat_request_free(&req);
    return ok;
}

/* ---- embeddings ------------------------------------------------------------------------------ */

/* An embedding request's work, done on a thread of its own while its connection
 * is suspended: the event loop that serves it goes on serving others. */
struct embed_job {
    server *srv;
    engine *eng;              /* held by the request until it ends, after the job */
    struct MHD_Connection *conn;
    embed_request req;
    float *rows;
    int dim, prompt_tokens;
    enum gen_status status;
    el_err err;
    double ms;
};

static void embed_job_free(struct embed_job *job)
{
    if (!job)
        return;
    if (job->rows)
        explicit_bzero(job->rows, job->req.n_inputs * (size_t)job->dim * sizeof *job->rows);
    free(job->rows);
    embed_request_free(&job->req);
    explicit_bzero(&job->err, sizeof job->err);
    free(job);
}

static void embed_job_run(struct embed_job *job)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    job->status = engine_embed(job->eng, job->req.inputs, job->req.n_inputs, &job->req.options, job->rows,
                               &job->prompt_tokens, &job->err);
    job->ms = server_seconds_since(&t0) * 1e3;
}

static void *embed_thread(void *arg)
{
    struct embed_job *job = arg;
    server *srv = job->srv;
    embed_job_run(job);
    /* The job is the connection's from here: nothing below touches it. */
    MHD_resume_connection(job->conn);
    pthread_mutex_lock(&srv->lock);
    srv->embed_jobs--;
    pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
    return NULL;
}

void api_embed_wait_jobs(server *srv)
{
    pthread_mutex_lock(&srv->lock);
    while (srv->embed_jobs > 0)
        pthread_cond_wait(&srv->idle, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
}

void api_embed_abandon(request_ctx *ctx)
{
    embed_job_free(ctx->embed);
    ctx->embed = NULL;
}

static enum MHD_Result respond_embed_error(struct MHD_Connection *conn, request_ctx *ctx, enum gen_status st,
                                           const el_err *err, const char *param)
{
    api_error e;
    switch (st) {
    case GEN_ERR_INVALID:
    case GEN_ERR_CONTEXT:
        api_fail(&e, 400, param, "%s", err->msg);
        if (st == GEN_ERR_CONTEXT)
            e.code = "context_length_exceeded";
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    case GEN_ERR_NOT_READY:
        return http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the model is not loaded yet");
    case GEN_ERR_SHUTTING_DOWN:
        return http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    default:
        return http_fail_unavailable(conn, ctx);
    }
}

enum MHD_Result api_embed_continue(struct MHD_Connection *conn, request_ctx *ctx)
{
    struct embed_job *job = ctx->embed;
    ctx->embed = NULL;
    ctx->engine_ms = job->ms;
    enum MHD_Result ok;
    if (job->status != GEN_OK) {
        ok = respond_embed_error(conn, ctx, job->status, &job->err, job->req.legacy ? "prompt" : "input");
    } else {
        int dims = job->req.dimensions ? job->req.dimensions : job->dim;
        api_embed_truncate(job->rows, job->req.n_inputs, job->dim, job->req.dimensions);
        ctx->usage.prompt_tokens = job->prompt_tokens;
        size_t len;
        char *body = api_embed_body(&job->req, ctx->model_name, job->rows, job->req.n_inputs, dims,
                                    job->prompt_tokens, &len);
        ok = body ? http_respond_json(conn, ctx, 200, body, len)
                  : http_fail_unavailable(conn, ctx);
    }
    embed_job_free(job);
    return ok;
}

static enum MHD_Result handle_embeddings(struct MHD_Connection *conn, request_ctx *ctx)
{
    struct embed_job *job = calloc(1, sizeof *job);
    if (!job)
        return http_fail_unavailable(conn, ctx);
    api_error e;
    int rc = api_parse_embed_request(ctx->body ? ctx->body : "", ctx->body_len, ctx->match.route, &job->req, &e);
    wipe_request_body(ctx);
    if (rc < 0) {
        free(job);
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    }
    server *srv = ctx->srv;
    job->srv = srv;
    job->conn = conn;
    job->eng = ctx->eng;
    job->dim = engine_embedding_size(job->eng);
    if (job->dim <= 0) {
        embed_job_free(job);
        return http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the model is not loaded yet");
    }
    if (job->req.dimensions > job->dim) {
        api_fail(&e, 400, "dimensions", "'dimensions' %d is more than the model's %d", job->req.dimensions,
                 job->dim);
        embed_job_free(job);
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    }
    job->rows = calloc(job->req.n_inputs * (size_t)job->dim, sizeof *job->rows);
    if (!job->rows) {
        embed_job_free(job);
        return http_fail_unavailable(conn, ctx);
    }
    ctx->embed = job;
    MHD_suspend_connection(conn);
    pthread_mutex_lock(&srv->lock);
    srv->embed_jobs++;
    pthread_mutex_unlock(&srv->lock);
    if (!server_start_detached(embed_thread, job))
        embed_thread(job); /* no thread to be had: here, then; resumed all the same */
    return MHD_YES;
}

/* ---- Ollama's descriptions ---------------------------------------------------------------------- */

static void add_metadata(void *cls, const char *key, size_t key_len, const engine_meta_value *v)
{
    json_t *info = cls, *value = NULL;
    switch (v->kind) {
    case ENGINE_META_STRING: value = json_stringn_nocheck(v->str, v->len); break;
    case ENGINE_META_INT: value = json_integer(v->i); break;
    case ENGINE_META_FLOAT: value = json_real(v->f); break;
    case ENGINE_META_BOOL: value = json_boolean(v->i); break;
    }
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)(key_len < 127 ? key_len : 127), key);
    if (value && json_is_string(value) && !json_string_value(value))
        json_decref(value), value = NULL;
    if (value)
        json_object_set_new(info, name, value);
}

/* A stable id for the file: its path, size and mtime hashed (FNV-1a), 64 hex digits. */
static void stable_digest(const engine_description *d, char out[65])
{
    char key[600];
    int n = snprintf(key, sizeof key, "%s|%llu|%lld", d->path ? d->path : "(memory)",
                     (unsigned long long)d->file_bytes, d->modified);
    for (int part = 0; part < 4; part++) {
        uint64_t h = 1469598103934665603ULL ^ (uint64_t)part;
        for (int i = 0; i < n && i < (int)sizeof key; i++)
            h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
        snprintf(out + part * 16, 17, "%016llx", (unsigned long long)h);
    }
}

static void parameter_size(uint64_t n, char out[32])
{
    double p = (double)n;
    if (p >= 1e9)
        snprintf(out, 32, "%.1fB", p / 1e9);
    else if (p >= 1e6)
        snprintf(out, 32, "%.0fM", p / 1e6);
    else
        snprintf(out, 32, "%.0fK", p / 1e3);
}

/* A loaded model as Ollama describes it; the buffers are the caller's (tmpl is
 * malloc'd, NULL without a template). -1 when out of memory. */
typedef struct described {
    engine_description d;
    engine_info info;
    json_t *model_info;
    char digest[65], params[32];
    char *tmpl;
} described;

static int describe_loaded(engine *e, described *out)
{
    memset(out, 0, sizeof *out);
    out->model_info = json_object();
    if (!out->model_info || engine_describe(e, &out->d, add_metadata, out->model_info) < 0) {
        json_decref(out->model_info);
        out->model_info = NULL;
        return -1;
    }
    engine_get_info(e, &out->info);
    stable_digest(&out->d, out->digest);
    parameter_size(out->d.n_params, out->params);
    if (out->d.chat_template && (out->tmpl = malloc(out->d.chat_template_len + 1)) != NULL) {
        memcpy(out->tmpl, out->d.chat_template, out->d.chat_template_len);
        out->tmpl[out->d.chat_template_len] = '\0';
    }
    return 0;
}

static void described_free(described *x)
{
    free(x->tmpl);
    json_decref(x->model_info);
}

static api_ollama_model ollama_model(const char *name, const described *x, long long started)
{
    return (api_ollama_model){.name = name, .info = &x->info, .path = x->d.path,
                              .modified = x->d.modified ? x->d.modified : started, .size = x->d.file_bytes,
                              .digest = x->digest, .quantization = x->d.weight_type, .parameter_size = x->params,
                              .model_info = x->model_info, .template_text = x->tmpl ? x->tmpl : ""};
}

/* POST /api/show: the request's model (api_models.c chose and loaded it). */
static enum MHD_Result handle_ollama_show(struct MHD_Connection *conn, request_ctx *ctx)
{
    json_t *root;
    api_error e;
    int rc = api_load_json(ctx->body ? ctx->body : "", ctx->body_len, "'model'", &root, &e);
    wipe_request_body(ctx);
    if (rc < 0)
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    static const char *const fields[] = {"model", "name", "verbose"};
    rc = api_check_fields(root, fields, 3, "", &e);
    json_decref(root);
    if (rc < 0)
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    described x;
    if (describe_loaded(ctx->eng, &x) < 0)
        return http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the model is not loaded yet");
    api_ollama_model m = ollama_model(ctx->model_name, &x, ctx->srv->started);
    size_t len = 0;
    char *body = api_ollama_show_body(&m, &len);
    described_free(&x);
    return body ? http_respond_json(conn, ctx, 200, body, len)
                : http_fail_unavailable(conn, ctx);
}

/* A model not in memory, from its file alone (the digest is the one it has loaded). */
static void describe_unloaded(const registry_status *st, described *out, long long started)
{
    memset(out, 0, sizeof *out);
    struct stat sb;
    out->d.path = st->path;
    out->d.file_bytes = st->bytes;
    out->d.modified = st->path && stat(st->path, &sb) == 0 ? (long long)sb.st_mtime : 0;
    stable_digest(&out->d, out->digest);
    if (!out->d.modified)
        out->d.modified = started;
}

/* GET /api/tags: every model; those not loaded are not loaded to be listed. */
static enum MHD_Result handle_ollama_tags(struct MHD_Connection *conn, request_ctx *ctx)
{
    server *srv = ctx->srv;
    size_t n = registry_count(srv->models);
    described *xs = calloc(n ? n : 1, sizeof *xs);
    api_ollama_model *ms = calloc(n ? n : 1, sizeof *ms);
    char *body = NULL;
    size_t len = 0;
    if (xs && ms) {
        for (size_t i = 0; i < n; i++) {
            registry_status st;
            registry_get_status(srv->models, (int)i, &st);
            engine *e = registry_acquire_loaded(srv->models, (int)i);
            bool loaded = e && describe_loaded(e, &xs[i]) == 0;
            if (e)
                registry_release(srv->models, (int)i);
            if (!loaded)
                describe_unloaded(&st, &xs[i], srv->started);
            ms[i] = ollama_model(st.name, &xs[i], srv->started);
            if (!loaded)
                ms[i].info = NULL;
        }
        body = api_ollama_tags_body(ms, n, &len);
        for (size_t i = 0; i < n; i++)
            described_free(&xs[i]);
    }
    free(xs);
    free(ms);
    return body ? http_respond_json(conn, ctx, 200, body, len)
                : http_fail_unavailable(conn, ctx);
}

enum MHD_Result api_dispatch(struct MHD_Connection *conn, request_ctx *ctx)
{
    enum MHD_Result ok;
    if (api_route_takes_body(ctx->match.route) && refused_early(conn, ctx, &ok))
        return ok;
    size_t len = 0;
    switch (ctx->match.route) {
    case ROUTE_TEXT_COMPLETIONS: return handle_text_completion(conn, ctx);
    case ROUTE_EMBEDDINGS:
    case ROUTE_OLLAMA_EMBED:
    case ROUTE_OLLAMA_EMBEDDINGS: return handle_embeddings(conn, ctx);
    case ROUTE_OLLAMA_CHAT: return handle_ollama_generation(conn, ctx, false);
    case ROUTE_OLLAMA_GENERATE: return handle_ollama_generation(conn, ctx, true);
    case ROUTE_OLLAMA_SHOW: return handle_ollama_show(conn, ctx);
    case ROUTE_OLLAMA_TAGS: return handle_ollama_tags(conn, ctx);
    case ROUTE_OLLAMA_VERSION: {
        char *body = api_ollama_version_body(&len);
        return http_respond_json(conn, ctx, 200, body, len);
    }
    default: return http_fail(conn, ctx, 404, NULL, NULL, NULL, "unknown path");
    }
}
