/* The server layer's internal pieces, shared by its files and its unit tests:
 * request parsing and validation, response and SSE formatting, ids, routing,
 * authentication and metrics. Nothing in those sections touches the network or
 * calls the engine's functions (only its types), so all of it is testable
 * without a model. The last section is the HTTP transport's state, shared by
 * http.c (transport, routing, life cycle) and completion.c (the completion and
 * streaming path). */
#ifndef ELLIOTT_SERVER_INTERNAL_H
#define ELLIOTT_SERVER_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>
#include <stdatomic.h>
#include <time.h>

#include "base/err.h"
#include "base/wipebuf.h"
#include "engine/engine.h"
#include "registry/registry.h"
#include "server/server.h"

/* ---- errors ----------------------------------------------------------------- */

typedef struct api_error {
    int status;            /* HTTP status */
    const char *type;      /* "invalid_request_error", "server_error", ... */
    const char *code;      /* NULL or e.g. "context_length_exceeded" */
    char param[64];        /* "" for none */
    char message[320];
} api_error;

/* Fills e and returns -1. param may be NULL. */
int api_fail(api_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The 500 of every internal failure (out of memory, a broken invariant): the
 * original service's words, naming nothing of the request. Returns -1. */
#define API_UNAVAILABLE_MESSAGE "AI service is unavailable"
int api_fail_unavailable(api_error *e);
/* {"error":{"message":...,"type":...,"param":...,"code":...}}; NULL if out of memory.
 * Free with api_free. */
char *api_error_body(const api_error *e, size_t *len);

/* ---- JSON memory ------------------------------------------------------------- */

/* Makes jansson wipe every block it frees (parsed request text lives in its
 * strings). Idempotent; call before any other jansson use. */
void api_json_init(void);
/* Wipes and frees a buffer made by this layer (or by jansson). NULL is fine. */
void api_free(void *p);

/* ---- requests ---------------------------------------------------------------- */

enum { API_MAX_STOP = 4, API_MAX_STOP_BYTES = 256, API_MAX_TOOLS = 128, API_MAX_TOOL_NAME = 64,
       API_MAX_PARALLEL_CALLS = 8 };

/* tool_choice */
enum api_tool_choice {
    API_TOOLS_NONE,     /* no tools, or tool_choice "none": the model answers in text */
    API_TOOLS_AUTO,     /* text or calls, as the model chooses */
    API_TOOLS_REQUIRED, /* at least one call */
    API_TOOLS_NAMED     /* exactly one call of named_tool */
};

typedef struct chat_request {
    chat_message *messages;
    size_t n_messages;
    char *text;                     /* every message's text, back to back; wiped on free */
    size_t text_size;
    char *stop_text[API_MAX_STOP];  /* NUL-terminated copies, wiped on free */
    const char *stop_ptrs[API_MAX_STOP];
    gen_params params;              /* the defaults given to the parser, overridden */
    bool stream;
    bool include_usage;

    /* Function calling: names, descriptions and the assistants' calls point into
     * the parsed body (json), which lives as long as the request. */
    chat_tool *tools;
    size_t n_tools;
    chat_tools tool_set;            /* params.tools points here when tools are offered */
    chat_tool_call *calls;          /* the assistant messages' calls, back to back */
    enum api_tool_choice tool_choice;
    size_t named_tool;              /* API_TOOLS_NAMED: its index in tools */
    char **owned;                   /* JSON texts made while parsing (schemas), wiped on free */
    size_t n_owned;
    const char *constraint_param;   /* the field that set params.constraint: the 400's param */
    gen_logit_bias *logit_bias;
    void *json;                     /* the parsed body (a json_t) */
} chat_request;

/* Parses and validates a chat completion request body. defaults supplies every
 * generation parameter the body does not set. On failure e says why (a 400 that
 * names the parameter) and out holds nothing. Every field of the body is either
 * honoured, accepted as documented to change nothing, or refused. */
int api_parse_chat_request(const char *body, size_t len, const gen_params *defaults,
                           chat_request *out, api_error *e);
void chat_request_free(chat_request *r);

/* Pieces of the parser shared by its files (api_request.c, api_constraint.c). */
struct json_t;
const char *api_json_type_name(const struct json_t *v);
/* An optional field: NULL when absent or null (clients send null for "unset"). */
struct json_t *api_json_optional(struct json_t *object, const char *key);
/* Parses a body that must be a JSON object (duplicate keys refused); needs says
 * what an empty body lacks. Free *root with json_decref. */
int api_load_json(const char *body, size_t len, const char *needs, struct json_t **root, api_error *e);
/* Refuses a field of object not in known ("Unrecognized request argument"). */
int api_check_fields(struct json_t *object, const char *const *known, size_t n, const char *prefix, api_error *e);
int api_get_number(struct json_t *root, const char *key, double min, double max, bool min_exclusive, float *out,
                   api_error *e);
int api_get_integer(struct json_t *root, const char *key, long long min, long long max, long long *out,
                    bool *present, api_error *e);
int api_get_bool(struct json_t *root, const char *key, bool *out, api_error *e);
/* Ollama's keep_alive (seconds, or a Go duration string) in milliseconds, -1 for
 * ever; present says whether the body gives it. */
int api_ollama_keep_alive(struct json_t *root, long long *ms, bool *present, api_error *e);
/* temperature, top_p, min_p, penalties, top_k, repeat_last_n, seed: chat's limits. */
int api_parse_sampling(struct json_t *root, sampler_params *s, api_error *e);
int api_parse_stop(struct json_t *root, chat_request *out, api_error *e);
/* What chat and text completions share: model, n, max_tokens, sampling, stop,
 * stream and stream_options, logit_bias, and the accepted no-op fields. */
int api_parse_generation(struct json_t *root, chat_request *out, api_error *e);
/* "messages" as chat completions take them. */
int api_parse_messages(struct json_t *root, chat_request *out, api_error *e);
/* Keeps a malloc'd (jansson) JSON text until the request is freed. */
int api_request_own(chat_request *r, char *text, api_error *e);
/* response_format, grammar, json_schema (llama.cpp), tools, tool_choice and
 * parallel_tool_calls: the answer's constraint and the tools for the prompt. */
int api_parse_constraint(struct json_t *root, chat_request *out, api_error *e);
/* The JSON Schema that a tool-calling answer must match (a call object, or with
 * parallel calls also a list of them), for tool_choice auto, required or named.
 * Returns a malloc'd JSON text, or NULL when out of memory. */
char *api_tool_call_schema(const chat_request *r);

/* ---- responses --------------------------------------------------------------- */

/* "cfai-" + a random lower-case UUID v4 (from getrandom). */
enum { API_ID_LEN = 5 + 36 };
int api_new_id(char out[API_ID_LEN + 1], el_err *err);

typedef struct api_usage {
    int prompt_tokens;
    int completion_tokens;
} api_usage;

/* The bytes a token stands for (engine_token_bytes in the server; a table in tests). */
typedef size_t (*api_token_bytes_fn)(void *cls, int32_t token, char *buf, size_t cap);

/* Generated tokens' log-probabilities, rendered as OpenAI's logprobs.content. */
typedef struct api_logprobs {
    const gen_logprob *items;
    size_t n;
    api_token_bytes_fn token_bytes;
    void *cls;
} api_logprobs;

enum { API_CALL_ID_LEN = 5 + 24 };

/* A function call of the answer. In a stream's delta, id and name are set only in
 * the call's first delta, and arguments holds the fragment that arrived. */
typedef struct api_tool_call {
    int index;
    const char *id;        /* "call_..." */
    const char *name;
    size_t name_len;
    const char *arguments; /* JSON text (a fragment, in a delta) */
    size_t arguments_len;
} api_tool_call;

/* One choice of a completion. */
typedef struct api_choice {
    int index;
    const char *text;       /* the content; NULL: null (an answer of tool calls) */
    size_t text_len;
    const api_tool_call *calls;
    size_t n_calls;
    const api_logprobs *logprobs; /* NULL: "logprobs": null */
    const char *finish;     /* "stop", "length" or "tool_calls" */
} api_choice;

/* Text that is not valid UTF-8 is repaired with U+FFFD. */
char *api_completion_body(const char *id, long long created, const char *model, const api_choice *choices,
                          size_t n_choices, const api_usage *usage, size_t *len);

/* "call_" and 24 random letters and digits (from getrandom). */
int api_new_call_id(char out[API_CALL_ID_LEN + 1], el_err *err);

char *api_chunk_role(const char *id, long long created, const char *model, bool with_null_usage, size_t *len);
char *api_chunk_content(const char *id, long long created, const char *model, const char *text,
                        size_t text_len, bool with_null_usage, size_t *len);
char *api_chunk_finish(const char *id, long long created, const char *model, const char *finish,
                       bool with_null_usage, size_t *len);
/* A delta of choice `choice`: content (when text is not NULL), tool call deltas and
 * logprobs (when not NULL), in one chunk. */
char *api_chunk_delta(const char *id, long long created, const char *model, int choice, const char *text,
                      size_t text_len, const api_tool_call *calls, size_t n_calls, const api_logprobs *logprobs,
                      bool with_null_usage, size_t *len);
/* The role delta of choice `choice`. */
char *api_chunk_choice_role(const char *id, long long created, const char *model, int choice,
                            bool with_null_usage, size_t *len);
/* The finish chunk of choice `choice`. */
char *api_chunk_choice_finish(const char *id, long long created, const char *model, int choice,
                              const char *finish, bool with_null_usage, size_t *len);
char *api_chunk_usage(const char *id, long long created, const char *model, const api_usage *usage,
                      size_t *len);
/* "data: {"error":{...}}\n\n": how a stream reports a failure after its headers. */
char *api_chunk_error(const api_error *e, size_t *len);
#define API_SSE_DONE "data: [DONE]\n\n"

/* OpenAI's model list: n models, each with its "created" time. */
char *api_models_body(const char *const *models, const long long *created, size_t n, size_t *len);
char *api_model_body(const char *model, long long created, size_t *len);

/* Copies text replacing every invalid UTF-8 sequence with U+FFFD; returns a
 * malloc'd NUL-terminated string and its length, or NULL when out of memory. */
char *api_utf8_repair(const char *text, size_t len, size_t *out_len);
/* Text as a JSON string, invalid UTF-8 repaired (NULL text: ""); NULL when out of memory. */
json_t *api_json_text(const char *text, size_t len);
/* prefix, v as compact JSON, suffix, in one malloc'd block (*len bytes, NUL-terminated;
 * free with api_free); releases v; NULL if v is NULL or out of memory. */
char *api_json_dump_framed(json_t *v, const char *prefix, const char *suffix, size_t *len);

/* ---- tool calls in generated text (api_toolcall.c) ---------------------------- */

/* Reads an answer as it is generated and finds the calls in it: an answer whose
 * first non-blank byte is '{' is one call {"name": N, "parameters": ARGS}, one that
 * opens with '[' a list of them (the grammar made sure of the form); any other
 * answer is text. Arguments are the raw JSON text of ARGS. Buffers are wiped. */
enum api_answer_kind { API_ANSWER_UNDECIDED, API_ANSWER_TEXT, API_ANSWER_CALLS };

typedef struct api_scanned_call {
    wipebuf name;
    wipebuf arguments;
    bool name_done;
    bool complete;            /* its object closed */
    bool announced;           /* streaming: its first delta was sent */
    size_t arguments_sent;    /* streaming: bytes of arguments already sent */
    char id[API_CALL_ID_LEN + 1];
} api_scanned_call;

typedef struct api_call_scanner {
    enum api_answer_kind kind;
    int depth;                /* open objects and arrays */
    int call_depth;           /* the depth inside a call object */
    bool in_string, escape;
    bool expect_key;          /* directly in a call object, before a key */
    bool in_key;
    wipebuf key;
    enum { MEMBER_NONE, MEMBER_NAME, MEMBER_ARGUMENTS, MEMBER_OTHER } member;
    bool awaiting_value;      /* after the member's ':' */
    bool in_name;
    bool in_arguments;        /* inside the arguments value */
    bool arguments_scalar;    /* ... which is a number, true, false or null */
    api_scanned_call calls[API_MAX_PARALLEL_CALLS];
    size_t n_calls;           /* calls begun */
    bool failed;              /* out of memory, or more calls than fit */
} api_call_scanner;

void api_call_scanner_init(api_call_scanner *s);
/* Feeds generated text. Returns -1 when out of memory. */
int api_call_scanner_feed(api_call_scanner *s, const char *text, size_t len);
void api_call_scanner_free(api_call_scanner *s);

/* ---- routing and authentication ----------------------------------------------- */

enum api_route {
    ROUTE_NONE,          /* unknown path: 404 */
    ROUTE_PAGE,          /* GET / */
    ROUTE_HEALTH,
    ROUTE_METRICS,
    ROUTE_MODELS,
    ROUTE_MODEL,         /* GET /v1/models/{id} */
    ROUTE_COMPLETIONS,
    ROUTE_TEXT_COMPLETIONS, /* POST /v1/completions */
    ROUTE_EMBEDDINGS,       /* POST /v1/embeddings */
    ROUTE_OLLAMA_TAGS,      /* GET /api/tags */
    ROUTE_OLLAMA_VERSION,   /* GET /api/version */
    ROUTE_OLLAMA_SHOW,      /* POST /api/show */
    ROUTE_OLLAMA_CHAT,      /* POST /api/chat */
    ROUTE_OLLAMA_GENERATE,  /* POST /api/generate */
    ROUTE_OLLAMA_EMBED,     /* POST /api/embed */
    ROUTE_OLLAMA_EMBEDDINGS,/* POST /api/embeddings (Ollama's older form) */
    ROUTE_COUNT
};

typedef struct api_route_match {
    enum api_route route;
    const char *allow;   /* the methods the path accepts (the Allow header) */
    bool method_ok;      /* the request's method is one of them (OPTIONS always is) */
    bool needs_auth;     /* an API key, when configured, guards this route */
} api_route_match;

api_route_match api_route_for(const char *method, const char *path);
/* The route is a POST whose body is read and answered by a handler. */
bool api_route_takes_body(enum api_route r);
/* The route belongs to Ollama's API: errors are {"error": "message"}. */
bool api_route_is_ollama(enum api_route r);
const char *api_route_name(enum api_route r);

/* Checks an Authorization header value against the key in constant time (for a
 * given key length). header may be NULL. */
bool api_authorized(const char *header, const char *key);

/* ---- request framing (framing.c) ------------------------------------------------ */

/* NULL when the raw request target (as received, before percent-decoding) is
 * acceptable, else why not. */
const char *framing_check_target(const char *raw);

typedef struct framing_scan {
    int status;                     /* 0 while acceptable; else 400 or 501 */
    const char *why;
    int n_content_length, n_transfer_encoding, n_host;
    const char *transfer_encoding;  /* the last one's value */
} framing_scan;

/* Feeds one request header (name and value as parsed) into f. */
void framing_note_header(framing_scan *f, const char *name, size_t name_len, const char *value, size_t value_len);
/* After the last header: the verdict on the whole head, in f->status and f->why. */
void framing_verdict(framing_scan *f, bool http_1_1);

/* ---- metrics ----------------------------------------------------------------- */

enum { METRICS_BUCKETS = 14, METRICS_STATUSES = 10 };

typedef struct metrics_histogram {
    uint64_t counts[METRICS_BUCKETS + 1]; /* per bucket, the last is +Inf */
    double sum_seconds;
    uint64_t count;
} metrics_histogram;

typedef struct server_metrics {
    pthread_mutex_t lock;
    uint64_t requests[ROUTE_COUNT][METRICS_STATUSES];
    uint64_t prompt_tokens, completion_tokens;
    uint64_t cancelled;  /* generations stopped because the client went away */
    metrics_histogram latency;
    metrics_histogram ttft;
} server_metrics;

void metrics_init(server_metrics *m);
void metrics_destroy(server_metrics *m);
void metrics_record_request(server_metrics *m, enum api_route route, int status, double seconds);
void metrics_record_ttft(server_metrics *m, double seconds);
void metrics_record_tokens(server_metrics *m, int prompt, int completion);
void metrics_record_cancel(server_metrics *m);

/* One served model's line of gauges and counters. */
typedef struct metrics_model {
    const char *name;    /* a registry name: no quote, backslash or control character */
    enum registry_state state;
    int users;           /* requests holding it */
    int queue_depth, active_slots; /* while ready */
    unsigned long long loads, unloads;
    /* the KV pool while ready (all 0 otherwise): positions the running requests
     * may fill, positions finished conversations keep, positions in all */
    int kv_reserved, kv_cached, kv_capacity;
    const char *kv_type; /* "f16" or "q8_0" while ready, else NULL */
} metrics_model;

typedef struct metrics_gauges {
    int ready;           /* 1 once the default model is loaded */
    int queue_depth;
    int active_slots;
    int in_flight;       /* HTTP requests being handled */
    int open_connections;
    unsigned long long connections_timed_out; /* a counter kept by the watch thread */
    const metrics_model *models;
    size_t n_models;
} metrics_gauges;

/* Prometheus text exposition format 0.0.4. Free with api_free. */
char *metrics_render(server_metrics *m, const metrics_gauges *g, size_t *len);

/* ---- the HTTP transport (http.c, watch.c, completion.c) ------------------------- */

/* A generation whose connection waits for it without holding a thread: the
 * connection is suspended (MHD_suspend_connection) while the engine works, and
 * the engine's notify hook wakes the watch thread, which resumes it. */
typedef struct gen_waiter gen_waiter;
struct gen_waiter {
    struct server *srv;
    struct MHD_Connection *conn;
    gen_request *gen;
    int fd;
    int keepalive_ms;          /* resume this often even without events; 0: never */
    /* Under srv->wake_lock. */
    bool suspended, ready;
    struct timespec suspended_at;
    /* Under srv->lock. */
    bool listed;
    gen_waiter *prev, *next;
    /* Set once the connection is gone: the watch thread waits for the DONE that
     * follows the cancel, then calls reap (outside every lock) and forgets w. */
    void (*reap)(gen_waiter *w);
    atomic_bool client_gone;   /* the watch thread saw a reset or an error */
};

/* One TCP connection, tracked for the request deadlines (watch.c). */
enum conn_phase {
    CONN_IDLE,      /* waiting for a request line: --idle-timeout runs */
    CONN_RECEIVING, /* request line seen, head or body still arriving: --request-timeout runs */
    CONN_BUSY       /* the request is whole: no deadline */
};

typedef struct conn_state {
    int fd;
    enum conn_phase phase;     /* under srv->conns_lock */
    struct timespec since;     /* when the phase began */
    bool expired;              /* the watch thread shut the socket down */
    const char *target_problem; /* framing_check_target's verdict on the current request */
    struct conn_state *prev, *next;
} conn_state;

struct server {
    const server_config *cfg;
    registry *models;
    server_metrics metrics;
    pthread_mutex_t lock;
    pthread_cond_t idle;      /* signalled when in_flight drops */
    gen_waiter *gens;         /* under lock: every generation in flight */
    int in_flight;
    bool cancel_all;          /* shutdown: cancel every generation, now and later */
    atomic_bool draining;     /* shutdown: refuse new completions */
    atomic_bool abandon;      /* shutdown's end: suspended connections close when resumed */
    long long started;        /* UNIX time, the model's "created" */
    int listen_fd, port;
    struct MHD_Daemon *daemon;

    pthread_mutex_t wake_lock; /* a leaf: the engine's notify hook takes it */
    int wake_fd;               /* eventfd: some waiter is ready */
    pthread_t watch_thread;
    bool watch_started;
    atomic_bool watch_stop;

    pthread_mutex_t keys_lock;
    char **keys;              /* under keys_lock */
    size_t n_keys;

    pthread_mutex_t conns_lock;
    conn_state *conns;
    int n_conns;
    atomic_ullong timed_out;  /* connections closed for a missed deadline */
    int embed_jobs;           /* under lock: embedding threads whose connection is suspended */
    int model_waits;          /* under lock: threads waiting for a model's load, connection suspended */
};

typedef struct stream_state stream_state;
typedef struct reply_state reply_state;

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
    double prompt_ms, generate_ms; /* its parts, for Ollama's durations */
    bool cancelled;           /* the client went away mid-generation */
    stream_state *stream;
    reply_state *reply;       /* a non-streaming completion waiting for its generation */
    struct embed_job *embed;  /* embeddings computed off the event loop (api_dispatch.c) */
    /* The model the request uses (api_models.c): held from its choice to the
     * request's end, so that it is not unloaded under the request. */
    int model;                /* the registry's index */
    bool model_held;
    engine *eng;              /* its engine, once loaded */
    const char *model_name;   /* its id, as answers name it */
    struct model_wait *wait;  /* a load waited for off the event loop */
    bool keep_alive_set;      /* Ollama's keep_alive, given: set on the model as the request ends */
    long long keep_alive_ms;
} request_ctx;

