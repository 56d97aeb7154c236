#include <stdint.h>

#include "base/rng.h"
#include "sampler/sampler.h"
#include "test.h"

static sampler_params params_with(float temperature, uint64_t seed)
{
    sampler_params p;
    sampler_params_default(&p);
    p.temperature = temperature;
    p.seed = seed;
    return p;
}

/* Samples once from a copy of logits (the sampler scribbles on its input). */
static int32_t sample_copy(sampler *s, const float *logits, int n)
{
    float buf[64];
    memcpy(buf, logits, (size_t)n * sizeof *buf);
    return sampler_sample(s, buf);
}

static void count_draws(const sampler_params *p, const float *logits, int n, int draws, int *counts)
{
    sampler *s = sampler_create(n, p, NULL);
    CHECK(s != NULL);
    if (!s)
        return;
    memset(counts, 0, (size_t)n * sizeof *counts);
    for (int i = 0; i < draws; i++) {
        int32_t t = sample_copy(s, logits, n);
        CHECK(t >= 0 && t < n);
        if (t >= 0 && t < n)
            counts[t]++;
    }
    sampler_free(s);
}

static void softmax(const float *logits, int n, double temperature, double *probs)
{
    double max = logits[0], sum = 0;
    for (int i = 1; i < n; i++)
        max = logits[i] > max ? logits[i] : max;
    for (int i = 0; i < n; i++)
        sum += probs[i] = exp((logits[i] - max) / temperature);
    for (int i = 0; i < n; i++)
        probs[i] /= sum;
}

/* Pearson's statistic over the tokens with non-zero expected probability. */
static double chi_square(const int *counts, const double *probs, int n, int draws)
{
    double chi = 0;
    for (int i = 0; i < n; i++) {
        if (probs[i] <= 0)
            continue;
        double expected = probs[i] * draws;
        chi += (counts[i] - expected) * (counts[i] - expected) / expected;
    }
    return chi;
}

static void test_greedy_picks_argmax(void)
{
    sampler_params p = params_with(0.0f, 1);
    sampler *s = sampler_create(4, &p, NULL);
    float a[] = { 1.0f, 5.0f, 3.0f, -2.0f };
    CHECK_EQ_INT(sample_copy(s, a, 4), 1);
    float b[] = { -3.0f, -1.0f, -2.0f, -7.0f };
    CHECK_EQ_INT(sample_copy(s, b, 4), 1);
    sampler_free(s);
}

static void test_greedy_ties_lowest_id(void)
{
    sampler_params p = params_with(0.0f, 1);
    sampler *s = sampler_create(5, &p, NULL);
    float a[] = { 2.0f, 7.0f, 1.0f, 7.0f, 7.0f };
    CHECK_EQ_INT(sample_copy(s, a, 5), 1);
    float flat[] = { 0, 0, 0, 0, 0 };
    CHECK_EQ_INT(sample_copy(s, flat, 5), 0);
    sampler_free(s);
}

static void test_nan_and_inf_logits(void)
{
    sampler_params p = params_with(0.0f, 1);
    sampler *s = sampler_create(3, &p, NULL);
    float a[] = { NAN, 1.0f, NAN };
    CHECK_EQ_INT(sample_copy(s, a, 3), 1);
    sampler_free(s);
    p = params_with(1.0f, 3);
    s = sampler_create(3, &p, NULL);
    for (int i = 0; i < 50; i++) {
        CHECK_EQ_INT(sample_copy(s, a, 3), 1);
        float b[] = { 0.0f, INFINITY, 2.0f };
        CHECK_EQ_INT(sample_copy(s, b, 3), 1);
    }
    float all_dead[] = { NAN, -INFINITY, NAN };
    CHECK_EQ_INT(sample_copy(s, all_dead, 3), 0);
    sampler_free(s);
}

static void random_logits(float *out, int n, uint64_t seed, float scale)
{
    el_rng rng;
    el_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++)
        out[i] = el_rng_normal(&rng) * scale;
}

