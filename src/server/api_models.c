/* Which model a request uses, and the lists of models.
 *
 * A request with a body names its model in "model" (Ollama's /api/show also in
 * "name"); without one it gets the default model (the registry's first). The
 * name is read from a first, separate parse of the body, before the route's
 * own parser, so that the route is parsed against its model (Ollama's num_ctx
 * is checked against that model's context). The model is held from then until
 * the request ends. A model that is not loaded yet is waited for on a thread
 * of its own while the connection is suspended, so that the event loop goes on
 * serving requests for other models. */
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "server/server_internal.h"

struct model_wait {
    server *srv;
    struct MHD_Connection *conn;
    int model;
    enum registry_state state;
};

int models_find(server *srv, const char *name)
{
    int model = registry_find(srv->models, name);
    static const char latest[] = ":latest";
    size_t len = name ? strlen(name) : 0, tag = sizeof latest - 1;
    if (model < 0 && len > tag && len - tag <= REGISTRY_MAX_NAME && !strcmp(name + len - tag, latest)) {
        char base[REGISTRY_MAX_NAME + 1];
        memcpy(base, name, len - tag);
        base[len - tag] = '\0';
        model = registry_find(srv->models, base);
    }
    return model;
}

/* The name the body gives, copied into out ("" when absent or not a string: the
 * route's parser then says what is wrong with the body), and on Ollama's routes
 * its keep_alive (a bad one is left to the route's parser to refuse). */
static void peek_model_name(request_ctx *ctx, char *out, size_t cap)
{
    out[0] = '\0';
    json_error_t jerr;
    json_t *root = ctx->body && ctx->body_len ? json_loadb(ctx->body, ctx->body_len, 0, &jerr) : NULL;
    json_t *name = json_object_get(root, "model");
    if (!name && ctx->match.route == ROUTE_OLLAMA_SHOW)
        name = json_object_get(root, "name");
    if (json_is_string(name))
        snprintf(out, cap, "%s", json_string_value(name));
    api_error e;
    if (root && api_route_is_ollama(ctx->match.route) &&
        api_ollama_keep_alive(root, &ctx->keep_alive_ms, &ctx->keep_alive_set, &e) < 0)
        ctx->keep_alive_set = false;
    json_decref(root);
    explicit_bzero(&jerr, sizeof jerr); /* its text may quote the body */
}

static enum MHD_Result respond_not_found(struct MHD_Connection *conn, request_ctx *ctx, const char *name)
{
    api_error e;
    if (api_route_is_ollama(ctx->match.route)) {
        api_fail(&e, 404, "model", "model \"%s\" not found", name);
    } else {
        /* OpenAI's answer, word for word (param null, as OpenAI sends it) */
        api_fail(&e, 404, NULL, "The model `%s` does not exist or you do not have access to it.", name);
        e.code = "model_not_found";
    }
    return http_respond_error(conn, ctx, &e, NULL, NULL);
}

/* The route's own handler, now that its model is loaded and held. */
static enum MHD_Result dispatch(struct MHD_Connection *conn, request_ctx *ctx)
{
    ctx->eng = registry_engine(ctx->srv->models, ctx->model);
    if (ctx->match.route == ROUTE_COMPLETIONS)
        return completion_handle(conn, ctx);
    return api_dispatch(conn, ctx);
}

static enum MHD_Result respond_unready(struct MHD_Connection *conn, request_ctx *ctx, enum registry_state st)
{
    if (st == REGISTRY_FAILED) {
        api_error e;
        /* the load error stays in the server's log: it names files */
        api_fail(&e, 503, NULL, API_UNAVAILABLE_MESSAGE ": the model failed to load");
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    }
    if (atomic_load(&ctx->srv->draining))
        return http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    api_error e;
    api_fail(&e, 503, NULL, "the model %s is still loading; retry later", ctx->model_name);
    return http_respond_error(conn, ctx, &e, "Retry-After", "5");
}

static void wait_finished(struct model_wait *w)
{
    server *srv = w->srv;
    /* The wait is the connection's from here: nothing below touches it. */
    MHD_resume_connection(w->conn);
    pthread_mutex_lock(&srv->lock);
    srv->model_waits--;
    pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
}

static void *wait_thread(void *arg)
{
    /* Slices of the wait, so that a shutdown does not wait for a long load. */
    enum { SLICE_MS = 100 };
    struct model_wait *w = arg;
    server *srv = w->srv;
    int left = srv->cfg->model_wait_ms;
    for (;;) {
        int slice = left < SLICE_MS ? left : SLICE_MS;
        w->state = registry_wait(srv->models, w->model, slice, NULL);
        left -= slice;
        if (w->state == REGISTRY_READY || w->state == REGISTRY_FAILED || left <= 0 ||
            atomic_load(&srv->draining))
            break;
    }
    wait_finished(w);
    return NULL;
}

