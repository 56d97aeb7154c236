/* The HTTP service over libmicrohttpd: the transport, routing, the request
 * lifecycle, logging, metrics and the daemon's life cycle (start, graceful
 * stop). The completion and streaming path is in completion.c.
 *
 * Threading: a pool of epoll threads (MHD_OPTION_THREAD_POOL_SIZE); a
 * connection waiting for the engine is suspended, and resumed by the watch
 * thread (watch.c), so no request holds a pool thread while the engine works. */
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
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

/* ---- small helpers ------------------------------------------------------------ */

double server_seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

bool server_start_detached(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_t thread;
    if (pthread_attr_init(&attr) != 0)
        return false;
    bool started = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0 &&
                   pthread_create(&thread, &attr, fn, arg) == 0;
    pthread_attr_destroy(&attr);
    return started;
}

bool http_client_gone(int fd)
{
    if (fd < 0)
        return false;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return false;
    /* POLLHUP comes with a reset (both directions closed), not with a FIN. */
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL))
        return true;
    if (p.revents & POLLIN) {
        char c;
        ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
    return false;
}

int http_connection_fd(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info ? info->connect_fd : -1;
}

/* ---- responses ----------------------------------------------------------------- */

void http_add_common_headers(server *srv, struct MHD_Response *r)
{
    if (srv->cfg->cors_origin) {
        MHD_add_response_header(r, "Access-Control-Allow-Origin", srv->cfg->cors_origin);
        MHD_add_response_header(r, "Vary", "Origin");
    }
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
}

/* Sends body (freed with api_free unless is_static). Returns MHD's verdict. */
enum MHD_Result http_respond(struct MHD_Connection *conn, request_ctx *ctx, int status,
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
    http_add_common_headers(ctx->srv, r);
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    ctx->answered = true;
    ctx->status = status;
    ctx->resp_bytes = len;
    return ok;
}

enum MHD_Result http_respond_json(struct MHD_Connection *conn, request_ctx *ctx, int status, char *body,
                                  size_t len)
{
    if (!body)
        return MHD_NO;
    return http_respond(conn, ctx, status, "application/json", body, len, false, NULL, NULL);
}

enum MHD_Result http_respond_error(struct MHD_Connection *conn, request_ctx *ctx, const api_error *e,
                                   const char *header, const char *value)
{
    size_t len;
    char *body = api_route_is_ollama(ctx->match.route) ? api_ollama_error_body(e, &len) : api_error_body(e, &len);
    if (!body)
        return MHD_NO;
    return http_respond(conn, ctx, e->status, "application/json", body, len, false, header, value);
}

enum MHD_Result http_fail(struct MHD_Connection *conn, request_ctx *ctx, int status, const char *param,
                          const char *header, const char *value, const char *message)
{
    api_error e;
    api_fail(&e, status, param, "%s", message);
    return http_respond_error(conn, ctx, &e, header, value);
}

enum MHD_Result http_fail_unavailable(struct MHD_Connection *conn, request_ctx *ctx)
{
    return http_fail(conn, ctx, 500, NULL, NULL, NULL, API_UNAVAILABLE_MESSAGE);
}

/* ---- the GET routes ---------------------------------------------------------------- */

/* The server is healthy once its default model has loaded (as when it served one
 * model): an unloaded or reloading default model does not make it unhealthy,
 * a failed one does. Other models' states are listed, not judged. */
static const char *health_status(server *srv, int *http_status)
{
    registry_status st;
    registry_get_status(srv->models, 0, &st);
    *http_status = 503;
    if (atomic_load(&srv->draining))
        return "shutting_down";
    if (st.state == REGISTRY_FAILED)
        return "failed";
    if (!st.loaded_once) /* loading at start, or unloaded after its load failed */
        return st.state == REGISTRY_UNLOADED ? "failed" : "loading";
    *http_status = 200;
    return "ok";
}

static char *health_body(server *srv, const char *status, size_t *len)
{
    json_t *o = json_pack("{s:s}", "status", status);
    size_t n = registry_count(srv->models);
    if (o && n > 1) {
        json_t *list = json_array();
        for (size_t i = 0; list && i < n; i++) {
            registry_status st;
            registry_get_status(srv->models, (int)i, &st);
            json_array_append_new(list, json_pack("{s:s, s:s, s:i}", "id", st.name, "state",
                                                  registry_state_name(st.state), "requests", st.users));
        }
        json_object_set_new(o, "models", list);
    }
    return api_json_dump_framed(o, "", "", len);
}