double server_seconds_since(const struct timespec *t0);
/* Runs fn(arg) on a detached thread of its own (work kept off the event loop while
 * its connection is suspended); false when no thread could be had. */
bool server_start_detached(void *(*fn)(void *), void *arg);
/* The peer has reset the connection or the socket failed. An orderly EOF is not
 * "gone": a client may half-close after its request and still read the answer. */
bool http_client_gone(int fd);
int http_connection_fd(struct MHD_Connection *conn);

void http_add_common_headers(server *srv, struct MHD_Response *r);
/* Sends body (freed with api_free unless is_static). Returns MHD's verdict. */
enum MHD_Result http_respond(struct MHD_Connection *conn, request_ctx *ctx, int status, const char *content_type,
                             char *body, size_t len, bool is_static, const char *header, const char *value);
enum MHD_Result http_respond_json(struct MHD_Connection *conn, request_ctx *ctx, int status, char *body,
                                  size_t len);
enum MHD_Result http_respond_error(struct MHD_Connection *conn, request_ctx *ctx, const api_error *e,
                                   const char *header, const char *value);
enum MHD_Result http_fail(struct MHD_Connection *conn, request_ctx *ctx, int status, const char *param,
                          const char *header, const char *value, const char *message);
/* http_fail with api_fail_unavailable's 500. */
enum MHD_Result http_fail_unavailable(struct MHD_Connection *conn, request_ctx *ctx);
/* Logs, counts and frees a request (http.c); the end of every request_ctx. */
void http_request_finished(request_ctx *ctx);

