#include "sampler/sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "base/invariant.h"
#include "base/rng.h"

typedef struct candidate {
    float logit;
    int32_t id;
} candidate;

struct sampler {
    int n_vocab;
    sampler_params params;
    el_rng rng;
    int32_t *recent;      /* ring of the last penalty_last_n accepted tokens */
    int n_recent;
    int recent_next;      /* where the next accepted token goes */
    int32_t *window_sorted; /* scratch for counting repeats */
    candidate *cand;      /* scratch, n_vocab entries */
    int32_t *bias_ids;    /* logit_bias */
    float *bias;
    int n_bias;
};

/* ---- parameters ------------------------------------------------------------- */

static uint64_t os_random_seed(void)
{
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, 0) == (ssize_t)sizeof seed)
        return seed;
    /* Without the OS source a varying seed is still better than a fixed one. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 16);
}

void sampler_params_default(sampler_params *p)
{
    p->temperature = 1.0f;
    p->top_p = 1.0f;
    p->top_k = 0;
    p->min_p = 0.0f;
    p->repetition_penalty = 1.0f;
    p->presence_penalty = 0.0f;
    p->frequency_penalty = 0.0f;
    p->penalty_last_n = 64;
    p->seed = os_random_seed();
}

static bool in_closed_range(float v, float lo, float hi)
{
    return isfinite(v) && v >= lo && v <= hi;
}

int sampler_params_validate(const sampler_params *p, el_err *err)
{
    if (!in_closed_range(p->temperature, 0.0f, 2.0f))
        return el_fail(err, "temperature must be between 0 and 2");
    if (!in_closed_range(p->top_p, 0.0f, 1.0f) || p->top_p == 0.0f)
        return el_fail(err, "top_p must be greater than 0 and at most 1");
    if (p->top_k < 0)
        return el_fail(err, "top_k must be 0 (off) or a positive number");
    if (!in_closed_range(p->min_p, 0.0f, 1.0f))
        return el_fail(err, "min_p must be between 0 and 1");
    if (!in_closed_range(p->repetition_penalty, 0.0f, 10.0f) || p->repetition_penalty == 0.0f)
        return el_fail(err, "repetition_penalty must be greater than 0 and at most 10");
    if (!in_closed_range(p->presence_penalty, -2.0f, 2.0f))
        return el_fail(err, "presence_penalty must be between -2 and 2");
    if (!in_closed_range(p->frequency_penalty, -2.0f, 2.0f))
        return el_fail(err, "frequency_penalty must be between -2 and 2");
    if (p->penalty_last_n < 0 || p->penalty_last_n > SAMPLER_MAX_PENALTY_LAST_N)
        return el_fail(err, "penalty_last_n must be between 0 and %d", SAMPLER_MAX_PENALTY_LAST_N);
    return 0;
}

/* ---- lifetime ----------------------------------------------------------------- */

sampler *sampler_create(int n_vocab, const sampler_params *p, el_err *err)
{
    if (n_vocab <= 0 || n_vocab > SAMPLER_MAX_VOCAB) {
        el_fail(err, "vocabulary size %d is out of range (1 to %d)", n_vocab, SAMPLER_MAX_VOCAB);
        return NULL;
    }
    if (sampler_params_validate(p, err) < 0)
        return NULL;
    sampler *s = calloc(1, sizeof *s);
    if (!s) {
        el_fail(err, "out of memory creating a sampler");
        return NULL;
    }
    s->n_vocab = n_vocab;
    s->params = *p;
    el_rng_seed(&s->rng, p->seed);
    size_t window = (size_t)p->penalty_last_n;
    s->recent = malloc((window ? window : 1) * sizeof *s->recent);
    s->window_sorted = malloc((window ? window : 1) * sizeof *s->window_sorted);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->recent || !s->window_sorted || !s->cand) {
        sampler_free(s);
        el_fail(err, "out of memory creating a sampler for %d tokens", n_vocab);
        return NULL;
    }
    return s;
}

