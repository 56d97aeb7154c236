/* Opens every GGUF file in the repository's reference data and checks what is known about it. */
#include "gguf/gguf.h"
#include "test.h"

static const char *const golden_files[] = {
    TEST_DATA "vocab-gemma.gguf",
    TEST_DATA "vocab-gemma3.gguf",
    "models/stories260K.gguf",
};

static void test_open_every_golden_file(void)
{
    for (size_t i = 0; i < sizeof golden_files / sizeof *golden_files; i++) {
        const char *path = golden_files[i];
        el_err err = {{0}};
        gguf_file *f = gguf_open(path, &err);
        CHECKF(f != NULL, "%s", err.msg);
        if (!f)
            continue;
        CHECK(gguf_version(f) == 2 || gguf_version(f) == 3);
        CHECK(gguf_kv_count(f) > 0);
        gguf_str arch = {0};
        CHECK_EQ_INT(gguf_get_str(f, "general.architecture", &arch, &err), 0);
        for (uint64_t t = 0; t < gguf_tensor_count(f); t++) {
            const gguf_tensor *ti = gguf_tensor_at(f, t);
            CHECK(gguf_find_tensor(f, "no.such.tensor") == NULL);
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)ti->name.len, ti->name.ptr);
            CHECK(gguf_find_tensor(f, name) == ti);
            CHECK((const char *)ti->data >= (const char *)gguf_base(f) + gguf_data_offset(f));
            CHECK((const char *)ti->data + ti->nbytes <= (const char *)gguf_base(f) + gguf_size(f));
        }
        gguf_close(f);
    }
}

static void test_vocabulary_file(void)
{
    const char *path = TEST_DATA "vocab-gemma3.gguf";
    el_err err = {{0}};
    gguf_file *f = gguf_open(path, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (!f)
        return;
    const gguf_kv *tokens = NULL;
    CHECK_EQ_INT(gguf_get_arr(f, "tokenizer.ggml.tokens", GGUF_VAL_STRING, &tokens, &err), 0);
    if (tokens) {
        CHECK_EQ_INT(tokens->arr_len, 262144);
        CHECK(tokens->arr_strings != NULL);
    }
    const gguf_kv *scores = NULL;
    CHECK_EQ_INT(gguf_get_arr(f, "tokenizer.ggml.scores", GGUF_VAL_FLOAT32, &scores, &err), 0);
    uint32_t bos = 0;
    CHECK_EQ_INT(gguf_get_u32(f, "tokenizer.ggml.bos_token_id", &bos, &err), 0);
    CHECK_EQ_INT(bos, 2);
    CHECK_EQ_INT(gguf_get_u32(f, "no.such.key", &bos, &err), 1);
    gguf_close(f);
}

static void test_stories_model(void)
{
    const char *path = "models/stories260K.gguf";
    el_err err = {{0}};
    gguf_file *f = gguf_open(path, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (!f)
        return;
    uint32_t n_embd = 0;
    CHECK_EQ_INT(gguf_get_u32(f, "llama.embedding_length", &n_embd, &err), 0);
    CHECK_EQ_INT(n_embd, 64);
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    CHECK(emb != NULL);
    if (emb) {
        CHECK_EQ_INT(emb->ne[0], 64);
        CHECK_EQ_INT(emb->ne[1], 512);
        CHECK_EQ_INT(emb->type, GGUF_TYPE_F32);
    }
    gguf_close(f);
}

int main(void)
{
    RUN(test_open_every_golden_file);
    RUN(test_vocabulary_file);
    RUN(test_stories_model);
    return test_summary();
}