static void draw_sequence(const sampler_params *p, const float *logits, int n, int len, int32_t *out)
{
    sampler *s = sampler_create(n, p, NULL);
    for (int i = 0; i < len; i++) {
        out[i] = sample_copy(s, logits, n);
        sampler_accept(s, out[i]);
    }
    sampler_free(s);
}

static void test_same_seed_same_tokens(void)
{
    float logits[50];
    random_logits(logits, 50, 7, 1.0f);
    sampler_params p = params_with(0.9f, 1234);
    p.top_p = 0.95f;
    p.presence_penalty = 0.2f;
    int32_t a[200], b[200];
    draw_sequence(&p, logits, 50, 200, a);
    draw_sequence(&p, logits, 50, 200, b);
    CHECK(memcmp(a, b, sizeof a) == 0);
}

static void test_different_seeds_differ(void)
{
    float logits[50];
    random_logits(logits, 50, 7, 1.0f);
    sampler_params p = params_with(1.0f, 1);
    sampler_params q = params_with(1.0f, 2);
    int32_t a[200], b[200];
    draw_sequence(&p, logits, 50, 200, a);
    draw_sequence(&q, logits, 50, 200, b);
    int differing = 0;
    for (int i = 0; i < 200; i++)
        differing += a[i] != b[i];
    CHECKF(differing > 100, "only %d of 200 tokens differ", differing);
}

static void test_default_params(void)
{
    sampler_params a, b;
    sampler_params_default(&a);
    sampler_params_default(&b);
    CHECK(a.temperature == 1.0f && a.top_p == 1.0f && a.top_k == 0 && a.min_p == 0.0f);
    CHECK(a.repetition_penalty == 1.0f && a.presence_penalty == 0.0f && a.frequency_penalty == 0.0f);
    CHECK(a.seed != b.seed); /* two 64-bit draws from the OS collide with chance 2^-64 */
    CHECK(sampler_params_validate(&a, NULL) == 0);
}

/* With a fixed seed this is deterministic; the bound is the 0.1% critical value of
 * chi-square with n-1 degrees of freedom, so a correct sampler passes it for
 * essentially every seed, while a wrong temperature or an off-by-one does not. */
static void check_follows_softmax(float temperature, uint64_t seed)
{
    const float logits[6] = { 0.0f, 1.0f, 2.0f, 0.5f, -1.0f, 1.5f };
    const int draws = 30000;
    double probs[6];
    int counts[6];
    softmax(logits, 6, temperature, probs);
    sampler_params p = params_with(temperature, seed);
    count_draws(&p, logits, 6, draws, counts);
    double chi = chi_square(counts, probs, 6, draws);
    CHECKF(chi < 20.52, "T=%g chi-square %.2f", temperature, chi);
}

static void test_frequencies_follow_softmax(void)
{
    check_follows_softmax(1.0f, 11);
    check_follows_softmax(0.5f, 12);
    check_follows_softmax(1.7f, 13);
    /* The statistic does detect a wrong temperature. */
    const float logits[6] = { 0.0f, 1.0f, 2.0f, 0.5f, -1.0f, 1.5f };
    double wrong[6];
    int counts[6];
    softmax(logits, 6, 1.0, wrong);
    sampler_params p = params_with(0.7f, 14);
    count_draws(&p, logits, 6, 30000, counts);
    CHECK(chi_square(counts, wrong, 6, 30000) > 100);
}

static void test_tiny_temperature_is_greedy(void)
{
    const float logits[5] = { 1.0f, 3.0f, 2.999f, -1.0f, 3.0f };
    sampler_params p = params_with(1e-40f, 71) /* subnormal: 1/T overflows */;
    int counts[5];
    count_draws(&p, logits, 5, 200, counts);
    CHECK_EQ_INT(counts[1] + counts[4], 200); /* the two tied best, nothing else */
    p.top_p = 0.5f;
    count_draws(&p, logits, 5, 200, counts);
    CHECK_EQ_INT(counts[1], 200); /* top-p keeps the first of the tie */
    p.top_p = 1.0f;
    p.top_k = 2;
    p.min_p = 0.5f;
    count_draws(&p, logits, 5, 200, counts);
    CHECK_EQ_INT(counts[1] + counts[4], 200);
}

