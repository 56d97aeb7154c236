/* elliott bench: prompt-processing and generation speed, measured as llama-bench does
 * (random tokens, an empty cache for each run, a warm-up run first), so that the two
 * tools' numbers can be compared line by line. */
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/rng.h"
#include "base/threadpool.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "model/model.h"

typedef struct bench_options {
    const char *model_path;
    int n_prompt;
    int n_gen;
    int n_depth;
    int reps;
    int n_threads;
    bool jsonl;
    bool cache_q8_0;
} bench_options;

/* Tokens per batch while filling the cache to the requested depth. */
enum { DEPTH_BATCH = 512 };

enum { OPT_CACHE_TYPE = 256 };

typedef struct bench_setup {
    model *m;
    threadpool *pool;
    kv_cache *kv;
    model_ctx *ctx;
    float *logits;
    int32_t *tokens, *pos, *seq;
    int n_vocab;
    el_rng rng;
} bench_setup;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: elliott bench -m MODEL.gguf [-p N_PROMPT] [-n N_GEN] [-d N_DEPTH] [-r REPS] [-t THREADS]\n"
            "                    [--cache-type f16|q8_0] [-o md|jsonl]\n\n"
            "Measures prompt processing (one batch of random tokens) and generation (tokens one\n"
            "at a time) in tokens per second, as the mean and standard deviation over several\n"
            "runs after a warm-up run, each from an empty cache, or from one holding N_DEPTH\n"
            "random tokens (filled before the clock starts). The output matches llama-bench's\n"
            "(a markdown table, or JSON lines with its field names).\n\n"
            "options:\n"
            "  -m, --model FILE       GGUF model (required)\n"
            "  -p, --n-prompt N       prompt tokens, 0 to 16384 (default 128; 0 skips the test)\n"
            "  -n, --n-gen N          generated tokens, 0 to 16384 (default 32; 0 skips the test)\n"
            "  -d, --n-depth N        tokens in the cache before each test, 0 to 65536 (default 0)\n"
            "  -r, --repetitions N    runs per test, 1 to 1000 (default 3)\n"
            "  -t, --threads N        compute threads (default: every CPU)\n"
            "      --cache-type T     KV cache storage: f16 or q8_0 (default f16)\n"
            "  -o, --output md|jsonl  output format (default md)\n"
            "  -h, --help             this help\n");
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int parse_options(int argc, char **argv, bench_options *o)
{
    static const struct option longopts[] = {{"model", required_argument, 0, 'm'},
                                              {"n-prompt", required_argument, 0, 'p'},
                                              {"n-gen", required_argument, 0, 'n'},
                                              {"n-depth", required_argument, 0, 'd'},
                                              {"repetitions", required_argument, 0, 'r'},
                                              {"threads", required_argument, 0, 't'},
                                              {"output", required_argument, 0, 'o'},
                                              {"cache-type", required_argument, 0, OPT_CACHE_TYPE},
                                              {"help", no_argument, 0, 'h'},
                                              {0, 0, 0, 0}};
    *o = (bench_options){.n_prompt = 128, .n_gen = 32, .reps = 3, .n_threads = el_cpu_count()};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":m:p:n:d:r:t:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': o->model_path = optarg; break;
        case 'p': if (args_int("bench", "-p", optarg, 0, 16384, &o->n_prompt)) return 2; break;
        case 'n': if (args_int("bench", "-n", optarg, 0, 16384, &o->n_gen)) return 2; break;
        case 'd': if (args_int("bench", "-d", optarg, 0, 65536, &o->n_depth)) return 2; break;
        case 'r': if (args_int("bench", "-r", optarg, 1, 1000, &o->reps)) return 2; break;
        case 't': if (args_int("bench", "-t", optarg, 1, 1024, &o->n_threads)) return 2; break;
        case OPT_CACHE_TYPE: if (args_cache_type("bench", "--cache-type", optarg, &o->cache_q8_0)) return 2; break;
        case 'o':
            if (!strcmp(optarg, "jsonl")) o->jsonl = true;
            else if (strcmp(optarg, "md")) return args_usage_error("bench", "-o is md or jsonl");
            break;
        case 'h': usage(stdout); return -1;
        default: return args_option_error("bench", c, argv);
        }
    }
    if (optind < argc)
        return args_usage_error("bench", "unexpected argument '%s'", argv[optind]);
    if (!o->model_path)
        return args_usage_error("bench", "-m MODEL.gguf is required");
    if (o->n_prompt == 0 && o->n_gen == 0)
        return args_usage_error("bench", "nothing to measure: -p and -n are both 0");
    return 0;
}