void sampler_free(sampler *s)
{
    if (!s)
        return;
    /* The history holds prompt token ids, which say what the user wrote. */
    size_t window = s->params.penalty_last_n > 0 ? (size_t)s->params.penalty_last_n : 1;
    if (s->recent)
        explicit_bzero(s->recent, window * sizeof *s->recent);
    if (s->window_sorted)
        explicit_bzero(s->window_sorted, window * sizeof *s->window_sorted);
    free(s->recent);
    free(s->window_sorted);
    free(s->cand);
    free(s->bias_ids);
    free(s->bias);
    free(s);
}

void sampler_accept(sampler *s, int32_t token)
{
    int window = s->params.penalty_last_n;
    if (window == 0 || token < 0 || token >= s->n_vocab)
        return;
    s->recent[s->recent_next] = token;
    s->recent_next = (s->recent_next + 1) % window;
    if (s->n_recent < window)
        s->n_recent++;
}

int sampler_set_logit_bias(sampler *s, const int32_t *ids, const float *bias, int n, el_err *err)
{
    if (n < 0 || (n > 0 && (!ids || !bias)))
        return el_fail(err, "logit_bias: no entries given");
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= s->n_vocab)
            return el_fail(err, "logit_bias: token %d is not in the vocabulary (0 to %d)", (int)ids[i],
                           s->n_vocab - 1);
        if (!isfinite(bias[i]))
            return el_fail(err, "logit_bias: the bias of token %d is not a finite number", (int)ids[i]);
    }
    int32_t *new_ids = malloc((size_t)(n ? n : 1) * sizeof *new_ids);
    float *new_bias = malloc((size_t)(n ? n : 1) * sizeof *new_bias);
    if (!new_ids || !new_bias) {
        free(new_ids);
        free(new_bias);
        return el_fail(err, "logit_bias: out of memory");
    }
    if (n) {
        memcpy(new_ids, ids, (size_t)n * sizeof *ids);
        memcpy(new_bias, bias, (size_t)n * sizeof *bias);
    }
    free(s->bias_ids);
    free(s->bias);
    s->bias_ids = new_ids;
    s->bias = new_bias;
    s->n_bias = n;
    return 0;
}

static void apply_logit_bias(const sampler *s, float *logits)
{
    for (int i = 0; i < s->n_bias; i++)
        logits[s->bias_ids[i]] += s->bias[i];
}

/* ---- penalties ------------------------------------------------------------------- */

static bool penalties_active(const sampler_params *p)
{
    return p->repetition_penalty != 1.0f || p->presence_penalty != 0.0f ||
           p->frequency_penalty != 0.0f;
}

static int compare_tokens(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void penalize(const sampler_params *p, float *logit, int count)
{
    float rep = p->repetition_penalty;
    if (rep != 1.0f)
        *logit = *logit > 0.0f ? *logit / rep : *logit * rep;
    *logit -= p->presence_penalty + p->frequency_penalty * (float)count;
}

/* Each distinct token in the window is penalized once, by its count: sorting a
 * copy of the window groups the repeats without a vocabulary-sized table. */
static void apply_penalties(sampler *s, float *logits)
{
    if (s->n_recent == 0 || !penalties_active(&s->params))
        return;
    int n = s->n_recent;
    memcpy(s->window_sorted, s->recent, (size_t)n * sizeof *s->window_sorted);
    qsort(s->window_sorted, (size_t)n, sizeof *s->window_sorted, compare_tokens);
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && s->window_sorted[j] == s->window_sorted[i])
            j++;
        penalize(&s->params, &logits[s->window_sorted[i]], j - i);
        i = j;
    }
}

/* ---- selection ------------------------------------------------------------------------ */

/* Replaces NaN by -inf and +inf by the largest float, so that the arithmetic below
 * stays finite, and returns the first index of the largest logit. */
static int sanitize_and_argmax(float *logits, int n)
{
    int best = 0;
    float best_value = -INFINITY;
    for (int i = 0; i < n; i++) {
        float v = logits[i];
        if (isnan(v))
            logits[i] = v = -INFINITY;
        else if (v == INFINITY)
            logits[i] = v = FLT_MAX;
        if (v > best_value) {
            best_value = v;
            best = i;
        }
    }
    return best;
}