/* keys.c: the API keys. */
int keys_set(server *srv, const char *const *keys, size_t n, el_err *err);
void keys_free(server *srv);
bool keys_required(server *srv);
bool keys_authorized(server *srv, const char *header);

/* watch.c: the watch thread and the waiters. */
int watch_start(server *srv, el_err *err);
void watch_stop(server *srv);
/* Lists w, hooks it to the engine's notify; a generation started after shutdown's
 * cancel_all is cancelled at once. */
void waiter_start(server *srv, gen_waiter *w, struct MHD_Connection *conn, gen_request *g, int keepalive_ms);
/* Unhooks and unlists w: afterwards nothing else touches it. */
void waiter_stop(gen_waiter *w);
enum waiter_verdict {
    WAITER_SUSPENDED,  /* the connection is suspended until an event (return and wait) */
    WAITER_POLL_AGAIN, /* an event came meanwhile: poll gen_next again */
    WAITER_ABANDON     /* the server is stopping: close the connection */
};
/* Called by the access handler or content reader after gen_next(w->gen, .., 0)
 * found nothing. */
enum waiter_verdict waiter_wait(gen_waiter *w);
/* Hands w, whose connection has ended, to the watch thread: it cancels the
 * generation, waits for its DONE and calls reap(w). False when the watch thread
 * is stopped (the caller then cleans up itself). */
