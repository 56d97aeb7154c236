/* The scheduler: one thread that owns the model, the KV cache and the slots.
 *
 * The slots share one KV pool of n_ctx_pool positions. Each step it admits queued
 * requests into free slots while the pool has room for their prompt plus
 * max_tokens beside the running ones (cutting free slots' cached prefixes when it
 * needs the room), then evaluates one batch holding a decode token for every
 * generating slot and prompt chunks for the slots still reading their prompts
 * (shared fairly; beside generating slots, only what keeps the step near
 * ENGINE_STEP_TARGET_MS), then samples, detokenizes and filters stop strings per
 * slot, and finally hands the text and any DONE to the consumers under the lock. Nothing is allocated per
 * generated token: every buffer a step uses is sized at load time. */
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "base/wipebuf.h"
#include "base/invariant.h"

/* ---- set-up and tear-down -------------------------------------------------------- */

static int slot_init(engine *e, slot *s, int id, el_err *err)
{
    s->id = id;
    s->phase = SLOT_FREE;
    s->copy_from = -1;
    s->t_first = -1;
    s->piece_cap = e->max_piece;
    s->held_cap = GEN_MAX_STOP_BYTES + e->max_piece + 64;
    s->emit_cap = s->held_cap + 64;
    s->tokens = calloc((size_t)e->n_ctx, sizeof *s->tokens);
    s->piece = malloc(s->piece_cap);
    s->held = malloc(s->held_cap);
    s->emit = malloc(s->emit_cap);
    s->raw_logits = malloc((size_t)e->n_vocab * sizeof *s->raw_logits);
    s->mask = malloc(grammar_mask_words(e->gvocab) * sizeof *s->mask);
    if (!s->tokens || !s->piece || !s->held || !s->emit || !s->raw_logits || !s->mask)
        return el_fail(err, "engine: out of memory for slot buffers");
    return 0;
}

static void slot_free(engine *e, slot *s)
{
    sampler_free(s->smp);
    wipe_free(s->tokens, (size_t)e->n_ctx * sizeof *s->tokens);
    wipe_free(s->piece, s->piece_cap);
    wipe_free(s->held, s->held_cap);
    wipe_free(s->emit, s->emit_cap);
    wipe_free(s->raw_logits, s->raw_logits ? (size_t)e->n_vocab * sizeof *s->raw_logits : 0);
    constraint_slot_end(s);
    free(s->mask);
    explicit_bzero(s, sizeof *s);
}

int scheduler_init(engine *e, el_err *err)
{
    int n_slots = e->cfg.n_slots;
    int max_batch = e->cfg.max_batch;
    e->pool = threadpool_create(e->cfg.n_threads, err);
    if (!e->pool)
        return -1;
    e->kv = kv_cache_create(e->m, e->cfg.cache_q8_0 ? MODEL_CACHE_Q8_0 : MODEL_CACHE_F16, n_slots, e->n_ctx, err);
    if (!e->kv)
        return -1;
    e->mctx = model_ctx_create(e->m, max_batch, e->pool, err);
    if (!e->mctx)
        return -1;
    e->batch_token = malloc((size_t)max_batch * sizeof *e->batch_token);
    e->batch_pos = malloc((size_t)max_batch * sizeof *e->batch_pos);
    e->batch_seq = malloc((size_t)max_batch * sizeof *e->batch_seq);
    e->batch_want = malloc((size_t)max_batch * sizeof *e->batch_want);
    e->logits = malloc((size_t)n_slots * (size_t)e->n_vocab * sizeof *e->logits);
    e->sibling_logits = malloc((size_t)e->n_vocab * sizeof *e->sibling_logits);
    e->slots = calloc((size_t)n_slots, sizeof *e->slots);
    if (!e->batch_token || !e->batch_pos || !e->batch_seq || !e->batch_want || !e->logits || !e->slots ||
        !e->sibling_logits)
        return el_fail(err, "engine: out of memory for the scheduler");
    e->n_slots = n_slots;
    for (int i = 0; i < n_slots; i++)
        if (slot_init(e, &e->slots[i], i, err) < 0)
            return -1;
    return 0;
}

