/* The HTTP service over libmicrohttpd: routing, the request lifecycle, SSE
 * streaming, logging, metrics and graceful shutdown.
 *
 * Threading: one thread per connection (MHD_USE_THREAD_PER_CONNECTION). A
 * completion request blocks its own connection's thread while it waits for the
 * engine, which lets the SSE content reader wait on gen_next and poll the client
 * socket for a hang-up between events, so a client that goes away stops its
 * generation within one engine step. */
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/wipebuf.h"
#include "server/server.h"
#include "server/server_internal.h"

extern const char elliott_chat_page_start[];
extern const char elliott_chat_page_end[];

/* Generations in flight, so that shutdown can cancel them. */
typedef struct gen_node {
    gen_request *gen;
    struct gen_node *prev, *next;
} gen_node;

typedef struct server {
    const server_config *cfg;
    engine *eng;
    server_metrics metrics;
    pthread_mutex_t lock;
    pthread_cond_t idle;      /* signalled when in_flight drops */
    gen_node *gens;
    int in_flight;
    bool cancel_all;          /* shutdown: cancel every generation, now and later */
    atomic_bool draining;     /* shutdown: refuse new completions */
    long long started;        /* UNIX time, the model's "created" */
} server;

typedef struct stream_state stream_state;

enum { SSE_KEEPALIVE_SECONDS = 15 };

typedef struct request_ctx {
    server *srv;
    api_route_match match;
    char method[16];
    char path[80];            /* for the log: known routes only, sanitised */
    struct timespec t_start;
    char *body;
    size_t body_len, body_cap, body_seen;
    bool too_large;
    bool keep_body;           /* only a completion that passed the header checks stores its body */
    bool answered;
    bool has_deferred;        /* an error decided from the headers, sent once the request is read */
    api_error deferred;
    const char *deferred_header, *deferred_value;
    int status;
    size_t resp_bytes;
    api_usage usage;
    double engine_ms;         /* the engine's own time: queue + prompt + generation */
    bool cancelled;           /* the client went away mid-generation */
    stream_state *stream;
} request_ctx;

struct stream_state {
    atomic_int refs;
    server *srv;
    gen_request *gen;
    gen_node node;
    char id[API_ID_LEN + 1];
    long long created;
    bool include_usage;
    int fd;
    struct timespec t_start;
    struct timespec last_output;
    char *out;                /* the event being sent, from out_off */
    size_t out_len, out_off;
    bool role_sent, done_seen, finished, client_gone, saw_text;
    gen_event done;
    size_t bytes_sent;
};

/* ---- small helpers ------------------------------------------------------------ */

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* The peer has closed or reset the connection. Pipelined bytes of a next
 * request do not count: only an orderly EOF or an error. */
static bool client_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL))
        return true;
    if (p.revents & POLLIN) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    return false;
}

static int connection_fd(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info ? info->connect_fd : -1;
}

static void register_gen(server *srv, gen_node *n, gen_request *g)
{
    n->gen = g;
    pthread_mutex_lock(&srv->lock);
    n->prev = NULL;
    n->next = srv->gens;
    if (srv->gens)
        srv->gens->prev = n;
    srv->gens = n;
    if (srv->cancel_all)
        gen_cancel(g);
    pthread_mutex_unlock(&srv->lock);
}

static void unregister_gen(server *srv, gen_node *n)
{
    pthread_mutex_lock(&srv->lock);
    if (n->prev)
        n->prev->next = n->next;
    else
        srv->gens = n->next;
    if (n->next)
        n->next->prev = n->prev;
    n->next = n->prev = NULL;
    pthread_mutex_unlock(&srv->lock);
}

/* Waits for the DONE that follows a cancel (bounded: the engine stops at its
 * next step). Returns 1 when it came. */
static int drain_to_done(gen_request *g, gen_event *ev)
{
    for (int i = 0; i < 600; i++) {
        if (gen_next(g, ev, 50) == 1 && ev->kind == GEN_EVENT_DONE)
            return 1;
    }
    return 0;
}

/* ---- responses ----------------------------------------------------------------- */

static void add_common_headers(server *srv, struct MHD_Response *r)
{
    if (srv->cfg->cors_origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", srv->cfg->cors_origin);
        MHD_add_response_header(r, "Vary", "Origin");
    }
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
}

