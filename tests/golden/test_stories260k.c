/* The one real trained model (llama architecture) against a float64 reference:
 * tests/data/stories260K.greedy-ref.jsonl gives, per prompt, 48 greedy ids
 * and the top-5 logits at each step. Greedy ids must match exactly; logits within
 * |ours - ref| <= 2e-3 * max(1, |ref|): attention sums values in half precision, as
 * llama.cpp's CPU flash attention does for an F16 cache, which costs about 1e-3 over
 * sixty positions against a float64 reference. */
#include <jansson.h>
#include <math.h>

#include "base/threadpool.h"
#include "model/model.h"
#include "test.h"

enum { MAX_IDS = 256 };

static void check_prompt(model *m, model_ctx *ctx, kv_cache *kv, json_t *ref, float *logits)
{
    json_t *prompt = json_object_get(ref, "prompt_ids"), *greedy = json_object_get(ref, "greedy_ids");
    json_t *steps = json_object_get(ref, "steps");
    int n_vocab = model_hparams_of(m)->n_vocab;
    int32_t ids[MAX_IDS], pos[MAX_IDS], seq[MAX_IDS];
    int n = (int)json_array_size(prompt);
    CHECK(n >= 1 && n < MAX_IDS);
    if (n < 1 || n >= MAX_IDS)
        return;
    for (int i = 0; i < n; i++) {
        ids[i] = (int32_t)json_integer_value(json_array_get(prompt, (size_t)i));
        pos[i] = i;
        seq[i] = 0;
    }
    kv_cache_truncate(kv, 0, 0, false);
    el_err err = {{0}};
    model_batch b = {n, ids, pos, seq, NULL};
    CHECKF(model_forward(ctx, kv, &b, logits, &err) == 0, "%s", err.msg);
    double worst = 0;
    for (size_t s = 0; s < json_array_size(greedy); s++) {
        json_t *top5 = json_object_get(json_array_get(steps, s), "top5");
        for (size_t r = 0; r < json_array_size(top5); r++) {
            json_t *pair = json_array_get(top5, r);
            int id = (int)json_integer_value(json_array_get(pair, 0));
            double want = json_number_value(json_array_get(pair, 1));
            CHECKF(id >= 0 && id < n_vocab, "id %d", id);
            if (id < 0 || id >= n_vocab)
                return;
            double rel = fabs(logits[id] - want) / fmax(1.0, fabs(want));
            worst = fmax(worst, rel);
            CHECKF(rel <= 2e-3, "step %zu rank %zu: logit of %d is %.6f, reference %.6f", s, r, id, logits[id], want);
        }
        int32_t next = 0;
        for (int t = 1; t < n_vocab; t++)
            if (logits[t] > logits[next])
                next = t;
        int want = (int)json_integer_value(json_array_get(greedy, s));
        CHECKF(next == want, "greedy step %zu: %d, reference %d", s, next, want);
        if (next != want)
            return;
        int32_t p = kv_cache_seq_len(kv, 0), sq = 0;
        model_batch one = {1, &next, &p, &sq, NULL};
        if (model_forward(ctx, kv, &one, logits, &err) != 0) {
            CHECKF(0, "%s", err.msg);
            return;
        }
    }
    fprintf(stderr, "      worst relative logit error %.2e\n", worst);
}

static void test_stories260k_greedy(void)
{
    const char *p = "models/stories260K.gguf";
    el_err err = {{0}};
    model *m = model_load(p, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    FILE *f = fopen(TEST_DATA "stories260K.greedy-ref.jsonl", "r");
    CHECK(f != NULL);
    if (!m || !f) {
        model_free(m);
        if (f)
            fclose(f);
        return;
    }
    CHECK_EQ_INT(model_hparams_of(m)->arch, MODEL_ARCH_LLAMA);
    threadpool *pool = threadpool_create(2, NULL);
    kv_cache *kv = kv_cache_create(m, MODEL_CACHE_F16, 1, 512, &err);
    model_ctx *ctx = model_ctx_create(m, MAX_IDS, pool, &err);
    float *logits = malloc((size_t)model_hparams_of(m)->n_vocab * sizeof(float));
    char line[1 << 16];
    int n_prompts = 0;
    while (kv && ctx && fgets(line, sizeof line, f)) {
        json_error_t jerr;
        json_t *ref = json_loads(line, 0, &jerr);
        CHECKF(ref != NULL, "%s", jerr.text);
        if (!ref)
            continue;
        check_prompt(m, ctx, kv, ref, logits);
        n_prompts++;
        json_decref(ref);
    }
    CHECK_EQ_INT(n_prompts, 3);
    free(logits);
    model_ctx_free(ctx);
    kv_cache_free(kv);
    threadpool_free(pool);
    model_free(m);
    fclose(f);
}

int main(void)
{
    RUN(test_stories260k_greedy);
    return test_summary();
}