/* Higher logit first; the lower id wins ties, so every ordering is total. */
static bool ranks_above(candidate a, candidate b)
{
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

static int compare_candidates(const void *a, const void *b)
{
    candidate x = *(const candidate *)a, y = *(const candidate *)b;
    return ranks_above(x, y) ? -1 : ranks_above(y, x) ? 1 : 0;
}

/* heap[0] is the lowest-ranked of the kept candidates. */
static void sift_down(candidate *heap, int n, int i)
{
    for (;;) {
        int lowest = i, l = 2 * i + 1, r = l + 1;
        if (l < n && ranks_above(heap[lowest], heap[l]))
            lowest = l;
        if (r < n && ranks_above(heap[lowest], heap[r]))
            lowest = r;
        if (lowest == i)
            return;
        candidate t = heap[i];
        heap[i] = heap[lowest];
        heap[lowest] = t;
        i = lowest;
    }
}

static void sift_up(candidate *heap, int i)
{
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!ranks_above(heap[parent], heap[i]))
            return;
        candidate t = heap[i];
        heap[i] = heap[parent];
        heap[parent] = t;
        i = parent;
    }
}

/* The k best tokens, best first, in out[0..k) (NaN ranks as -inf): a bounded heap
 * costs O(n log k) instead of sorting the whole vocabulary. */
static void select_best(const float *logits, int n, int k, candidate *out)
{
    int size = 0;
    for (int i = 0; i < n && k > 0; i++) {
        candidate c = {isnan(logits[i]) ? -INFINITY : logits[i], i};
        if (size < k) {
            out[size] = c;
            sift_up(out, size++);
        } else if (ranks_above(c, out[0])) {
            out[0] = c;
            sift_down(out, size, 0);
        }
    }
    qsort(out, (size_t)size, sizeof *out, compare_candidates);
}

/* ---- drawing ---------------------------------------------------------------------------- */
/* The draws work on scaled logits, (logit - max) / temperature: the best is 0 and a
 * token's unnormalized probability is expf(scaled). Dividing (rather than
 * multiplying by 1/T) keeps a subnormal temperature from giving 0 * inf. */

