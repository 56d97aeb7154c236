/* Token masks on the real Gemma vocabularies (tests/data/vocab-gemma3.gguf and
 * vocab-gemma.gguf, built as the engine builds them): along random walks every mask
 * equals the reference mask (each token walked with the real stacks); sampled allowed
 * tokens are accepted and sampled refused ones refused; control tokens are never
 * allowed, END tokens exactly where the grammar may end; byte-fallback tokens and
 * code points split across tokens work. */
#include "gemma_vocab.h"
#include "grammar_walk.h"
#include "schemas.h"
#include "test.h"

static grammar_vocab *vocab;
static tokenizer *tok;
static walk_vocab wv;

/* The property schema that contains `text`. */
static const char *schema_with(const char *text)
{
    for (int i = 0; i < N_PROPERTY_SCHEMAS; i++)
        if (strstr(property_schemas[i], text))
            return property_schemas[i];
    CHECKF(0, "no property schema with %s", text);
    return "{}";
}

static grammar *compile(const char *schema)
{
    el_err err;
    grammar *g = schema ? grammar_from_json_schema(vocab, schema, strlen(schema), &err) : grammar_json_object(vocab, &err);
    CHECKF(g != NULL, "%s", err.msg);
    return g;
}

/* A fresh matcher fed history[0..n); NULL if some token is refused. */
static grammar_matcher *replay(const grammar *g, const int32_t *history, int n)
{
    grammar_matcher *m = grammar_matcher_new(g, NULL);
    for (int i = 0; m && i < n; i++)
        if (grammar_matcher_accept_token(m, history[i]) < 0) {
            grammar_matcher_free(m);
            return NULL;
        }
    return m;
}

static void check_walk(const grammar *g, uint64_t seed, int steps)
{
    size_t words = grammar_mask_words(vocab);
    uint32_t *mask = calloc(words, 4), *ref = calloc(words, 4);
    int32_t history[256];
    el_rng rng;
    el_rng_seed(&rng, seed);
    grammar_matcher *m = grammar_matcher_new(g, NULL);
    int n_vocab = grammar_vocab_n_tokens(vocab);
    for (int step = 0; step < steps; step++) {
        int n = grammar_matcher_fill_mask(m, mask);
        int n_ref = grammar_matcher_fill_mask_reference(m, ref);
        CHECK_EQ_INT(n, n_ref);
        CHECKF(!memcmp(mask, ref, words * 4), "step %d: mask differs from the reference", step);
        CHECK(!walk_bit(mask, tokenizer_bos(tok)));
        CHECK(!walk_bit(mask, tokenizer_find(tok, "<start_of_turn>")));
        bool can_end = grammar_matcher_can_end(m);
        CHECK_EQ_INT(walk_bit(mask, tokenizer_eos(tok)), can_end);
        CHECK_EQ_INT(walk_bit(mask, tokenizer_eot(tok)), can_end);
        /* refused tokens are refused, and leave the matcher as it was */
        for (int k = 0; k < 40; k++) {
            int t = (int)(el_rng_next(&rng) % (uint64_t)n_vocab);
            if (!walk_bit(mask, t))
                CHECKF(grammar_matcher_accept_token(m, t) == -1, "step %d: refused token %d accepted", step, t);
        }
        if (n <= 0)
            break;
        /* allowed tokens are accepted (each on a replayed copy) */
        for (int k = 0; k < 3; k++) {
            int t = walk_pick(mask, words, (int)(el_rng_next(&rng) % (uint64_t)n));
            grammar_matcher *c = replay(g, history, step);
            CHECK(c != NULL);
            if (c)
                CHECKF(grammar_matcher_accept_token(c, t) == 0, "step %d: allowed token %d refused", step, t);
            grammar_matcher_free(c);
        }
        int t = walk_pick(mask, words, (int)(el_rng_next(&rng) % (uint64_t)n));
        CHECK_EQ_INT(grammar_matcher_accept_token(m, t), 0);
        history[step] = t;
        if (grammar_matcher_finished(m))
            break;
    }
    grammar_matcher_free(m);
    free(mask);
    free(ref);
}

static void test_masks_match_reference(void)
{
    const char *schemas[] = {schema_with("\"tags\""), schema_with("\"children\""), schema_with("(yes|no)"),
                             schema_with("get_weather"), NULL};
    for (int i = 0; i < 5; i++) {
        grammar *g = compile(schemas[i]);
        if (!g)
            continue;
        check_walk(g, 77 + (uint64_t)i, 20);
        grammar_free(g);
    }
}

static int32_t token_of(const char *piece)
{
    int32_t id = tokenizer_find(tok, piece);
    CHECKF(id >= 0, "no token '%s'", piece);
    return id;
}

