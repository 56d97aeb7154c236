/* The completion and streaming path: a parsed chat request submitted to the
 * engine and answered as one JSON reply or as a stream of Server-Sent Events.
 *
 * Waiting holds no thread: when the engine has nothing yet, the access handler
 * (a reply) or the SSE content reader (a stream) suspends its connection
 * (waiter_wait, watch.c), and the watch thread resumes it when the engine's
 * notify hook says an event came. A client that resets its connection is seen
 * by the watch thread's probe or by a failed write, and its generation is
 * cancelled within one engine step. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/wipebuf.h"
#include "server/server_internal.h"

enum { SSE_KEEPALIVE_SECONDS = 15 };

struct stream_state {
    atomic_int refs;
    server *srv;
    gen_request *gen;
    gen_waiter waiter;
    request_ctx *ctx;         /* set when the request ends before the generation */
    char id[API_ID_LEN + 1];
    long long created;
    bool include_usage;
    struct timespec t_start;
    struct timespec last_output;
    char *out;                /* the event being sent, from out_off */
    size_t out_len, out_off;
    bool role_sent, done_seen, finished, saw_text;
    gen_event done;
    size_t bytes_sent;
};

struct reply_state {
    gen_waiter waiter;
    request_ctx *ctx;
    wipebuf text;
    bool saw_text, oom;
    bool passed_once;         /* the access handler has returned once without an answer */
};

