/* Inside the engine: the structures the request API (engine.c) and the scheduler
 * (scheduler.c) share, and the stop-string filter (stop.c).
 *
 * Locking: one mutex, e->mu, guards the queue, the request states, the text
 * handed to consumers and the statistics. The scheduler thread alone owns the
 * model, the KV cache and the slots' working state, and drops the mutex while it
 * evaluates a batch. Condition variables: e->sched_cv wakes the scheduler (new
 * work, a cancellation, shutdown), e->ready_cv wakes engine_wait_ready, and each
 * request's cv wakes its consumer. */
#ifndef ELLIOTT_ENGINE_INTERNAL_H
#define ELLIOTT_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "grammar/grammar.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* ---- stop strings ---------------------------------------------------------------- */

typedef struct stop_set {
    char *text;                       /* the strings back to back */
    size_t off[GEN_MAX_STOP];
    size_t len[GEN_MAX_STOP];
    size_t n;
    size_t max_len;
} stop_set;

/* Copies and validates (count, length, non-empty, UTF-8). */
int stop_set_init(stop_set *s, const char *const *strs, size_t n, el_err *err);
/* Wipes and frees. */
void stop_set_free(stop_set *s);

/* Looks at text that has not been emitted yet. Returns true when a stop string
 * occurs in it, with *cut the offset of the earliest occurrence: text[0..cut) may
 * be emitted, the rest is dropped. Otherwise *cut is how much of the text may be
 * emitted now: all of it except a tail that could still grow into a stop string. */
bool stop_scan(const stop_set *s, const char *text, size_t len, size_t *cut);

/* True if text[0..len) is well-formed UTF-8. */
bool utf8_valid(const char *text, size_t len);

/* ---- requests ------------------------------------------------------------------ */

enum req_state { REQ_QUEUED, REQ_ACTIVE, REQ_DONE };

/* One choice's output on its way to the consumer (under e->mu). */
typedef struct choice_out {
    char *text;               /* produced and not yet delivered */
    size_t text_len, text_cap;
    gen_logprob *lp;          /* log-probabilities produced and not yet delivered */
    size_t lp_len, lp_cap;
    bool end_pending;         /* its CHOICE_END is still to be delivered */
    enum gen_finish finish;
    int completion_tokens;
} choice_out;

struct gen_request {
    engine *e;
    pthread_cond_t cv;
    struct gen_request *next; /* queue link */

    /* Fixed at submit. */
    int32_t *prompt;          /* every prompt's tokens, one after the other */
    int n_prompt;             /* all of them */
    int n_groups;             /* prompts: choices come in groups of group_size, one per prompt */
    int group_size;
    int group_start[GEN_MAX_CHOICES + 1]; /* where each prompt starts in prompt */
    int max_tokens;           /* already clamped to what the context and the pool leave */
    int kv_need;              /* pool positions all choices may fill: their prompts + max_tokens */
    sampler_params sampling;
    gen_logit_bias *logit_bias;
    size_t n_logit_bias;
    bool logprobs;
    int top_logprobs;
    grammar *grammar;         /* the answer's constraint, or NULL */
    bool constraint_lazy;
    stop_set stop;
    double t_submit;

    /* Under e->mu. */
    enum req_state state;
    bool cancelled;
    bool released;            /* the consumer is gone: whoever ends it frees it */
    int n_choices;            /* fixed at submit */
    choice_out choice[GEN_MAX_CHOICES];
    int active_choices;       /* slots still generating for it */
    int next_choice;          /* where gen_next looks first (fairness) */
    int completion_total;
    int cached_total;         /* prompt tokens the groups' first choices reused */
    char *view;               /* the bytes of the last TEXT event */
    size_t view_cap;
    gen_logprob *lp_view;     /* those of the last TEXT event */
    size_t lp_view_cap;
    gen_event done_ev;
    void (*notify)(void *ctx); /* gen_set_notify's */
    void *notify_ctx;
};

/* Wipes every buffer that held message or generated text and frees. e->mu held;
 * drops the request's reference on the engine (the caller destroys the engine
 * when engine_unref_locked says so). */
