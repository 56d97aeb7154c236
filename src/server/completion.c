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
    engine *eng;              /* the request's model, held until the request ends */
    const char *model;        /* its id */
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
    bool done_seen, finished, saw_text;
    gen_event done;
    size_t bytes_sent;
    bool tools;               /* the answer may be function calls */
    bool logprobs;
    int n_choices;
    int roles_sent;           /* choices whose role delta went out */
    /* per choice, with tools: the calls found so far, and blank text held until
     * the answer shows whether it is text or calls */
    api_call_scanner scanner[GEN_MAX_CHOICES];
    wipebuf held[GEN_MAX_CHOICES];
    /* the other APIs' shapes (api_format.c) */
    answer_options opts;
    wipebuf echo;             /* opts.echo points here */
    size_t written[GEN_MAX_CHOICES]; /* bytes of each choice's text sent */
};

/* What the engine produced for one choice of a reply. */
typedef struct choice_reply {
    wipebuf text;
    wipebuf logprobs;         /* gen_logprob records */
    enum gen_finish finish;
} choice_reply;

struct reply_state {
    gen_waiter waiter;
    request_ctx *ctx;
    answer_options opts;
    choice_reply choice[GEN_MAX_CHOICES];
    bool saw_text, oom;
    bool passed_once;         /* the access handler has returned once without an answer */
    wipebuf echo;             /* opts.echo points here */
};

/* The echo written before a choice's text: its prompt's. */
static size_t choice_echo(const answer_options *o, int choice, const char **text)
{
    *text = o->echo;
    if (!o->echo || o->n_prompts <= 1)
        return o->echo ? o->echo_len : 0;
    int prompt = choice / (o->n_choices / o->n_prompts);
    size_t start = prompt ? o->echo_end[prompt - 1] : 0;
    *text = o->echo + start;
    return o->echo_end[prompt] - start;
}

static size_t token_bytes(void *cls, int32_t token, char *buf, size_t cap)
{
    return engine_token_bytes(cls, token, buf, cap);
}

