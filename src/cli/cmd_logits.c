/* elliott logits: evaluates token ids in one batch and prints each position's top
 * logits as JSON, in the shape of the golden files, so that anyone can compare the
 * engine with another implementation. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/threadpool.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "model/model.h"
#include "sampler/sampler.h"

enum { MAX_TOKENS = 512, MAX_TOP = 1000 };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: elliott logits -m MODEL.gguf --tokens ID,ID,... [--top K] [-t N] [--cache-type T]\n\n"
            "Evaluates the token ids (at most %d) as one batch and prints, for every position,\n"
            "the K highest logits with the mean and rms of all logits, as JSON:\n"
            "  {\"ids\":[...],\"positions\":[{\"pos\":0,\"mean\":M,\"rms\":R,\"top\":[[id,logit],...]},...]}\n\n"
            "options:\n"
            "  -m, --model FILE   GGUF model\n"
            "      --tokens LIST  comma-separated token ids\n"
            "      --top K        logits to print per position (default 20, at most %d)\n"
            "  -t, --threads N    threads (default: the CPUs available)\n"
            "      --cache-type T KV cache storage: f16 or q8_0 (default f16)\n"
            "  -h, --help         this help\n",
            MAX_TOKENS, MAX_TOP);
}

/* "2,106,1645" -> ids; ranges are checked once the vocabulary is known. */
static int parse_tokens(const char *text, int32_t *ids, int *n)
{
    *n = 0;
    const char *p = text;
    if (!*p)
        return args_usage_error("logits", "--tokens: empty list");
    for (;;) {
        char *end;
        if (*p < '0' || *p > '9')
            return args_usage_error("logits", "--tokens: '%s' is not a list of non-negative integers", text);
        long v = strtol(p, &end, 10);
        if (v > INT32_MAX)
            return args_usage_error("logits", "--tokens: id %ld is too large", v);
        if (*n == MAX_TOKENS)
            return args_usage_error("logits", "--tokens: more than %d ids", MAX_TOKENS);
        ids[(*n)++] = (int32_t)v;
        if (*end == '\0')
            return 0;
        if (*end != ',')
            return args_usage_error("logits", "--tokens: '%s' is not a list of non-negative integers", text);
        p = end + 1;
    }
}

/* Every position's top k ids, n x k of them; NULL when out of memory. */
static int32_t *top_ids_of(const float *logits, int n, int n_vocab, int k)
{
    int32_t *top = malloc((size_t)n * (size_t)k * sizeof *top);
    for (int i = 0; top && i < n; i++) {
        if (sampler_top_ids(logits + (size_t)i * (size_t)n_vocab, n_vocab, k, top + (size_t)i * (size_t)k) < 0) {
            free(top);
            top = NULL;
        }
    }
    return top;
}

/* Returns 0, or -1 when out of memory (before anything is printed). */
static int print_json(const int32_t *ids, int n, const float *logits, int n_vocab, int k)
{
    int32_t *top = top_ids_of(logits, n, n_vocab, k);
    if (!top)
        return -1;
    printf("{\"ids\":[");
    for (int i = 0; i < n; i++)
        printf(i ? ",%d" : "%d", ids[i]);
    printf("],\"positions\":[");
    for (int i = 0; i < n; i++) {
        const float *lg = logits + (size_t)i * (size_t)n_vocab;
        const int32_t *best = top + (size_t)i * (size_t)k;
        double sum = 0, sq = 0;
        for (int t = 0; t < n_vocab; t++) {
            sum += lg[t];
            sq += (double)lg[t] * lg[t];
        }
        printf("%s{\"pos\":%d,\"mean\":%.6f,\"rms\":%.6f,\"top\":[", i ? "," : "", i, sum / n_vocab,
               sqrt(sq / n_vocab));
        for (int j = 0; j < k; j++)
            printf("%s[%d,%.6f]", j ? "," : "", best[j], lg[best[j]]);
        printf("]}\n");
    }
    printf("]}\n");
    free(top);
    return 0;
}

