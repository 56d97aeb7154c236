/* The engine: a loaded model, a tokenizer, a scheduler and a set of slots.
 *
 * Requests are chat conversations. engine_submit templates and tokenizes them on
 * the caller's thread (so that a prompt too long for the context is refused
 * before any response starts) and queues them; one scheduler thread admits them
 * into free slots (their KV cache is one pool of positions they share) and
 * evaluates all active slots together, one batch per step (continuous
 * batching). Each request yields a stream of events: text deltas that are whole
 * UTF-8 sequences, then one DONE. Message text lives only in request
 * memory, which is wiped when the request is released. */
#ifndef ELLIOTT_ENGINE_H
#define ELLIOTT_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "chat/chat.h"
#include "sampler/sampler.h"

typedef struct engine engine;

/* engine_config.n_slots: choose from memory and threads. */
enum { ENGINE_SLOTS_AUTO = -1 };
/* How long a step that reads prompt tokens beside generating slots aims to take
 * (a reading pace of 5 tokens/s), unless decoding alone takes half of it. */
enum { ENGINE_STEP_TARGET_MS = 200 };

typedef struct engine_config {
    const char *model_path;  /* a GGUF file, or NULL to use model_data */
    const void *model_data;  /* a GGUF image that outlives the engine */
    size_t model_size;
    int n_threads;           /* 0: every CPU this process may use */
    int n_ctx;               /* positions in the KV pool that every slot draws from (like
                                llama.cpp's unified cache: the total, not per slot); one
                                conversation may use up to min(n_ctx, training context).
                                0: min(training context, 4096) per slot, within kv_memory */
    int n_slots;             /* conversations evaluated together; 0: 1; ENGINE_SLOTS_AUTO:
                                as many as kv_memory holds at min(training context, 4096)
                                positions each, at most max(4, 2 x threads) */
    uint64_t kv_memory;      /* bytes the KV pool may take when n_ctx or n_slots is chosen
                                here; 0: half of the memory available (system and cgroup)
                                beyond the weights */
    int prompt_chunk;        /* prompt tokens per step while other slots generate; 0: as
                                many as keep a step near ENGINE_STEP_TARGET_MS */
    int max_queue;           /* requests waiting for a slot before submit says FULL; 0: 16 */
    int max_batch;           /* tokens per forward pass; 0: 512 */
    int max_tokens_default;  /* completion length when a request does not say; 0: 512 */
    bool prefix_cache;       /* reuse a slot's cached prefix for the next request: a
                                finished conversation's keys and values then stay in
                                memory (never on disk) until reused or engine_free;
                                off, a slot's cache is wiped as its request ends */
    bool mlock;
    enum chat_history history;
    bool cache_q8_0;         /* the KV pool holds keys and values in Q8_0 blocks (about
                                half of F16's memory, attention as llama.cpp's with
                                -ctk q8_0 -ctv q8_0); false: F16 */
} engine_config;

void engine_config_default(engine_config *c);

/* Starts loading in the background and returns at once (NULL only if the engine
 * cannot even start; a failed load shows in engine_state). */
engine *engine_start(const engine_config *c, el_err *err);
/* Cancels everything in flight, joins the scheduler and frees all. */
void engine_free(engine *e);
/* The start of a graceful stop: from now on engine_submit refuses with
 * GEN_ERR_SHUTTING_DOWN and every request still waiting in the queue ends at
 * once (DONE, GEN_FINISH_CANCELLED); requests already in a slot go on. */
void engine_drain(engine *e);

enum engine_state { ENGINE_LOADING, ENGINE_READY, ENGINE_FAILED };
/* why (if not NULL) receives the load error when FAILED. */
enum engine_state engine_state(engine *e, el_err *why);
/* Blocks until the model is loaded; -1 with the load error if it failed. */
int engine_wait_ready(engine *e, el_err *err);