void scheduler_free(engine *e)
{
    for (int i = 0; i < e->n_slots; i++)
        slot_free(e, &e->slots[i]);
    free(e->slots);
    e->slots = NULL;
    e->n_slots = 0;
    if (e->kv) {
        /* The cache holds keys and values computed from conversations. */
        for (int seq = 0; seq < kv_cache_n_seq(e->kv); seq++)
            kv_cache_truncate(e->kv, seq, 0, true);
        kv_cache_free(e->kv);
        e->kv = NULL;
    }
    model_ctx_free(e->mctx);
    e->mctx = NULL;
    threadpool_free(e->pool);
    e->pool = NULL;
    if (e->logits && e->n_vocab > 0)
        wipe_free(e->logits, (size_t)e->cfg.n_slots * (size_t)e->n_vocab * sizeof *e->logits);
    else
        free(e->logits);
    e->logits = NULL;
    if (e->sibling_logits)
        wipe_free(e->sibling_logits, (size_t)e->n_vocab * sizeof *e->sibling_logits);
    e->sibling_logits = NULL;
    free(e->batch_token);
    free(e->batch_pos);
    free(e->batch_seq);
    free(e->batch_want);
    e->batch_token = e->batch_pos = e->batch_seq = NULL;
    e->batch_want = NULL;
}

/* ---- admission ------------------------------------------------------------------ */

static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb)
{
    int n = na < nb ? na : nb;
    int i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* Where a prompt should go: the free slot whose cache it reuses best. A slot
 * counts as a match only when the prompt keeps at least half of what it caches,
 * so that a shared BOS or a common opening does not evict a conversation another
 * request could continue; otherwise the least recently used free slot (which then
 * copies the prefix from the slot holding it, see prefix_source). */
static slot *choose_slot(engine *e, const int32_t *prompt, int n_prompt)
{
    slot *best = NULL;
    int best_len = 0;
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (s->phase != SLOT_FREE)
            continue;
        int len = e->cfg.prefix_cache ? common_prefix(s->tokens, s->n_tokens, prompt, n_prompt) : 0;
        if (2 * len < s->n_tokens)
            len = 0;
        if (!best || len > best_len || (len == best_len && s->last_used < best->last_used)) {
            best = s;
            best_len = len;
        }
    }
    return best;
}

/* The slot other than target whose cache holds the longest start of the prompt,
 * free or running (a running slot's evaluated positions do not change), when it
 * holds more than target does: -1 otherwise. */
static int prefix_source(const engine *e, const slot *target)
{
    if (!e->cfg.prefix_cache)
        return -1;
    int best = -1;
    int best_len = common_prefix(target->tokens, target->n_tokens, target->prompt, target->n_prompt);
    for (int i = 0; i < e->n_slots; i++) {
        const slot *s = &e->slots[i];
        if (s == target || s->phase == SLOT_SIBLING)
            continue;
        int len = common_prefix(s->tokens, s->n_tokens, target->prompt, target->n_prompt);
        if (len > best_len) {
            best = i;
            best_len = len;
        }
    }
    return best;
}

/* Positions the free slots keep for reuse (finished ones too, unless they are to
 * be wiped). */
static int cached_positions(const engine *e)
{
    int n = 0;
    for (int i = 0; i < e->n_slots; i++) {
        const slot *s = &e->slots[i];
        if (s->phase == SLOT_FREE || (s->phase == SLOT_DRAINING && e->cfg.prefix_cache))
            n += s->n_tokens;
    }
    return n;
}

/* Cuts the caches of free slots, least recently used first, until what they keep
 * and what running requests may fill fit in the pool. The cut positions are wiped
 * outside the lock (trim_free_slots). A prefix another admission is about to copy
 * may go too: the copy then takes what is left. */
static void make_room(engine *e)
{
    int excess = e->kv_reserved + cached_positions(e) - e->n_ctx_pool;
    while (excess > 0) {
        slot *victim = NULL;
        for (int i = 0; i < e->n_slots; i++) {
            slot *s = &e->slots[i];
            if (s->phase == SLOT_FREE && s->n_tokens > 0 && (!victim || s->last_used < victim->last_used))
                victim = s;
        }
        if (!victim)
            return; /* cannot happen: admission keeps kv_reserved within the pool */
        int cut = victim->n_tokens < excess ? victim->n_tokens : excess;
        victim->n_tokens -= cut;
        victim->trim = true;
        excess -= cut;
    }
}