static void setup_free(bench_setup *s)
{
    model_ctx_free(s->ctx);
    kv_cache_free(s->kv);
    threadpool_free(s->pool);
    model_free(s->m);
    free(s->logits);
    free(s->tokens);
    free(s->pos);
    free(s->seq);
}

static int setup_init(bench_setup *s, const bench_options *o, el_err *err)
{
    memset(s, 0, sizeof *s);
    el_rng_seed(&s->rng, 1234);
    if (!(s->m = model_load(o->model_path, NULL, err)))
        return -1;
    const model_hparams *hp = model_hparams_of(s->m);
    s->n_vocab = hp->n_vocab;
    int n_ctx = o->n_depth + o->n_prompt + o->n_gen + 1;
    int max_batch = o->n_prompt > 0 ? o->n_prompt : 1;
    if (o->n_depth > max_batch) /* the depth goes in in batches of up to DEPTH_BATCH */
        max_batch = o->n_depth < DEPTH_BATCH ? o->n_depth : (max_batch > DEPTH_BATCH ? max_batch : DEPTH_BATCH);
    if (!(s->pool = threadpool_create(o->n_threads, err)) || !(s->kv = kv_cache_create(s->m, o->cache_q8_0 ? MODEL_CACHE_Q8_0 : MODEL_CACHE_F16, 1, n_ctx, err)) ||
        !(s->ctx = model_ctx_create(s->m, max_batch, s->pool, err)))
        return -1;
    s->logits = malloc((size_t)hp->n_vocab * sizeof *s->logits);
    s->tokens = calloc((size_t)max_batch, sizeof *s->tokens);
    s->pos = calloc((size_t)max_batch, sizeof *s->pos);
    s->seq = calloc((size_t)max_batch, sizeof *s->seq);
    if (!s->logits || !s->tokens || !s->pos || !s->seq)
        return el_fail(err, "out of memory");
    return 0;
}

/* n random tokens at positions first.. as one batch (n <= the context's batch size). */
static int forward_random(bench_setup *s, int first, int n, el_err *err)
{
    for (int i = 0; i < n; i++) {
        s->tokens[i] = (int32_t)(el_rng_next(&s->rng) % (uint64_t)s->n_vocab);
        s->pos[i] = first + i;
        s->seq[i] = 0;
    }
    model_batch b = {.n_tokens = n, .token = s->tokens, .pos = s->pos, .seq = s->seq};
    return model_forward(s->ctx, s->kv, &b, s->logits, err);
}

/* Empties the cache, then fills it with depth random tokens (untimed), as llama-bench -d. */
static int reset_to_depth(bench_setup *s, int depth, el_err *err)
{
    kv_cache_truncate(s->kv, 0, 0, false);
    for (int done = 0; done < depth;) {
        int n = depth - done < DEPTH_BATCH ? depth - done : DEPTH_BATCH;
        if (forward_random(s, done, n, err))
            return -1;
        done += n;
    }
    return 0;
}

/* One batch of n random tokens after depth cached ones; returns seconds or -1. */
static double time_prompt(bench_setup *s, int depth, int n, el_err *err)
{
    if (reset_to_depth(s, depth, err))
        return -1;
    double t0 = now_seconds();
    if (forward_random(s, depth, n, err))
        return -1;
    return now_seconds() - t0;
}

/* n tokens one at a time after depth cached ones; returns seconds or -1. */
static double time_generation(bench_setup *s, int depth, int n, el_err *err)
{
    if (reset_to_depth(s, depth, err))
        return -1;
    int32_t token = (int32_t)(el_rng_next(&s->rng) % (uint64_t)s->n_vocab);
    double t0 = now_seconds();
    for (int i = 0; i < n; i++) {
        int32_t pos = depth + i, seq = 0;
        model_batch b = {.n_tokens = 1, .token = &token, .pos = &pos, .seq = &seq};
        if (model_forward(s->ctx, s->kv, &b, s->logits, err))
            return -1;
        token = (int32_t)(el_rng_next(&s->rng) % (uint64_t)s->n_vocab);
    }
    return now_seconds() - t0;
}

typedef struct model_summary {
    char name[160];
    uint64_t bytes;
    uint64_t params;
} model_summary;

static void summarize(const bench_setup *s, const char *path, model_summary *sum)
{
    const gguf_file *f = model_gguf(s->m);
    sum->bytes = sum->params = 0;
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            n *= (uint64_t)t->ne[d];
        sum->params += n;
        sum->bytes += t->nbytes;
    }
    const char *base = strrchr(path, '/');
    snprintf(sum->name, sizeof sum->name, "%s", base ? base + 1 : path);
}