static void test_top_k_one_is_greedy(void)
{
    float logits[64];
    sampler_params p = params_with(1.5f, 5);
    p.top_k = 1;
    sampler *s = sampler_create(64, &p, NULL);
    for (int round = 0; round < 50; round++) {
        random_logits(logits, 64, 100 + (uint64_t)round, 2.0f);
        int best = 0;
        for (int i = 1; i < 64; i++)
            best = logits[i] > logits[best] ? i : best;
        CHECK_EQ_INT(sample_copy(s, logits, 64), best);
    }
    sampler_free(s);
}

static void test_top_k_renormalizes(void)
{
    const float logits[5] = { 1.0f, 3.0f, 0.0f, 2.5f, 2.0f };
    sampler_params p = params_with(1.0f, 21);
    p.top_k = 3;
    int counts[5];
    count_draws(&p, logits, 5, 20000, counts);
    CHECK_EQ_INT(counts[0], 0);
    CHECK_EQ_INT(counts[2], 0);
    const float kept[5] = { -INFINITY, 3.0f, -INFINITY, 2.5f, 2.0f };
    double probs[5];
    softmax(kept, 5, 1.0, probs);
    CHECKF(chi_square(counts, probs, 5, 20000) < 13.82, "chi-square %.2f",
           chi_square(counts, probs, 5, 20000));
}

static void test_top_p_excludes_tail(void)
{
    /* Probabilities 0.5, 0.3, 0.15, 0.05: top_p 0.75 needs exactly the first two. */
    const float logits[4] = { logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f) };
    sampler_params p = params_with(1.0f, 31);
    p.top_p = 0.75f;
    int counts[4];
    count_draws(&p, logits, 4, 8000, counts);
    CHECK_EQ_INT(counts[2] + counts[3], 0);
    double probs[4] = { 0.625, 0.375, 0, 0 };
    CHECKF(chi_square(counts, probs, 4, 8000) < 10.83, "chi-square %.2f",
           chi_square(counts, probs, 4, 8000));
    /* 0.85 reaches into the third token, never the fourth. */
    p.top_p = 0.85f;
    count_draws(&p, logits, 4, 8000, counts);
    CHECK(counts[2] > 0);
    CHECK_EQ_INT(counts[3], 0);
    /* Combined with top-k, top-p renormalizes over the k kept. */
    p.top_k = 3;
    p.top_p = 0.6f; /* 0.5/0.95 = 0.53 < 0.6, so the second stays */
    count_draws(&p, logits, 4, 4000, counts);
    CHECK(counts[1] > 0);
    CHECK_EQ_INT(counts[2] + counts[3], 0);
}

static void test_top_p_over_a_flat_vocabulary(void)
{
    /* 1000 equal logits: ties rank by id, so top_p 0.5 keeps ids 0..499. This
     * walks the growing window past its first size. */
    enum { N = 1000 };
    static float logits[N], buf[N];
    sampler_params p = params_with(1.0f, 41);
    p.top_p = 0.5f;
    sampler *s = sampler_create(N, &p, NULL);
    int max_seen = -1, low_half = 0;
    for (int i = 0; i < 2000; i++) {
        memcpy(buf, logits, sizeof buf);
        int32_t t = sampler_sample(s, buf);
        CHECK(t >= 0 && t < 500);
        max_seen = t > max_seen ? t : max_seen;
        low_half += t < 250;
    }
    CHECK(max_seen > 400);
    CHECK(low_half > 800 && low_half < 1200);
    sampler_free(s);
}