static int free_slots(const engine *e)
{
    int n = 0;
    for (int i = 0; i < e->n_slots; i++)
        n += e->slots[i].phase == SLOT_FREE;
    return n;
}

/* The least recently used free slot. */
static slot *oldest_free_slot(engine *e)
{
    slot *best = NULL;
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (s->phase == SLOT_FREE && (!best || s->last_used < best->last_used))
            best = s;
    }
    return best;
}

static bool leads_group(const gen_request *r, int choice)
{
    return choice % r->group_size == 0;
}

static void assign_slot(engine *e, slot *s, gen_request *r, int choice)
{
    int group = choice / r->group_size;
    s->prompt = r->prompt + r->group_start[group];
    s->n_prompt = r->group_start[group + 1] - r->group_start[group];
    s->req = r;
    s->choice = choice;
    s->copy_from = leads_group(r, choice) ? prefix_source(e, s) : -1;
    s->phase = leads_group(r, choice) ? SLOT_INGEST : SLOT_SIBLING;
    s->last_used = ++e->admissions;
    s->batch_take = -1; /* marks it as new for begin_admitted */
    e->active_slots++;
}

/* Moves queued requests into free slots, in order: a request with n choices waits
 * until n slots are free and the pool has room for each choice's prompt plus its
 * max_tokens beside what running requests may fill (free slots' cached prefixes
 * give way). The first choice of each prompt's group reads the prompt. e->mu held. */
static void admit_locked(engine *e)
{
    while (e->queue_head) {
        gen_request *r = e->queue_head;
        if (free_slots(e) < r->n_choices)
            break;
        int need = r->kv_need;
        if (e->kv_reserved + need > e->n_ctx_pool)
            break;
        e->kv_reserved += need;
        e->queue_head = r->next;
        if (!e->queue_head)
            e->queue_tail = NULL;
        r->next = NULL;
        e->queue_len--;
        r->state = REQ_ACTIVE;
        r->active_choices = r->n_choices;
        for (int c = 0; c < r->n_choices; c++) {
            const int32_t *prompt = r->prompt + r->group_start[c / r->group_size];
            int n_prompt = r->group_start[c / r->group_size + 1] - r->group_start[c / r->group_size];
            assign_slot(e, leads_group(r, c) ? choose_slot(e, prompt, n_prompt) : oldest_free_slot(e), r, c);
        }
        make_room(e);
    }
    e->kv_cached = cached_positions(e);
}

/* Wipes what make_room cut from free slots' caches; outside the lock. */
static void trim_free_slots(engine *e)
{
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (!s->trim)
            continue;
        s->trim = false;
        int held = kv_cache_seq_len(e->kv, s->id);
        kv_cache_truncate(e->kv, s->id, s->n_tokens, true);
        if (held > s->n_tokens)
            explicit_bzero(s->tokens + s->n_tokens, (size_t)(held - s->n_tokens) * sizeof *s->tokens);
    }
}

static void mark_ending(slot *s, enum gen_finish finish)
{
    if (!s->ending) {
        s->ending = true;
        s->finish = finish;
    }
}

static bool same_group(const slot *a, const slot *b)
{
    return a->req == b->req && a->choice / a->req->group_size == b->choice / b->req->group_size;
}

/* Ends a slot's generation. A group's first choice that ends before its prompt was
 * read (an error, a cancel) takes the choices waiting for that prompt with it. */
static void slot_end(engine *e, slot *s, enum gen_finish finish)
{
    mark_ending(s, finish);
    if (!leads_group(s->req, s->choice) || s->phase != SLOT_INGEST)
        return;
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].req && same_group(&e->slots[i], s) && e->slots[i].phase == SLOT_SIBLING)
            mark_ending(&e->slots[i], finish);
}

