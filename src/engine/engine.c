/* The engine's public side: lifecycle, loading, submission and the request API
 * that consumers call from their own threads. The scheduler is in scheduler.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine_internal.h"
#include "base/wipebuf.h"
#include "base/invariant.h"

enum {
    MAX_THREADS = 1024,
    MAX_SLOTS = 256,
    MAX_QUEUE = 1 << 16,
    MAX_BATCH = 1 << 16,
    MAX_MESSAGES = 1 << 16,
    DEFAULT_N_CTX = 4096,
    AUTO_SLOTS_MIN = 4,
    AUTO_SLOTS_MAX = 64,
    MIN_AUTO_POOL = 256,
    DEFAULT_MAX_QUEUE = 16,
    DEFAULT_MAX_BATCH = 512,
    DEFAULT_MAX_TOKENS = 512,
    OUT_INITIAL_CAP = 1024
};

double engine_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void engine_config_default(engine_config *c)
{
    memset(c, 0, sizeof *c);
    c->prefix_cache = true;
    c->history = CHAT_HISTORY_FULL;
}

void gen_params_default(gen_params *p)
{
    memset(p, 0, sizeof *p);
    sampler_params_default(&p->sampling);
}

/* ---- lifecycle ------------------------------------------------------------------ */

static int init_cond(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr))
        return -1;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rc ? -1 : 0;
}

static int validate_config(const engine_config *c, el_err *err)
{
    if (!c->model_path && (!c->model_data || c->model_size == 0))
        return el_fail(err, "engine: no model given (a path or an image in memory)");
    if (c->n_threads < 0 || c->n_threads > MAX_THREADS)
        return el_fail(err, "engine: threads must be in [0, %d]", MAX_THREADS);
    if (c->n_ctx < 0)
        return el_fail(err, "engine: context size must not be negative");
    if ((c->n_slots < 0 && c->n_slots != ENGINE_SLOTS_AUTO) || c->n_slots > MAX_SLOTS)
        return el_fail(err, "engine: slots must be in [0, %d] or automatic", MAX_SLOTS);
    if (c->prompt_chunk < 0)
        return el_fail(err, "engine: the prompt chunk must not be negative");
    if (c->max_queue < 0 || c->max_queue > MAX_QUEUE)
        return el_fail(err, "engine: queue length must be in [0, %d]", MAX_QUEUE);
    if (c->max_batch < 0 || c->max_batch > MAX_BATCH)
        return el_fail(err, "engine: batch size must be in [0, %d]", MAX_BATCH);
    if (c->max_tokens_default < 0)
        return el_fail(err, "engine: default max tokens must not be negative");
    if (c->history != CHAT_HISTORY_FULL && c->history != CHAT_HISTORY_LAST)
        return el_fail(err, "engine: unknown history mode");
    return 0;
}

/* Fills in the defaults that do not depend on the model. */
static void normalise_config(engine_config *c)
{
    if (c->n_threads == 0)
        c->n_threads = el_cpu_count();
    if (c->n_slots == 0)
        c->n_slots = 1;
    if (c->max_queue == 0)
        c->max_queue = DEFAULT_MAX_QUEUE;
    if (c->max_batch == 0)
        c->max_batch = DEFAULT_MAX_BATCH;
    if (c->max_tokens_default == 0)
        c->max_tokens_default = DEFAULT_MAX_TOKENS;
}

static size_t longest_piece(const tokenizer *t)
{
    char probe[8];
    size_t longest = 0;
    int n = tokenizer_n_vocab(t);
    for (int id = 0; id < n; id++) {
        size_t len = tokenizer_token_text(t, id, probe, sizeof probe);
        if (len > longest)
            longest = len;
    }
    return longest;
}