/* Sends body (freed with api_free unless is_static). Returns MHD's verdict. */
static enum MHD_Result respond(struct MHD_Connection *conn, request_ctx *ctx, int status,
                               const char *content_type, char *body, size_t len, bool is_static,
                               const char *header, const char *value)
{
    struct MHD_Response *r;
    if (is_static)
        r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
    else
        r = MHD_create_response_from_buffer_with_free_callback(len, body, api_free);
    if (!r) {
        if (!is_static)
            api_free(body);
        return MHD_NO;
    }
    if (content_type)
        MHD_add_response_header(r, "Content-Type", content_type);
    if (header)
        MHD_add_response_header(r, header, value);
    add_common_headers(ctx->srv, r);
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    ctx->answered = true;
    ctx->status = status;
    ctx->resp_bytes = len;
    return ok;
}

static enum MHD_Result respond_json(struct MHD_Connection *conn, request_ctx *ctx, int status, char *body,
                                    size_t len)
{
    if (!body)
        return MHD_NO;
    return respond(conn, ctx, status, "application/json", body, len, false, NULL, NULL);
}

static enum MHD_Result respond_error(struct MHD_Connection *conn, request_ctx *ctx, const api_error *e,
                                     const char *header, const char *value)
{
    size_t len;
    char *body = api_error_body(e, &len);
    if (!body)
        return MHD_NO;
    return respond(conn, ctx, e->status, "application/json", body, len, false, header, value);
}

static enum MHD_Result fail(struct MHD_Connection *conn, request_ctx *ctx, int status, const char *param,
                            const char *header, const char *value, const char *message)
{
    api_error e;
    api_fail(&e, status, param, "%s", message);
    return respond_error(conn, ctx, &e, header, value);
}

/* Maps engine_submit's refusal onto the error table of docs/api.md. */
static enum MHD_Result respond_submit_error(struct MHD_Connection *conn, request_ctx *ctx,
                                            enum gen_status st, const el_err *err)
{
    api_error e;
    switch (st) {
    case GEN_ERR_INVALID:
        api_fail(&e, 400, "messages", "%s", err->msg);
        return respond_error(conn, ctx, &e, NULL, NULL);
    case GEN_ERR_CONTEXT:
        api_fail(&e, 400, "messages", "%s", err->msg);
        e.code = "context_length_exceeded";
        return respond_error(conn, ctx, &e, NULL, NULL);
    case GEN_ERR_QUEUE_FULL:
        return fail(conn, ctx, 503, NULL, "Retry-After", "1", "the request queue is full; retry later");
    case GEN_ERR_NOT_READY:
        return fail(conn, ctx, 503, NULL, "Retry-After", "5", "the model is not loaded yet");
    case GEN_ERR_SHUTTING_DOWN:
        return fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    case GEN_OK:
    case GEN_ERR_INTERNAL:
        break;
    }
    return fail(conn, ctx, 500, NULL, NULL, NULL, "AI service is unavailable");
}

static const char *finish_name(enum gen_finish f)
{
    return f == GEN_FINISH_LENGTH ? "length" : "stop";
}

/* ---- streaming ------------------------------------------------------------------- */

static void stream_unref(stream_state *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    unregister_gen(s->srv, &s->node);
    gen_release(s->gen);
    api_free(s->out);
    explicit_bzero(s, sizeof *s);
    free(s);
}

static void stream_free_callback(void *cls)
{
    stream_unref(cls);
}

static void stream_set_output(stream_state *s, char *event, size_t len)
{
    api_free(s->out);
    s->out = event;
    s->out_len = event ? len : 0;
    s->out_off = 0;
}

/* Turns a DONE into the closing events: finish chunk, usage, [DONE]; or an
 * error event when generation failed or the server cancelled it. */
static int stream_close_events(stream_state *s)
{
    const char *model = s->srv->cfg->alias;
    size_t n1 = 0, n2 = 0;
    char *a = NULL, *b = NULL;
    if (s->done.finish == GEN_FINISH_STOP || s->done.finish == GEN_FINISH_LENGTH) {
        a = api_chunk_finish(s->id, s->created, model, finish_name(s->done.finish), s->include_usage, &n1);
        if (s->include_usage) {
            api_usage u = {s->done.prompt_tokens, s->done.completion_tokens};
            b = api_chunk_usage(s->id, s->created, model, &u, &n2);
            if (!b) {
                api_free(a);
                return -1;
            }
        }
    } else {
        api_error e;
        if (s->done.finish == GEN_FINISH_CANCELLED)
            api_fail(&e, 503, NULL, "the server is shutting down");
        else
            api_fail(&e, 500, NULL, "AI service is unavailable");
        a = api_chunk_error(&e, &n1);
    }
    if (!a)
        return -1;
    bool with_done = s->done.finish == GEN_FINISH_STOP || s->done.finish == GEN_FINISH_LENGTH;
    size_t n3 = with_done ? strlen(API_SSE_DONE) : 0;
    char *all = malloc(n1 + n2 + n3 + 1);
    if (!all) {
        api_free(a);
        api_free(b);
        return -1;
    }
    memcpy(all, a, n1);
    if (b)
        memcpy(all + n1, b, n2);
    memcpy(all + n1 + n2, API_SSE_DONE, n3);
    api_free(a);
    api_free(b);
    stream_set_output(s, all, n1 + n2 + n3);
    s->finished = true;
    return 0;
}