static enum MHD_Result handle_health(struct MHD_Connection *conn, request_ctx *ctx)
{
    int status;
    const char *word = health_status(ctx->srv, &status);
    size_t len = 0;
    char *body = health_body(ctx->srv, word, &len);
    if (!body)
        return MHD_NO;
    return http_respond(conn, ctx, status, "application/json", body, len, false,
                        status == 503 ? "Retry-After" : NULL, "5");
}

static enum MHD_Result handle_metrics(struct MHD_Connection *conn, request_ctx *ctx)
{
    server *srv = ctx->srv;
    metrics_gauges g = {0};
    size_t n = registry_count(srv->models);
    metrics_model *models = calloc(n ? n : 1, sizeof *models);
    if (!models)
        return MHD_NO;
    for (size_t i = 0; i < n; i++) {
        registry_status st;
        registry_get_status(srv->models, (int)i, &st);
        models[i] = (metrics_model){.name = st.name, .state = st.state, .users = st.users, .loads = st.loads,
                                    .unloads = st.unloads};
        engine *e = registry_acquire_loaded(srv->models, (int)i);
        if (e) {
            engine_stats es;
            engine_info info;
            engine_get_stats(e, &es);
            engine_get_info(e, &info);
            registry_release(srv->models, (int)i);
            models[i].queue_depth = es.queue_depth;
            models[i].active_slots = es.active_slots;
            models[i].kv_reserved = es.kv_tokens_reserved;
            models[i].kv_cached = es.kv_tokens_cached;
            models[i].kv_capacity = info.n_ctx_pool;
            models[i].kv_type = info.cache_q8_0 ? "q8_0" : "f16";
            g.queue_depth += es.queue_depth;
            g.active_slots += es.active_slots;
            if (i == 0)
                g.ready = 1;
        }
    }
    g.models = models;
    g.n_models = n;
    pthread_mutex_lock(&srv->lock);
    g.in_flight = srv->in_flight;
    pthread_mutex_unlock(&srv->lock);
    g.open_connections = watch_connection_count(srv);
    g.connections_timed_out = atomic_load(&srv->timed_out);
    size_t len;
    char *text = metrics_render(&srv->metrics, &g, &len);
    free(models);
    if (!text)
        return MHD_NO;
    return http_respond(conn, ctx, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, false, NULL, NULL);
}

static enum MHD_Result handle_get(struct MHD_Connection *conn, request_ctx *ctx, const char *url)
{
    switch (ctx->match.route) {
    case ROUTE_PAGE:
        return http_respond(conn, ctx, 200, "text/html; charset=utf-8", (char *)elliott_chat_page_start,
                       (size_t)(elliott_chat_page_end - elliott_chat_page_start), true, "Cache-Control",
                       "no-cache");
    case ROUTE_HEALTH:
        return handle_health(conn, ctx);
    case ROUTE_METRICS:
        return handle_metrics(conn, ctx);
    case ROUTE_MODELS:
        return models_list(conn, ctx);
    case ROUTE_MODEL:
        return models_get(conn, ctx, url + strlen("/v1/models/"));
    default:
        return http_fail(conn, ctx, 404, NULL, NULL, NULL, "unknown path");
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
    http_add_common_headers(ctx->srv, r);
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
static enum MHD_Result check_request(struct MHD_Connection *conn, request_ctx *ctx, const char *method);

static enum MHD_Result note_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                   const char *value, size_t value_size)
{
    (void)kind;
    framing_note_header(cls, key, key_size, value, value_size);
    return MHD_YES;
}

/* A head whose framing cannot be trusted: one JSON error, then the connection
 * closes (what follows on it could be read as another request). */
static enum MHD_Result refuse_framing(struct MHD_Connection *conn, request_ctx *ctx, int status, const char *why)
{
    return http_fail(conn, ctx, status, NULL, "Connection", "close", why);
}

static enum MHD_Result begin_request(struct MHD_Connection *conn, request_ctx *ctx, const char *url,
                                     const char *method, const char *version)
{
    ctx->match = api_route_for(method, url);
    snprintf(ctx->method, sizeof ctx->method, "%.15s", method);
    sanitise_path(ctx->path, sizeof ctx->path, url);
    conn_state *cs = watch_state_of(conn);
    if (cs && cs->target_problem)
        return refuse_framing(conn, ctx, 400, cs->target_problem);
    framing_scan scan = {0};
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, note_header, &scan);
    framing_verdict(&scan, !strcmp(version, MHD_HTTP_VERSION_1_1));
    if (scan.status)
        return refuse_framing(conn, ctx, scan.status, scan.why);
    enum MHD_Result early = check_request(conn, ctx, method);
    /* A client waiting for "100 Continue" gets its refusal instead, before it
     * sends the body (and the connection closes: the body is not read). */
    if (ctx->has_deferred && expects_continue(conn))
        return http_respond_error(conn, ctx, &ctx->deferred, ctx->deferred_header, ctx->deferred_value);
    return early;
}