typedef struct engine_info {
    char model_name[128];   /* general.name, else the file's base name */
    char arch[16];
    char chat_format[16];
    int n_ctx;              /* the most one conversation may use */
    int n_ctx_pool;         /* positions all slots share */
    uint64_t kv_bytes_per_token;
    bool cache_q8_0;        /* the pool holds Q8_0 blocks, else halves */
    int n_slots;
    int n_vocab;
    int n_threads;
    uint64_t weight_bytes;
    int max_tokens_default;
} engine_info;

/* Valid once READY. */
void engine_get_info(engine *e, engine_info *info);

typedef struct engine_stats {
    int queue_depth;
    int active_slots;
    uint64_t prompt_tokens_total;
    uint64_t completion_tokens_total;
    uint64_t prompt_tokens_cached_total; /* prompt tokens served from a slot's cache */
    int kv_tokens_reserved;  /* pool positions the running requests may fill (prompt + max_tokens) */
    int kv_tokens_cached;    /* positions finished conversations keep for reuse */
} engine_stats;

void engine_get_stats(engine *e, engine_stats *stats);

/* ---- requests ------------------------------------------------------------------ */

/* Bounds on stop strings (OpenAI allows 4; more is accepted up to these), on
 * logprobs alternatives (OpenAI's 20), logit_bias entries and choices. */
enum {
    GEN_MAX_STOP = 16,
    GEN_MAX_STOP_BYTES = 256,
    GEN_MAX_TOP_LOGPROBS = 20,
    GEN_MAX_LOGIT_BIAS = 1024,
    GEN_MAX_CHOICES = 8
};

/* What the answer must be (constrained decoding: tokens the grammar does not allow
 * next are never sampled, and the answer ends only where the grammar may end). */
enum gen_constraint {
    GEN_CONSTRAINT_NONE,
    GEN_CONSTRAINT_JSON_OBJECT, /* any one JSON object */
    GEN_CONSTRAINT_JSON_SCHEMA, /* constraint_text: a JSON Schema document */
    GEN_CONSTRAINT_GBNF         /* constraint_text: llama.cpp GBNF, start rule `root` */
};

typedef struct gen_logit_bias {
    int32_t token;
    float bias;              /* added to the token's logit before sampling, -100..100 */
} gen_logit_bias;

/* One of several prompts (gen_params.prompts): text, tokenized like a raw prompt,
 * or token ids taken as they are when tokens is not NULL. */
typedef struct gen_prompt {
    const char *text;
    size_t len;
    const int32_t *tokens;
    size_t n_tokens;
} gen_prompt;

typedef struct gen_params {
    int max_tokens;          /* 0: the engine's default; never beyond the context */
    sampler_params sampling;
    const char *const *stop; /* stop strings (copied; non-empty UTF-8, at most
                                GEN_MAX_STOP of GEN_MAX_STOP_BYTES each); generation
                                ends before them and they are never emitted */
    size_t n_stop;
    bool raw;                /* no chat template: the prompt is the messages' text
                                concatenated, tokenized as plain text after a BOS
                                (when the model uses one) */
    const int32_t *prompt_tokens; /* with raw: the prompt is these ids as given (no BOS
                                added; the messages are ignored) */
    size_t n_prompt_tokens;
    const char *suffix;      /* with raw and a text prompt: fill in the middle, the text
                                between the prompt and this suffix (the model must have
                                fill-in-the-middle tokens, else GEN_ERR_INVALID); copied */
    size_t suffix_len;
    enum gen_constraint constraint;
    const char *constraint_text; /* copied at submit; need not be NUL-terminated */
    size_t constraint_len;
    bool constraint_lazy;    /* the answer is free text unless its first non-blank
                                byte is '{' or '[': then it is held to the constraint
                                (tool_choice auto) */
    const chat_tools *tools; /* described in the prompt (chat_build_tool_prompt); NULL: none */
    bool logprobs;           /* report each generated token's log-probability */
    int top_logprobs;        /* and that many best alternatives (0..GEN_MAX_TOP_LOGPROBS) */
    const gen_logit_bias *logit_bias; /* copied; token ids must be in the vocabulary */
    size_t n_logit_bias;
    int n_choices;           /* 0 or 1: one answer; up to GEN_MAX_CHOICES (and at most the
                                engine's slots) answers drawn from one evaluation of
                                the prompt, whose cache each choice's slot copies; a
                                choice's sampler seed is seed + its index */
    const gen_prompt *prompts; /* with raw: several prompts (the messages and prompt_tokens
                                are then ignored), each answered n_choices times; choice
                                prompt_index x n_choices + j answers prompt prompt_index.
                                Every choice counts against GEN_MAX_CHOICES and the slots.
                                NULL: the one prompt */
    size_t n_prompts;
} gen_params;