/* Produces the next event into s->out. Returns 0, or -1 to drop the connection. */
static int stream_next_event(stream_state *s)
{
    const char *model = s->srv->cfg->alias;
    size_t len = 0;
    if (!s->role_sent) {
        s->role_sent = true;
        char *ev = api_chunk_role(s->id, s->created, model, s->include_usage, &len);
        stream_set_output(s, ev, len);
        return ev ? 0 : -1;
    }
    for (;;) {
        gen_event ev;
        if (gen_next(s->gen, &ev, 50) == 0) {
            if (!s->client_gone && client_gone(s->fd)) {
                s->client_gone = true;
                gen_cancel(s->gen);
            }
            /* A comment line keeps proxies from timing out a stream that waits
             * in the queue; SSE clients ignore it. */
            if (!s->client_gone && seconds_since(&s->last_output) >= SSE_KEEPALIVE_SECONDS) {
                char *comment = strdup(": keep-alive\n\n");
                stream_set_output(s, comment, comment ? strlen(comment) : 0);
                return comment ? 0 : -1;
            }
            continue;
        }
        if (ev.kind == GEN_EVENT_TEXT) {
            if (ev.len == 0 || s->client_gone)
                continue;
            /* A hang-up shows here long before a write fails. */
            if (client_gone(s->fd)) {
                s->client_gone = true;
                gen_cancel(s->gen);
                continue;
            }
            if (!s->saw_text) {
                s->saw_text = true;
                metrics_record_ttft(&s->srv->metrics, seconds_since(&s->t_start));
            }
            char *chunk_ev = api_chunk_content(s->id, s->created, model, ev.text, ev.len, s->include_usage, &len);
            stream_set_output(s, chunk_ev, len);
            return chunk_ev ? 0 : -1;
        }
        s->done = ev;
        s->done_seen = true;
        if (s->client_gone)
            return -1;
        return stream_close_events(s);
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_state *s = cls;
    while (s->out_off == s->out_len) {
        if (s->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (stream_next_event(s) < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = s->out_len - s->out_off;
    if (n > max)
        n = max;
    clock_gettime(CLOCK_MONOTONIC, &s->last_output);
    memcpy(buf, s->out + s->out_off, n);
    s->out_off += n;
    s->bytes_sent += n;
    return (ssize_t)n;
}

static enum MHD_Result start_stream(struct MHD_Connection *conn, request_ctx *ctx, gen_request *g,
                                    bool include_usage)
{
    stream_state *s = calloc(1, sizeof *s);
    if (!s) {
        gen_release(g);
        return fail(conn, ctx, 500, NULL, NULL, NULL, "AI service is unavailable");
    }
    atomic_init(&s->refs, 1);
    s->srv = ctx->srv;
    s->gen = g;
    s->include_usage = include_usage;
    s->fd = connection_fd(conn);
    s->t_start = ctx->t_start;
    clock_gettime(CLOCK_MONOTONIC, &s->last_output);
    s->created = (long long)time(NULL);
    register_gen(ctx->srv, &s->node, g);
    if (api_new_id(s->id, NULL) < 0) {
        stream_unref(s);
        return fail(conn, ctx, 500, NULL, NULL, NULL, "AI service is unavailable");
    }
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free_callback);
    if (!r) {
        stream_unref(s);
        return MHD_NO;
    }
    atomic_fetch_add(&s->refs, 1); /* the response's reference */
    ctx->stream = s;
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    add_common_headers(ctx->srv, r);
    enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    ctx->answered = true;
    ctx->status = 200;
    return ok;
}

/* ---- non-streaming completion ------------------------------------------------------ */

/* Waits for the whole reply; returns false when the client went away. */
static bool collect_reply(request_ctx *ctx, gen_request *g, int fd, wipebuf *text, gen_event *done)
{
    bool gone = false, saw_text = false, oom = false;
    for (;;) {
        gen_event ev;
        if (gen_next(g, &ev, 50) == 0) {
            if (!gone && client_gone(fd)) {
                gone = true;
                gen_cancel(g);
            }
            continue;
        }
        if (ev.kind == GEN_EVENT_DONE) {
            *done = ev;
            break;
        }
        if (!gone && client_gone(fd)) {
            gone = true;
            gen_cancel(g);
        }
        if (!saw_text && ev.len) {
            saw_text = true;
            metrics_record_ttft(&ctx->srv->metrics, seconds_since(&ctx->t_start));
        }
        if (!oom && wipebuf_append(text, ev.text, ev.len) < 0) {
            oom = true;
            gen_cancel(g);
        }
    }
    if (oom)
        done->finish = GEN_FINISH_ERROR;
    return !gone;
}

static enum MHD_Result complete_blocking(struct MHD_Connection *conn, request_ctx *ctx, gen_request *g)
{
    server *srv = ctx->srv;
    gen_node node;
    register_gen(srv, &node, g);
    wipebuf text = {0};
    gen_event done;
    bool present = collect_reply(ctx, g, connection_fd(conn), &text, &done);
    unregister_gen(srv, &node);
    gen_release(g);
    ctx->usage.prompt_tokens = done.prompt_tokens;
    ctx->usage.completion_tokens = done.completion_tokens;
    ctx->engine_ms = done.queue_ms + done.prompt_ms + done.generate_ms;
    if (!present) {
        ctx->cancelled = true;
        wipebuf_free(&text);
        return MHD_NO;
    }
    enum MHD_Result ok;
    char id[API_ID_LEN + 1];
    if (done.finish == GEN_FINISH_CANCELLED) {
        ok = fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    } else if (done.finish == GEN_FINISH_ERROR || api_new_id(id, NULL) < 0) {
        ok = fail(conn, ctx, 500, NULL, NULL, NULL, "AI service is unavailable");
    } else {
        size_t len;
        char *body = api_completion_body(id, (long long)time(NULL), srv->cfg->alias, text.data ? text.data : "",
                                         text.len, finish_name(done.finish), &ctx->usage, &len);
        ok = body ? respond_json(conn, ctx, 200, body, len)
                  : fail(conn, ctx, 500, NULL, NULL, NULL, "AI service is unavailable");
    }
    wipebuf_free(&text);
    return ok;
}

static enum MHD_Result handle_completion(struct MHD_Connection *conn, request_ctx *ctx)
{
    server *srv = ctx->srv;
    if (ctx->too_large)
        return fail(conn, ctx, 413, NULL, NULL, NULL, "request body is larger than the server's limit");
    gen_params defaults;
    gen_params_default(&defaults);
    chat_request req;
    api_error e;
    int rc = api_parse_chat_request(ctx->body ? ctx->body : "", ctx->body_len, &defaults, &req, &e);
    /* The body is not needed any more: the parsed copy holds what matters. */
    if (ctx->body)
        explicit_bzero(ctx->body, ctx->body_cap);
    if (rc < 0)
        return respond_error(conn, ctx, &e, NULL, NULL);
    if (atomic_load(&srv->draining)) {
        chat_request_free(&req);
        return fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    }
    gen_request *g = NULL;
    el_err err = {{0}};
    enum gen_status st = engine_submit(srv->eng, req.messages, req.n_messages, &req.params, &g, &err);
    bool stream = req.stream, include_usage = req.include_usage;
    chat_request_free(&req);
    if (st != GEN_OK)
        return respond_submit_error(conn, ctx, st, &err);
    ctx->usage.prompt_tokens = gen_prompt_tokens(g);
    if (stream)
        return start_stream(conn, ctx, g, include_usage);
    return complete_blocking(conn, ctx, g);
}

/* ---- the GET routes ---------------------------------------------------------------- */

static enum MHD_Result handle_health(struct MHD_Connection *conn, request_ctx *ctx)
{
    static char ok[] = "{\"status\":\"ok\"}", loading[] = "{\"status\":\"loading\"}",
                failed[] = "{\"status\":\"failed\"}", stopping[] = "{\"status\":\"shutting_down\"}";
    char *body = ok;
    int status = 200;
    enum engine_state st = engine_state(ctx->srv->eng, NULL);
    if (atomic_load(&ctx->srv->draining))
        body = stopping, status = 503;
    else if (st == ENGINE_LOADING)
        body = loading, status = 503;
    else if (st == ENGINE_FAILED)
        body = failed, status = 503;
    return respond(conn, ctx, status, "application/json", body, strlen(body), true,
                   status == 503 ? "Retry-After" : NULL, "5");
}

static enum MHD_Result handle_metrics(struct MHD_Connection *conn, request_ctx *ctx)
{
    server *srv = ctx->srv;
    metrics_gauges g = {0};
    if (engine_state(srv->eng, NULL) == ENGINE_READY) {
        engine_stats es;
        engine_get_stats(srv->eng, &es);
        g.ready = 1;
        g.queue_depth = es.queue_depth;
        g.active_slots = es.active_slots;
    }
    pthread_mutex_lock(&srv->lock);
    g.in_flight = srv->in_flight;
    pthread_mutex_unlock(&srv->lock);
    size_t len;
    char *text = metrics_render(&srv->metrics, &g, &len);
    if (!text)
        return MHD_NO;
    return respond(conn, ctx, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, false, NULL, NULL);
}

static enum MHD_Result handle_get(struct MHD_Connection *conn, request_ctx *ctx, const char *url)
{
    server *srv = ctx->srv;
    size_t len = 0;
    char *body;
    switch (ctx->match.route) {
    case ROUTE_PAGE:
        return respond(conn, ctx, 200, "text/html; charset=utf-8", (char *)elliott_chat_page_start,
                       (size_t)(elliott_chat_page_end - elliott_chat_page_start), true, "Cache-Control",
                       "no-cache");
    case ROUTE_HEALTH:
        return handle_health(conn, ctx);
    case ROUTE_METRICS:
        return handle_metrics(conn, ctx);
    case ROUTE_MODELS:
        body = api_models_body(srv->cfg->alias, srv->started, &len);
        return respond_json(conn, ctx, 200, body, len);
    case ROUTE_MODEL:
        if (strcmp(url + strlen("/v1/models/"), srv->cfg->alias) != 0)
            return fail(conn, ctx, 404, "model", NULL, NULL, "no such model: this server serves one alias");
        body = api_model_body(srv->cfg->alias, srv->started, &len);
        return respond_json(conn, ctx, 200, body, len);
    default:
        return fail(conn, ctx, 404, NULL, NULL, NULL, "unknown path");
    }
}

/* ---- the request lifecycle ------------------------------------------------------------ */

static void sanitise_path(char *dst, size_t cap, const char *path)
{
    size_t i = 0;
    for (; path[i] && i + 4 < cap; i++) {
        unsigned char c = (unsigned char)path[i];
        dst[i] = c > 0x20 && c < 0x7f ? (char)c : '?';
    }
    if (path[i])
        memcpy(dst + i, "...", 4);
    else
        dst[i] = '\0';
}

static enum MHD_Result preflight(struct MHD_Connection *conn, request_ctx *ctx)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Allow", ctx->match.allow);
    if (ctx->srv->cfg->cors_origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Methods", ctx->match.allow);
        MHD_add_response_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    }
    add_common_headers(ctx->srv, r);
    enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_NO_CONTENT, r);
    MHD_destroy_response(r);
    ctx->answered = true;
    ctx->status = 204;
    return ok;
}

/* The declared body size: 0 when absent, UINT64_MAX when unreadable or huge. */
static uint64_t declared_length(struct MHD_Connection *conn)
{
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (!cl)
        return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(cl, &end, 10);
    return errno == ERANGE || end == cl ? UINT64_MAX : (uint64_t)v;
}

static bool expects_continue(struct MHD_Connection *conn)
{
    const char *e = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
    return e && !strcasecmp(e, "100-continue");
}

/* How much of a refused body is read and dropped so that the client, still
 * sending, receives the answer instead of a reset connection. */
static size_t discard_limit(const server *srv)
{
    return srv->cfg->max_body * 4 + ((size_t)1 << 20);
}

static void defer_error(request_ctx *ctx, int status, const char *param, const char *header, const char *value,
                        const char *message)
{
    api_fail(&ctx->deferred, status, param, "%s", message);
    ctx->deferred_header = header;
    ctx->deferred_value = value;
    ctx->has_deferred = true;
}

/* The first call, headers only: decides everything that does not need the
 * body. Answers at once only to an oversized body (closing the connection
 * instead of reading it); every other answer waits for the end of the request
 * so that the connection stays usable (MHD closes after an early answer). */
static enum MHD_Result begin_request(struct MHD_Connection *conn, request_ctx *ctx, const char *url,
                                     const char *method)
{
    server *srv = ctx->srv;
    ctx->match = api_route_for(method, url);
    snprintf(ctx->method, sizeof ctx->method, "%.15s", method);
    sanitise_path(ctx->path, sizeof ctx->path, url);
    if (ctx->match.route == ROUTE_NONE) {
        defer_error(ctx, 404, NULL, NULL, NULL, "unknown path");
        return MHD_YES;
    }
    if (!ctx->match.method_ok) {
        defer_error(ctx, 405, NULL, "Allow", ctx->match.allow, "method not allowed on this path");
        return MHD_YES;
    }
    if (!strcmp(method, "OPTIONS"))
        return MHD_YES;
    if (ctx->match.needs_auth && srv->cfg->api_key &&
        !api_authorized(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
                        srv->cfg->api_key)) {
        defer_error(ctx, 401, NULL, "WWW-Authenticate", "Bearer",
                    "missing or wrong API key: send 'Authorization: Bearer <key>'");
        ctx->deferred.code = "invalid_api_key";
        return MHD_YES;
    }
    if (ctx->match.route != ROUTE_COMPLETIONS)
        return MHD_YES;
    uint64_t declared = declared_length(conn);
    if (declared > srv->cfg->max_body) {
        /* A client waiting for "100 Continue", or one announcing far too much,
         * is answered at once (and the connection closed); the rest is read,
         * dropped, and answered, keeping the connection. */
        if (expects_continue(conn) || declared > discard_limit(srv))
            return fail(conn, ctx, 413, NULL, NULL, NULL, "request body is larger than the server's limit");
        defer_error(ctx, 413, NULL, NULL, NULL, "request body is larger than the server's limit");
        return MHD_YES;
    }
    enum engine_state st = engine_state(srv->eng, NULL);
    if (atomic_load(&srv->draining))
        defer_error(ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    else if (st == ENGINE_LOADING)
        defer_error(ctx, 503, NULL, "Retry-After", "5", "the model is still loading; retry later");
    else if (st == ENGINE_FAILED)
        defer_error(ctx, 503, NULL, NULL, NULL, "AI service is unavailable: the model failed to load");
    else
        ctx->keep_body = true;
    return MHD_YES;
}

/* The last call: the whole request has been read. */
static enum MHD_Result finish_request(struct MHD_Connection *conn, request_ctx *ctx, const char *url,
                                      const char *method)
{
    if (ctx->has_deferred)
        return respond_error(conn, ctx, &ctx->deferred, ctx->deferred_header, ctx->deferred_value);
    if (!strcmp(method, "OPTIONS"))
        return preflight(conn, ctx);
    if (ctx->match.route != ROUTE_COMPLETIONS)
        return handle_get(conn, ctx, url);
    return handle_completion(conn, ctx);
}

static void wipe_body(request_ctx *ctx)
{
    if (ctx->body)
        explicit_bzero(ctx->body, ctx->body_cap);
    free(ctx->body);
    ctx->body = NULL;
    ctx->body_len = ctx->body_cap = 0;
}

/* Keeps at most max_body bytes; beyond that, discards (then answers 413), and
 * drops a connection that keeps sending far past the limit. */
static bool absorb_body(request_ctx *ctx, const char *data, size_t n)
{
    size_t max = ctx->srv->cfg->max_body;
    ctx->body_seen += n;
    if (!ctx->keep_body) /* read and dropped: the answer does not depend on it */
        return ctx->body_seen <= discard_limit(ctx->srv);
    if (ctx->too_large || ctx->body_len + n > max) {
        ctx->too_large = true;
        wipe_body(ctx);
        return ctx->body_seen <= discard_limit(ctx->srv);
    }
    if (ctx->body_len + n > ctx->body_cap) {
        size_t cap = ctx->body_cap ? ctx->body_cap : 4096;
        while (cap < ctx->body_len + n)
            cap *= 2;
        if (cap > max)
            cap = max;
        char *p = malloc(cap);
        if (!p)
            return false;
        if (ctx->body)
            memcpy(p, ctx->body, ctx->body_len);
        size_t len = ctx->body_len;
        wipe_body(ctx);
        ctx->body = p;
        ctx->body_len = len;
        ctx->body_cap = cap;
    }
    memcpy(ctx->body + ctx->body_len, data, n);
    ctx->body_len += n;
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    server *srv = cls;
    request_ctx *ctx = *con_cls;
    if (!ctx) {
        ctx = calloc(1, sizeof *ctx);
        if (!ctx)
            return MHD_NO;
        ctx->srv = srv;
        clock_gettime(CLOCK_MONOTONIC, &ctx->t_start);
        pthread_mutex_lock(&srv->lock);
        srv->in_flight++;
        pthread_mutex_unlock(&srv->lock);
        *con_cls = ctx;
        return begin_request(conn, ctx, url, method);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        bool ok = ctx->answered || absorb_body(ctx, upload_data, n);
        /* The bytes sit in MHD's connection buffer, which it reuses and frees
         * without wiping; they are consumed now, and ctx->body is the only copy
         * of the message text that may remain (it is wiped when the request ends). */
        explicit_bzero((char *)upload_data, n);
        return ok ? MHD_YES : MHD_NO;
    }
    if (ctx->answered)
        return MHD_YES;
    return finish_request(conn, ctx, url, method);
}

static void log_request(const request_ctx *ctx, double seconds)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    const char *path = ctx->match.route == ROUTE_NONE ? "(unknown path)" : ctx->path;
    char engine_part[40] = "";
    if (ctx->match.route == ROUTE_COMPLETIONS && ctx->status == 200)
        snprintf(engine_part, sizeof engine_part, " engine_ms=%.2f", ctx->engine_ms);
    char line[400];
    int n = snprintf(line, sizeof line,
                     "%s.%03ldZ %s %s %d req=%zu resp=%zu prompt_tokens=%d completion_tokens=%d ms=%.2f%s%s\n",
                     stamp, now.tv_nsec / 1000000, ctx->method, path, ctx->status, ctx->body_seen,
                     ctx->resp_bytes, ctx->usage.prompt_tokens, ctx->usage.completion_tokens, seconds * 1e3,
                     engine_part, ctx->cancelled ? " cancelled=client_disconnected" : "");
    if (n > 0) {
        size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
        ssize_t w = write(STDERR_FILENO, line, len);
        (void)w;
    }
}

/* A stream that ended without its DONE being read: the client left (or the
 * connection failed) mid-generation. */
static void settle_stream(request_ctx *ctx)
{
    stream_state *s = ctx->stream;
    if (!s->done_seen) {
        gen_cancel(s->gen);
        s->client_gone = true;
        if (drain_to_done(s->gen, &s->done))
            s->done_seen = true;
    }
    if (s->client_gone)
        ctx->cancelled = true;
    if (s->done_seen) {
        ctx->usage.prompt_tokens = s->done.prompt_tokens;
        ctx->usage.completion_tokens = s->done.completion_tokens;
        ctx->engine_ms = s->done.queue_ms + s->done.prompt_ms + s->done.generate_ms;
    }
    ctx->resp_bytes = s->bytes_sent;
    ctx->stream = NULL;
    stream_unref(s);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    server *srv = cls;
    request_ctx *ctx = *con_cls;
    if (!ctx)
        return;
    *con_cls = NULL;
    if (ctx->stream)
        settle_stream(ctx);
    double seconds = seconds_since(&ctx->t_start);
    if (ctx->match.route == ROUTE_COMPLETIONS)
        metrics_record_tokens(&srv->metrics, ctx->usage.prompt_tokens, ctx->usage.completion_tokens);
    if (ctx->cancelled)
        metrics_record_cancel(&srv->metrics);
    metrics_record_request(&srv->metrics, ctx->match.route, ctx->status, seconds);
    log_request(ctx, seconds);
    wipe_body(ctx);
    free(ctx);
    pthread_mutex_lock(&srv->lock);
    srv->in_flight--;
    pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[300];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    fprintf(stderr, "elliott serve: http: %s\n", msg);
}

/* ---- listening, signals and shutdown ------------------------------------------------- */

static int open_listener(const char *host, int port, int *bound_port, el_err *err)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0)
        return el_fail(err, "cannot resolve host '%s': %s", host, gai_strerror(rc));
    int fd = -1, saved = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return el_fail(err, "cannot listen on %s:%d: %s", host, port, strerror(saved));
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        close(fd);
        return el_fail(err, "getsockname: %s", strerror(errno));
    }
    *bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static int signal_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(signal_pipe[1], &b, 1);
    (void)w;
    errno = saved;
}