/* The checks that need only the head: route, method, key, size, readiness. */
static enum MHD_Result check_request(struct MHD_Connection *conn, request_ctx *ctx, const char *method)
{
    server *srv = ctx->srv;
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
    if (ctx->match.needs_auth && keys_required(srv) &&
        !keys_authorized(srv, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION))) {
        defer_error(ctx, 401, NULL, "WWW-Authenticate", "Bearer",
                    "missing or wrong API key: send 'Authorization: Bearer <key>'");
        ctx->deferred.code = "invalid_api_key";
        return MHD_YES;
    }
    if (!api_route_takes_body(ctx->match.route))
        return MHD_YES;
    uint64_t declared = declared_length(conn);
    if (declared > srv->cfg->max_body) {
        /* A client waiting for "100 Continue", or one announcing far too much,
         * is answered at once (and the connection closed); the rest is read,
         * dropped, and answered, keeping the connection. */
        if (expects_continue(conn) || declared > discard_limit(srv))
            return http_fail(conn, ctx, 413, NULL, NULL, NULL, "request body is larger than the server's limit");
        defer_error(ctx, 413, NULL, NULL, NULL, "request body is larger than the server's limit");
        return MHD_YES;
    }
    /* Whether its model is loaded is known once the body names it (api_models.c). */
    if (atomic_load(&srv->draining))
        defer_error(ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    else
        ctx->keep_body = true;
    return MHD_YES;
}

/* The last call: the whole request has been read. */
static enum MHD_Result finish_request(struct MHD_Connection *conn, request_ctx *ctx, const char *url,
                                      const char *method)
{
    if (ctx->has_deferred)
        return http_respond_error(conn, ctx, &ctx->deferred, ctx->deferred_header, ctx->deferred_value);
    if (!strcmp(method, "OPTIONS"))
        return preflight(conn, ctx);
    if (api_route_takes_body(ctx->match.route))
        return models_route(conn, ctx);
    if (api_route_is_ollama(ctx->match.route))
        return api_dispatch(conn, ctx);
    return handle_get(conn, ctx, url);
}

static void wipe_body(request_ctx *ctx)
{
    wipe_free(ctx->body, ctx->body_cap);
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
    if (wipe_grow(&ctx->body, &ctx->body_cap, ctx->body_len, ctx->body_len + n) < 0)
        return false;
    memcpy(ctx->body + ctx->body_len, data, n);
    ctx->body_len += n;
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
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
        return begin_request(conn, ctx, url, method, version);
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
    /* The request is whole: its deadline no longer runs. */
    watch_set_phase(srv, conn, CONN_BUSY);
    if (ctx->wait)
        return models_wait_continue(conn, ctx);
    if (ctx->reply)
        return completion_continue(conn, ctx);
    if (ctx->embed)
        return api_embed_continue(conn, ctx);
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
    if (api_route_takes_body(ctx->match.route) && ctx->status == 200)
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

void http_request_finished(request_ctx *ctx)
{
    server *srv = ctx->srv;
    double seconds = server_seconds_since(&ctx->t_start);
    if (api_route_takes_body(ctx->match.route))
        metrics_record_tokens(&srv->metrics, ctx->usage.prompt_tokens, ctx->usage.completion_tokens);
    if (ctx->cancelled)
        metrics_record_cancel(&srv->metrics);
    metrics_record_request(&srv->metrics, ctx->match.route, ctx->status, seconds);
    log_request(ctx, seconds);
    models_request_end(ctx);
    wipe_body(ctx);
    free(ctx);
    pthread_mutex_lock(&srv->lock);
    srv->in_flight--;
    pthread_cond_broadcast(&srv->idle);
    pthread_mutex_unlock(&srv->lock);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    server *srv = cls;
    /* the request's parsing and handling ran in frames below this one, on this thread */
    wipe_stack_below();
    /* A kept-alive connection waits for its next request from now. */
    watch_set_phase(srv, conn, CONN_IDLE);
    request_ctx *ctx = *con_cls;
    if (!ctx)
        return;
    *con_cls = NULL;
    if ((ctx->stream || ctx->reply) && !completion_settle(ctx))
        return; /* finished once its generation has stopped */
    if (ctx->embed)
        api_embed_abandon(ctx);
    http_request_finished(ctx);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        watch_connection_opened(srv, conn, socket_context);
    else
        watch_connection_closed(srv, *socket_context);
}

/* Called once a request line has arrived: the request's own deadline starts. */
/* Called once a request line has arrived, with the target as received: the
 * request's own deadline starts, and the target is checked before libmicrohttpd
 * decodes it. */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    watch_set_phase(cls, conn, CONN_RECEIVING);
    conn_state *cs = watch_state_of(conn);
    if (cs)
        cs->target_problem = framing_check_target(uri);
    return NULL;
}