static void copy_cstr(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static void fill_info(engine *e)
{
    engine_info *info = &e->info;
    memset(info, 0, sizeof *info);
    gguf_str name = {0};
    if (gguf_get_str(model_gguf(e->m), "general.name", &name, NULL) == 0 && name.len > 0) {
        copy_cstr(info->model_name, sizeof info->model_name, name.ptr, (size_t)name.len);
    } else if (e->model_path) {
        const char *base = strrchr(e->model_path, '/');
        base = base ? base + 1 : e->model_path;
        copy_cstr(info->model_name, sizeof info->model_name, base, strlen(base));
    } else {
        copy_cstr(info->model_name, sizeof info->model_name, "model", 5);
    }
    const model_hparams *hp = model_hparams_of(e->m);
    const char *arch = model_arch_name(hp->arch);
    copy_cstr(info->arch, sizeof info->arch, arch, strlen(arch));
    const char *fmt = chat_format_name(e->fmt);
    copy_cstr(info->chat_format, sizeof info->chat_format, fmt, strlen(fmt));
    info->n_ctx = e->n_ctx;
    info->n_ctx_pool = e->n_ctx_pool;
    info->kv_bytes_per_token = e->kv_bytes_per_token;
    info->cache_q8_0 = e->cfg.cache_q8_0;
    info->n_slots = e->cfg.n_slots;
    info->n_vocab = e->n_vocab;
    info->n_threads = e->cfg.n_threads;
    info->weight_bytes = model_weight_bytes(e->m);
    info->max_tokens_default = e->cfg.max_tokens_default;
}

/* The KV pool's budget in positions when the configuration leaves it to us:
 * kv_memory, else half of what memory is left beyond the weights; -1 when unknown. */
static int64_t kv_budget_positions(const engine *e)
{
    uint64_t bytes = e->cfg.kv_memory;
    if (!bytes) {
        uint64_t avail = engine_available_memory("");
        uint64_t weights = model_weight_bytes(e->m);
        if (!avail)
            return -1;
        bytes = avail > weights ? (avail - weights) / 2 : 0;
    }
    uint64_t positions = bytes / e->kv_bytes_per_token;
    return positions > INT32_MAX ? INT32_MAX : (int64_t)positions;
}

static enum model_cache_type cache_type(const engine *e)
{
    return e->cfg.cache_q8_0 ? MODEL_CACHE_Q8_0 : MODEL_CACHE_F16;
}

/* Slots, the pool and one conversation's context, from the configuration, the
 * model and the memory: see engine_config. */
static int size_kv_pool(engine *e, el_err *err)
{
    const model_hparams *hp = model_hparams_of(e->m);
    e->kv_bytes_per_token = kv_cache_bytes_per_token(e->m, cache_type(e));
    if (e->kv_bytes_per_token == 0 && e->cfg.cache_q8_0 && kv_cache_bytes_per_token(e->m, MODEL_CACHE_F16) > 0)
        return el_fail(err, "engine: a Q8_0 KV cache needs head sizes that are multiples of 32, and this "
                            "model's are not (use the F16 cache)");
    if (e->kv_bytes_per_token == 0)
        return el_fail(err, "engine: the model has no KV cache");
    /* Beyond the training context RoPE extrapolates badly. */
    int train = hp->n_ctx_train > 0 ? hp->n_ctx_train : DEFAULT_N_CTX;
    int per_slot = train < DEFAULT_N_CTX ? train : DEFAULT_N_CTX;
    int64_t budget = e->cfg.n_slots == ENGINE_SLOTS_AUTO || !e->cfg.n_ctx ? kv_budget_positions(e) : -1;
    if (e->cfg.n_slots == ENGINE_SLOTS_AUTO) {
        int cap = 2 * e->cfg.n_threads > AUTO_SLOTS_MIN ? 2 * e->cfg.n_threads : AUTO_SLOTS_MIN;
        if (cap > AUTO_SLOTS_MAX)
            cap = AUTO_SLOTS_MAX;
        int64_t fit = budget < 0 ? cap : budget / per_slot;
        e->cfg.n_slots = fit < 1 ? 1 : fit > cap ? cap : (int)fit;
    }
    int64_t pool = e->cfg.n_ctx;
    if (!pool) {
        pool = (int64_t)e->cfg.n_slots * per_slot;
        if (budget >= 0 && budget < pool) /* what memory holds, but room for one prompt */
            pool = budget > MIN_AUTO_POOL ? budget : MIN_AUTO_POOL;
    }
    if (pool > INT32_MAX / 2)
        pool = INT32_MAX / 2;
    e->n_ctx_pool = (int)pool;
    e->n_ctx = pool < train ? (int)pool : train;
    if (e->n_ctx < 2)
        return el_fail(err, "engine: a context of %d positions is too small", e->n_ctx);
    /* Every generating slot needs room for its token in each step. */
    if (e->cfg.max_batch < e->cfg.n_slots)
        e->cfg.max_batch = e->cfg.n_slots;
    return 0;
}

static int load_model(engine *e, el_err *err)
{
    if (e->model_path) {
        model_load_options opts = {.mlock = e->cfg.mlock};
        e->m = model_load(e->model_path, &opts, err);
    } else {
        e->m = model_load_memory(e->cfg.model_data, e->cfg.model_size, err);
    }
    if (!e->m)
        return -1;
    e->tok = tokenizer_load(model_gguf(e->m), err);
    if (!e->tok)
        return -1;
    const model_hparams *hp = model_hparams_of(e->m);
    e->n_vocab = hp->n_vocab;
    if (tokenizer_n_vocab(e->tok) > e->n_vocab)
        return el_fail(err, "engine: the tokenizer has %d tokens but the model only %d logits",
                       tokenizer_n_vocab(e->tok), e->n_vocab);
    e->fmt = chat_detect_format(model_gguf(e->m), e->tok);
    e->n_stop_ids = chat_stop_tokens(e->tok, e->fmt, e->stop_ids,
                                     sizeof e->stop_ids / sizeof e->stop_ids[0]);
    if (NEVER(e->n_stop_ids > sizeof e->stop_ids / sizeof e->stop_ids[0])) /* chat_stop_tokens finds at most 2 */
        e->n_stop_ids = sizeof e->stop_ids / sizeof e->stop_ids[0];
    if (size_kv_pool(e, err) < 0)
        return -1;
    /* held UTF-8 bytes, replacement characters and slack around the longest token */
    e->max_piece = longest_piece(e->tok) + 64;
    if (constraint_vocab_init(e, err) < 0 || scheduler_init(e, err) < 0)
        return -1;
    fill_info(e);
    return 0;
}

static void unload_model(engine *e)
{
    scheduler_free(e);
    constraint_vocab_free(e);
    tokenizer_free(e->tok);
    e->tok = NULL;
    model_free(e->m);
    e->m = NULL;
}

static void *engine_main(void *arg)
{
    engine *e = arg;
    el_err err = {{0}};
    int rc = load_model(e, &err);
    pthread_mutex_lock(&e->mu);
    if (rc < 0) {
        e->state = ENGINE_FAILED;
        e->load_err = err;
    } else {
        e->state = ENGINE_READY;
    }
    pthread_cond_broadcast(&e->ready_cv);
    pthread_mutex_unlock(&e->mu);
    if (rc == 0)
        scheduler_run(e);
    /* Submits that passed the READY check before shutdown still read the tokenizer. */
    pthread_mutex_lock(&e->mu);
    while (e->submitting > 0)
        pthread_cond_wait(&e->ready_cv, &e->mu);
    pthread_mutex_unlock(&e->mu);
    unload_model(e);
    return NULL;
}

engine *engine_start(const engine_config *c, el_err *err)
{
    if (!c) {
        el_fail(err, "engine: no configuration");
        return NULL;
    }
    if (validate_config(c, err) < 0)
        return NULL;
    engine *e = calloc(1, sizeof *e);
    if (!e) {
        el_fail(err, "engine: out of memory");
        return NULL;
    }
    e->cfg = *c;
    normalise_config(&e->cfg);
    e->refs = 1;
    e->state = ENGINE_LOADING;
    if (c->model_path) {
        e->model_path = strdup(c->model_path);
        if (!e->model_path) {
            free(e);
            el_fail(err, "engine: out of memory");
            return NULL;
        }
        e->cfg.model_path = e->model_path;
    }
    if (pthread_mutex_init(&e->mu, NULL) || init_cond(&e->sched_cv) || init_cond(&e->ready_cv)) {
        free(e->model_path);
        free(e);
        el_fail(err, "engine: cannot create synchronisation objects");
        return NULL;
    }
    if (pthread_create(&e->thread, NULL, engine_main, e)) {
        engine_destroy(e);
        el_fail(err, "engine: cannot start the scheduler thread");
        return NULL;
    }
    e->thread_started = true;
    return e;
}

void engine_destroy(engine *e)
{
    pthread_cond_destroy(&e->ready_cv);
    pthread_cond_destroy(&e->sched_cv);
    pthread_mutex_destroy(&e->mu);
    free(e->model_path);
    free(e);
}

bool engine_unref_locked(engine *e)
{
    return --e->refs == 0;
}

static void cancel_queued_locked(engine *e);

void engine_free(engine *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    cancel_queued_locked(e);
    pthread_cond_broadcast(&e->sched_cv);
    pthread_cond_broadcast(&e->ready_cv);
    pthread_mutex_unlock(&e->mu);
    if (e->thread_started)
        pthread_join(e->thread, NULL);
    /* Requests the consumer still holds keep the lock and their condition variable
     * alive; the last gen_release destroys what is left. */
    pthread_mutex_lock(&e->mu);
    bool last = engine_unref_locked(e);
    pthread_mutex_unlock(&e->mu);
    if (last)
        engine_destroy(e);
}

void engine_drain(engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->draining = true;
    cancel_queued_locked(e);
    pthread_mutex_unlock(&e->mu);
}

enum engine_state engine_state(engine *e, el_err *why)
{
    pthread_mutex_lock(&e->mu);
    enum engine_state s = e->state;
    if (s == ENGINE_FAILED && why)
        *why = e->load_err;
    pthread_mutex_unlock(&e->mu);
    return s;
}

int engine_wait_ready(engine *e, el_err *err)
{
    pthread_mutex_lock(&e->mu);
    while (e->state == ENGINE_LOADING && !e->stopping)
        pthread_cond_wait(&e->ready_cv, &e->mu);
    int rc = 0;
    if (e->state == ENGINE_FAILED) {
        if (err)
            *err = e->load_err;
        rc = -1;
    } else if (e->state != ENGINE_READY) {
        rc = el_fail(err, "engine: shutting down");
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void engine_get_info(engine *e, engine_info *info)
{
    pthread_mutex_lock(&e->mu);
    if (e->state == ENGINE_READY)
        *info = e->info;
    else
        memset(info, 0, sizeof *info);
    pthread_mutex_unlock(&e->mu);
}

void engine_get_stats(engine *e, engine_stats *stats)
{
    pthread_mutex_lock(&e->mu);
    stats->queue_depth = e->queue_len;
    stats->active_slots = e->active_slots;
    stats->prompt_tokens_total = e->prompt_tokens_total;
    stats->completion_tokens_total = e->completion_tokens_total;
    stats->prompt_tokens_cached_total = e->cached_tokens_total;
    stats->kv_tokens_reserved = e->kv_reserved;
    stats->kv_tokens_cached = e->kv_cached;
    pthread_mutex_unlock(&e->mu);
}

/* ---- requests: buffers ---------------------------------------------------------- */

void request_wake_locked(gen_request *r)
{
    pthread_cond_broadcast(&r->cv);
    if (r->notify)
        r->notify(r->notify_ctx);
}

int request_append_locked(gen_request *r, int choice, const char *text, size_t len)
{
    choice_out *c = &r->choice[choice];
    if (len == 0)
        return 0;
    if (wipe_grow(&c->text, &c->text_cap, c->text_len, c->text_len + len) < 0)
        return -1;
    memcpy(c->text + c->text_len, text, len);
    c->text_len += len;
    request_wake_locked(r);
    return 0;
}

int request_append_logprob_locked(gen_request *r, int choice, const gen_logprob *lp)
{
    choice_out *c = &r->choice[choice];
    void *lps = c->lp;
    int grown = wipe_grow_array(&lps, &c->lp_cap, c->lp_len, c->lp_len + 1, sizeof *c->lp);
    c->lp = lps;
    if (grown < 0)
        return -1;
    c->lp[c->lp_len++] = *lp;
    request_wake_locked(r);
    return 0;
}

void request_finish_locked(gen_request *r, const gen_event *done)
{
    r->done_ev = *done;
    r->done_ev.kind = GEN_EVENT_DONE;
    r->done_ev.text = NULL;
    r->done_ev.len = 0;
    r->state = REQ_DONE;
    request_wake_locked(r);
}

void request_destroy_locked(gen_request *r)
{
    wipe_free(r->prompt, (size_t)r->n_prompt * sizeof *r->prompt);
    for (int i = 0; i < GEN_MAX_CHOICES; i++) {
        wipe_free(r->choice[i].text, r->choice[i].text_cap);
        /* token ids spell out the generated text */
        wipe_free(r->choice[i].lp, r->choice[i].lp_cap * sizeof *r->choice[i].lp);
    }
    wipe_free(r->view, r->view_cap);
    wipe_free(r->lp_view, r->lp_view_cap * sizeof *r->lp_view);
    wipe_free(r->logit_bias, r->n_logit_bias * sizeof *r->logit_bias);
    grammar_free(r->grammar);
    stop_set_free(&r->stop);
    pthread_cond_destroy(&r->cv);
    explicit_bzero(r, sizeof *r);
    free(r);
}

/* ---- requests: the queue -------------------------------------------------------- */

static void queue_remove_locked(engine *e, gen_request *r)
{
    gen_request **link = &e->queue_head;
    gen_request *prev = NULL;
    while (*link && *link != r) {
        prev = *link;
        link = &(*link)->next;
    }
    if (!*link)
        return;
    *link = r->next;
    if (e->queue_tail == r)
        e->queue_tail = prev;
    r->next = NULL;
    e->queue_len--;
}

/* DONE (cancelled) for a request that never reached a slot. */
static void end_unstarted_locked(engine *e, gen_request *r, enum gen_finish finish)
{
    gen_event done = {.kind = GEN_EVENT_DONE,
                      .finish = finish,
                      .prompt_tokens = r->n_prompt,
                      .queue_ms = engine_now_ms() - r->t_submit};
    request_finish_locked(r, &done);
}

static void finish_unstarted_locked(engine *e, gen_request *r)
{
    end_unstarted_locked(e, r, GEN_FINISH_CANCELLED);
}

static void cancel_queued_locked(engine *e)
{
    while (e->queue_head) {
        gen_request *r = e->queue_head;
        queue_remove_locked(e, r);
        r->cancelled = true;
        finish_unstarted_locked(e, r); /* released requests never wait in the queue */
    }
}

bool engine_model_intact(engine *e, el_err *err)
{
    el_err why = {{0}};
    if (gguf_check_intact(model_gguf(e->m), &why) == 0)
        return true;
    el_fail(err, "the model file was damaged while in use: %s", why.msg);
    pthread_mutex_lock(&e->mu);
    if (e->state == ENGINE_READY) {
        e->state = ENGINE_FAILED;
        el_fail(&e->load_err, "the model file was damaged while in use: %s", why.msg);
        fprintf(stderr, "elliott: model failed, its requests end with an error: %s\n", e->load_err.msg);
        while (e->queue_head) {
            gen_request *r = e->queue_head;
            queue_remove_locked(e, r);
            end_unstarted_locked(e, r, GEN_FINISH_ERROR);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return false;
}

/* ---- requests: submission ----------------------------------------------------- */

static enum gen_status not_ready_locked(engine *e, el_err *err)
{
    if (e->stopping || e->draining) {
        el_fail(err, "engine: shutting down");
        return GEN_ERR_SHUTTING_DOWN;
    }
    if (e->state == ENGINE_LOADING)
        el_fail(err, "engine: the model is still loading");
    else
        el_fail(err, "engine: the model failed to load: %s", e->load_err.msg);
    return GEN_ERR_NOT_READY;
}

static int validate_messages(const chat_message *messages, size_t n, el_err *err)
{
    if (n == 0 || !messages)
        return el_fail(err, "messages: the conversation is empty");
    if (n > MAX_MESSAGES)
        return el_fail(err, "messages: more than %d messages", MAX_MESSAGES);
    for (size_t i = 0; i < n; i++) {
        if (messages[i].role != CHAT_ROLE_SYSTEM && messages[i].role != CHAT_ROLE_USER &&
            messages[i].role != CHAT_ROLE_ASSISTANT && messages[i].role != CHAT_ROLE_TOOL)
            return el_fail(err, "messages[%zu]: unknown role", i);
        if (!messages[i].text && messages[i].len)
            return el_fail(err, "messages[%zu]: text missing", i);
    }
    return 0;
}

/* prefix-marker PREFIX suffix-marker SUFFIX middle-marker (CodeGemma's order), the
 * two texts tokenized as plain text. */
static int encode_fill_in_middle(const engine *e, const char *prefix, size_t prefix_len, const char *suffix,
                                 size_t suffix_len, token_vec *out, el_err *err)
{
    tokenizer_fim fim;
    if (!tokenizer_fim_markers(e->tok, &fim))
        return el_fail(err, "this model has no fill-in-the-middle tokens");
    if (token_vec_push(out, fim.prefix, err) < 0 ||
        tokenizer_encode(e->tok, prefix, prefix_len, false, out, err) < 0 ||
        token_vec_push(out, fim.suffix, err) < 0 ||
        tokenizer_encode(e->tok, suffix, suffix_len, false, out, err) < 0 ||
        token_vec_push(out, fim.middle, err) < 0)
        return -1;
    return 0;
}

/* The messages' text back to back, tokenized as plain text after a BOS; with a
 * suffix, as the prefix of a fill-in-the-middle prompt. */
static int build_raw_prompt(const engine *e, const chat_message *messages, size_t n, const char *suffix,
                            size_t suffix_len, token_vec *out, el_err *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (messages[i].len > SIZE_MAX / 2 - total)
            return el_fail(err, "messages: too long");
        total += messages[i].len;
    }
    char *joined = malloc(total ? total : 1);
    if (!joined)
        return el_fail(err, "messages: out of memory");
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (messages[i].len)
            memcpy(joined + at, messages[i].text, messages[i].len);
        at += messages[i].len;
    }
    int rc = 0;
    if (tokenizer_add_bos(e->tok) && tokenizer_bos(e->tok) >= 0)
        rc = token_vec_push(out, tokenizer_bos(e->tok), err);
    if (rc == 0)
        rc = suffix ? encode_fill_in_middle(e, joined, total, suffix, suffix_len, out, err)
                    : tokenizer_encode(e->tok, joined, total, false, out, err);
    explicit_bzero(joined, total);
    free(joined);
    return rc;
}

/* A prompt given as token ids: checked against the vocabulary, taken as it is. */
static int copy_prompt_tokens(const engine *e, const int32_t *ids, size_t n, token_vec *out, el_err *err)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tokenizer_n_vocab(e->tok))
            return el_fail(err, "prompt: token %d is not in the vocabulary (0..%d)", ids[i],
                           tokenizer_n_vocab(e->tok) - 1);
        if (token_vec_push(out, ids[i], err) < 0)
            return -1;
    }
    return 0;
}