static int set_logit_bias(sampler *smp, const gen_request *r, el_err *err)
{
    if (r->n_logit_bias == 0)
        return 0;
    int n = (int)r->n_logit_bias;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    float *bias = malloc((size_t)n * sizeof *bias);
    int rc = -1;
    if (ids && bias) {
        for (int i = 0; i < n; i++) {
            ids[i] = r->logit_bias[i].token;
            bias[i] = r->logit_bias[i].bias;
        }
        rc = sampler_set_logit_bias(smp, ids, bias, n, err);
    }
    free(ids);
    free(bias);
    return rc;
}

/* Copies the start of the prompt from the slot admission chose as the source, when
 * that slot holds more of it than keep (what s holds itself); returns the positions
 * s now holds of the prompt. Measured again here: the source may have moved on. */
static int copy_prefix_from(engine *e, slot *s, int keep)
{
    if (s->copy_from < 0)
        return keep;
    slot *src = &e->slots[s->copy_from];
    s->copy_from = -1;
    int len = common_prefix(src->tokens, src->n_tokens, s->prompt, s->n_prompt);
    if (len > s->n_prompt - 1)
        len = s->n_prompt - 1;
    if (len <= keep || kv_cache_seq_len(e->kv, src->id) < len)
        return keep;
    el_err err = {{0}};
    if (kv_cache_copy_prefix(e->kv, src->id, s->id, len, &err) < 0)
        return 0; /* s's own cache may be cut already: start clean */
    if (s->n_tokens > len)
        explicit_bzero(s->tokens + len, (size_t)(s->n_tokens - len) * sizeof *s->tokens);
    memcpy(s->tokens, src->tokens, (size_t)len * sizeof *s->tokens);
    s->n_tokens = len;
    return len;
}

/* Prepares a newly admitted slot: reuses the cached prefix (or starts clean), and
 * gives the request its sampler and detokenizer. */
static void slot_begin(engine *e, slot *s)
{
    const gen_request *r = s->req;
    int keep = 0;
    if (e->cfg.prefix_cache && leads_group(r, s->choice)) {
        keep = common_prefix(s->tokens, s->n_tokens, s->prompt, s->n_prompt);
        if (keep > s->n_prompt - 1)
            keep = s->n_prompt - 1; /* the last prompt token must be evaluated for its logits */
        keep = copy_prefix_from(e, s, keep);
    }
    /* wiped, so that the pool's pages follow what the slots hold (and no earlier
     * conversation's keys stay behind) */
    kv_cache_truncate(e->kv, s->id, keep, true);
    if (s->n_tokens > keep)
        explicit_bzero(s->tokens + keep, (size_t)(s->n_tokens - keep) * sizeof *s->tokens);
    s->n_tokens = keep;
    s->n_cached = keep;
    s->n_generated = 0;
    s->held_len = 0;
    s->emit_len = 0;
    s->ending = false;
    s->t_admit = engine_now_ms();
    s->t_first = -1;
    detokenizer_init(&s->detok, e->tok);
    /* The reply continues the prompt: its first token keeps its leading space. */
    s->detok.at_start = false;
    el_err err = {{0}};
    sampler_params sampling = r->sampling;
    sampling.seed += (uint64_t)s->choice; /* choices differ, and repeat with the seed */
    s->smp = sampler_create(e->n_vocab, &sampling, &err);
    if (!s->smp) {
        slot_end(e, s, GEN_FINISH_ERROR);
        return;
    }
    if (set_logit_bias(s->smp, r, &err) < 0 || constraint_slot_begin(e, s, &err) < 0) {
        slot_end(e, s, GEN_FINISH_ERROR);
        return;
    }
    for (int i = 0; i < s->n_prompt; i++)
        sampler_accept(s->smp, s->prompt[i]);
}

static void begin_admitted(engine *e)
{
    trim_free_slots(e);
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if ((s->phase == SLOT_INGEST || s->phase == SLOT_SIBLING) && s->batch_take < 0) {
            s->batch_take = 0;
            slot_begin(e, s);
        }
    }
}

/* ---- text ----------------------------------------------------------------------- */

static void emit_append(slot *s, const char *text, size_t len)
{
    size_t room = s->emit_cap - s->emit_len;
    if (NEVER(len > room)) /* the sizes chosen at load leave room; never overflow */
        len = room;
    memcpy(s->emit + s->emit_len, text, len);
    s->emit_len += len;
}