void request_destroy_locked(gen_request *r);
/* Wakes the consumer (its condition variable and its notify callback): it has an
 * event to take. e->mu held. */
void request_wake_locked(gen_request *r);
/* Appends a choice's generated text for the consumer, growing the buffer (wiping
 * the old one) when needed. e->mu held. */
int request_append_locked(gen_request *r, int choice, const char *text, size_t len);
/* Appends one token's log-probabilities for the consumer. e->mu held. */
int request_append_logprob_locked(gen_request *r, int choice, const gen_logprob *lp);
/* Posts DONE and wakes the consumer. e->mu held. */
void request_finish_locked(gen_request *r, const gen_event *done);

/* ---- slots ---------------------------------------------------------------------- */

enum slot_phase {
    SLOT_FREE,
    SLOT_SIBLING,  /* another choice of a request whose first slot reads the prompt */
    SLOT_INGEST,   /* evaluating the prompt, a chunk per step */
    SLOT_GENERATE, /* one token per step */
    SLOT_DRAINING  /* finished; buffers and (without prefix cache) the cache wait to be wiped */
};

typedef struct slot {
    int id;                  /* its sequence in the KV cache */
    enum slot_phase phase;
    uint64_t last_used;      /* admission count when it last took a request */
    gen_request *req;
    int choice;              /* which of the request's choices it generates */
    const int32_t *prompt;   /* its choice's prompt (in req's memory) */
    int n_prompt;

    /* Tokens whose keys and values the cache holds for this sequence, in order:
     * what the prefix cache compares new prompts against. */
    int32_t *tokens;
    int n_tokens;
    bool trim;               /* free, and its cache was cut to n_tokens to make room in
                                the pool: the cut positions wait to be wiped */
    int copy_from;           /* newly admitted: the slot whose cache holds more of its
                                prompt than its own (copied at its start), or -1 */

    /* Working state of the request it serves (scheduler thread only). */
    sampler *smp;
    detokenizer detok;
    int n_cached;            /* prompt tokens reused from the cache */
    int n_generated;
    int32_t next_token;      /* the sampled token to evaluate next */
    int logits_row;          /* its row in this step's logits, or -1 */
    int batch_take;          /* prompt tokens it puts into this step's batch */
    double t_admit, t_first;
    bool ending;             /* finish below is set and waits to be published */
    enum gen_finish finish;

    char *piece;             /* one token's text */
    size_t piece_cap;
    char *held;              /* generated text not emitted yet (stop-string look-ahead) */
    size_t held_len, held_cap;
    char *emit;              /* text to hand to the consumer at the end of this step */
    size_t emit_len, emit_cap;
    grammar_matcher *matcher; /* the request's grammar, when it has one */
    uint32_t *mask;          /* the tokens it allows next (grammar_mask_words) */
    bool constrained;        /* the grammar holds the answer now */
    bool lazy_pending;       /* a lazy grammar: the answer is still blank */
    float *raw_logits;       /* n_vocab: the model's logits before sampling, for logprobs */
    gen_logprob logprob;     /* this step's token, when the request wants logprobs */
    bool has_logprob;
} slot;

/* ---- the engine --------------------------------------------------------------------- */

struct engine {
    pthread_mutex_t mu;
    pthread_cond_t sched_cv;
    pthread_cond_t ready_cv; /* also: the last in-flight submit has left */
    int refs;                /* the owner's, plus one per unreleased request */

    engine_config cfg;       /* normalised: no zeros left where a default applies */
    char *model_path;        /* owned copy */
    pthread_t thread;
    bool thread_started;

    /* Under mu. */
    enum engine_state state;
    el_err load_err;
    bool stopping;
    bool draining;           /* engine_drain: no new requests */
    int submitting;          /* engine_submit calls using the tokenizer outside the lock */
    gen_request *queue_head, *queue_tail;
    int queue_len;
    int active_slots;
    int kv_reserved;         /* the pool positions admitted requests may fill */
    int kv_cached;           /* positions free slots keep for reuse (the scheduler's count) */
    uint64_t prompt_tokens_total, completion_tokens_total, cached_tokens_total;