static void token_vec_wipe(token_vec *v)
{
    if (v->ids)
        explicit_bzero(v->ids, v->cap * sizeof *v->ids);
    token_vec_free(v);
}

/* Takes over g (freed with the request, or here on failure). */
static gen_request *request_create(engine *e, token_vec *prompt, const int *group_start, int n_groups,
                                   const gen_params *p, grammar *g, el_err *err)
{
    gen_request *r = calloc(1, sizeof *r);
    if (!r) {
        grammar_free(g);
        el_fail(err, "engine: out of memory");
        return NULL;
    }
    r->grammar = g;
    r->constraint_lazy = p->constraint_lazy;
    if (init_cond(&r->cv)) {
        grammar_free(g);
        free(r);
        el_fail(err, "engine: cannot create a condition variable");
        return NULL;
    }
    r->e = e;
    if (stop_set_init(&r->stop, p->stop, p->n_stop, err) < 0)
        goto fail;
    r->prompt = malloc(prompt->n * sizeof *r->prompt);
    if (!r->prompt)
        goto oom;
    memcpy(r->prompt, prompt->ids, prompt->n * sizeof *r->prompt);
    r->n_prompt = (int)prompt->n;
    r->n_groups = n_groups;
    r->group_size = p->n_choices > 1 ? p->n_choices : 1;
    r->n_choices = n_groups * r->group_size;
    int longest = 0;
    for (int i = 0; i <= n_groups; i++) {
        r->group_start[i] = group_start[i];
        if (i > 0 && group_start[i] - group_start[i - 1] > longest)
            longest = group_start[i] - group_start[i - 1];
    }
    r->view_cap = OUT_INITIAL_CAP;
    r->view = malloc(r->view_cap);
    if (!r->view)
        goto oom;
    int max_tokens = p->max_tokens ? p->max_tokens : e->cfg.max_tokens_default;
    int room = e->n_ctx - longest;
    /* each choice's prompt and generated tokens share the pool; >= 1: checked at submit */
    int pool_room = (e->n_ctx_pool - r->n_prompt * r->group_size) / r->n_choices;
    if (pool_room < room)
        room = pool_room;
    EL_ASSERT(room >= 1);
    r->max_tokens = max_tokens < room ? max_tokens : room;
    r->kv_need = r->n_prompt * r->group_size + r->max_tokens * r->n_choices;
    r->sampling = p->sampling;
    r->logprobs = p->logprobs;
    r->top_logprobs = p->top_logprobs;
    if (p->n_logit_bias) {
        r->logit_bias = malloc(p->n_logit_bias * sizeof *r->logit_bias);
        if (!r->logit_bias)
            goto oom;
        memcpy(r->logit_bias, p->logit_bias, p->n_logit_bias * sizeof *r->logit_bias);
        r->n_logit_bias = p->n_logit_bias;
    }
    r->state = REQ_QUEUED;
    return r;
oom:
    el_fail(err, "engine: out of memory");
fail:
    request_destroy_locked(r); /* touches nothing shared */
    return NULL;
}