static void report(const bench_options *o, const model_summary *sum, int n_prompt, int n_gen,
                   const double *secs, int reps)
{
    int n = n_prompt ? n_prompt : n_gen;
    const char *cache = o->cache_q8_0 ? "q8_0" : "f16";
    double mean = 0, var = 0, mean_ns = 0, var_ns = 0;
    for (int i = 0; i < reps; i++) {
        mean += n / secs[i] / reps;
        mean_ns += secs[i] * 1e9 / reps;
    }
    for (int i = 0; i < reps; i++) {
        double d = n / secs[i] - mean, dn = secs[i] * 1e9 - mean_ns;
        var += reps > 1 ? d * d / (reps - 1) : 0;
        var_ns += reps > 1 ? dn * dn / (reps - 1) : 0;
    }
    char test[32];
    if (o->n_depth)
        snprintf(test, sizeof test, "%s%d @ d%d", n_prompt ? "pp" : "tg", n, o->n_depth);
    else
        snprintf(test, sizeof test, "%s%d", n_prompt ? "pp" : "tg", n);
    if (o->jsonl) {
        json_t *path = json_string(o->model_path);
        char *quoted = path ? json_dumps(path, JSON_ENCODE_ANY) : NULL;
        printf("{\"model_filename\":%s,\"model_size\":%llu,\"model_n_params\":%llu,\"n_threads\":%d,"
               "\"isa\":\"%s\",\"type_k\":\"%s\",\"type_v\":\"%s\",\"n_prompt\":%d,\"n_gen\":%d,\"n_depth\":%d,\"avg_ns\":%.0f,\"stddev_ns\":%.0f,"
               "\"avg_ts\":%.6f,\"stddev_ts\":%.6f,\"samples_ts\":[",
               quoted ? quoted : "null", (unsigned long long)sum->bytes, (unsigned long long)sum->params, o->n_threads,
               kernels_isa_name(kernels_isa()), cache, cache, n_prompt, n_gen, o->n_depth, mean_ns, sqrt(var_ns), mean, sqrt(var));
        for (int i = 0; i < reps; i++)
            printf("%s%.6f", i ? "," : "", n / secs[i]);
        printf("]}\n");
        free(quoted);
        json_decref(path);
    } else {
        printf("| %-30s | %7.2f GiB | %7.2f B | %-8s | %7d | %-6s | %-6s | %14s | %12.2f ± %.2f |\n", sum->name,
               sum->bytes / 1073741824.0, sum->params / 1e9, kernels_isa_name(kernels_isa()), o->n_threads, cache,
               cache, test,
               mean, sqrt(var));
    }
    fflush(stdout);
}

static int run_test(const bench_options *o, bench_setup *s, const model_summary *sum, bool prompt, el_err *err)
{
    int n = prompt ? o->n_prompt : o->n_gen;
    double *secs = calloc((size_t)o->reps, sizeof *secs);
    if (!secs)
        return el_fail(err, "out of memory");
    int rc = 0;
    for (int i = -1; i < o->reps && rc == 0; i++) { /* i == -1: warm-up */
        double t = prompt ? time_prompt(s, o->n_depth, n, err) : time_generation(s, o->n_depth, i < 0 ? 1 : n, err);
        if (t < 0)
            rc = -1;
        else if (i >= 0)
            secs[i] = t > 1e-9 ? t : 1e-9;
    }
    if (rc == 0)
        report(o, sum, prompt ? n : 0, prompt ? 0 : n, secs, o->reps);
    free(secs);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    bench_options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    el_err err = {{0}};
    bench_setup s;
    if (setup_init(&s, &o, &err)) {
        fprintf(stderr, "elliott bench: %s\n", err.msg);
        setup_free(&s);
        return 1;
    }
    model_summary sum;
    summarize(&s, o.model_path, &sum);
    if (!o.jsonl) {
        printf("| %-30s | %11s | %9s | %-8s | %7s | %-6s | %-6s | %14s | %20s |\n", "model", "size", "params", "isa",
               "threads", "type_k", "type_v", "test", "t/s");
        printf("| %.30s | %.11s | %.9s | %.8s | %.7s | %.6s | %.6s | %.14s | %.20s |\n", "------------------------------",
               "----------:", "--------:", "--------", "------:", "------", "------", "-------------:",
               "-------------------:");
    }
    if ((o.n_prompt && run_test(&o, &s, &sum, true, &err)) || (o.n_gen && run_test(&o, &s, &sum, false, &err))) {
        fprintf(stderr, "elliott bench: %s\n", err.msg);
        setup_free(&s);
        return 1;
    }
    setup_free(&s);
    return 0;
}