static void log_engine_state(server *srv, enum engine_state st)
{
    if (st == ENGINE_READY) {
        engine_info info;
        engine_get_info(srv->eng, &info);
        fprintf(stderr,
                "elliott serve: model ready: %s (%s, chat format %s), context %d x %d slots, %d threads, "
                "default max_tokens %d\n",
                info.model_name, info.arch, info.chat_format, info.n_ctx, info.n_slots, info.n_threads,
                info.max_tokens_default);
    } else if (st == ENGINE_FAILED) {
        el_err why = {{0}};
        engine_state(srv->eng, &why);
        fprintf(stderr, "elliott serve: the model failed to load: %s (answering 503 until stopped)\n", why.msg);
    }
}

/* Waits for SIGINT/SIGTERM, saying once when the model has loaded (or failed). */
static void wait_for_signal(server *srv)
{
    struct pollfd p = {.fd = signal_pipe[0], .events = POLLIN};
    bool loading = true;
    for (;;) {
        int rc = poll(&p, 1, loading ? 100 : -1);
        if (rc > 0)
            return;
        if (rc < 0 && errno != EINTR)
            return;
        if (loading) {
            enum engine_state st = engine_state(srv->eng, NULL);
            if (st != ENGINE_LOADING) {
                loading = false;
                log_engine_state(srv, st);
            }
        }
    }
}

