/* Constrained-decoding benchmark: compile time of realistic JSON schemas on the Gemma 3
 * vocabulary, and fill_mask time per token along random valid walks (median, p99, max),
 * with the direct trie walk (no precomputed lists) as the baseline. Times are wall
 * clock and, in brackets, this thread's CPU time (what the work cost when the machine
 * is shared: on a loaded machine the wall figures include waiting for a core).
 *
 *   make bench-grammar            (builds build/bench/grammar_bench and runs it)
 *   build/bench/grammar_bench [vocab.gguf] [walks per schema] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/grammar_vocab/gemma_vocab.h"
#include "../tests/grammar_vocab/grammar_walk.h"

static const struct {
    const char *name, *schema;
} schemas[] = {
    {"extraction",
     "{\"type\":\"object\",\"properties\":{"
     "\"title\":{\"type\":\"string\"},"
     "\"year\":{\"type\":\"integer\",\"minimum\":1900,\"maximum\":2100},"
     "\"authors\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
     "\"name\":{\"type\":\"string\"},\"affiliation\":{\"type\":\"string\"},\"email\":{\"type\":\"string\",\"format\":"
     "\"email\"}},\"required\":[\"name\"]},\"minItems\":1},"
     "\"keywords\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":8},"
     "\"published\":{\"type\":\"string\",\"format\":\"date\"},"
     "\"summary\":{\"type\":\"string\"}},"
     "\"required\":[\"title\",\"authors\",\"year\"],\"additionalProperties\":false}"},
    {"tool-call",
     "{\"type\":\"object\",\"properties\":{"
     "\"name\":{\"enum\":[\"get_weather\",\"search_web\",\"send_email\",\"create_event\"]},"
     "\"arguments\":{\"anyOf\":["
     "{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"},\"unit\":{\"enum\":[\"celsius\","
     "\"fahrenheit\"]},\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":14}},\"required\":[\"location\"],"
     "\"additionalProperties\":false},"
     "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\"},\"max_results\":{\"type\":\"integer\"}},"
     "\"required\":[\"query\"],\"additionalProperties\":false},"
     "{\"type\":\"object\",\"properties\":{\"to\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"format\":"
     "\"email\"}},\"subject\":{\"type\":\"string\"},\"body\":{\"type\":\"string\"}},\"required\":[\"to\","
     "\"subject\",\"body\"],\"additionalProperties\":false}]}},"
     "\"required\":[\"name\",\"arguments\"],\"additionalProperties\":false}"},
    {"enum-heavy",
     "{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
     "\"country\":{\"enum\":[\"Argentina\",\"Australia\",\"Austria\",\"Belgium\",\"Brazil\",\"Canada\",\"Chile\","
     "\"China\",\"Colombia\",\"Czechia\",\"Denmark\",\"Egypt\",\"Finland\",\"France\",\"Germany\",\"Greece\","
     "\"Hungary\",\"India\",\"Indonesia\",\"Ireland\",\"Israel\",\"Italy\",\"Japan\",\"Kenya\",\"Mexico\","
     "\"Morocco\",\"Netherlands\",\"New Zealand\",\"Nigeria\",\"Norway\",\"Peru\",\"Philippines\",\"Poland\","
     "\"Portugal\",\"Romania\",\"Saudi Arabia\",\"Singapore\",\"South Africa\",\"South Korea\",\"Spain\","
     "\"Sweden\",\"Switzerland\",\"Thailand\",\"Turkey\",\"Ukraine\",\"United Kingdom\",\"United States\","
     "\"Vietnam\"]},"
     "\"continent\":{\"enum\":[\"Africa\",\"Asia\",\"Europe\",\"North America\",\"Oceania\",\"South America\"]},"
     "\"eu_member\":{\"type\":\"boolean\"},"
     "\"status\":{\"enum\":[\"active\",\"inactive\",\"pending\",\"archived\"]},"
     "\"rank\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":200}},"
     "\"required\":[\"country\",\"continent\",\"status\"],\"additionalProperties\":false},\"maxItems\":5}"},
    {"json_object", NULL},
};

/* Hostile or large schemas: compile time must stay bounded (refused or compiled). */
static const char *const hostile[] = {
    "{\"type\":\"string\",\"maxLength\":1000}",
    "{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":200},\"maxItems\":1000}",
    "{\"type\":\"string\",\"pattern\":\"^([a-z]{1,100}){1,100}$\"}",
    "{\"type\":\"string\",\"pattern\":\"^((a|a)*|(a|aa)*)*b$\"}",
    "{\"type\":\"array\",\"minItems\":1000000}",
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "tests/data/vocab-gemma3.gguf";
    int walks = argc > 2 ? atoi(argv[2]) : 20;
    tokenizer *tok = NULL;
    double t0 = walk_now_us(), c0 = walk_cpu_us();
    grammar_vocab *v = gemma_vocab_load(path, &tok);
    if (!v)
        return 1;
    printf("vocabulary %s: %d tokens, loaded and indexed in %.1f ms [cpu %.1f]\n", path, grammar_vocab_n_tokens(v),
           (walk_now_us() - t0) / 1e3, (walk_cpu_us() - c0) / 1e3);
    walk_vocab wv = walk_vocab_make(v, tok);
    size_t words = grammar_mask_words(v);
    uint32_t *ref = malloc(words * sizeof *ref);
    printf("%-12s %16s %7s %16s %16s %18s %12s\n", "schema", "compile ms [cpu]", "steps", "median us [cpu]",
           "p99 us [cpu]", "max us [cpu]", "direct med us");
    for (size_t s = 0; s < sizeof schemas / sizeof schemas[0]; s++) {
        el_err err;
        t0 = walk_now_us();
        c0 = walk_cpu_us();
        grammar *g = schemas[s].schema ? grammar_from_json_schema(v, schemas[s].schema, strlen(schemas[s].schema), &err)
                                       : grammar_json_object(v, &err);
        double compile_ms = (walk_now_us() - t0) / 1e3, compile_cpu_ms = (walk_cpu_us() - c0) / 1e3;
        if (!g) {
            fprintf(stderr, "%s: %s\n", schemas[s].name, err.msg);
            return 1;
        }
        size_t cap = 1 << 16, n = 0;
        double *all = malloc(cap * sizeof *all), *cpu = malloc(cap * sizeof *cpu);
        el_rng rng;
        el_rng_seed(&rng, 1234 + s);
        int unfinished = 0, mismatches = 0;
        for (int w = 0; w < walks; w++) {
            walk_result r = grammar_walk(&wv, g, &rng, 60, 600);
            unfinished += !r.finished;
            mismatches += r.mask_mismatch;
            for (int i = 0; i < r.n_masks && n < cap; i++) {
                cpu[n] = r.mask_cpu_us[i];
                all[n++] = r.mask_us[i];
            }
            free(r.text);
            free(r.mask_us);
            free(r.mask_cpu_us);
        }
        qsort(all, n, sizeof *all, cmp_double);
        qsort(cpu, n, sizeof *cpu, cmp_double);
        /* the direct walk on the first steps of one walk, for comparison */
        grammar_matcher *m = grammar_matcher_new(g, NULL);
        double direct[16];
        int nd = 0;
        for (; nd < 16; nd++) {
            double t1 = walk_now_us();
            int k = grammar_matcher_fill_mask_reference(m, ref);
            direct[nd] = walk_now_us() - t1;
            int t = k > 0 ? walk_pick(ref, words, (int)(el_rng_next(&rng) % (uint64_t)k)) : -1;
            if (t < 0 || grammar_matcher_accept_token(m, t) < 0 || grammar_matcher_finished(m))
                break;
        }
        grammar_matcher_free(m);
        qsort(direct, (size_t)(nd ? nd : 1), sizeof *direct, cmp_double);
        size_t p99 = (size_t)((double)n * 0.99);
        printf("%-12s %7.1f [%6.1f] %7zu %7.1f [%6.1f] %7.1f [%6.1f] %8.1f [%7.1f] %12.1f%s\n", schemas[s].name,
               compile_ms, compile_cpu_ms, n, all[n / 2], cpu[n / 2], all[p99], cpu[p99], all[n - 1], cpu[n - 1],
               direct[nd / 2], unfinished || mismatches ? "  (walks unfinished or refused!)" : "");
        free(all);
        free(cpu);
        grammar_free(g);
    }
    printf("\nbounded compile (hostile schemas):\n");
    for (size_t s = 0; s < sizeof hostile / sizeof hostile[0]; s++) {
        el_err err;
        t0 = walk_now_us();
        c0 = walk_cpu_us();
        grammar *g = grammar_from_json_schema(v, hostile[s], strlen(hostile[s]), &err);
        printf("%8.1f ms [cpu %6.1f]  %-60.60s %s\n", (walk_now_us() - t0) / 1e3, (walk_cpu_us() - c0) / 1e3,
               hostile[s], g ? "compiled" : err.msg);
        grammar_free(g);
    }
    free(ref);
    grammar_vocab_free(v);
    tokenizer_free(tok);
    return 0;
}