/* Passes new text through the stop-string filter; true when a stop string completed. */
static bool take_text(slot *s, const char *text, size_t len)
{
    size_t room = s->held_cap - s->held_len;
    if (NEVER(len > room)) /* held_cap covers the longest stop string and piece */
        len = room;
    memcpy(s->held + s->held_len, text, len);
    s->held_len += len;
    size_t cut;
    bool hit = stop_scan(&s->req->stop, s->held, s->held_len, &cut);
    emit_append(s, s->held, cut);
    if (hit) {
        explicit_bzero(s->held, s->held_len);
        s->held_len = 0;
        return true;
    }
    memmove(s->held, s->held + cut, s->held_len - cut);
    s->held_len -= cut;
    return false;
}

/* At the end of generation: what the detokenizer and the filter still hold is
 * text of the reply after all. Returns true if it completed a stop string. */
static bool flush_text(slot *s)
{
    size_t n = detokenizer_finish(&s->detok, s->piece, s->piece_cap);
    if (take_text(s, s->piece, n))
        return true;
    emit_append(s, s->held, s->held_len);
    explicit_bzero(s->held, s->held_len);
    s->held_len = 0;
    return false;
}

static bool is_stop_token(const engine *e, int32_t tok)
{
    for (size_t i = 0; i < e->n_stop_ids; i++)
        if (e->stop_ids[i] == tok)
            return true;
    return false;
}

static void record_logprob(const engine *e, slot *s, int32_t tok)
{
    gen_logprob *lp = &s->logprob;
    lp->token = tok;
    lp->n_top = s->req->top_logprobs;
    lp->logprob = sampler_logprobs(s->raw_logits, e->n_vocab, tok, lp->n_top, lp->top_token, lp->top_logprob);
    s->has_logprob = true;
}

static void handle_logits(engine *e, slot *s, float *logits);

/* The prompt of s's request has been read: its other choices copy the prompt's
 * cache and draw their first tokens from the same logits. */
static void start_siblings(engine *e, slot *first, const float *logits)
{
    const gen_request *r = first->req;
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (s->req != r || !same_group(s, first) || s->phase != SLOT_SIBLING || s->ending)
            continue;
        el_err err = {{0}};
        if (kv_cache_copy_prefix(e->kv, first->id, s->id, s->n_prompt, &err) < 0) {
            slot_end(e, s, GEN_FINISH_ERROR);
            continue;
        }
        memcpy(s->tokens, s->prompt, (size_t)s->n_prompt * sizeof *s->tokens);
        s->n_tokens = s->n_prompt;
        s->t_admit = first->t_admit;
        s->phase = SLOT_INGEST; /* handle_logits moves it on, as for the first */
        memcpy(e->sibling_logits, logits, (size_t)e->n_vocab * sizeof *logits);
        handle_logits(e, s, e->sibling_logits);
    }
}

/* Samples the slot's next token from its logits and turns it into text. */
static void handle_logits(engine *e, slot *s, float *logits)
{
    if (s->phase == SLOT_INGEST) {
        if (leads_group(s->req, s->choice) && s->req->group_size > 1)
            start_siblings(e, s, logits);
        s->phase = SLOT_GENERATE;
        s->t_first = engine_now_ms();
    }
    const gen_request *r = s->req;
    /* logprobs describe the model's own distribution: the sampler changes the logits */
    if (r->logprobs)
        memcpy(s->raw_logits, logits, (size_t)e->n_vocab * sizeof *logits);
    if (constraint_mask_logits(e, s, logits) < 0) {
        flush_text(s);
        slot_end(e, s, GEN_FINISH_ERROR);
        return;
    }
    int32_t tok = sampler_sample(s->smp, logits);
    sampler_accept(s->smp, tok);
    s->n_generated++;
    int grammar_state = constraint_accept(e, s, tok);
    if (grammar_state < 0) {
        flush_text(s);
        slot_end(e, s, GEN_FINISH_ERROR);
        return;
    }
    if (r->logprobs && !is_stop_token(e, tok))
        record_logprob(e, s, tok);
    if (is_stop_token(e, tok)) {
        flush_text(s);
        slot_end(e, s, GEN_FINISH_STOP);
        return;
    }
    if (tok >= 0 && tok < tokenizer_n_vocab(e->tok)) {
        size_t n = detokenizer_push(&s->detok, tok, s->piece, s->piece_cap);
        if (take_text(s, s->piece, n < s->piece_cap ? n : s->piece_cap)) {
            slot_end(e, s, GEN_FINISH_STOP);
            return;
        }
    }
    if (grammar_state == 1) { /* the answer is complete: only an end could follow */
        flush_text(s);
        slot_end(e, s, GEN_FINISH_STOP);
        return;
    }
    if (s->n_generated >= s->req->max_tokens || s->n_tokens >= e->n_ctx) {
        slot_end(e, s, flush_text(s) ? GEN_FINISH_STOP : GEN_FINISH_LENGTH);
        return;
    }
    s->next_token = tok;
}