static int compare_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* Top-p over a spread-out vocabulary (the histogram path) against a reference
 * nucleus computed by sorting the whole distribution. */
static void test_top_p_matches_sorted_reference(void)
{
    enum { N = 3000, DRAWS = 20000 };
    static float logits[N], buf[N];
    static double probs[N], sorted[N];
    static int counts[N];
    random_logits(logits, N, 8, 2.0f);
    const float temperature = 0.9f, top_p = 0.7f;
    softmax(logits, N, temperature, probs);
    memcpy(sorted, probs, sizeof sorted);
    qsort(sorted, N, sizeof *sorted, compare_desc);
    double cum = 0, cutoff = 0, nucleus_mass = 0;
    int nucleus = 0;
    while (cum < top_p) {
        cutoff = sorted[nucleus++];
        cum += cutoff;
    }
    nucleus_mass = cum;
    sampler_params p = params_with(temperature, 81);
    p.top_p = top_p;
    sampler *s = sampler_create(N, &p, NULL);
    for (int i = 0; i < DRAWS; i++) {
        memcpy(buf, logits, sizeof buf);
        counts[sampler_sample(s, buf)]++;
    }
    sampler_free(s);
    int outside = 0, distinct = 0;
    double chi = 0;
    for (int i = 0; i < N; i++) {
        if (probs[i] < cutoff) {
            outside += counts[i];
            continue;
        }
        distinct += counts[i] > 0;
        double expected = probs[i] / nucleus_mass * DRAWS;
        chi += (counts[i] - expected) * (counts[i] - expected) / expected;
    }
    CHECK_EQ_INT(outside, 0);
    CHECKF(nucleus > 20 && distinct > nucleus / 2, "nucleus %d, drawn %d", nucleus, distinct);
    /* Mean nucleus-1, sd sqrt(2(nucleus-1)): six sd above is a generous bound. */
    CHECKF(chi < nucleus - 1 + 6 * sqrt(2.0 * (nucleus - 1)), "chi-square %.1f over %d tokens",
           chi, nucleus);
}

static void test_min_p(void)
{
    /* min_p 0.2 of the best (0.5) is 0.1: the 0.05 token goes, 0.15 stays. */
    const float logits[4] = { logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f) };
    sampler_params p = params_with(1.0f, 51);
    p.min_p = 0.2f;
    int counts[4];
    count_draws(&p, logits, 4, 8000, counts);
    CHECK_EQ_INT(counts[3], 0);
    CHECK(counts[2] > 0);
    double probs[4] = { 0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0 };
    CHECKF(chi_square(counts, probs, 4, 8000) < 13.82, "chi-square %.2f",
           chi_square(counts, probs, 4, 8000));
    /* The same cut through the top-k and top-p paths. */
    p.top_k = 4;
    count_draws(&p, logits, 4, 4000, counts);
    CHECK_EQ_INT(counts[3], 0);
    p.top_k = 0;
    p.top_p = 0.99f;
    count_draws(&p, logits, 4, 4000, counts);
    CHECK_EQ_INT(counts[3], 0);
    CHECK(counts[2] > 0);
    /* min_p 1 keeps only the best. */
    p.top_p = 1.0f;
    p.min_p = 1.0f;
    count_draws(&p, logits, 4, 1000, counts);
    CHECK_EQ_INT(counts[0], 1000);
}

/* Greedy sampling makes each penalty's effect on the chosen token exact; the
 * penalized logits are left in the buffer, so their values are checked too. */