static void test_byte_fallback_and_split_code_points(void)
{
    grammar *g = compile("{\"type\":\"string\",\"maxLength\":3}");
    if (!g)
        return;
    grammar_matcher *m = grammar_matcher_new(g, NULL);
    size_t words = grammar_mask_words(vocab);
    uint32_t *mask = calloc(words, 4);
    CHECK_EQ_INT(grammar_matcher_accept_token(m, token_of("\"")), 0);
    /* é as two byte-fallback tokens: the first byte alone is allowed (it can complete) */
    int32_t c3 = token_of("<0xC3>"), a9 = token_of("<0xA9>"), ff = token_of("<0xFF>");
    grammar_matcher_fill_mask(m, mask);
    CHECK(walk_bit(mask, c3));
    CHECK(!walk_bit(mask, a9)); /* a continuation byte cannot start a character */
    CHECK(!walk_bit(mask, ff)); /* never valid UTF-8 */
    CHECK_EQ_INT(grammar_matcher_accept_token(m, c3), 0);
    grammar_matcher_fill_mask(m, mask);
    CHECK(walk_bit(mask, a9));
    CHECK(!walk_bit(mask, c3));
    CHECK(!walk_bit(mask, token_of("\"")));   /* the character is unfinished */
    CHECK(!walk_bit(mask, tokenizer_eos(tok)));
    CHECK_EQ_INT(grammar_matcher_accept_token(m, a9), 0);
    /* two more characters at most, then the closing quote */
    CHECK_EQ_INT(grammar_matcher_accept_bytes(m, "ab", 2), 0);
    grammar_matcher_fill_mask(m, mask);
    CHECK(!walk_bit(mask, token_of("a")));
    CHECK(walk_bit(mask, token_of("\"")));
    CHECK(!walk_bit(mask, tokenizer_eos(tok)));
    CHECK_EQ_INT(grammar_matcher_accept_token(m, token_of("\"")), 0);
    grammar_matcher_fill_mask(m, mask);
    CHECK(walk_bit(mask, tokenizer_eos(tok)));
    CHECK(walk_bit(mask, token_of("\n"))); /* bounded whitespace may follow */
    CHECK_EQ_INT(grammar_matcher_accept_token(m, tokenizer_eot(tok)), 0);
    CHECK(grammar_matcher_finished(m));
    free(mask);
    grammar_matcher_free(m);
    grammar_free(g);
}

static void test_tokens_spanning_elements(void)
{
    /* "{\"" spans the object's brace and the key's quote; "\":" the key's end and the colon */
    grammar *g = compile(schema_with("get_weather"));
    if (!g)
        return;
    grammar_matcher *m = grammar_matcher_new(g, NULL);
    int32_t open = tokenizer_find(tok, "{\""), close_colon = tokenizer_find(tok, "\":");
    if (open >= 0) {
        CHECK_EQ_INT(grammar_matcher_accept_token(m, open), 0);
        CHECK_EQ_INT(grammar_matcher_accept_bytes(m, "name", 4), 0);
        if (close_colon >= 0)
            CHECK_EQ_INT(grammar_matcher_accept_token(m, close_colon), 0);
    }
    grammar_matcher_free(m);
    grammar_free(g);
}

static void test_gemma1_vocab(void)
{
    tokenizer *t1 = NULL;
    grammar_vocab *v1 = gemma_vocab_load("tests/data/vocab-gemma.gguf", &t1);
    CHECK(v1 != NULL);
    if (!v1)
        return;
    el_err err;
    const char *schema = schema_with("\"tags\"");
    grammar *g = grammar_from_json_schema(v1, schema, strlen(schema), &err);
    CHECKF(g != NULL, "%s", err.msg);
    if (g) {
        walk_vocab w1 = walk_vocab_make(v1, t1);
        el_rng rng;
        el_rng_seed(&rng, 5);
        walk_result r = grammar_walk(&w1, g, &rng, 30, 2000);
        CHECK(r.finished && !r.mask_mismatch);
        free(r.text);
        free(r.mask_us);
        free(r.mask_cpu_us);
    }
    grammar_free(g);
    grammar_vocab_free(v1);
    tokenizer_free(t1);
}

int main(void)
{
    vocab = gemma_vocab_load("tests/data/vocab-gemma3.gguf", &tok);
    if (!vocab)
        return 1;
    wv = walk_vocab_make(vocab, tok);
    RUN(test_masks_match_reference);
    RUN(test_byte_fallback_and_split_code_points);
    RUN(test_tokens_spanning_elements);
    RUN(test_gemma1_vocab);
    grammar_vocab_free(vocab);
    tokenizer_free(tok);
    return test_summary();
}