/* ---- one step ----------------------------------------------------------------------- */

static bool slot_runs(const slot *s)
{
    return (s->phase == SLOT_INGEST || s->phase == SLOT_GENERATE) && !s->ending;
}

/* Shares `budget` prompt tokens among the slots still reading their prompts:
 * equal parts, with what one cannot use going to the others. */
static void share_prompt_budget(engine *e, int budget)
{
    int needing = 0;
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (slot_runs(s) && s->phase == SLOT_INGEST && s->n_tokens < s->n_prompt)
            needing++;
    }
    int start = e->round_robin;
    e->round_robin = (e->round_robin + 1) % e->n_slots;
    while (budget > 0 && needing > 0) {
        int share = budget / needing;
        if (share < 1)
            share = 1;
        needing = 0;
        for (int k = 0; k < e->n_slots && budget > 0; k++) {
            slot *s = &e->slots[(start + k) % e->n_slots];
            if (!slot_runs(s) || s->phase != SLOT_INGEST)
                continue;
            int remaining = s->n_prompt - s->n_tokens - s->batch_take;
            if (remaining <= 0)
                continue;
            int take = remaining < share ? remaining : share;
            if (take > budget)
                take = budget;
            s->batch_take += take;
            budget -= take;
            if (remaining > take)
                needing++;
        }
    }
}

static void batch_add(engine *e, int *n, int32_t token, int pos, int seq, bool want)
{
    e->batch_token[*n] = token;
    e->batch_pos[*n] = pos;
    e->batch_seq[*n] = seq;
    e->batch_want[*n] = want;
    (*n)++;
}

/* Prompt tokens a step may read beside n_generating decode tokens. Alone, a prompt
 * takes the whole batch; beside generating slots, chunks that keep the step near
 * ENGINE_STEP_TARGET_MS (or twice a decode-only step, when that is longer), so that
 * a long prompt neither stalls the running streams nor waits for them to end. */
static int prompt_budget(const engine *e, int n_generating)
{
    enum { FIRST_CHUNK = 64, MIN_CHUNK = 16 };
    int room = e->cfg.max_batch - n_generating;
    if (n_generating == 0)
        return room;
    int chunk = e->cfg.prompt_chunk;
    if (!chunk) {
        if (e->prompt_token_ms <= 0 || e->decode_step_ms <= 0) {
            chunk = FIRST_CHUNK;
        } else {
            double target = ENGINE_STEP_TARGET_MS;
            if (target < 2 * e->decode_step_ms)
                target = 2 * e->decode_step_ms;
            double fit = (target - e->decode_step_ms) / e->prompt_token_ms;
            chunk = fit < MIN_CHUNK ? MIN_CHUNK : fit > room ? room : (int)fit;
        }
    }
    return chunk < room ? chunk : room;
}

/* Learns from a step's time what decoding and prompt tokens cost (moving averages,
 * which a noisy machine needs). A prompt token's cost comes from steps that read
 * at least MIN_LEARNING_BATCH prompt tokens: alone, or beside decoding, less the
 * decode-only step's time. Learnt from smaller chunks (less efficient per token) it
 * would shrink the chunks, which would look costlier still; learnt from prompt-only
 * steps alone it stayed unknown, and the chunks at FIRST_CHUNK, whenever the
 * streams' prompts were short or arrived together (steps of 2-3x the target under
 * bench/concurrency.sh --long, against the target once learnt). */