/* logprobs, logit_bias, choices and the constraint. */
static enum gen_status validate_extras(const engine *e, const gen_params *p, el_err *err)
{
    if (p->top_logprobs < 0 || p->top_logprobs > GEN_MAX_TOP_LOGPROBS) {
        el_fail(err, "top_logprobs: must be between 0 and %d", GEN_MAX_TOP_LOGPROBS);
        return GEN_ERR_INVALID;
    }
    if (p->n_logit_bias > GEN_MAX_LOGIT_BIAS || (p->n_logit_bias && !p->logit_bias)) {
        el_fail(err, "logit_bias: at most %d tokens", GEN_MAX_LOGIT_BIAS);
        return GEN_ERR_INVALID;
    }
    for (size_t i = 0; i < p->n_logit_bias; i++) {
        const gen_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= tokenizer_n_vocab(e->tok)) {
            el_fail(err, "logit_bias: token %d is not in the vocabulary (0 to %d)", (int)b->token,
                    tokenizer_n_vocab(e->tok) - 1);
            return GEN_ERR_LOGIT_BIAS;
        }
        if (!(b->bias >= -100.0f && b->bias <= 100.0f)) {
            el_fail(err, "logit_bias: the bias of token %d must be between -100 and 100", (int)b->token);
            return GEN_ERR_LOGIT_BIAS;
        }
    }
    if (p->n_choices < 0 || p->n_choices > GEN_MAX_CHOICES) {
        el_fail(err, "n: from 1 to %d choices", GEN_MAX_CHOICES);
        return GEN_ERR_CHOICES;
    }
    size_t n_prompts = p->prompts ? p->n_prompts : 1;
    if (p->prompts && (!p->raw || n_prompts == 0 || n_prompts > GEN_MAX_CHOICES)) {
        el_fail(err, "prompt: from 1 to %d prompts, as raw text or token ids", GEN_MAX_CHOICES);
        return GEN_ERR_INVALID;
    }
    size_t total = n_prompts * (size_t)(p->n_choices > 1 ? p->n_choices : 1);
    if (total > GEN_MAX_CHOICES) {
        el_fail(err, "n: %zu prompts with %d choices each make %zu choices; at most %d", n_prompts, p->n_choices,
                total, GEN_MAX_CHOICES);
        return GEN_ERR_CHOICES;
    }
    if (total > (size_t)e->cfg.n_slots) {
        el_fail(err, "n: %zu choices need as many parallel slots, and the server has %d (start it with "
                "--parallel %zu or more)", total, e->cfg.n_slots, total);
        return GEN_ERR_CHOICES;
    }
    return GEN_OK;
}

