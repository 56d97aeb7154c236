/* The random-weight golden models against llama.cpp's logits
 * (../shared/golden/models/NAME.gguf and NAME.logits.json), checked as golden_logits.h
 * describes: tolerance 1e-3 for F32/F16 models and 2e-2 for quantized ones. */
#include "golden_logits.h"

static void run_model(const char *name, double tol, threadpool *pool)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/models/%s.gguf", name);
    const char *p = test_shared_path(rel);
    if (!p)
        return;
    char model_path[4096], json_path[4096];
    snprintf(model_path, sizeof model_path, "%s", p);
    snprintf(rel, sizeof rel, "golden/models/%s.logits.json", name);
    snprintf(json_path, sizeof json_path, "%s", test_shared_path(rel));
    run_golden(name, model_path, json_path, tol, pool);
}

static threadpool *pool;

static void test_tiny_gemma_q8_0(void)
{
    run_model("tiny-gemma-q8_0", 2e-2, pool);
}

static void test_tiny_mha_gemma_f32(void)
{
    run_model("tiny-mha-gemma-f32", 1e-3, pool);
}

static void test_tiny_gemma2_q4_0(void)
{
    run_model("tiny-gemma2-q4_0", 2e-2, pool);
}

static void test_tiny_gemma3_q8_0(void)
{
    run_model("tiny-gemma3-q8_0", 2e-2, pool);
}

int main(void)
{
    pool = threadpool_create(2, NULL);
    RUN(test_tiny_gemma_q8_0);
    RUN(test_tiny_mha_gemma_f32);
    RUN(test_tiny_gemma2_q4_0);
    RUN(test_tiny_gemma3_q8_0);
    threadpool_free(pool);
    return test_summary();
}