static void learn_step_cost(engine *e, int n_generating, int n_prompt, double ms)
{
    enum { MIN_LEARNING_BATCH = 32 };
    const double keep = 0.7;
    if (n_prompt == 0) {
        e->decode_step_ms = e->decode_step_ms > 0 ? keep * e->decode_step_ms + (1 - keep) * ms : ms;
        return;
    }
    if (n_prompt < MIN_LEARNING_BATCH)
        return;
    double prompt_ms = ms;
    if (n_generating > 0) {
        if (e->decode_step_ms <= 0 || ms <= e->decode_step_ms)
            return;
        prompt_ms = ms - e->decode_step_ms;
    }
    double per_token = prompt_ms / n_prompt;
    e->prompt_token_ms = e->prompt_token_ms > 0 ? keep * e->prompt_token_ms + (1 - keep) * per_token : per_token;
}

/* Fills the batch; returns its token count. Rows of logits follow batch order. */
static int build_batch(engine *e, int *n_generating)
{
    int n = 0, rows = 0;
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        s->logits_row = -1;
        s->batch_take = 0;
        if (slot_runs(s) && s->phase == SLOT_GENERATE) {
            batch_add(e, &n, s->next_token, s->n_tokens, s->id, true);
            s->logits_row = rows++;
        }
    }
    *n_generating = n;
    share_prompt_budget(e, prompt_budget(e, n));
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (!slot_runs(s) || s->phase != SLOT_INGEST || s->batch_take == 0)
            continue;
        for (int k = 0; k < s->batch_take; k++)
            batch_add(e, &n, s->prompt[s->n_tokens + k], s->n_tokens + k, s->id, false);
        if (s->n_tokens + s->batch_take == s->n_prompt) {
            e->batch_want[n - 1] = true;
            s->logits_row = rows++;
        }
    }
    return n;
}

/* Records what the batch put into each slot's cache. */
static void commit_batch(engine *e, int n)
{
    for (int i = 0; i < n; i++) {
        slot *s = &e->slots[e->batch_seq[i]];
        s->tokens[e->batch_pos[i]] = e->batch_token[i];
        if (e->batch_pos[i] + 1 > s->n_tokens)
            s->n_tokens = e->batch_pos[i] + 1;
    }
}

static void run_step(engine *e)
{
    int n_generating;
    int n = build_batch(e, &n_generating);
    if (n == 0)
        return;
    double t0 = engine_now_ms();
    model_batch batch = {.n_tokens = n,
                         .token = e->batch_token,
                         .pos = e->batch_pos,
                         .seq = e->batch_seq,
                         .want_logits = e->batch_want};
    el_err err = {{0}};
    int rc = model_forward(e->mctx, e->kv, &batch, e->logits, &err);
    if (rc < 0 || !engine_model_intact(e, &err)) {
        for (int i = 0; i < e->n_slots; i++)
            if (slot_runs(&e->slots[i]) && (e->slots[i].logits_row >= 0 || e->slots[i].batch_take > 0))
                slot_end(e, &e->slots[i], GEN_FINISH_ERROR);
        return;
    }
    learn_step_cost(e, n_generating, n - n_generating, engine_now_ms() - t0);
    commit_batch(e, n);
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (slot_runs(s) && s->logits_row >= 0)
            handle_logits(e, s, e->logits + (size_t)s->logits_row * (size_t)e->n_vocab);
    }
}

/* ---- handing results over ------------------------------------------------------------ */