void gen_params_default(gen_params *p);

enum gen_status {
    GEN_OK = 0,
    GEN_ERR_INVALID,        /* a bad conversation or parameter: err says which */
    GEN_ERR_CONTEXT,        /* prompt (plus one generated token, for each choice) exceeds
                               a conversation's context or the KV pool */
    GEN_ERR_QUEUE_FULL,
    GEN_ERR_NOT_READY,      /* still loading, or load failed */
    GEN_ERR_SHUTTING_DOWN,
    GEN_ERR_INTERNAL,
    GEN_ERR_CONSTRAINT,     /* the grammar or schema was refused: err says why */
    GEN_ERR_LOGIT_BIAS,     /* a logit_bias token is not in the vocabulary */
    GEN_ERR_CHOICES,        /* more choices than the engine has slots */
    GEN_ERR_SUFFIX          /* a suffix for a model without fill-in-the-middle tokens */
};

typedef struct gen_request gen_request;

/* Copies what it needs from messages and params. On GEN_OK, *out must be released. */
enum gen_status engine_submit(engine *e, const chat_message *messages, size_t n_messages,
                              const gen_params *params, gen_request **out, el_err *err);

int gen_prompt_tokens(const gen_request *r);

/* The bytes a token stands for (for logprobs): at most cap written, the full length
 * returned; 0 for control tokens and ids outside the vocabulary. */
size_t engine_token_bytes(engine *e, int32_t token, char *buf, size_t cap);

/* TEXT and CHOICE_END carry the choice they belong to; CHOICE_END (only when
 * n_choices > 1) says how one choice ended, after all its text; DONE comes once,
 * after every choice ended. */
enum gen_event_kind { GEN_EVENT_TEXT, GEN_EVENT_DONE, GEN_EVENT_CHOICE_END };
enum gen_finish { GEN_FINISH_STOP, GEN_FINISH_LENGTH, GEN_FINISH_CANCELLED, GEN_FINISH_ERROR };

/* One generated token's log-probability under the model's own distribution (the
 * log-softmax of the raw logits: before logit_bias, the grammar's mask, penalties
 * and temperature), with the best alternatives, best first. */
typedef struct gen_logprob {
    int32_t token;
    float logprob;
    int n_top;
    int32_t top_token[GEN_MAX_TOP_LOGPROBS];
    float top_logprob[GEN_MAX_TOP_LOGPROBS];
} gen_logprob;

typedef struct gen_event {
    enum gen_event_kind kind;
    int choice;              /* which choice (0..n_choices) the event belongs to */
    const char *text;        /* TEXT: valid until the next gen_next or gen_release */
    size_t len;
    const gen_logprob *logprobs; /* TEXT, with logprobs: the tokens generated since the
                                    last event (their text may still be held back) */
    size_t n_logprobs;
    enum gen_finish finish;  /* DONE (the first choice's), CHOICE_END */
    int prompt_tokens;       /* DONE */
    int completion_tokens;   /* DONE (every choice's), CHOICE_END */
    int cached_tokens;       /* DONE: prompt tokens reused from the slot's cache */
    double queue_ms, prompt_ms, generate_ms; /* DONE */
} gen_event;