/* Waits until no request is in flight or ms have passed; true when idle. */
static bool wait_idle(server *srv, int ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += ms / 1000;
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&srv->lock);
    while (srv->in_flight > 0)
        if (pthread_cond_timedwait(&srv->idle, &srv->lock, &deadline) == ETIMEDOUT)
            break;
    bool idle = srv->in_flight == 0;
    pthread_mutex_unlock(&srv->lock);
    return idle;
}

static void cancel_everything(server *srv)
{
    pthread_mutex_lock(&srv->lock);
    srv->cancel_all = true;
    for (gen_node *n = srv->gens; n; n = n->next)
        gen_cancel(n->gen);
    pthread_mutex_unlock(&srv->lock);
}

static void shut_down(server *srv, struct MHD_Daemon *d)
{
    atomic_store(&srv->draining, true);
    MHD_socket listen_fd = MHD_quiesce_daemon(d);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    int grace = srv->cfg->shutdown_grace_ms > 0 ? srv->cfg->shutdown_grace_ms : 0;
    if (!wait_idle(srv, grace)) {
        fprintf(stderr, "elliott serve: grace period over: cancelling requests in flight\n");
        cancel_everything(srv);
        wait_idle(srv, 5000);
    }
    MHD_stop_daemon(d);
}

void server_config_default(server_config *c)
{
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->alias = "elliott-1";
    c->max_body = 1u << 20;
    c->max_connections = 64;
    c->shutdown_grace_ms = 10000;
}