bool waiter_reap_later(gen_waiter *w, void (*reap)(gen_waiter *w));
/* Cancels every generation in flight (and any started later). */
void watch_cancel_everything(server *srv);
/* Resumes every suspended connection, to be closed (shutdown's end). */
void watch_abandon_all(server *srv);

/* watch.c: connection tracking for the deadlines (MHD callbacks). */
void watch_connection_opened(server *srv, struct MHD_Connection *conn, void **socket_context);
void watch_connection_closed(server *srv, void *socket_context);
void watch_set_phase(server *srv, struct MHD_Connection *conn, enum conn_phase phase);
/* The connection's tracking state (NULL if untracked). */
conn_state *watch_state_of(struct MHD_Connection *conn);
int watch_connection_count(server *srv);

/* What a completion asked for that shapes its answer, and in which API's shape
 * it is written. */
enum api_format {
    API_FORMAT_CHAT,            /* chat.completion(.chunk), SSE */
    API_FORMAT_TEXT,            /* text_completion, SSE (api_text.c) */
    API_FORMAT_OLLAMA_CHAT,     /* Ollama's /api/chat, NDJSON (api_ollama.c) */
    API_FORMAT_OLLAMA_GENERATE  /* Ollama's /api/generate, NDJSON */
};

typedef struct answer_options {
    enum api_format format;
    bool stream, include_usage, tools, logprobs;
    int top_logprobs;         /* TEXT: alternatives per token in the legacy logprobs */
    int n_choices;
    const char *prompt_param; /* the field a refused prompt came from; NULL: "messages" */
    const char *echo;         /* TEXT: the prompt, written before each choice's text; with
                                 several prompts, all of them one after the other */
    size_t echo_len;
    int n_prompts;            /* TEXT: 0 or 1: one prompt; else choice i answers prompt
                                 i / (n_choices / n_prompts), whose echo ends at echo_end */
    size_t echo_end[GEN_MAX_CHOICES];
} answer_options;