static void test_repetition_penalty(void)
{
    sampler_params p = params_with(0.0f, 1);
    p.repetition_penalty = 1.1f;
    sampler *s = sampler_create(4, &p, NULL);
    float pos[4] = { 2.0f, 1.9f, -5.0f, -5.0f };
    CHECK_EQ_INT(sampler_sample(s, pos), 0); /* nothing accepted yet */
    sampler_accept(s, 0);
    float pos2[4] = { 2.0f, 1.9f, -5.0f, -5.0f };
    CHECK_EQ_INT(sampler_sample(s, pos2), 1);
    CHECK(pos2[0] == 2.0f / 1.1f);
    CHECK(pos2[1] == 1.9f);
    sampler_free(s);

    /* Negative logits are multiplied, so they fall too. */
    s = sampler_create(4, &p, NULL);
    sampler_accept(s, 2);
    sampler_accept(s, 2); /* repeats do not compound the repetition penalty */
    float neg[4] = { -9.0f, -9.0f, -1.0f, -1.05f };
    CHECK_EQ_INT(sampler_sample(s, neg), 3);
    CHECK(neg[2] == -1.0f * 1.1f);
    sampler_free(s);
}

static void test_presence_penalty(void)
{
    sampler_params p = params_with(0.0f, 1);
    p.presence_penalty = 0.3f;
    sampler *s = sampler_create(2, &p, NULL);
    sampler_accept(s, 0);
    sampler_accept(s, 0);
    float a[2] = { 1.0f, 0.8f };
    CHECK_EQ_INT(sampler_sample(s, a), 1);
    CHECK(a[0] == 1.0f - 0.3f); /* once, however often it appeared */
    sampler_free(s);

    p.presence_penalty = 0.1f;
    s = sampler_create(2, &p, NULL);
    sampler_accept(s, 0);
    float b[2] = { 1.0f, 0.8f };
    CHECK_EQ_INT(sampler_sample(s, b), 0);
    sampler_free(s);

    /* A negative presence penalty favours repeats. */
    p.presence_penalty = -0.5f;
    s = sampler_create(2, &p, NULL);
    sampler_accept(s, 1);
    float c[2] = { 1.0f, 0.8f };
    CHECK_EQ_INT(sampler_sample(s, c), 1);
    sampler_free(s);
}

static void test_frequency_penalty(void)
{
    sampler_params p = params_with(0.0f, 1);
    p.frequency_penalty = 0.1f;
    sampler *s = sampler_create(2, &p, NULL);
    for (int i = 0; i < 3; i++)
        sampler_accept(s, 0);
    float a[2] = { 1.0f, 0.8f };
    CHECK_EQ_INT(sampler_sample(s, a), 1); /* 1.0 - 3 * 0.1 = 0.7 */
    CHECK_NEAR(a[0], 0.7, 1e-6);
    sampler_free(s);

    p.frequency_penalty = 0.05f;
    s = sampler_create(2, &p, NULL);
    for (int i = 0; i < 3; i++)
        sampler_accept(s, 0);
    float b[2] = { 1.0f, 0.8f };
    CHECK_EQ_INT(sampler_sample(s, b), 0); /* 0.85 */
    CHECK_NEAR(b[0], 0.85, 1e-6);
    sampler_free(s);
}

static void test_penalty_window(void)
{
    sampler_params p = params_with(0.0f, 1);
    p.presence_penalty = 1.0f;
    p.penalty_last_n = 2;
    sampler *s = sampler_create(3, &p, NULL);
    sampler_accept(s, 0);
    sampler_accept(s, 1);
    sampler_accept(s, 2); /* pushes 0 out of the window */
    sampler_accept(s, -1); /* out of range: ignored */
    sampler_accept(s, 3);
    float a[3] = { 1.0f, 1.0f, 1.0f };
    CHECK_EQ_INT(sampler_sample(s, a), 0);
    CHECK(a[0] == 1.0f && a[1] == 0.0f && a[2] == 0.0f);
    sampler_free(s);

    p.penalty_last_n = 0;
    s = sampler_create(3, &p, NULL);
    sampler_accept(s, 0);
    float b[3] = { 1.0f, 0.5f, 0.5f };
    CHECK_EQ_INT(sampler_sample(s, b), 0);
    CHECK(b[0] == 1.0f);
    sampler_free(s);
}