/* MHD says something about each refused or broken connection: a flood of
 * them would become a flood of log lines, so at most MHD_LOG_PER_SECOND a
 * second are written and the rest counted. */
enum { MHD_LOG_PER_SECOND = 10 };
static pthread_mutex_t mhd_log_lock = PTHREAD_MUTEX_INITIALIZER;
static time_t mhd_log_second;
static unsigned mhd_log_written, mhd_log_dropped;

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&mhd_log_lock);
    if (now.tv_sec != mhd_log_second) {
        if (mhd_log_dropped)
            fprintf(stderr, "elliott serve: http: %u more messages not shown\n", mhd_log_dropped);
        mhd_log_second = now.tv_sec;
        mhd_log_written = mhd_log_dropped = 0;
    }
    bool show = mhd_log_written < MHD_LOG_PER_SECOND;
    if (show)
        mhd_log_written++;
    else
        mhd_log_dropped++;
    pthread_mutex_unlock(&mhd_log_lock);
    if (!show)
        return;
    char msg[300];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n')
        msg[--n] = '\0';
    fprintf(stderr, "elliott serve: http: %s\n", msg);
}

/* ---- listening and shutdown ------------------------------------------------- */

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
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1024) == 0)
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

/* The grace period keeps the socket open: a request arriving meanwhile is
 * answered 503 shutting_down (a refused connection would tell a client or a
 * load balancer nothing), requests still queued end at once with 503, and
 * running ones get the grace period. */
static void shut_down(server *srv)
{
    atomic_store(&srv->draining, true);
    registry_drain(srv->models);
    int grace = srv->cfg->shutdown_grace_ms > 0 ? srv->cfg->shutdown_grace_ms : 0;
    if (!wait_idle(srv, grace)) {
        fprintf(stderr, "elliott serve: grace period over: cancelling requests in flight\n");
        watch_cancel_everything(srv);
        wait_idle(srv, 5000);
    }
    /* MHD must not stop with a connection suspended: from here no waiter
     * suspends (the abandon flag), and a connection accepted meanwhile is
     * answered 503 without suspending (draining). The socket stays MHD's, closed
     * by MHD_stop_daemon: MHD_quiesce_daemon would race with the thread pool's
     * workers, which take the socket out of their epoll sets themselves, and
     * libmicrohttpd 0.9.75 aborts the process when it loses that race. */
    api_embed_wait_jobs(srv);
    models_wait_jobs(srv);
    watch_abandon_all(srv);
    wait_idle(srv, 1000);
    watch_stop(srv);
    MHD_stop_daemon(srv->daemon);
}

static void free_server(server *srv)
{
    keys_free(srv);
    pthread_mutex_destroy(&srv->keys_lock);
    pthread_mutex_destroy(&srv->conns_lock);
    pthread_mutex_destroy(&srv->wake_lock);
    pthread_cond_destroy(&srv->idle);
    pthread_mutex_destroy(&srv->lock);
    metrics_destroy(&srv->metrics);
    free(srv);
}