static int install_signals(struct sigaction old[2], el_err *err)
{
    if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return el_fail(err, "pipe: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old[0]);
    sigaction(SIGTERM, &sa, &old[1]);
    return 0;
}

static void restore_signals(const struct sigaction old[2])
{
    sigaction(SIGINT, &old[0], NULL);
    sigaction(SIGTERM, &old[1], NULL);
    close(signal_pipe[0]);
    close(signal_pipe[1]);
    signal_pipe[0] = signal_pipe[1] = -1;
}

/* MHD's threads start with SIGINT and SIGTERM blocked, so that the signal
 * interrupts the main thread's wait rather than a connection's I/O. */
static struct MHD_Daemon *start_daemon(server *srv, int listen_fd)
{
    sigset_t block, saved;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &saved);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET,
        listen_fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)srv->cfg->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    return d;
}

int server_run(const server_config *c, engine *e, el_err *err)
{
    if (!c->alias || !*c->alias || c->max_body == 0 || c->max_connections <= 0)
        return el_fail(err, "server configuration is incomplete");
    api_json_init();
    int port = 0;
    int listen_fd = open_listener(c->host, c->port, &port, err);
    if (listen_fd < 0)
        return -1;
    struct sigaction old[2];
    if (install_signals(old, err) < 0) {
        close(listen_fd);
        return -1;
    }
    server srv = {.cfg = c, .eng = e, .started = (long long)time(NULL)};
    metrics_init(&srv.metrics);
    pthread_mutex_init(&srv.lock, NULL);
    pthread_cond_init(&srv.idle, NULL);
    atomic_init(&srv.draining, false);
    int rc = 0;
    struct MHD_Daemon *d = start_daemon(&srv, listen_fd);
    if (!d) {
        close(listen_fd);
        rc = el_fail(err, "cannot start the HTTP daemon");
    } else {
        if (c->on_listening)
            c->on_listening(port, c->on_listening_ctx);
        wait_for_signal(&srv);
        fprintf(stderr, "elliott serve: shutting down\n");
        shut_down(&srv, d);
    }
    restore_signals(old);
    pthread_cond_destroy(&srv.idle);
    pthread_mutex_destroy(&srv.lock);
    metrics_destroy(&srv.metrics);
    return rc;
}