/* Appends one prompt's tokens to out. */
static int build_one_prompt(engine *e, const chat_message *messages, size_t n_messages, const gen_params *p,
                            const gen_prompt *one, token_vec *out, el_err *err)
{
    if (one && one->tokens)
        return copy_prompt_tokens(e, one->tokens, one->n_tokens, out, err);
    if (one) {
        chat_message m = {.role = CHAT_ROLE_USER, .text = one->text ? one->text : "", .len = one->len};
        return build_raw_prompt(e, &m, 1, p->suffix, p->suffix_len, out, err);
    }
    if (p->raw && p->prompt_tokens)
        return copy_prompt_tokens(e, p->prompt_tokens, p->n_prompt_tokens, out, err);
    if (p->raw)
        return build_raw_prompt(e, messages, n_messages, p->suffix, p->suffix_len, out, err);
    return chat_build_tool_prompt(e->tok, e->fmt, messages, n_messages, p->tools, e->cfg.history, out, err);
}

/* Every prompt's tokens into out, one after the other, prompt i from group_start[i]
 * to group_start[i + 1]; each must be non-empty and leave room in the context. */
static enum gen_status build_prompts(engine *e, const chat_message *messages, size_t n_messages,
                                     const gen_params *p, token_vec *out, int *group_start, el_err *err)
{
    size_t n = p->prompts ? p->n_prompts : 1;
    for (size_t i = 0; i < n; i++) {
        size_t start = out->n;
        group_start[i] = (int)start;
        if (build_one_prompt(e, messages, n_messages, p, p->prompts ? &p->prompts[i] : NULL, out, err) < 0)
            return GEN_ERR_INVALID;
        size_t len = out->n - start;
        if (len == 0) {
            el_fail(err, "%s: the prompt is empty", p->raw ? "prompt" : "messages");
            return GEN_ERR_INVALID;
        }
        if (len + 1 > (size_t)e->n_ctx) {
            el_fail(err, "the prompt is %zu tokens; with one generated token that exceeds the context of %d", len,
                    e->n_ctx);
            return GEN_ERR_CONTEXT;
        }
    }
    group_start[n] = (int)out->n;
    return GEN_OK;
}