/* Maps engine_submit's refusal onto the error table of docs/api.md. */
static enum MHD_Result respond_submit_error(struct MHD_Connection *conn, request_ctx *ctx,
                                            enum gen_status st, const el_err *err)
{
    api_error e;
    switch (st) {
    case GEN_ERR_INVALID:
        api_fail(&e, 400, "messages", "%s", err->msg);
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    case GEN_ERR_CONTEXT:
        api_fail(&e, 400, "messages", "%s", err->msg);
        e.code = "context_length_exceeded";
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    case GEN_ERR_QUEUE_FULL:
        return http_fail(conn, ctx, 503, NULL, "Retry-After", "1", "the request queue is full; retry later");
    case GEN_ERR_NOT_READY:
        return http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the model is not loaded yet");
    case GEN_ERR_SHUTTING_DOWN:
        return http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    case GEN_OK:
    case GEN_ERR_INTERNAL:
        break;
    }
    return http_fail(conn, ctx, 500, NULL, NULL, NULL, "AI service is unavailable");
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
    waiter_stop(&s->waiter);
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

/* Produces the next event into s->out. Returns 1 with one, 0 when the
 * connection is suspended until the engine has more, -1 to drop the connection. */
static int stream_next_event(stream_state *s)
{
    const char *model = s->srv->cfg->alias;
    size_t len = 0;
    if (!s->role_sent) {
        s->role_sent = true;
        char *ev = api_chunk_role(s->id, s->created, model, s->include_usage, &len);
        stream_set_output(s, ev, len);
        return ev ? 1 : -1;
    }
    for (;;) {
        gen_event ev;
        if (gen_next(s->gen, &ev, 0) == 0) {
            /* A comment line keeps proxies from timing out a stream that waits
             * in the queue; SSE clients ignore it. */
            if (!atomic_load(&s->waiter.client_gone) &&
                server_seconds_since(&s->last_output) >= SSE_KEEPALIVE_SECONDS) {
                char *comment = strdup(": keep-alive\n\n");
                stream_set_output(s, comment, comment ? strlen(comment) : 0);
                return comment ? 1 : -1;
            }
            switch (waiter_wait(&s->waiter)) {
            case WAITER_SUSPENDED: return 0;
            case WAITER_POLL_AGAIN: continue;
            case WAITER_ABANDON: return -1;
            }
        }
        if (ev.kind == GEN_EVENT_TEXT) {
            if (ev.len == 0 || atomic_load(&s->waiter.client_gone))
                continue;
            if (!s->saw_text) {
                s->saw_text = true;
                metrics_record_ttft(&s->srv->metrics, server_seconds_since(&s->t_start));
            }
            char *chunk_ev = api_chunk_content(s->id, s->created, model, ev.text, ev.len, s->include_usage, &len);
            stream_set_output(s, chunk_ev, len);
            return chunk_ev ? 1 : -1;
        }
        s->done = ev;
        s->done_seen = true;
        if (atomic_load(&s->waiter.client_gone))
            return -1;
        return stream_close_events(s) < 0 ? -1 : 1;
    }
}

/* MHD's content reader: returning 0 is allowed only with the connection
 * suspended, which stream_next_event has then done. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_state *s = cls;
    while (s->out_off == s->out_len) {
        if (s->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        int rc = stream_next_event(s);
        if (rc < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (rc == 0)
            return 0;
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
        return http_fail(conn, ctx, 500, NULL, NULL, NULL, "AI service is unavailable");
    }
    atomic_init(&s->refs, 1);
    s->srv = ctx->srv;
    s->gen = g;
    s->include_usage = include_usage;
    s->t_start = ctx->t_start;
    clock_gettime(CLOCK_MONOTONIC, &s->last_output);
    s->created = (long long)time(NULL);
    waiter_start(ctx->srv, &s->waiter, conn, g, SSE_KEEPALIVE_SECONDS * 1000);
    if (api_new_id(s->id, NULL) < 0) {
        stream_unref(s);
        return http_fail(conn, ctx, 500, NULL, NULL, NULL, "AI service is unavailable");
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
    http_add_common_headers(ctx->srv, r);
    enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    ctx->answered = true;
    ctx->status = 200;
    return ok;
}

/* ---- non-streaming completion ------------------------------------------------------ */

static void reply_free(reply_state *rs)
{
    waiter_stop(&rs->waiter);
    gen_release(rs->waiter.gen);
    wipebuf_free(&rs->text);
    free(rs);
}

static void record_done(request_ctx *ctx, const gen_event *done)
{
    ctx->usage.prompt_tokens = done->prompt_tokens;
    ctx->usage.completion_tokens = done->completion_tokens;
    ctx->engine_ms = done->queue_ms + done->prompt_ms + done->generate_ms;
}

/* The whole reply is in: the answer. */
static enum MHD_Result finish_reply(struct MHD_Connection *conn, request_ctx *ctx, gen_event *done)
{
    server *srv = ctx->srv;
    reply_state *rs = ctx->reply;
    ctx->reply = NULL;
    record_done(ctx, done);
    if (rs->oom)
        done->finish = GEN_FINISH_ERROR;
    if (atomic_load(&rs->waiter.client_gone)) {
        ctx->cancelled = true;
        reply_free(rs);
        return MHD_NO;
    }
    enum MHD_Result ok;
    char id[API_ID_LEN + 1];
    if (done->finish == GEN_FINISH_CANCELLED) {
        ok = http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    } else if (done->finish == GEN_FINISH_ERROR || api_new_id(id, NULL) < 0) {
        ok = http_fail(conn, ctx, 500, NULL, NULL, NULL, "AI service is unavailable");
    } else {
        size_t len;
        char *body = api_completion_body(id, (long long)time(NULL), srv->cfg->alias,
                                         rs->text.data ? rs->text.data : "", rs->text.len,
                                         finish_name(done->finish), &ctx->usage, &len);
        ok = body ? http_respond_json(conn, ctx, 200, body, len)
                  : http_fail(conn, ctx, 500, NULL, NULL, NULL, "AI service is unavailable");
    }
    reply_free(rs);
    return ok;
}

/* Takes what the engine has produced; answers once DONE came, else suspends
 * the connection until more comes. */
enum MHD_Result completion_continue(struct MHD_Connection *conn, request_ctx *ctx)
{
    reply_state *rs = ctx->reply;
    gen_request *g = rs->waiter.gen;
    for (;;) {
        gen_event ev;
        if (gen_next(g, &ev, 0) == 0) {
            /* libmicrohttpd resumes a connection in the I/O state it had when
             * suspended. Suspended in the call that completes the request, that
             * is "reading", and a client that half-closed its side after the
             * request (legal, and then still reading) would be dropped at the
             * EOF. Returning once without an answer moves MHD to its waiting,
             * not-reading state, and it calls again at once. */
            if (!rs->passed_once) {
                rs->passed_once = true;
                return MHD_YES;
            }
            switch (waiter_wait(&rs->waiter)) {
            case WAITER_SUSPENDED: return MHD_YES;
            case WAITER_POLL_AGAIN: continue;
            case WAITER_ABANDON: return MHD_NO;
            }
        }
        if (ev.kind == GEN_EVENT_DONE)
            return finish_reply(conn, ctx, &ev);
        if (!rs->saw_text && ev.len) {
            rs->saw_text = true;
            metrics_record_ttft(&ctx->srv->metrics, server_seconds_since(&ctx->t_start));
        }
        if (!rs->oom && wipebuf_append(&rs->text, ev.text, ev.len) < 0) {
            rs->oom = true;
            gen_cancel(g);
        }
    }
}

static enum MHD_Result start_reply(struct MHD_Connection *conn, request_ctx *ctx, gen_request *g)
{
    reply_state *rs = calloc(1, sizeof *rs);
    if (!rs) {
        gen_release(g);
        return http_fail(conn, ctx, 500, NULL, NULL, NULL, "AI service is unavailable");
    }
    rs->ctx = ctx;
    waiter_start(ctx->srv, &rs->waiter, conn, g, 0);
    ctx->reply = rs;
    return completion_continue(conn, ctx);
}

enum MHD_Result completion_handle(struct MHD_Connection *conn, request_ctx *ctx)
{
    server *srv = ctx->srv;
    if (ctx->too_large)
        return http_fail(conn, ctx, 413, NULL, NULL, NULL, "request body is larger than the server's limit");
    gen_params defaults;
    gen_params_default(&defaults);
    chat_request req;
    api_error e;
    int rc = api_parse_chat_request(ctx->body ? ctx->body : "", ctx->body_len, &defaults, &req, &e);
    /* The body is not needed any more: the parsed copy holds what matters. */
    if (ctx->body)
        explicit_bzero(ctx->body, ctx->body_cap);
    if (rc < 0)
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    if (atomic_load(&srv->draining)) {
        chat_request_free(&req);
        return http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
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
    return start_reply(conn, ctx, g);
}

/* ---- the end of a request ------------------------------------------------------------ */

/* The generation of a request whose client left has stopped (or the server
 * stops): the DONE, if it came, gives the request's token counts. */
static void take_done(request_ctx *ctx, gen_request *g)
{
    gen_event ev;
    while (gen_next(g, &ev, 0) == 1)
        if (ev.kind == GEN_EVENT_DONE) {
            record_done(ctx, &ev);
            return;
        }
}

static void stream_reaped(gen_waiter *w)
{
    stream_state *s = (stream_state *)((char *)w - offsetof(stream_state, waiter));
    request_ctx *ctx = s->ctx;
    take_done(ctx, s->gen);
    ctx->resp_bytes = s->bytes_sent;
    ctx->stream = NULL;
    stream_unref(s);
    http_request_finished(ctx);
}

static void reply_reaped(gen_waiter *w)
{
    reply_state *rs = (reply_state *)((char *)w - offsetof(reply_state, waiter));
    request_ctx *ctx = rs->ctx;
    take_done(ctx, w->gen);
    ctx->reply = NULL;
    reply_free(rs);
    http_request_finished(ctx);
}

bool completion_settle(request_ctx *ctx)
{
    stream_state *s = ctx->stream;
    if (s && s->done_seen) {
        record_done(ctx, &s->done);
        ctx->cancelled = atomic_load(&s->waiter.client_gone);
        ctx->resp_bytes = s->bytes_sent;
        ctx->stream = NULL;
        waiter_stop(&s->waiter);
        stream_unref(s);
        return true;
    }
    /* The connection ended before the generation: the client left, or the
     * server is closing it. The generation is cancelled, and the request ends
     * when its DONE comes (without holding this thread). */
    ctx->cancelled = true;
    gen_waiter *w = s ? &s->waiter : &ctx->reply->waiter;
    if (s)
        s->ctx = ctx;
    if (waiter_reap_later(w, s ? stream_reaped : reply_reaped))
        return false;
    gen_cancel(w->gen);
    take_done(ctx, w->gen);
    if (s) {
        ctx->resp_bytes = s->bytes_sent;
        ctx->stream = NULL;
        stream_unref(s);
    } else {
        reply_free(ctx->reply);
        ctx->reply = NULL;
    }
    return true;
}
