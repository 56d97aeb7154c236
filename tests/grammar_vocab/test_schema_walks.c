/* Random walks on the real Gemma 3 vocabulary for every property schema and several
 * seeds: each walk must finish (an END token where the grammar may end) with no
 * allowed token refused. With --emit DIR the schemas and the walks' texts are written
 * there for tests/e2e/grammar_schemas.sh to validate with python3-jsonschema. */
#include <errno.h>
#include <sys/stat.h>

#include "gemma_vocab.h"
#include "grammar_walk.h"
#include "schemas.h"
#include "test.h"

enum { SEEDS = 4 };

static const char *emit_dir;
static grammar_vocab *vocab;
static tokenizer *tok;

static void write_file(const char *name, const char *text, size_t len)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", emit_dir, name);
    FILE *f = fopen(path, "wb");
    CHECKF(f != NULL, "%s: %s", path, strerror(errno));
    if (!f)
        return;
    CHECK(fwrite(text, 1, len, f) == len);
    fclose(f);
}

static void test_walks(void)
{
    walk_vocab wv = walk_vocab_make(vocab, tok);
    for (int s = 0; s < N_PROPERTY_SCHEMAS; s++) {
        el_err err;
        grammar *g = grammar_from_json_schema(vocab, property_schemas[s], strlen(property_schemas[s]), &err);
        CHECKF(g != NULL, "schema %d: %s", s, err.msg);
        if (!g)
            continue;
        char name[64];
        if (emit_dir) {
            snprintf(name, sizeof name, "%03d.schema.json", s);
            write_file(name, property_schemas[s], strlen(property_schemas[s]));
        }
        for (int seed = 0; seed < SEEDS; seed++) {
            el_rng rng;
            el_rng_seed(&rng, (uint64_t)(1000 * s + seed));
            walk_result r = grammar_walk(&wv, g, &rng, 30 + 20 * seed, 3000);
            CHECKF(r.finished, "schema %d seed %d: walk did not finish after %d steps: %.200s", s, seed, r.steps,
                   r.text ? r.text : "");
            CHECKF(!r.mask_mismatch, "schema %d seed %d: an allowed token was refused", s, seed);
            if (emit_dir && r.finished) {
                snprintf(name, sizeof name, "%03d.%d.txt", s, seed);
                write_file(name, r.text, r.len);
            }
            free(r.text);
            free(r.mask_us);
            free(r.mask_cpu_us);
        }
        grammar_free(g);
    }
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--emit"))
        emit_dir = argv[2];
    vocab = gemma_vocab_load("tests/data/vocab-gemma3.gguf", &tok);
    if (!vocab)
        return 1;
    RUN(test_walks);
    grammar_vocab_free(vocab);
    tokenizer_free(tok);
    return test_summary();
}