/* Validates, builds the prompt and queues; runs with e->submitting held. */
static enum gen_status submit_ready(engine *e, const chat_message *messages, size_t n_messages,
                                    const gen_params *params, gen_request **out, el_err *err)
{
    gen_params defaults;
    if (!params) {
        gen_params_default(&defaults);
        params = &defaults;
    }
    if (params->max_tokens < 0) {
        el_fail(err, "max_tokens: must not be negative");
        return GEN_ERR_INVALID;
    }
    if (sampler_params_validate(&params->sampling, err) < 0)
        return GEN_ERR_INVALID;
    if (params->n_stop > GEN_MAX_STOP) {
        el_fail(err, "stop: at most %d stop strings", GEN_MAX_STOP);
        return GEN_ERR_INVALID;
    }
    if (!params->prompts && validate_messages(messages, n_messages, err) < 0)
        return GEN_ERR_INVALID;
    enum gen_status status = validate_extras(e, params, err);
    if (status != GEN_OK)
        return status;

    tokenizer_fim fim;
    if (params->raw && params->suffix && !tokenizer_fim_markers(e->tok, &fim)) {
        el_fail(err, "this model has no fill-in-the-middle tokens (a code model such as CodeGemma has them)");
        return GEN_ERR_SUFFIX;
    }
    if (model_hparams_of(e->m)->pooling != MODEL_POOLING_NONE) {
        el_fail(err, "the served model is an embedding model: it gives embeddings, not text");
        return GEN_ERR_INVALID;
    }
    token_vec prompt = {0};
    int group_start[GEN_MAX_CHOICES + 1] = {0};
    int n_groups = params->prompts ? (int)params->n_prompts : 1;
    status = build_prompts(e, messages, n_messages, params, &prompt, group_start, err);
    if (status != GEN_OK) {
        token_vec_wipe(&prompt);
        return status;
    }
    int n_choices = params->n_choices > 1 ? params->n_choices : 1;
    if ((prompt.n + (size_t)n_groups) * (size_t)n_choices > (size_t)e->n_ctx_pool) {
        el_fail(err, "n: %d choices of %zu prompt tokens, each with one generated token, exceed the KV pool of "
                "%d positions", n_choices * n_groups, prompt.n, e->n_ctx_pool);
        token_vec_wipe(&prompt);
        return GEN_ERR_CONTEXT;
    }
    grammar *g = NULL;
    status = constraint_compile(e, params, &g, err);
    if (status != GEN_OK) {
        token_vec_wipe(&prompt);
        return status;
    }
    gen_request *r = request_create(e, &prompt, group_start, n_groups, params, g, err);
    token_vec_wipe(&prompt);
    if (!r)
        return GEN_ERR_INVALID;

    pthread_mutex_lock(&e->mu);
    if (e->stopping || e->draining) {
        status = not_ready_locked(e, err);
    } else if (e->queue_len >= e->cfg.max_queue) {
        el_fail(err, "engine: the request queue is full");
        status = GEN_ERR_QUEUE_FULL;
    }
    if (status != GEN_OK) {
        request_destroy_locked(r);
        pthread_mutex_unlock(&e->mu);
        return status;
    }
    r->t_submit = engine_now_ms();
    if (e->queue_tail)
        e->queue_tail->next = r;
    else
        e->queue_head = r;
    e->queue_tail = r;
    e->queue_len++;
    e->refs++;
    pthread_cond_signal(&e->sched_cv);
    pthread_mutex_unlock(&e->mu);
    *out = r;
    return GEN_OK;
}