void server_config_default(server_config *c)
{
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->max_body = 1u << 20;
    c->max_connections = 16384;
    c->max_connections_per_ip = 0;
    c->request_timeout_ms = 10000;
    c->idle_timeout_ms = 10000;
    c->http_threads = 4;
    c->shutdown_grace_ms = 10000;
    c->model_wait_ms = 120000;
}

/* In libmicrohttpd 0.9.75, level -1 is the one that refuses whitespace between
 * a header's name and its colon (a request-smuggling vector); what level 1
 * adds (a Host header, no space in the target) framing.c checks itself. */
enum { STRICT_LEVEL = -1 };

/* Every connection lives in one of http_threads epoll loops; none has a
 * thread of its own, so idle and slow connections cost memory, not threads. */
static struct MHD_Daemon *start_daemon(server *srv, int listen_fd)
{
    const server_config *c = srv->cfg;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    bool tls = c->tls_cert_pem && c->tls_key_pem;
    if (tls)
        flags |= MHD_USE_TLS;
    /* MHD's own inactivity timeout (whole seconds) catches what the deadlines
     * do not: a client that stops reading its answer. */
    unsigned inactivity_s = (unsigned)((c->idle_timeout_ms > c->request_timeout_ms ? c->idle_timeout_ms
                                                                                    : c->request_timeout_ms) +
                                       999) / 1000;
    /* The TLS options come last: without TLS, MHD_OPTION_END in their place ends the list. */
    return MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_LISTEN_SOCKET, listen_fd,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->http_threads,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv,
                            MHD_OPTION_URI_LOG_CALLBACK, on_request_line, srv,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)c->max_connections_per_ip,
                            MHD_OPTION_CONNECTION_TIMEOUT, inactivity_s,
                            MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
                            MHD_OPTION_STRICT_FOR_CLIENT, STRICT_LEVEL,
                            tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, c->tls_cert_pem,
                            MHD_OPTION_HTTPS_MEM_KEY, c->tls_key_pem,
                            MHD_OPTION_END);
}

server *server_start(const server_config *c, registry *models, el_err *err)
{
    if (!models || !registry_count(models) || c->model_wait_ms < 0 || c->max_body == 0 || c->max_connections <= 0 || c->max_connections_per_ip < 0 ||
        c->request_timeout_ms <= 0 || c->idle_timeout_ms <= 0 || c->http_threads <= 0) {
        el_fail(err, "server configuration is incomplete");
        return NULL;
    }
    api_json_init();
    server *srv = calloc(1, sizeof *srv);
    if (!srv) {
        el_fail(err, "out of memory");
        return NULL;
    }
    srv->listen_fd = open_listener(c->host, c->port, &srv->port, err);
    if (srv->listen_fd < 0) {
        free(srv);
        return NULL;
    }
    srv->cfg = c;
    srv->models = models;
    srv->started = (long long)time(NULL);
    srv->wake_fd = -1;
    metrics_init(&srv->metrics);
    pthread_mutex_init(&srv->lock, NULL);
    pthread_cond_init(&srv->idle, NULL);
    pthread_mutex_init(&srv->wake_lock, NULL);
    pthread_mutex_init(&srv->conns_lock, NULL);
    pthread_mutex_init(&srv->keys_lock, NULL);
    if (keys_set(srv, c->api_keys, c->n_api_keys, err) < 0) {
        close(srv->listen_fd);
        free_server(srv);
        return NULL;
    }
    atomic_init(&srv->draining, false);
    atomic_init(&srv->abandon, false);
    atomic_init(&srv->timed_out, 0);
    if (watch_start(srv, err) < 0) {
        close(srv->listen_fd);
        free_server(srv);
        return NULL;
    }
    srv->daemon = start_daemon(srv, srv->listen_fd);
    if (!srv->daemon) {
        watch_stop(srv);
        close(srv->listen_fd);
        el_fail(err, "cannot start the HTTP daemon");
        free_server(srv);
        return NULL;
    }
    return srv;
}

int server_set_api_keys(server *s, const char *const *keys, size_t n, el_err *err)
{
    return keys_set(s, keys, n, err);
}

int server_port(const server *s)
{
    return s->port;
}

void server_stop(server *s)
{
    shut_down(s);
    free_server(s);
}