/* completion.c: submits a parsed request (the engine copies messages and params).
 * On refusal it answers the error into *refused and returns NULL. */
gen_request *completion_submit(struct MHD_Connection *conn, request_ctx *ctx, const chat_message *messages,
                               size_t n_messages, const gen_params *params, const answer_options *opts,
                               const char *constraint_param, enum MHD_Result *refused);
/* completion.c: answers a submitted request, streaming or not (opts->echo is
 * copied). Callers wipe their parsed request between the two calls. */
enum MHD_Result completion_start(struct MHD_Connection *conn, request_ctx *ctx, gen_request *g,
                                 const answer_options *opts);

/* The engine's reply to one request, as the non-CHAT formats need it. */
typedef struct api_reply_view {
    const char *id;           /* "cfai-..." */
    long long created;        /* UNIX seconds */
    const char *model;
    const answer_options *opts;
    api_token_bytes_fn token_bytes;
    void *cls;
    double total_ms, prompt_ms, generate_ms; /* Ollama's durations */
    int prompt_tokens, completion_tokens;
} api_reply_view;

/* One choice's text so far, or whole. */
typedef struct api_reply_part {
    int choice;
    const char *text;
    size_t len;
    const gen_logprob *logprobs;
    size_t n_logprobs;
    size_t text_offset;       /* TEXT logprobs: bytes of the choice written before text */
    const char *finish;       /* NULL: not finished */
} api_reply_part;