enum gen_status engine_submit(engine *e, const chat_message *messages, size_t n_messages,
                              const gen_params *params, gen_request **out, el_err *err)
{
    if (out)
        *out = NULL;
    if (!e || !out) {
        el_fail(err, "engine: no engine or no place for the request");
        return GEN_ERR_INTERNAL;
    }
    pthread_mutex_lock(&e->mu);
    if (e->stopping || e->draining || e->state != ENGINE_READY) {
        enum gen_status s = not_ready_locked(e, err);
        pthread_mutex_unlock(&e->mu);
        return s;
    }
    if (e->queue_len >= e->cfg.max_queue) {
        pthread_mutex_unlock(&e->mu);
        el_fail(err, "engine: the request queue is full");
        return GEN_ERR_QUEUE_FULL;
    }
    e->submitting++;
    pthread_mutex_unlock(&e->mu);

    enum gen_status status = submit_ready(e, messages, n_messages, params, out, err);
    engine_unhold(e);
    return status;
}

bool engine_hold(engine *e)
{
    pthread_mutex_lock(&e->mu);
    bool ready = e->state == ENGINE_READY && !e->stopping;
    if (ready)
        e->submitting++;
    pthread_mutex_unlock(&e->mu);
    return ready;
}

void engine_unhold(engine *e)
{
    pthread_mutex_lock(&e->mu);
    if (--e->submitting == 0 && e->stopping)
        pthread_cond_broadcast(&e->ready_cv);
    pthread_mutex_unlock(&e->mu);
}