static void test_penalties_shift_the_distribution(void)
{
    /* Two equal tokens; a presence penalty of ln 3 on token 0 makes odds 1:3. */
    const float logits[2] = { 0.0f, 0.0f };
    sampler_params p = params_with(1.0f, 61);
    p.presence_penalty = (float)log(3.0);
    sampler *s = sampler_create(2, &p, NULL);
    sampler_accept(s, 0);
    int counts[2] = { 0, 0 };
    for (int i = 0; i < 8000; i++)
        counts[sample_copy(s, logits, 2)]++;
    double probs[2] = { 0.25, 0.75 };
    CHECKF(chi_square(counts, probs, 2, 8000) < 10.83, "counts %d %d", counts[0], counts[1]);
    sampler_free(s);
}

static void check_rejected(sampler_params p, const char *message)
{
    el_err err = { { 0 } };
    CHECK(sampler_params_validate(&p, &err) == -1);
    CHECKF(strstr(err.msg, message) != NULL, "'%s' lacks '%s'", err.msg, message);
    CHECK(sampler_create(10, &p, NULL) == NULL);
}

static void test_validation(void)
{
    sampler_params ok = params_with(1.0f, 1), p;
    CHECK(sampler_params_validate(&ok, NULL) == 0);
    p = ok; p.temperature = 0.0f; CHECK(sampler_params_validate(&p, NULL) == 0);
    p = ok; p.temperature = 2.0f; CHECK(sampler_params_validate(&p, NULL) == 0);
    p = ok; p.temperature = 2.01f; check_rejected(p, "temperature must be between 0 and 2");
    p = ok; p.temperature = -0.1f; check_rejected(p, "temperature must be between 0 and 2");
    p = ok; p.temperature = NAN; check_rejected(p, "temperature");
    p = ok; p.temperature = INFINITY; check_rejected(p, "temperature");
    p = ok; p.top_p = 0.0f; check_rejected(p, "top_p must be greater than 0 and at most 1");
    p = ok; p.top_p = 1.5f; check_rejected(p, "top_p");
    p = ok; p.top_p = NAN; check_rejected(p, "top_p");
    p = ok; p.top_k = -1; check_rejected(p, "top_k");
    p = ok; p.top_k = 1000000; CHECK(sampler_params_validate(&p, NULL) == 0);
    p = ok; p.min_p = -0.01f; check_rejected(p, "min_p must be between 0 and 1");
    p = ok; p.min_p = 1.01f; check_rejected(p, "min_p");
    p = ok; p.min_p = NAN; check_rejected(p, "min_p");
    p = ok; p.repetition_penalty = 0.0f; check_rejected(p, "repetition_penalty must be greater than 0 and at most 10");
    p = ok; p.repetition_penalty = 10.5f; check_rejected(p, "repetition_penalty");
    p = ok; p.repetition_penalty = -INFINITY; check_rejected(p, "repetition_penalty");
    p = ok; p.repetition_penalty = 10.0f; CHECK(sampler_params_validate(&p, NULL) == 0);
    p = ok; p.presence_penalty = 2.5f; check_rejected(p, "presence_penalty must be between -2 and 2");
    p = ok; p.presence_penalty = -2.0f; CHECK(sampler_params_validate(&p, NULL) == 0);
    p = ok; p.frequency_penalty = -2.1f; check_rejected(p, "frequency_penalty must be between -2 and 2");
    p = ok; p.frequency_penalty = NAN; check_rejected(p, "frequency_penalty");
    p = ok; p.penalty_last_n = -1; check_rejected(p, "penalty_last_n");
    p = ok; p.penalty_last_n = SAMPLER_MAX_PENALTY_LAST_N + 1; check_rejected(p, "penalty_last_n");

    el_err err;
    CHECK(sampler_create(0, &ok, &err) == NULL);
    CHECK(strstr(err.msg, "vocabulary") != NULL);
    CHECK(sampler_create(SAMPLER_MAX_VOCAB + 1, &ok, &err) == NULL);
}