/* One choice ended: the request is done when its last choice is. */
static void slot_end_locked(engine *e, slot *s)
{
    gen_request *r = s->req;
    double now = engine_now_ms();
    /* the matcher reads the request's grammar, which goes with the request */
    constraint_slot_end(s);
    choice_out *c = &r->choice[s->choice];
    c->finish = s->finish;
    c->completion_tokens = s->n_generated;
    c->end_pending = r->n_choices > 1;
    r->completion_total += s->n_generated;
    e->completion_tokens_total += (uint64_t)s->n_generated;
    if (s->choice == 0) {
        bool started = s->t_first >= 0;
        r->done_ev = (gen_event){.kind = GEN_EVENT_DONE,
                                 .finish = s->finish,
                                 .prompt_tokens = r->n_prompt,
                                 .queue_ms = s->t_admit - r->t_submit,
                                 .prompt_ms = (started ? s->t_first : now) - s->t_admit,
                                 .generate_ms = started ? now - s->t_first : 0};
        e->prompt_tokens_total += (uint64_t)r->n_prompt;
    }
    if (leads_group(r, s->choice)) {
        r->cached_total += s->n_cached;
        e->cached_tokens_total += (uint64_t)s->n_cached;
    }
    e->active_slots--;
    e->kv_reserved -= s->n_prompt + r->max_tokens;
    s->req = NULL;
    s->ending = false;
    s->phase = SLOT_DRAINING;
    e->kv_cached = cached_positions(e);
    if (--r->active_choices > 0) {
        if (c->end_pending)
            request_wake_locked(r); /* its CHOICE_END */
        return;
    }
    gen_event done = r->done_ev;
    done.completion_tokens = r->completion_total;
    done.cached_tokens = r->cached_total;
    if (r->n_choices > 1 && done.generate_ms > 0) /* to the last choice's end */
        done.generate_ms = now - (r->t_submit + done.queue_ms + done.prompt_ms);
    request_finish_locked(r, &done);
    if (r->released) {
        request_destroy_locked(r);
        engine_unref_locked(e); /* never the last: the owner's reference outlives the scheduler */
    }
}

static void mark_cancelled_locked(engine *e)
{
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (s->req && s->req->cancelled)
            slot_end(e, s, GEN_FINISH_CANCELLED);
    }
}

static void publish_locked(engine *e)
{
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (!s->req)
            continue;
        if (s->has_logprob) {
            if (request_append_logprob_locked(s->req, s->choice, &s->logprob) < 0)
                slot_end(e, s, GEN_FINISH_ERROR);
            explicit_bzero(&s->logprob, sizeof s->logprob);
            s->has_logprob = false;
        }
        if (s->emit_len) {
            if (request_append_locked(s->req, s->choice, s->emit, s->emit_len) < 0)
                slot_end(e, s, GEN_FINISH_ERROR);
            explicit_bzero(s->emit, s->emit_len);
            s->emit_len = 0;
        }
        if (s->ending)
            slot_end_locked(e, s);
    }
}

/* Wipes what a finished request left in its slot; outside the lock. */
static bool clean_drained(engine *e)
{
    bool any = false;
    for (int i = 0; i < e->n_slots; i++) {
        slot *s = &e->slots[i];
        if (s->phase != SLOT_DRAINING)
            continue;
        any = true;
        sampler_free(s->smp);
        s->smp = NULL;
        constraint_slot_end(s);
        explicit_bzero(&s->detok, sizeof s->detok);
        explicit_bzero(s->piece, s->piece_cap);
        explicit_bzero(s->held, s->held_cap);
        s->held_len = 0;
        if (!e->cfg.prefix_cache) {
            kv_cache_truncate(e->kv, s->id, 0, true);
            explicit_bzero(s->tokens, (size_t)e->n_ctx * sizeof *s->tokens);
            s->n_tokens = 0;
        } else if (kv_cache_seq_len(e->kv, s->id) != s->n_tokens) {
            /* a failed evaluation: trust neither side */
            kv_cache_truncate(e->kv, s->id, 0, true);
            s->n_tokens = 0;
        }
        s->phase = SLOT_FREE;
    }
    return any;
}

static bool any_draining(const engine *e)
{
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].phase == SLOT_DRAINING)
            return true;
    return false;
}

void scheduler_run(engine *e)
{
    pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        mark_cancelled_locked(e);
        publish_locked(e);
        if (any_draining(e)) {
            pthread_mutex_unlock(&e->mu);
            clean_drained(e);
            pthread_mutex_lock(&e->mu);
            continue;
        }
        admit_locked(e);
        if (e->active_slots == 0) {
            pthread_cond_wait(&e->sched_cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        begin_admitted(e);
        run_step(e);
        pthread_mutex_lock(&e->mu);
        publish_locked(e);
    }
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].req)
            slot_end(e, &e->slots[i], GEN_FINISH_CANCELLED);
    publish_locked(e);
    pthread_mutex_unlock(&e->mu);
    clean_drained(e);
}