/* Streaming events in the non-CHAT formats (api_format.c): NULL when out of
 * memory. A delta (part->finish NULL), a choice's end, and the stream's close
 * (after DONE: usage and [DONE] for TEXT, Ollama's final line). */
char *api_format_delta(const api_reply_view *v, const api_reply_part *part, size_t *len);
char *api_format_close(const api_reply_view *v, const api_reply_part *last, size_t *len);
/* A stream's failure after its headers. */
char *api_format_stream_error(const api_reply_view *v, const api_error *e, size_t *len);
/* The whole non-streaming reply. */
char *api_format_body(const api_reply_view *v, const api_reply_part *parts, size_t n, size_t *len);
const char *api_format_content_type(enum api_format f);

/* ---- text completions (api_text.c) ----------------------------------------------- */

typedef struct text_request {
    chat_request base;        /* params, stop strings, the parsed body; messages: the prompt */
    chat_message prompt;
    int32_t *prompt_tokens;   /* a prompt given as token ids; wiped on free */
    size_t n_prompt_tokens;
    gen_prompt prompts[GEN_MAX_CHOICES]; /* several prompts (n_prompts > 1), in the body or */
    int32_t *prompt_ids[GEN_MAX_CHOICES]; /* in these token arrays (wiped on free) */
    size_t n_prompts;
    bool echo;
    int legacy_logprobs;      /* -1: none; 0..5 alternatives */
} text_request;