static void test_large_vocabulary(void)
{
    enum { N = 256000 };
    float *logits = malloc(N * sizeof *logits), *buf = malloc(N * sizeof *buf);
    random_logits(logits, N, 77, 3.0f);
    int best = 0;
    for (int i = 1; i < N; i++)
        best = logits[i] > logits[best] ? i : best;
    struct { float temperature, top_p, min_p; int top_k; } cases[] = {
        { 0.0f, 1.0f, 0.0f, 0 },  { 1.0f, 1.0f, 0.0f, 0 },   { 0.8f, 0.95f, 0.0f, 0 },
        { 0.8f, 1.0f, 0.0f, 40 }, { 0.7f, 0.9f, 0.05f, 64 }, { 1.0f, 1.0f, 0.1f, 0 },
        { 2.0f, 0.5f, 0.0f, 0 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sampler_params p = params_with(cases[c].temperature, 90 + c);
        p.top_p = cases[c].top_p;
        p.top_k = cases[c].top_k;
        p.min_p = cases[c].min_p;
        p.repetition_penalty = 1.1f;
        p.frequency_penalty = 0.1f;
        sampler *s = sampler_create(N, &p, NULL);
        CHECK(s != NULL);
        for (int i = 0; i < 4; i++) {
            memcpy(buf, logits, N * sizeof *buf);
            int32_t t = sampler_sample(s, buf);
            CHECK(t >= 0 && t < N);
            if (cases[c].temperature == 0.0f && i == 0)
                CHECK_EQ_INT(t, best);
            sampler_accept(s, t);
        }
        sampler_free(s);
    }
    free(logits);
    free(buf);
}

static void test_logit_bias(void)
{
    float logits[4] = {1.0f, 3.0f, 2.0f, 0.0f};
    sampler_params p = params_with(0.0f, 1);
    sampler *s = sampler_create(4, &p, NULL);
    CHECK_EQ_INT(sample_copy(s, logits, 4), 1);
    /* -100 bans the best token; +100 makes the worst one certain */
    int32_t ids[2] = {1, 3};
    float bias[2] = {-100.0f, 0.0f};
    CHECK_EQ_INT(sampler_set_logit_bias(s, ids, bias, 2, NULL), 0);
    CHECK_EQ_INT(sample_copy(s, logits, 4), 2);
    bias[1] = 100.0f;
    CHECK_EQ_INT(sampler_set_logit_bias(s, ids, bias, 2, NULL), 0);
    CHECK_EQ_INT(sample_copy(s, logits, 4), 3);
    sampler_free(s);
    /* stochastic sampling too: a banned token is never drawn */
    p = params_with(1.0f, 7);
    s = sampler_create(4, &p, NULL);
    int32_t banned = 1;
    float minus = -100.0f;
    CHECK_EQ_INT(sampler_set_logit_bias(s, &banned, &minus, 1, NULL), 0);
    for (int i = 0; i < 2000; i++)
        CHECK(sample_copy(s, logits, 4) != 1);
    el_err err = {{0}};
    int32_t outside = 4;
    CHECK_EQ_INT(sampler_set_logit_bias(s, &outside, &minus, 1, &err), -1);
    CHECK(strstr(err.msg, "vocabulary") != NULL);
    float nan_bias = NAN;
    CHECK_EQ_INT(sampler_set_logit_bias(s, &banned, &nan_bias, 1, NULL), -1);
    CHECK_EQ_INT(sampler_set_logit_bias(s, NULL, NULL, 0, NULL), 0); /* cleared */
    sampler_free(s);
}

static void test_logprobs(void)
{
    float logits[5] = {1.0f, 3.0f, 2.0f, NAN, 3.0f};
    int32_t ids[3];
    float lps[3];
    float lp = sampler_logprobs(logits, 5, 2, 3, ids, lps);
    double total = exp(1.0) + 2 * exp(3.0) + exp(2.0);
    CHECK_NEAR(lp, 2.0 - log(total), 1e-5);
    /* best first, the lower id on ties; NaN is impossible */
    CHECK(ids[0] == 1 && ids[1] == 4 && ids[2] == 2);
    CHECK_NEAR(lps[0], 3.0 - log(total), 1e-5);
    CHECK_NEAR(lps[2], lp, 0);
    CHECK(sampler_logprobs(logits, 5, 3, 0, ids, lps) == -INFINITY);
    /* the probabilities sum to one */
    double sum = 0;
    for (int t = 0; t < 5; t++)
        sum += exp(sampler_logprobs(logits, 5, t, 0, ids, lps));
    CHECK_NEAR(sum, 1.0, 1e-5);
    /* the logits are not changed, and the greedy token is the top one */
    sampler_params p = params_with(0.0f, 1);
    sampler *s = sampler_create(5, &p, NULL);
    float copy[5];
    memcpy(copy, logits, sizeof copy);
    CHECK_EQ_INT(sampler_sample(s, copy), ids[0]);
    sampler_free(s);
    /* k beyond the vocabulary is the vocabulary */
    int32_t all[SAMPLER_MAX_TOP_LOGPROBS];
    float all_lp[SAMPLER_MAX_TOP_LOGPROBS];
    float two[2] = {0.0f, 0.0f};
    CHECK_NEAR(sampler_logprobs(two, 2, 1, 20, all, all_lp), log(0.5), 1e-6);
    CHECK(all[0] == 0 && all[1] == 1);
}

/* sampler_top_ids against a full sort of the vocabulary (best first, lower id on ties,
 * NaN last), for every k, on logits with many ties. */
static void test_top_ids_match_a_sort(void)
{
    enum { N = 300 };
    float logits[N];
    el_rng rng;
    el_rng_seed(&rng, 3);
    for (int i = 0; i < N; i++)
        logits[i] = i % 37 == 5 ? NAN : (float)(el_rng_next(&rng) % 40); /* ties on purpose */
    int32_t sorted[N];
    for (int i = 0; i < N; i++)
        sorted[i] = i;
    for (int i = 1; i < N; i++) { /* insertion sort: the plain reference */
        int32_t id = sorted[i];
        float v = isnan(logits[id]) ? -INFINITY : logits[id];
        int j = i;
        while (j > 0) {
            int32_t o = sorted[j - 1];
            float w = isnan(logits[o]) ? -INFINITY : logits[o];
            if (w > v || (w == v && o < id))
                break;
            sorted[j] = o;
            j--;
        }
        sorted[j] = id;
    }
    int32_t top[N];
    for (int k = 0; k <= N; k += k < 25 ? 1 : 25) {
        CHECK_EQ_INT(sampler_top_ids(logits, N, k, top), 0);
        CHECK(memcmp(top, sorted, (size_t)k * sizeof *top) == 0);
    }
}

int main(void)
{
    RUN(test_top_ids_match_a_sort);
    RUN(test_greedy_picks_argmax);
    RUN(test_logit_bias);
    RUN(test_logprobs);
    RUN(test_greedy_ties_lowest_id);
    RUN(test_nan_and_inf_logits);
    RUN(test_same_seed_same_tokens);
    RUN(test_different_seeds_differ);
    RUN(test_default_params);
    RUN(test_frequencies_follow_softmax);
    RUN(test_tiny_temperature_is_greedy);
    RUN(test_top_k_one_is_greedy);
    RUN(test_top_k_renormalizes);
    RUN(test_top_p_excludes_tail);
    RUN(test_top_p_over_a_flat_vocabulary);
    RUN(test_top_p_matches_sorted_reference);
    RUN(test_min_p);
    RUN(test_repetition_penalty);
    RUN(test_presence_penalty);
    RUN(test_frequency_penalty);
    RUN(test_penalty_window);
    RUN(test_penalties_shift_the_distribution);
    RUN(test_validation);
    RUN(test_large_vocabulary);
    return test_summary();
}