/* Maps engine_submit's refusal onto the error table of docs/api.md. */
static enum MHD_Result respond_submit_error(struct MHD_Connection *conn, request_ctx *ctx,
                                            enum gen_status st, const el_err *err, const char *constraint_param,
                                            const char *prompt_param)
{
    api_error e;
    const char *messages = prompt_param ? prompt_param : "messages";
    switch (st) {
    case GEN_ERR_CONSTRAINT:
        api_fail(&e, 400, constraint_param, "%s", err->msg);
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    case GEN_ERR_LOGIT_BIAS:
        api_fail(&e, 400, "logit_bias", "%s", err->msg);
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    case GEN_ERR_CHOICES:
        api_fail(&e, 400, "n", "%s", err->msg);
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    case GEN_ERR_SUFFIX:
        api_fail(&e, 400, "suffix", "%s", err->msg);
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    case GEN_ERR_INVALID:
        api_fail(&e, 400, messages, "%s", err->msg);
        return http_respond_error(conn, ctx, &e, NULL, NULL);
    case GEN_ERR_CONTEXT:
        api_fail(&e, 400, messages, "%s", err->msg);
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
    return http_fail_unavailable(conn, ctx);
}

static const char *finish_name(enum gen_finish f, const api_call_scanner *calls)
{
    if (f == GEN_FINISH_LENGTH)
        return "length";
    return calls && calls->kind == API_ANSWER_CALLS && calls->n_calls ? "tool_calls" : "stop";
}

/* The calls whose name is known, as the response lists them (ids given on first use). */
static size_t collect_calls(api_call_scanner *sc, api_tool_call *out)
{
    size_t n = 0;
    for (size_t i = 0; i < sc->n_calls; i++) {
        api_scanned_call *c = &sc->calls[i];
        if (!c->name_done || (!c->id[0] && api_new_call_id(c->id, NULL) < 0))
            continue;
        out[n] = (api_tool_call){(int)n, c->id, c->name.data, c->name.len,
                                 c->arguments.len ? c->arguments.data : "{}", c->arguments.len ? c->arguments.len : 2};
        n++;
    }
    return n;
}

/* Streaming: what each call gained since the last delta. */
static size_t call_deltas(api_call_scanner *sc, api_tool_call *out)
{
    size_t n = 0;
    for (size_t i = 0; i < sc->n_calls; i++) {
        api_scanned_call *c = &sc->calls[i];
        if (!c->name_done)
            break; /* calls are announced in order, each with its name first */
        bool first = !c->announced;
        if (first && api_new_call_id(c->id, NULL) < 0)
            break;
        size_t fresh = c->arguments.len - c->arguments_sent;
        if (!first && fresh == 0)
            continue;
        out[n++] = (api_tool_call){(int)i, first ? c->id : NULL, first ? c->name.data : NULL, first ? c->name.len : 0,
                                   c->arguments.data ? c->arguments.data + c->arguments_sent : "", fresh};
        c->announced = true;
        c->arguments_sent = c->arguments.len;
    }
    return n;
}

/* ---- streaming ------------------------------------------------------------------- */

static void stream_unref(stream_state *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    waiter_stop(&s->waiter);
    gen_release(s->gen);
    api_free(s->out);
    for (int i = 0; i < GEN_MAX_CHOICES; i++) {
        api_call_scanner_free(&s->scanner[i]);
        wipebuf_free(&s->held[i]);
    }
    wipebuf_free(&s->echo);
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
static api_reply_view stream_view(stream_state *s)
{
    return (api_reply_view){.id = s->id, .created = s->created, .model = s->model, .opts = &s->opts,
                            .token_bytes = token_bytes, .cls = s->eng,
                            .total_ms = server_seconds_since(&s->t_start) * 1e3, .prompt_ms = s->done.prompt_ms,
                            .generate_ms = s->done.generate_ms, .prompt_tokens = s->done.prompt_tokens,
                            .completion_tokens = s->done.completion_tokens};
}

/* The closing events of the other APIs' streams. */
static int stream_close_format(stream_state *s)
{
    api_reply_view v = stream_view(s);
    size_t len = 0;
    char *ev;
    if (s->done.finish == GEN_FINISH_STOP || s->done.finish == GEN_FINISH_LENGTH) {
        api_reply_part last = {.choice = 0, .finish = finish_name(s->done.finish, NULL)};
        ev = api_format_close(&v, &last, &len);
    } else {
        api_error e;
        if (s->done.finish == GEN_FINISH_CANCELLED)
            api_fail(&e, 503, NULL, "the server is shutting down");
        else
            api_fail_unavailable(&e);
        ev = api_format_stream_error(&v, &e, &len);
    }
    stream_set_output(s, ev, len);
    s->finished = true;
    return ev ? 0 : -1;
}

static int stream_close_events(stream_state *s)
{
    if (s->opts.format != API_FORMAT_CHAT)
        return stream_close_format(s);
    const char *model = s->model;
    size_t n1 = 0, n2 = 0;
    char *a = NULL, *b = NULL;
    if ((s->done.finish == GEN_FINISH_STOP || s->done.finish == GEN_FINISH_LENGTH) && s->n_choices > 1) {
        a = strdup(""); /* each choice sent its finish chunk as it ended */
        n1 = 0;
        if (s->include_usage) {
            api_usage u = {s->done.prompt_tokens, s->done.completion_tokens};
            b = api_chunk_usage(s->id, s->created, model, &u, &n2);
            if (!b) {
                api_free(a);
                return -1;
            }
        }
    } else if (s->done.finish == GEN_FINISH_STOP || s->done.finish == GEN_FINISH_LENGTH) {
        a = api_chunk_finish(s->id, s->created, model,
                             finish_name(s->done.finish, s->tools ? &s->scanner[0] : NULL), s->include_usage, &n1);
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
            api_fail_unavailable(&e);
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

/* The delta for a TEXT event: content, or with tools the calls' progress (blank
 * text is held until the answer shows whether it is text or calls), and logprobs.
 * Returns 0 with an event in s->out, 1 when there is nothing to send, -1 on failure. */
static int stream_text_event(stream_state *s, const gen_event *ev)
{
    const char *model = s->model;
    int choice = ev->choice;
    api_call_scanner *scanner = &s->scanner[choice];
    wipebuf *held = &s->held[choice];
    api_logprobs lp = {ev->logprobs, ev->n_logprobs, token_bytes, s->eng};
    const api_logprobs *lpp = s->logprobs && ev->n_logprobs ? &lp : NULL;
    const char *text = ev->len ? ev->text : NULL;
    size_t text_len = ev->len;
    api_tool_call deltas[API_MAX_PARALLEL_CALLS];
    size_t n_deltas = 0;
    if (s->opts.format != API_FORMAT_CHAT) {
        if (!text && !(s->logprobs && ev->n_logprobs))
            return 1;
        api_reply_view v = stream_view(s);
        api_reply_part part = {choice, ev->text, ev->len, ev->logprobs, ev->n_logprobs, s->written[choice], NULL};
        size_t len;
        char *out = api_format_delta(&v, &part, &len);
        s->written[choice] += ev->len;
        stream_set_output(s, out, len);
        return out ? 0 : -1;
    }
    if (s->tools) {
        if (api_call_scanner_feed(scanner, ev->text, ev->len) < 0)
            return -1;
        if (scanner->kind == API_ANSWER_UNDECIDED) {
            if (wipebuf_append(held, ev->text, ev->len) < 0)
                return -1;
            text = NULL;
        } else if (scanner->kind == API_ANSWER_CALLS) {
            n_deltas = call_deltas(scanner, deltas);
            text = NULL;
        } else if (held->len) {
            if (wipebuf_append(held, ev->text, ev->len) < 0)
                return -1;
            text = held->data, text_len = held->len;
        }
    }
    if (!text && !n_deltas && !lpp)
        return 1;
    size_t len;
    char *chunk_ev = api_chunk_delta(s->id, s->created, model, choice, text, text_len, deltas, n_deltas, lpp,
                                     s->include_usage, &len);
    if (text && text == held->data)
        wipebuf_free(held);
    stream_set_output(s, chunk_ev, len);
    return chunk_ev ? 0 : -1;
}

/* The finish chunk of one of several choices, as it ends. */
static int stream_choice_end(stream_state *s, const gen_event *ev)
{
    if (ev->finish != GEN_FINISH_STOP && ev->finish != GEN_FINISH_LENGTH)
        return 1; /* a failed or cancelled generation ends the stream with an error */
    size_t len;
    if (s->opts.format != API_FORMAT_CHAT) {
        api_reply_view v = stream_view(s);
        api_reply_part part = {.choice = ev->choice, .finish = finish_name(ev->finish, NULL)};
        char *out = api_format_delta(&v, &part, &len);
        stream_set_output(s, out, len);
        return out ? 0 : -1;
    }
    char *chunk_ev = api_chunk_choice_finish(s->id, s->created, s->model, ev->choice,
                                             finish_name(ev->finish, s->tools ? &s->scanner[ev->choice] : NULL),
                                             s->include_usage, &len);
    stream_set_output(s, chunk_ev, len);
    return chunk_ev ? 0 : -1;
}

/* Produces the next event into s->out. Returns 1 with one, 0 when the
 * connection is suspended until the engine has more, -1 to drop the connection. */
static int stream_next_event(stream_state *s)
{
    const char *model = s->model;
    size_t len = 0;
    if (s->roles_sent < s->n_choices && s->opts.format != API_FORMAT_CHAT) {
        /* no role deltas: a text completion's echo (when asked for) comes first */
        int choice = s->roles_sent++;
        const char *echo;
        size_t echo_len = choice_echo(&s->opts, choice, &echo);
        if (!echo_len)
            return stream_next_event(s);
        api_reply_view v = stream_view(s);
        api_reply_part part = {choice, echo, echo_len, NULL, 0, 0, NULL};
        char *ev = api_format_delta(&v, &part, &len);
        s->written[choice] = echo_len;
        stream_set_output(s, ev, len);
        return ev ? 1 : -1;
    }
    if (s->roles_sent < s->n_choices) {
        char *ev = api_chunk_choice_role(s->id, s->created, model, s->roles_sent++, s->include_usage, &len);
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
            if ((ev.len == 0 && ev.n_logprobs == 0) || atomic_load(&s->waiter.client_gone))
                continue;
            if (!s->saw_text) {
                s->saw_text = true;
                metrics_record_ttft(&s->srv->metrics, server_seconds_since(&s->t_start));
            }
            int rc = stream_text_event(s, &ev);
            if (rc != 1)
                return rc == 0 ? 1 : -1;
            continue; /* nothing to send yet */
        }
        if (ev.kind == GEN_EVENT_CHOICE_END) {
            int rc = atomic_load(&s->waiter.client_gone) ? 1 : stream_choice_end(s, &ev);
            if (rc != 1)
                return rc == 0 ? 1 : -1;
            continue;
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
                                    const answer_options *opts)
{
    stream_state *s = calloc(1, sizeof *s);
    if (!s) {
        gen_release(g);
        return http_fail_unavailable(conn, ctx);
    }
    atomic_init(&s->refs, 1);
    s->srv = ctx->srv;
    s->gen = g;
    s->include_usage = opts->include_usage;
    s->tools = opts->tools;
    s->logprobs = opts->logprobs;
    s->n_choices = opts->n_choices;
    s->opts = *opts;
    s->eng = ctx->eng;
    s->model = ctx->model_name;
    if (opts->echo_len && wipebuf_append(&s->echo, opts->echo, opts->echo_len) < 0) {
        gen_release(g);
        free(s);
        return http_fail_unavailable(conn, ctx);
    }
    s->opts.echo = s->echo.data;
    for (int i = 0; i < GEN_MAX_CHOICES; i++)
        api_call_scanner_init(&s->scanner[i]);
    s->t_start = ctx->t_start;
    clock_gettime(CLOCK_MONOTONIC, &s->last_output);
    s->created = (long long)time(NULL);
    waiter_start(ctx->srv, &s->waiter, conn, g, SSE_KEEPALIVE_SECONDS * 1000);
    if (api_new_id(s->id, NULL) < 0) {
        stream_unref(s);
        return http_fail_unavailable(conn, ctx);
    }
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, s, stream_free_callback);
    if (!r) {
        stream_unref(s);
        return MHD_NO;
    }
    atomic_fetch_add(&s->refs, 1); /* the response's reference */
    ctx->stream = s;
    MHD_add_response_header(r, "Content-Type", api_format_content_type(opts->format));
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
    for (int i = 0; i < GEN_MAX_CHOICES; i++) {
        wipebuf_free(&rs->choice[i].text);
        wipebuf_free(&rs->choice[i].logprobs);
    }
    wipebuf_free(&rs->echo);
    free(rs);
}

/* The reply in the other APIs' shapes: each choice's text (after the echo). */
static char *format_body(request_ctx *ctx, const answer_options *opts, const char *id, choice_reply *replies,
                         size_t *len)
{
    api_reply_view v = {.id = id, .created = (long long)time(NULL), .model = ctx->model_name, .opts = opts,
                        .token_bytes = token_bytes, .cls = ctx->eng,
                        .total_ms = server_seconds_since(&ctx->t_start) * 1e3, .prompt_ms = ctx->prompt_ms,
                        .generate_ms = ctx->generate_ms, .prompt_tokens = ctx->usage.prompt_tokens,
                        .completion_tokens = ctx->usage.completion_tokens};
    api_reply_part parts[GEN_MAX_CHOICES];
    wipebuf joined[GEN_MAX_CHOICES];
    memset(joined, 0, sizeof joined);
    char *body = NULL;
    bool oom = false;
    for (int i = 0; i < opts->n_choices; i++) {
        const choice_reply *r = &replies[i];
        const char *echo;
        size_t echo_len = choice_echo(opts, i, &echo);
        oom |= wipebuf_append(&joined[i], echo, echo_len) < 0 ||
               wipebuf_append(&joined[i], r->text.data, r->text.len) < 0;
        parts[i] = (api_reply_part){i, joined[i].data ? joined[i].data : "", joined[i].len,
                                    (const gen_logprob *)r->logprobs.data, r->logprobs.len / sizeof(gen_logprob),
                                    echo_len, finish_name(r->finish, NULL)};
    }
    if (!oom)
        body = api_format_body(&v, parts, (size_t)opts->n_choices, len);
    for (int i = 0; i < GEN_MAX_CHOICES; i++)
        wipebuf_free(&joined[i]);
    return body;
}

/* The reply body: per choice its content, or with tools the calls found in it;
 * logprobs. */
static char *reply_body(request_ctx *ctx, const answer_options *opts, choice_reply *replies, size_t *len)
{
    char id[API_ID_LEN + 1];
    if (api_new_id(id, NULL) < 0)
        return NULL;
    int n = opts->n_choices;
    if (opts->format != API_FORMAT_CHAT)
        return format_body(ctx, opts, id, replies, len);
    api_call_scanner *sc = calloc((size_t)n, sizeof *sc);
    api_tool_call(*calls)[API_MAX_PARALLEL_CALLS] = calloc((size_t)n, sizeof *calls);
    api_choice choices[GEN_MAX_CHOICES];
    api_logprobs lp[GEN_MAX_CHOICES];
    char *body = NULL;
    if (!sc || !calls)
        goto done;
    for (int i = 0; i < n; i++) {
        const choice_reply *r = &replies[i];
        api_call_scanner_init(&sc[i]);
        choices[i] = (api_choice){.index = i, .text = r->text.data ? r->text.data : "", .text_len = r->text.len};
        if (opts->tools && api_call_scanner_feed(&sc[i], r->text.data, r->text.len) == 0 &&
            sc[i].kind == API_ANSWER_CALLS) {
            choices[i].text = NULL;
            choices[i].text_len = 0;
            choices[i].calls = calls[i];
            choices[i].n_calls = collect_calls(&sc[i], calls[i]);
        }
        choices[i].finish = finish_name(r->finish, opts->tools ? &sc[i] : NULL);
        lp[i] = (api_logprobs){(const gen_logprob *)r->logprobs.data, r->logprobs.len / sizeof(gen_logprob),
                               token_bytes, ctx->eng};
        choices[i].logprobs = opts->logprobs ? &lp[i] : NULL;
    }
    body = api_completion_body(id, (long long)time(NULL), ctx->model_name, choices, (size_t)n, &ctx->usage, len);
done:
    for (int i = 0; sc && i < n; i++)
        api_call_scanner_free(&sc[i]);
    free(sc);
    free(calls);
    return body;
}


static void record_done(request_ctx *ctx, const gen_event *done)
{
    ctx->usage.prompt_tokens = done->prompt_tokens;
    ctx->usage.completion_tokens = done->completion_tokens;
    ctx->engine_ms = done->queue_ms + done->prompt_ms + done->generate_ms;
    ctx->prompt_ms = done->prompt_ms;
    ctx->generate_ms = done->generate_ms;
}

/* The whole reply is in: the answer. */
static enum MHD_Result finish_reply(struct MHD_Connection *conn, request_ctx *ctx, gen_event *done)
{
    reply_state *rs = ctx->reply;
    ctx->reply = NULL;
    record_done(ctx, done);
    if (rs->opts.n_choices == 1)
        rs->choice[0].finish = done->finish;
    bool failed = rs->oom || done->finish == GEN_FINISH_ERROR;
    for (int i = 0; i < rs->opts.n_choices; i++)
        failed |= rs->choice[i].finish == GEN_FINISH_ERROR;
    if (atomic_load(&rs->waiter.client_gone)) {
        ctx->cancelled = true;
        reply_free(rs);
        return MHD_NO;
    }
    enum MHD_Result ok;
    if (done->finish == GEN_FINISH_CANCELLED) {
        ok = http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    } else if (failed) {
        ok = http_fail_unavailable(conn, ctx);
    } else {
        size_t len;
        char *body = reply_body(ctx, &rs->opts, rs->choice, &len);
        ok = body ? http_respond_json(conn, ctx, 200, body, len)
                  : http_fail_unavailable(conn, ctx);
    }
    /* released after the body is built: the logprobs' token texts come from the engine */
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
        choice_reply *c = &rs->choice[ev.choice];
        if (ev.kind == GEN_EVENT_CHOICE_END) {
            c->finish = ev.finish;
            continue;
        }
        if (!rs->saw_text && ev.len) {
            rs->saw_text = true;
            metrics_record_ttft(&ctx->srv->metrics, server_seconds_since(&ctx->t_start));
        }
        if (!rs->oom && (wipebuf_append(&c->text, ev.text, ev.len) < 0 ||
                         wipebuf_append(&c->logprobs, (const char *)ev.logprobs,
                                        ev.n_logprobs * sizeof *ev.logprobs) < 0)) {
            rs->oom = true;
            gen_cancel(g);
        }
    }
}

static enum MHD_Result start_reply(struct MHD_Connection *conn, request_ctx *ctx, gen_request *g,
                                   const answer_options *opts)
{
    reply_state *rs = calloc(1, sizeof *rs);
    if (!rs) {
        gen_release(g);
        return http_fail_unavailable(conn, ctx);
    }
    rs->ctx = ctx;
    rs->opts = *opts;
    /* the echo is copied: the request that holds it is freed before the reply is */
    if (opts->echo_len && wipebuf_append(&rs->echo, opts->echo, opts->echo_len) < 0) {
        gen_release(g);
        free(rs);
        return http_fail_unavailable(conn, ctx);
    }
    rs->opts.echo = rs->echo.data;
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
    if (rc < 0) {
        enum MHD_Result ok = http_respond_error(conn, ctx, &e, NULL, NULL);
        explicit_bzero(&e, sizeof e); /* a message may quote the body */
        return ok;
    }
    if (atomic_load(&srv->draining)) {
        chat_request_free(&req);
        return http_fail(conn, ctx, 503, NULL, "Retry-After", "5", "the server is shutting down");
    }
    answer_options opts = {.format = API_FORMAT_CHAT,
                           .stream = req.stream,
                           .include_usage = req.include_usage,
                           .tools = req.tool_choice != API_TOOLS_NONE,
                           .logprobs = req.params.logprobs,
                           .n_choices = req.params.n_choices > 1 ? req.params.n_choices : 1};
    enum MHD_Result refused = MHD_NO;
    gen_request *g =
        completion_submit(conn, ctx, req.messages, req.n_messages, &req.params, &opts, req.constraint_param, &refused);
    /* The engine holds its own copy now: the parsed request is wiped before the answer starts. */
    chat_request_free(&req);
    return g ? completion_start(conn, ctx, g, &opts) : refused;
}

gen_request *completion_submit(struct MHD_Connection *conn, request_ctx *ctx, const chat_message *messages,
                               size_t n_messages, const gen_params *params, const answer_options *opts,
                               const char *constraint_param, enum MHD_Result *refused)
{
    gen_request *g = NULL;
    el_err err = {{0}};
    enum gen_status st = engine_submit(ctx->eng, messages, n_messages, params, &g, &err);
    if (st != GEN_OK) {
        *refused = respond_submit_error(conn, ctx, st, &err, constraint_param, opts->prompt_param);
        return NULL;
    }
    ctx->usage.prompt_tokens = gen_prompt_tokens(g);
    return g;
}

enum MHD_Result completion_start(struct MHD_Connection *conn, request_ctx *ctx, gen_request *g,
                                 const answer_options *opts)
{
    if (opts->stream)
        return start_stream(conn, ctx, g, opts);
    return start_reply(conn, ctx, g, opts);
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