int api_parse_text_request(const char *body, size_t len, const gen_params *defaults, text_request *out,
                           api_error *e);
void text_request_free(text_request *r);
/* The legacy logprobs object {tokens, token_logprobs, top_logprobs, text_offset}. */
struct json_t *api_text_logprobs(const gen_logprob *lp, size_t n, size_t text_offset, int top,
                                 api_token_bytes_fn token_bytes, void *cls);

/* ---- embeddings (api_embed.c) ----------------------------------------------------- */

enum { API_MAX_EMBED_INPUTS = 2048 };

typedef struct embed_request {
    embed_input *inputs;
    size_t n_inputs;
    int32_t *tokens;          /* token inputs back to back */
    embed_options options;
    int dimensions;           /* 0: all */
    bool base64;              /* encoding_format "base64" */
    bool ollama;              /* /api/embed or /api/embeddings */
    bool legacy;              /* /api/embeddings: "prompt", answers {"embedding": [...]} */
    void *json;               /* the parsed body: texts point into it */
} embed_request;

int api_parse_embed_request(const char *body, size_t len, enum api_route route, embed_request *out,
                            api_error *e);
void embed_request_free(embed_request *r);
/* Truncates each row of n x dim to dims and L2-renormalizes it in place (dims
 * <= dim; 0 keeps dim). */