static enum MHD_Result wait_for_load(struct MHD_Connection *conn, request_ctx *ctx)
{
    server *srv = ctx->srv;
    struct model_wait *w = calloc(1, sizeof *w);
    if (!w)
        return http_fail_unavailable(conn, ctx);
    w->srv = srv;
    w->conn = conn;
    w->model = ctx->model;
    ctx->wait = w;
    MHD_suspend_connection(conn);
    pthread_mutex_lock(&srv->lock);
    srv->model_waits++;
    pthread_mutex_unlock(&srv->lock);
    if (!server_start_detached(wait_thread, w)) {
        /* no thread to be had: answer at once from what is known now */
        w->state = registry_wait(srv->models, w->model, 0, NULL);
        wait_finished(w);
    }
    return MHD_YES;
}

enum MHD_Result models_wait_continue(struct MHD_Connection *conn, request_ctx *ctx)
{
    struct model_wait *w = ctx->wait;
    ctx->wait = NULL;
    enum registry_state st = w->state;
    free(w);
    if (st == REGISTRY_READY && !atomic_load(&ctx->srv->draining))
        return dispatch(conn, ctx);
    return respond_unready(conn, ctx, st);
}

enum MHD_Result models_route(struct MHD_Connection *conn, request_ctx *ctx)
{
    server *srv = ctx->srv;
    if (ctx->too_large)
        return http_fail(conn, ctx, 413, NULL, NULL, NULL, "request body is larger than the server's limit");
    if (atomic_load(&srv->draining))
        return http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    char name[512];
    peek_model_name(ctx, name, sizeof name);
    int model = name[0] ? models_find(srv, name) : 0;
    /* One model served: any name is answered by it, as before there were
     * several (clients that send their own model names keep working); only
     * /api/show, which describes the model asked for, is exact. */
    if (model < 0 && registry_count(srv->models) == 1 && ctx->match.route != ROUTE_OLLAMA_SHOW)
        model = 0;
    if (model < 0)
        return respond_not_found(conn, ctx, name);
    ctx->model = model;
    ctx->model_name = registry_name(srv->models, model);
    registry_acquire(srv->models, model);
    ctx->model_held = true;
    enum registry_state st = registry_wait(srv->models, model, 0, NULL);
    if (st == REGISTRY_READY)
        return dispatch(conn, ctx);
    if (st == REGISTRY_FAILED || srv->cfg->model_wait_ms <= 0)
        return respond_unready(conn, ctx, st);
    return wait_for_load(conn, ctx);
}

void models_request_end(request_ctx *ctx)
{
    free(ctx->wait);
    ctx->wait = NULL;
    if (ctx->model_held && ctx->keep_alive_set)
        registry_set_keep_alive(ctx->srv->models, ctx->model, ctx->keep_alive_ms);
    if (ctx->model_held)
        registry_release(ctx->srv->models, ctx->model);
    ctx->model_held = false;
    ctx->eng = NULL;
}

void models_wait_jobs(server *srv)
{
    pthread_mutex_lock(&srv->lock);
    while (srv->model_waits > 0)
        pthread_cond_wait(&srv->idle, &srv->lock);
    pthread_mutex_unlock(&srv->lock);
}

/* ---- the lists --------------------------------------------------------------------------- */

enum MHD_Result models_list(struct MHD_Connection *conn, request_ctx *ctx)
{
    registry *r = ctx->srv->models;
    size_t n = registry_count(r);
    const char **names = calloc(n ? n : 1, sizeof *names);
    long long *created = calloc(n ? n : 1, sizeof *created);
    char *body = NULL;
    size_t len = 0;
    if (names && created) {
        for (size_t i = 0; i < n; i++) {
            registry_status st;
            registry_get_status(r, (int)i, &st);
            names[i] = st.name;
            created[i] = st.created;
        }
        body = api_models_body(names, created, n, &len);
    }
    free(names);
    free(created);
    return body ? http_respond_json(conn, ctx, 200, body, len)
                : http_fail_unavailable(conn, ctx);
}

enum MHD_Result models_get(struct MHD_Connection *conn, request_ctx *ctx, const char *id)
{
    int model = models_find(ctx->srv, id);
    if (model < 0)
        return respond_not_found(conn, ctx, id);
    registry_status st;
    registry_get_status(ctx->srv->models, model, &st);
    size_t len = 0;
    char *body = api_model_body(st.name, st.created, &len);
    return body ? http_respond_json(conn, ctx, 200, body, len)
                : http_fail_unavailable(conn, ctx);
}