static int evaluate(const char *path, const int32_t *ids, int n, int k, int n_threads, bool cache_q8_0)
{
    el_err err = {{0}};
    model *m = model_load(path, NULL, &err);
    if (!m) {
        fprintf(stderr, "elliott logits: %s\n", err.msg);
        return 1;
    }
    int rc = 1;
    const model_hparams *hp = model_hparams_of(m);
    threadpool *pool = NULL;
    kv_cache *kv = NULL;
    model_ctx *ctx = NULL;
    float *logits = NULL;
    bool *want = NULL;
    int32_t *pos = NULL, *seq = NULL;
    for (int i = 0; i < n; i++) {
        if (ids[i] >= hp->n_vocab) {
            rc = args_usage_error("logits", "--tokens: id %d is outside the vocabulary of %d", ids[i], hp->n_vocab);
            goto done;
        }
    }
    if (k > hp->n_vocab)
        k = hp->n_vocab;
    pool = threadpool_create(n_threads, &err);
    kv = pool ? kv_cache_create(m, cache_q8_0 ? MODEL_CACHE_Q8_0 : MODEL_CACHE_F16, 1, n, &err) : NULL;
    ctx = kv ? model_ctx_create(m, n, pool, &err) : NULL;
    if (!ctx) {
        fprintf(stderr, "elliott logits: %s\n", err.msg);
        goto done;
    }
    logits = malloc((size_t)n * (size_t)hp->n_vocab * sizeof *logits);
    want = malloc((size_t)n * sizeof *want);
    pos = malloc((size_t)n * sizeof *pos);
    seq = calloc((size_t)n, sizeof *seq);
    if (!logits || !want || !pos || !seq) {
        fprintf(stderr, "elliott logits: out of memory\n");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        pos[i] = i;
        want[i] = true;
    }
    model_batch batch = {n, ids, pos, seq, want};
    if (model_forward(ctx, kv, &batch, logits, &err) < 0) {
        fprintf(stderr, "elliott logits: %s\n", err.msg);
        goto done;
    }
    if (print_json(ids, n, logits, hp->n_vocab, k) < 0) {
        fprintf(stderr, "elliott logits: out of memory\n");
        goto done;
    }
    rc = fflush(stdout) == 0 ? 0 : 1;
done:
    free(logits);
    free(want);
    free(pos);
    free(seq);
    model_ctx_free(ctx);
    kv_cache_free(kv);
    threadpool_free(pool);
    model_free(m);
    return rc;
}

int cmd_logits(int argc, char **argv)
{
    static const struct option options[] = {
        {"model", required_argument, NULL, 'm'}, {"tokens", required_argument, NULL, 'T'},
        {"top", required_argument, NULL, 'k'},   {"threads", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},        {"cache-type", required_argument, NULL, 'C'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *tokens = NULL;
    int k = 20, n_threads = el_cpu_count();
    bool cache_q8_0 = false;
    if (n_threads < 1)
        n_threads = 1;
    optind = 1;
    opterr = 0;
    for (int c; (c = getopt_long(argc, argv, ":m:t:h", options, NULL)) != -1;) {
        switch (c) {
        case 'm': path = optarg; break;
        case 'T': tokens = optarg; break;
        case 'k':
            if (args_int("logits", "--top", optarg, 1, MAX_TOP, &k) < 0)
                return 2;
            break;
        case 't':
            if (args_int("logits", "--threads", optarg, 1, 256, &n_threads) < 0)
                return 2;
            break;
        case 'C':
            if (args_cache_type("logits", "--cache-type", optarg, &cache_q8_0) < 0)
                return 2;
            break;
        case 'h': usage(stdout); return 0;
        default: return args_option_error("logits", c, argv);
        }
    }
    if (optind < argc)
        return args_usage_error("logits", "unexpected argument '%s'", argv[optind]);
    if (!path)
        return args_usage_error("logits", "-m MODEL is required");
    if (!tokens)
        return args_usage_error("logits", "--tokens is required");
    int32_t ids[MAX_TOKENS];
    int n;
    if (parse_tokens(tokens, ids, &n) != 0)
        return 2;
    return evaluate(path, ids, n, k, n_threads, cache_q8_0);
}
