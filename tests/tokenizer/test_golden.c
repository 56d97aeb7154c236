/* The tokenizer against reference tokenizations: every line of the Gemma and
 * Gemma 3 goldens (llama.cpp with special-token parsing off and on) and the
 * stories260K prompts of its greedy reference. */
#include <jansson.h>

#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/tokenizer.h"

static tokenizer *load_vocab(const char *rel)
{
    el_err err = {{0}};
    gguf_file *f = gguf_open(rel, &err);
    CHECKF(f != NULL, "%s: %s", rel, err.msg);
    if (!f)
        return NULL;
    tokenizer *t = tokenizer_load(f, &err);
    CHECKF(t != NULL, "%s: %s", rel, err.msg);
    gguf_close(f); /* the tokenizer must not depend on the mapping */
    return t;
}

static void print_ids(const char *label, const int32_t *ids, size_t n)
{
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

/* Encodes text and compares with a JSON array of ids; reports the difference. */
static int check_encoding(const tokenizer *t, const char *text, size_t len, bool parse_special, json_t *want,
                          const char *what)
{
    token_vec got = {0};
    el_err err = {{0}};
    int rc = tokenizer_encode(t, text, len, parse_special, &got, &err);
    CHECKF(rc == 0, "%s: %s", what, err.msg);
    bool same = json_is_array(want) && json_array_size(want) == got.n;
    for (size_t i = 0; same && i < got.n; i++)
        same = json_integer_value(json_array_get(want, i)) == got.ids[i];
    CHECKF(same, "%s of \"%.*s\" differs", what, (int)(len > 80 ? 80 : len), text);
    if (!same) {
        print_ids("got ", got.ids, got.n);
        int32_t w[512];
        size_t nw = json_array_size(want) < 512 ? json_array_size(want) : 512;
        for (size_t i = 0; i < nw; i++)
            w[i] = (int32_t)json_integer_value(json_array_get(want, i));
        print_ids("want", w, nw);
    }
    token_vec_free(&got);
    return same ? 0 : -1;
}

static void check_golden_file(const char *vocab_rel, const char *golden_rel)
{
    tokenizer *t = load_vocab(vocab_rel);
    const char *path = golden_rel;
    if (!t)
        return;
    FILE *fp = fopen(path, "r");
    CHECKF(fp != NULL, "cannot open %s", path);
    if (!fp) {
        tokenizer_free(t);
        return;
    }
    char line[1 << 16];
    int lines = 0, bad = 0;
    while (fgets(line, sizeof line, fp)) {
        json_error_t jerr;
        json_t *doc = json_loads(line, 0, &jerr);
        CHECKF(doc != NULL, "%s line %d: %s", golden_rel, lines + 1, jerr.text);
        if (!doc)
            continue;
        json_t *text = json_object_get(doc, "text");
        const char *s = json_string_value(text);
        size_t len = json_string_length(text);
        CHECK(s != NULL);
        if (s) {
            bad += check_encoding(t, s, len, false, json_object_get(doc, "plain"), "plain") < 0;
            bad += check_encoding(t, s, len, true, json_object_get(doc, "special"), "special") < 0;
        }
        json_decref(doc);
        lines++;
    }
    fclose(fp);
    fprintf(stderr, "  %s: %d lines, %d mismatches\n", golden_rel, lines, bad);
    CHECK(lines >= 30);
    tokenizer_free(t);
}

static void test_gemma_golden(void)
{
    check_golden_file(TEST_DATA "vocab-gemma.gguf", TEST_DATA "gemma.jsonl");
}

static void test_gemma3_golden(void)
{
    check_golden_file(TEST_DATA "vocab-gemma3.gguf", TEST_DATA "gemma3.jsonl");
}

/* The greedy reference's prompt ids are BOS (add_bos_token defaults to true)
 * followed by the prompt with SentencePiece's dummy-prefix space. */
static void test_stories_prompts(void)
{
    tokenizer *t = load_vocab("models/stories260K.gguf");
    const char *path = TEST_DATA "stories260K.greedy-ref.jsonl";
    if (!t)
        return;
    CHECK(tokenizer_add_bos(t));
    CHECK(tokenizer_add_space_prefix(t));
    CHECK_EQ_INT(tokenizer_bos(t), 1);
    CHECK_EQ_INT(tokenizer_eos(t), 2);
    CHECK_EQ_INT(tokenizer_n_vocab(t), 512);
    json_error_t jerr;
    FILE *fp = fopen(path, "r");
    CHECK(fp != NULL);
    char line[1 << 17];
    int prompts = 0;
    while (fp && fgets(line, sizeof line, fp)) {
        json_t *doc = json_loads(line, 0, &jerr);
        CHECK(doc != NULL);
        if (!doc)
            continue;
        json_t *prompt = json_object_get(doc, "prompt");
        json_t *ids = json_object_get(doc, "prompt_ids");
        CHECK(json_integer_value(json_array_get(ids, 0)) == tokenizer_bos(t));
        json_t *rest = json_array();
        for (size_t i = 1; i < json_array_size(ids); i++)
            json_array_append(rest, json_array_get(ids, i));
        check_encoding(t, json_string_value(prompt), json_string_length(prompt), false, rest, "prompt");
        json_decref(rest);

        /* The greedy text is the continuation decoded after the prompt. */
        json_t *greedy = json_object_get(doc, "greedy_ids");
        detokenizer d;
        detokenizer_init(&d, t);
        d.at_start = false;
        char text[8192];
        size_t n = 0;
        for (size_t i = 0; i < json_array_size(greedy); i++)
            n += detokenizer_push(&d, (int32_t)json_integer_value(json_array_get(greedy, i)), text + n,
                                  sizeof text - n);
        n += detokenizer_finish(&d, text + n, sizeof text - n);
        /* The reference spelled byte tokens by name; "<0x0A>" is a newline. */
        const char *ref = json_string_value(json_object_get(doc, "greedy_text"));
        char want[8192];
        size_t nw = 0;
        for (const char *p = ref ? ref : ""; *p && nw < sizeof want - 1;) {
            if (!strncmp(p, "<0x0A>", 6)) {
                want[nw++] = '\n';
                p += 6;
            } else {
                want[nw++] = *p++;
            }
        }
        CHECKF(n == nw && !memcmp(text, want, n), "greedy text \"%.*s\" vs \"%.*s\"", (int)n, text, (int)nw, want);
        json_decref(doc);
        prompts++;
    }
    if (fp)
        fclose(fp);
    CHECK_EQ_INT(prompts, 3);
    tokenizer_free(t);
}

int main(void)
{
    RUN(test_gemma_golden);
    RUN(test_gemma3_golden);
    RUN(test_stories_prompts);
    return test_summary();
}