/* Waits up to timeout_ms (-1: forever) for the next event. Returns 1 with an event,
 * 0 on timeout. After DONE, it returns DONE again. Text that arrives while the
 * consumer is busy is coalesced into one event. */
int gen_next(gen_request *r, gen_event *ev, int timeout_ms);
/* For consumers that wait in an event loop rather than in gen_next: calls
 * notify(ctx) each time r gets an event (text or DONE), on the thread that
 * produced it and with the engine's lock held, so notify may only signal (set a
 * flag, write an eventfd) and must not call the engine. Events already waiting
 * do not call it: poll with gen_next(r, ev, 0) after setting it. NULL removes
 * it; once gen_set_notify(r, NULL, NULL) returns, notify is not running. */
void gen_set_notify(gen_request *r, void (*notify)(void *ctx), void *ctx);
/* Stops generation at the next step; a DONE with GEN_FINISH_CANCELLED follows. */
void gen_cancel(gen_request *r);
/* Cancels if still running, wipes and frees. */
void gen_release(gen_request *r);

/* ---- embeddings (embed.c) ------------------------------------------------------- */

/* One input: text (tokenized after a BOS when the model uses one), or token ids
 * taken as they are when tokens is not NULL. */
typedef struct embed_input {
    const char *text;
    size_t len;
    const int32_t *tokens;
    size_t n_tokens;
} embed_input;

enum embed_pooling {
    EMBED_POOL_MODEL, /* as the GGUF says: only an embedding model has a pooling */
    EMBED_POOL_MEAN,  /* the mean of the final hidden states (any model) */
    EMBED_POOL_CLS,
    EMBED_POOL_LAST
};

typedef struct embed_options {
    enum embed_pooling pooling;
    bool normalize;       /* L2-normalize each embedding */
    bool truncate;        /* cut an input longer than the context; else GEN_ERR_CONTEXT */
} embed_options;

/* Floats per embedding (0 while not READY). */
int engine_embedding_size(engine *e);
/* The model pools its own hidden states (gemma-embedding); false while not READY. */
bool engine_is_embedding_model(engine *e);
/* Embeds n inputs into out (n rows of engine_embedding_size floats), on the
 * caller's thread with its own cache, batching inputs together. prompt_tokens
 * (may be NULL) receives the tokens evaluated. GEN_ERR_INVALID (err says why)
 * for an empty input, a token outside the vocabulary, or a generative model with
 * EMBED_POOL_MODEL; GEN_ERR_CONTEXT for an input longer than the context. */
enum gen_status engine_embed(engine *e, const embed_input *inputs, size_t n, const embed_options *opts, float *out,
                             int *prompt_tokens, el_err *err);

/* ---- describing the model (describe.c) -------------------------------------------- */

typedef struct engine_description {
    const char *path;         /* the GGUF file, or NULL (a model in memory) */
    uint64_t file_bytes;
    long long modified;       /* the file's mtime, UNIX seconds (0 for a model in memory) */
    uint64_t n_params;        /* elements of every tensor */
    char weight_type[16];     /* the type holding most weight bytes: "Q4_0", "F16", ... */
    const char *chat_template;/* tokenizer.chat_template (not NUL-terminated), or NULL */
    size_t chat_template_len;
} engine_description;

enum engine_meta_kind { ENGINE_META_STRING, ENGINE_META_INT, ENGINE_META_FLOAT, ENGINE_META_BOOL };
typedef struct engine_meta_value {
    enum engine_meta_kind kind;
    const char *str;          /* STRING: not NUL-terminated */
    size_t len;
    long long i;              /* INT, BOOL */
    double f;
} engine_meta_value;
typedef void (*engine_metadata_fn)(void *cls, const char *key, size_t key_len, const engine_meta_value *v);

/* Fills out and calls fn (when not NULL) for every scalar general.* and
 * architecture key of the GGUF. Pointers are valid while the engine lives.
 * -1 while not READY. */
int engine_describe(engine *e, engine_description *out, engine_metadata_fn fn, void *cls);

#endif