static double uniform_double(el_rng *rng)
{
    return (double)(el_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

static void scale_logits(float *logits, int n, float max_logit, float temperature)
{
    for (int i = 0; i < n; i++)
        logits[i] = (logits[i] - max_logit) / temperature;
}

/* min_floor: log(min_p), below which a scaled logit fails min-p (-inf when off). */
static double weight_of(float scaled, float min_floor)
{
    return scaled < min_floor ? 0.0 : (double)expf(scaled);
}

/* Draws from the whole vocabulary (min-p aside) without ordering it: one pass
 * turns logits into weights in place, then a scan finds where the draw lands. */
static int32_t draw_from_vocab(sampler *s, float *logits, float max_logit, float min_floor)
{
    int n = s->n_vocab;
    float temperature = s->params.temperature;
    double total = 0;
    for (int i = 0; i < n; i++) {
        float w = (float)weight_of((logits[i] - max_logit) / temperature, min_floor);
        logits[i] = w;
        total += w;
    }
    const float *weights = logits;
    double target = uniform_double(&s->rng) * total, cum = 0;
    int32_t last = 0;
    for (int i = 0; i < n; i++) {
        if (weights[i] <= 0.0f)
            continue;
        cum += weights[i];
        last = i;
        if (target < cum)
            return i;
    }
    return last; /* rounding left the target at the very top */
}

static int32_t draw_from_candidates(sampler *s, int n, float min_floor)
{
    double total = 0;
    for (int i = 0; i < n; i++)
        total += weight_of(s->cand[i].logit, min_floor);
    double target = uniform_double(&s->rng) * total, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += weight_of(s->cand[i].logit, min_floor);
        if (target < cum)
            return s->cand[i].id;
    }
    return s->cand[n - 1].id;
}

/* Length of the shortest best-first prefix whose probability (out of total)
 * reaches top_p, or 0 when these n candidates do not reach it. */
static int top_p_prefix(const candidate *cand, int n, double top_p)
{
    double total = 0, cum = 0;
    for (int i = 0; i < n; i++)
        total += expf(cand[i].logit);
    for (int i = 0; i < n; i++) {
        cum += expf(cand[i].logit) / total;
        if (cum >= top_p)
            return i + 1;
    }
    return 0;
}

/* Candidates past the first one that fails min-p carry no weight: drop them. */
static int min_p_prefix(const candidate *cand, int n, float min_floor)
{
    int kept = 1; /* the best token always passes */
    while (kept < n && cand[kept].logit >= min_floor)
        kept++;
    return kept;
}

/* Top-p over the whole vocabulary without sorting it. A histogram of the scaled
 * logits (mass and count per bucket, best bucket first) finds the bucket where the
 * cumulative mass crosses top_p; every token in a better bucket is kept unsorted,
 * and only the boundary bucket is sorted to find the exact cut. */
enum { TOP_P_BUCKETS = 1024 };
#define TOP_P_RANGE 40.0f /* scaled logits this far below the best share the last bucket */

static int bucket_of(float scaled)
{
    float below = -scaled;
    if (!(below < TOP_P_RANGE))
        return TOP_P_BUCKETS - 1;
    int b = (int)(below * (TOP_P_BUCKETS / TOP_P_RANGE));
    return b < TOP_P_BUCKETS - 1 ? b : TOP_P_BUCKETS - 1;
}

typedef struct nucleus {
    int boundary;        /* tokens in buckets before this one are all kept */
    candidate last_kept; /* in the boundary bucket, tokens ranking at or above this are kept */
    double kept_weight;  /* total min-p weight of the kept tokens */
} nucleus;

static bool in_nucleus(const nucleus *nu, float scaled, int32_t id)
{
    int b = bucket_of(scaled);
    if (b != nu->boundary)
        return b < nu->boundary;
    candidate c = { scaled, id };
    return !ranks_above(nu->last_kept, c);
}

static nucleus find_nucleus(sampler *s, const float *scaled, float min_floor)
{
    static const int nb = TOP_P_BUCKETS;
    double mass[TOP_P_BUCKETS] = { 0 }, kept_mass[TOP_P_BUCKETS] = { 0 };
    int count[TOP_P_BUCKETS] = { 0 };
    double total = 0;
    for (int i = 0; i < s->n_vocab; i++) {
        int b = bucket_of(scaled[i]);
        double w = expf(scaled[i]);
        mass[b] += w;
        if (scaled[i] >= min_floor)
            kept_mass[b] += w;
        count[b]++;
        total += w;
    }
    nucleus nu = { .boundary = nb - 1 };
    double before = 0, target = s->params.top_p * total;
    for (int b = 0; b < nb; b++) {
        if (count[b] && before + mass[b] >= target) {
            nu.boundary = b;
            break;
        }
        before += mass[b];
        nu.kept_weight += kept_mass[b];
    }
    while (nu.boundary > 0 && count[nu.boundary] == 0) /* rounding fell short: keep all */
        nu.boundary--;
    int n = 0;
    for (int i = 0; i < s->n_vocab; i++)
        if (bucket_of(scaled[i]) == nu.boundary)
            s->cand[n++] = (candidate){ scaled[i], i };
    qsort(s->cand, (size_t)n, sizeof *s->cand, compare_candidates);
    int m = 0;
    while (m < n) {
        before += expf(s->cand[m].logit);
        nu.kept_weight += weight_of(s->cand[m].logit, min_floor);
        m++;
        if (before >= target)
            break;
    }
    nu.last_kept = s->cand[m - 1];
    return nu;
}

static int32_t draw_from_nucleus(sampler *s, const float *scaled, float min_floor)
{
    nucleus nu = find_nucleus(s, scaled, min_floor);
    double target = uniform_double(&s->rng) * nu.kept_weight, cum = 0;
    int32_t last = nu.last_kept.id;
    for (int i = 0; i < s->n_vocab; i++) {
        if (scaled[i] < min_floor || !in_nucleus(&nu, scaled[i], i))
            continue;
        double w = expf(scaled[i]);
        if (w <= 0.0)
            continue;
        cum += w;
        last = i;
        if (target < cum)
            return i;
    }
    return last;
}

static int32_t sample_stochastic(sampler *s, float *logits, float max_logit)
{
    const sampler_params *p = &s->params;
    int n = s->n_vocab;
    float min_floor = p->min_p > 0.0f ? logf(p->min_p) : -INFINITY;
    bool top_k_restricts = p->top_k > 0 && p->top_k < n;
    bool top_p_restricts = p->top_p < 1.0f;
    if (!top_k_restricts && !top_p_restricts)
        return draw_from_vocab(s, logits, max_logit, min_floor);
    if (!top_k_restricts) {
        scale_logits(logits, n, max_logit, p->temperature);
        return draw_from_nucleus(s, logits, min_floor);
    }
    /* Top-k does not depend on the temperature: select first, scale only k. */
    select_best(logits, n, p->top_k, s->cand);
    for (int i = 0; i < p->top_k; i++)
        s->cand[i].logit = (s->cand[i].logit - max_logit) / p->temperature;
    int kept = p->top_k;
    if (top_p_restricts) {
        int prefix = top_p_prefix(s->cand, kept, p->top_p);
        if (prefix > 0)
            kept = prefix;
    }
    kept = min_p_prefix(s->cand, kept, min_floor);
    return draw_from_candidates(s, kept, min_floor);
}

int32_t sampler_sample(sampler *s, float *logits)
{
    apply_logit_bias(s, logits);
    apply_penalties(s, logits);
    int best = sanitize_and_argmax(logits, s->n_vocab);
    float max_logit = logits[best];
    if (s->params.temperature == 0.0f || max_logit == -INFINITY)
        return best;
    return sample_stochastic(s, logits, max_logit);
}

/* ---- log-probabilities ------------------------------------------------------------------ */

float sampler_logprobs(const float *logits, int n_vocab, int32_t token, int k, int32_t *top_ids,
                       float *top_logprobs)
{
    float max_logit = -INFINITY;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > max_logit) /* false for NaN */
            max_logit = logits[i];
    if (max_logit == -INFINITY) { /* nothing possible: every log-probability is -inf */
        for (int i = 0; i < k && i < SAMPLER_MAX_TOP_LOGPROBS; i++) {
            top_ids[i] = i < n_vocab ? i : 0;
            top_logprobs[i] = -INFINITY;
        }
        return -INFINITY;
    }
    double sum = 0;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > -INFINITY)
            sum += exp((double)logits[i] - max_logit);
    float log_total = (float)(max_logit + log(sum));
    if (k > n_vocab)
        k = n_vocab;
    if (NEVER(k > SAMPLER_MAX_TOP_LOGPROBS)) /* the caller's promise */
        k = SAMPLER_MAX_TOP_LOGPROBS;
    candidate best[SAMPLER_MAX_TOP_LOGPROBS];
    select_best(logits, n_vocab, k, best);
    for (int i = 0; i < k; i++) {
        top_ids[i] = best[i].id;
        top_logprobs[i] = best[i].logit - log_total;
    }
    if (token < 0 || token >= n_vocab || isnan(logits[token]))
        return -INFINITY;
    return logits[token] - log_total;
}

int sampler_top_ids(const float *logits, int n_vocab, int k, int32_t *ids)
{
    EL_ASSERT(k >= 0 && k <= n_vocab);
    candidate *best = malloc((size_t)(k > 0 ? k : 1) * sizeof *best);
    if (!best)
        return -1;
    select_best(logits, n_vocab, k, best);
    for (int i = 0; i < k; i++)
        ids[i] = best[i].id;
    free(best);
    return 0;
}