    /* Set by the loader before READY, read-only afterwards (except the scheduler's). */
    model *m;
    tokenizer *tok;
    enum chat_format fmt;
    int32_t stop_ids[8];
    size_t n_stop_ids;
    int n_ctx;               /* the most one conversation may use */
    int n_ctx_pool;          /* positions all slots share */
    size_t kv_bytes_per_token;
    int n_vocab;
    size_t max_piece;        /* bytes one token's text can take */
    grammar_vocab *gvocab;   /* the vocabulary as the grammar sees it */
    uint32_t *opener_tokens; /* tokens whose text opens with '{' or '[' after blanks */
    uint32_t *blank_tokens;  /* tokens whose text is blank */
    uint32_t *free_tokens;   /* end tokens, and text tokens that do not open a call */
    engine_info info;

    /* The scheduler's own. */
    threadpool *pool;
    kv_cache *kv;
    model_ctx *mctx;
    slot *slots;
    int n_slots;
    int32_t *batch_token, *batch_pos, *batch_seq;
    bool *batch_want;
    float *logits;           /* n_slots rows of n_vocab */
    float *sibling_logits;   /* n_vocab: the prompt's logits, handed to another choice */
    int round_robin;         /* which ingesting slot gets leftover batch room first */
    double decode_step_ms;   /* recent steps: one that only generates, and the cost of a */
    double prompt_token_ms;  /* prompt token beside it (0: not measured yet) */
    uint64_t admissions;
};

double engine_now_ms(void);
/* After every evaluation: false when the model's file was cut short or written to
 * since it was loaded (gguf_check_intact), and what was computed is garbage. The
 * first time, the engine becomes FAILED (load_err says why, and so does stderr)
 * and every queued request ends with GEN_FINISH_ERROR. */
bool engine_model_intact(engine *e, el_err *err);
/* Drops one reference; true when it was the last (the caller then destroys). */
bool engine_unref_locked(engine *e);
void engine_destroy(engine *e);

/* ---- constrained decoding (constraint.c) ------------------------------------------- */

/* Builds the grammar vocabulary: text tokens by their bytes, the stop tokens as
 * END, control tokens NEVER. */
int constraint_vocab_init(engine *e, el_err *err);
void constraint_vocab_free(engine *e);
/* Holds the READY engine's model and tokenizer for use outside e->mu (counted in
 * e->submitting, so that engine_free waits): false, holding nothing, when the engine
 * is not READY or is stopping. Every hold ends with engine_unhold. */
bool engine_hold(engine *e);
void engine_unhold(engine *e);

/* Compiles the request's constraint (on the submitting thread); *out NULL when
 * there is none. GEN_ERR_CONSTRAINT with err saying why. */
enum gen_status constraint_compile(const engine *e, const gen_params *p, grammar **out, el_err *err);
int constraint_slot_begin(engine *e, slot *s, el_err *err);
void constraint_slot_end(slot *s);
/* Before a draw: -infinity for what the grammar does not allow; -1 if nothing is. */
int constraint_mask_logits(engine *e, slot *s, float *logits);
/* After a draw: 0 go on, 1 the grammar is complete (the answer ends), -1 refused. */
int constraint_accept(engine *e, slot *s, int32_t tok);

/* ---- capacity (capacity.c) ---------------------------------------------------------- */

/* Bytes this process may still take: /proc/meminfo's MemAvailable and what the
 * cgroup's limit leaves (v2 up to its root, or v1), the lesser; page cache counts as
 * available. root prefixes every path ("" for the real system). 0 if unknown. */
uint64_t engine_available_memory(const char *root);

/* The scheduler thread's body once the model is loaded; returns on shutdown with
 * every slot wiped. */
void scheduler_run(engine *e);
/* Allocates the scheduler's structures (slots, batch, logits, cache, context). */
int scheduler_init(engine *e, el_err *err);
void scheduler_free(engine *e);

#endif