void api_embed_truncate(float *rows, size_t n, int dim, int dims);
char *api_embed_body(const embed_request *r, const char *model, const float *rows, size_t n, int dim,
                     int prompt_tokens, size_t *len);
/* base64 of little-endian float32s. */
char *api_base64_floats(const float *v, size_t n);

/* ---- Ollama (api_ollama.c) ---------------------------------------------------------- */

/* {"error": "message"} */
char *api_ollama_error_body(const api_error *e, size_t *len);
/* Parses /api/chat (generate false) or /api/generate. n_ctx: the server's context
 * (options.num_ctx may not exceed it). *empty_generate: a generate without a prompt
 * (Ollama's "load the model"), answered without the engine. */
int api_parse_ollama_request(const char *body, size_t len, bool generate, const gen_params *defaults, int n_ctx,
                             chat_request *out, bool *empty_generate, api_error *e);
/* The model as Ollama describes it. */
typedef struct api_ollama_model {
    const char *name;         /* the alias */
    const engine_info *info;  /* NULL: the model is not loaded (tags only) */
    const char *path;         /* the GGUF file, or NULL (the embedded model) */
    long long modified;       /* UNIX seconds */
    unsigned long long size;  /* bytes */
    const char *digest;       /* hex */
    const char *quantization; /* "Q4_0", ... */
    const char *parameter_size; /* "1.0B" */
    struct json_t *model_info;  /* general.* and architecture keys (borrowed) */
    const char *template_text;  /* the chat template, or "" */
} api_ollama_model;

/* Every model of the list; one not loaded (info NULL) has empty details. */
char *api_ollama_tags_body(const api_ollama_model *models, size_t n, size_t *len);
char *api_ollama_show_body(const api_ollama_model *m, size_t *len);
char *api_ollama_version_body(size_t *len);
/* RFC 3339 with nanoseconds, UTC, from CLOCK_REALTIME. */
void api_ollama_timestamp(char out[40]);

/* api_dispatch.c: POST routes other than chat completions, and Ollama's GETs. */
enum MHD_Result api_dispatch(struct MHD_Connection *conn, request_ctx *ctx);
/* api_dispatch.c: an embedding request resumed once its thread has finished. */
enum MHD_Result api_embed_continue(struct MHD_Connection *conn, request_ctx *ctx);
/* api_dispatch.c: frees the job of a request that ends without its answer. */
void api_embed_abandon(request_ctx *ctx);
/* api_dispatch.c: waits until no embedding thread runs (before MHD stops: no
 * connection may stay suspended). */
void api_embed_wait_jobs(server *srv);

/* api_models.c: a request with a body names its model (or gets the default):
 * 404 model_not_found for a name no model answers to; otherwise the model is
 * held and, once loaded (waiting off the event loop, up to the configured
 * time), the route's handler runs with ctx->eng. */
enum MHD_Result models_route(struct MHD_Connection *conn, request_ctx *ctx);
/* api_models.c: a request resumed after waiting for its model. */
enum MHD_Result models_wait_continue(struct MHD_Connection *conn, request_ctx *ctx);
/* api_models.c: frees the wait of a request that ends without its answer, and
 * lets go of its model. */
void models_request_end(request_ctx *ctx);
/* api_models.c: waits until no thread waits for a load (before MHD stops). */
void models_wait_jobs(server *srv);
/* api_models.c: GET /v1/models, /v1/models/{id}, /api/tags, /health's models. */
enum MHD_Result models_list(struct MHD_Connection *conn, request_ctx *ctx);
enum MHD_Result models_get(struct MHD_Connection *conn, request_ctx *ctx, const char *id);
enum MHD_Result models_ollama_tags(struct MHD_Connection *conn, request_ctx *ctx);
/* The model a name stands for: any of its names, with or without Ollama's ":latest"; -1 if none. */
int models_find(server *srv, const char *name);

/* completion.c: answers a completion request whose body has been read whole
 * (ctx->body), streaming or not. */
enum MHD_Result completion_handle(struct MHD_Connection *conn, request_ctx *ctx);
/* completion.c: a non-streaming completion resumed after waiting. */
enum MHD_Result completion_continue(struct MHD_Connection *conn, request_ctx *ctx);
/* completion.c: settles a completion as its request ends, recording its usage in
 * ctx. True when ctx may be finished now; false when the generation must first
 * stop (its client left): http_request_finished(ctx) is then called later. */
bool completion_settle(request_ctx *ctx);

#endif