int gen_prompt_tokens(const gen_request *r)
{
    return r->n_prompt;
}

size_t engine_token_bytes(engine *e, int32_t token, char *buf, size_t cap)
{
    /* Held like a submit: the loader thread does not free the tokenizer while
     * anyone reads it. */
    if (!engine_hold(e))
        return 0;
    size_t n = 0;
    if (token >= 0 && token < tokenizer_n_vocab(e->tok) && !tokenizer_is_control(e->tok, token))
        n = tokenizer_token_text(e->tok, token, buf, cap);
    engine_unhold(e);
    return n;
}

/* ---- requests: consuming ---------------------------------------------------------- */

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Hands over what one choice has piled up (text and logprobs) as one event. */
static void hand_over_locked(gen_request *r, int choice, gen_event *ev)
{
    choice_out *c = &r->choice[choice];
    char *buf = r->view;
    size_t cap = r->view_cap;
    r->view = c->text;
    r->view_cap = c->text_cap;
    c->text = buf;
    c->text_cap = cap;
    gen_logprob *lp = r->lp_view;
    size_t lp_cap = r->lp_view_cap;
    r->lp_view = c->lp;
    r->lp_view_cap = c->lp_cap;
    c->lp = lp;
    c->lp_cap = lp_cap;
    memset(ev, 0, sizeof *ev);
    ev->kind = GEN_EVENT_TEXT;
    ev->choice = choice;
    ev->text = r->view;
    ev->len = c->text_len;
    ev->logprobs = r->lp_view;
    ev->n_logprobs = c->lp_len;
    c->text_len = 0;
    c->lp_len = 0;
}

/* The next event that is ready, choices taken in turn: text first, then a choice's
 * end (after all its text), then DONE. Returns false when nothing is ready. */
static bool next_event_locked(gen_request *r, gen_event *ev)
{
    for (int k = 0; k < r->n_choices; k++) {
        int i = (r->next_choice + k) % r->n_choices;
        if (r->choice[i].text_len > 0 || r->choice[i].lp_len > 0) {
            r->next_choice = (i + 1) % r->n_choices;
            hand_over_locked(r, i, ev);
            return true;
        }
    }
    for (int i = 0; i < r->n_choices; i++) {
        choice_out *c = &r->choice[i];
        if (c->end_pending) {
            c->end_pending = false;
            memset(ev, 0, sizeof *ev);
            ev->kind = GEN_EVENT_CHOICE_END;
            ev->choice = i;
            ev->finish = c->finish;
            ev->completion_tokens = c->completion_tokens;
            return true;
        }
    }
    if (r->state == REQ_DONE) {
        *ev = r->done_ev;
        return true;
    }
    return false;
}

int gen_next(gen_request *r, gen_event *ev, int timeout_ms)
{
    engine *e = r->e;
    struct timespec deadline;
    if (timeout_ms > 0)
        deadline_after(&deadline, timeout_ms);
    pthread_mutex_lock(&e->mu);
    for (;;) {
        if (next_event_locked(r, ev)) {
            pthread_mutex_unlock(&e->mu);
            return 1;
        }
        if (timeout_ms == 0)
            break;
        if (timeout_ms < 0) {
            pthread_cond_wait(&r->cv, &e->mu);
        } else if (pthread_cond_timedwait(&r->cv, &e->mu, &deadline) == ETIMEDOUT) {
            timeout_ms = 0; /* one last look before giving up */
        }
    }
    pthread_mutex_unlock(&e->mu);
    return 0;
}

void gen_set_notify(gen_request *r, void (*notify)(void *ctx), void *ctx)
{
    pthread_mutex_lock(&r->e->mu);
    r->notify = notify;
    r->notify_ctx = ctx;
    pthread_mutex_unlock(&r->e->mu);
}

void gen_cancel(gen_request *r)
{
    engine *e = r->e;
    pthread_mutex_lock(&e->mu);
    if (r->state != REQ_DONE && !r->cancelled) {
        r->cancelled = true;
        if (r->state == REQ_QUEUED) {
            queue_remove_locked(e, r);
            finish_unstarted_locked(e, r);
        } else {
            pthread_cond_signal(&e->sched_cv);
        }
    }
    pthread_mutex_unlock(&e->mu);
}

void gen_release(gen_request *r)
{
    if (!r)
        return;
    engine *e = r->e;
    pthread_mutex_lock(&e->mu);
    if (r->state == REQ_QUEUED) {
        queue_remove_locked(e, r);
        r->state = REQ_DONE;
    }
    bool last = false;
    if (r->state == REQ_DONE) {
        request_destroy_locked(r);
        last = engine_unref_locked(e);
    } else {
        /* The scheduler holds it in a slot: it frees it when it lets go. */
        r->cancelled = true;
        r->released = true;
        pthread_cond_signal(&e->sched_cv);
    }
    pthread_mutex_unlock(&e->mu);
    if (last)
        engine_destroy(e);
}
