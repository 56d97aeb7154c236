/* The newer architectures against llama.cpp, from the repository's own data: each model
 * of tests/data/goldens-arch/models.tsv is written here by model_write_random (what
 * `elliott make-model` runs; same seed, same bytes) and checked against the
 * NAME.logits.json that llama.cpp computed on that file (scripts/make-arch-goldens.sh),
 * as golden_logits.h describes, at the tolerance the list gives. An embedding model has
 * a NAME.embed.json instead: llama.cpp's pooled (and dense-projected) vector of each
 * text, before and after L2 normalization, matched element by element within the
 * tolerance of the vector's largest magnitude, evaluated one text at a time and all
 * texts as sequences of one batch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "golden_logits.h"

#define DATA "tests/data/goldens-arch"

static char tmpdir[] = "/tmp/elliott-golden-arch-XXXXXX";

typedef struct recipe {
    char name[64], arch[32], shape[64], type[16];
    unsigned long long seed;
    double tol;
} recipe;

static int parse_recipe(const char *line, recipe *r)
{
    return sscanf(line, "%63s %31s %63s %15s %llu %lf", r->name, r->arch, r->shape, r->type, &r->seed, &r->tol) == 6
               ? 0
               : -1;
}

static int write_model(const recipe *r, const char *path)
{
    int arch = model_arch_from_name(r->arch, strlen(r->arch)), type = gguf_type_from_name(r->type);
    CHECKF(arch >= 0 && type >= 0, "%s: arch %s, type %s", r->name, r->arch, r->type);
    if (arch < 0 || type < 0)
        return -1;
    model_random_options o = {.arch = (enum model_arch)arch, .shape = r->shape, .type = (uint32_t)type,
                              .vocab_path = "tests/data/vocab-gemma3.gguf", .seed = r->seed};
    el_err err = {{0}};
    int rc = model_write_random(path, &o, &err);
    CHECKF(rc == 0, "%s: %s", r->name, err.msg);
    return rc;
}

static threadpool *pool;

enum { MAX_TEXTS = 8, MAX_TEXT_IDS = 128 };

static double vector_error(const float *ours, json_t *ref, int n)
{
    double scale = 0, worst = 0;
    for (int i = 0; i < n; i++)
        scale = fmax(scale, fabs(json_number_value(json_array_get(ref, (size_t)i))));
    for (int i = 0; i < n; i++)
        worst = fmax(worst, fabs(ours[i] - json_number_value(json_array_get(ref, (size_t)i))) / fmax(scale, 1e-30));
    return worst;
}

/* Evaluates texts [first, last) as sequences 0.. of one batch. */
static int embed_texts(model_ctx *ctx, kv_cache *kv, int32_t ids[][MAX_TEXT_IDS], const int *n_ids, int first,
                       int last, bool normalize, float *out)
{
    int32_t tok[MAX_TEXTS * MAX_TEXT_IDS], pos[MAX_TEXTS * MAX_TEXT_IDS], seq[MAX_TEXTS * MAX_TEXT_IDS];
    int n = 0;
    for (int t = first; t < last; t++) {
        kv_cache_truncate(kv, t - first, 0, false);
        for (int i = 0; i < n_ids[t]; i++, n++) {
            tok[n] = ids[t][i];
            pos[n] = i;
            seq[n] = t - first;
        }
    }
    model_batch b = {n, tok, pos, seq, NULL};
    el_err err = {{0}};
    int rc = model_embed(ctx, kv, &b, MODEL_POOLING_NONE, normalize, out, &err);
    CHECKF(rc == 0, "%s", err.msg);
    return rc;
}

static void run_embed_golden(const char *name, const char *model_path, const char *json_path, double tol)
{
    json_error_t jerr;
    json_t *root = json_load_file(json_path, 0, &jerr);
    CHECKF(root != NULL, "%s: %s", json_path, jerr.text);
    el_err err = {{0}};
    model *m = model_load(model_path, NULL, &err);
    CHECKF(m != NULL, "%s", err.msg);
    kv_cache *kv = m ? kv_cache_create(m, MODEL_CACHE_F16, MAX_TEXTS, MAX_TEXT_IDS, &err) : NULL;
    model_ctx *ctx = m ? model_ctx_create(m, MAX_TEXTS * MAX_TEXT_IDS, pool, &err) : NULL;
    json_t *texts = json_object_get(root, "texts");
    int n_texts = (int)json_array_size(texts), E = m ? model_embedding_size(m) : 0;
    CHECK(root && m && kv && ctx && n_texts > 0 && n_texts <= MAX_TEXTS);
    CHECK_EQ_INT(E, (int)json_integer_value(json_object_get(root, "n_embd")));
    if (!root || !m || !kv || !ctx || n_texts < 1 || n_texts > MAX_TEXTS || E < 1) {
        model_ctx_free(ctx), kv_cache_free(kv), model_free(m), json_decref(root);
        return;
    }
    static int32_t ids[MAX_TEXTS][MAX_TEXT_IDS];
    int n_ids[MAX_TEXTS];
    for (int t = 0; t < n_texts; t++) {
        json_t *arr = json_object_get(json_array_get(texts, (size_t)t), "ids");
        n_ids[t] = (int)json_array_size(arr);
        CHECK(n_ids[t] > 0 && n_ids[t] <= MAX_TEXT_IDS);
        if (n_ids[t] < 1 || n_ids[t] > MAX_TEXT_IDS)
            n_ids[t] = 1;
        for (int i = 0; i < n_ids[t]; i++)
            ids[t][i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    }
    float *one = calloc((size_t)E, sizeof *one), *all = calloc((size_t)n_texts * E, sizeof *all);
    double worst = 0;
    for (int t = 0; t < n_texts; t++) {
        json_t *item = json_array_get(texts, (size_t)t);
        const char *tname = json_string_value(json_object_get(item, "name"));
        if (embed_texts(ctx, kv, ids, n_ids, t, t + 1, false, one) == 0) {
            double e = vector_error(one, json_object_get(item, "embd_raw"), E);
            worst = fmax(worst, e);
            CHECKF(e <= tol, "%s %s: raw embedding differs by %.3g of its largest element", name, tname, e);
        }
        if (embed_texts(ctx, kv, ids, n_ids, t, t + 1, true, one) == 0) {
            double e = vector_error(one, json_object_get(item, "embd"), E);
            CHECKF(e <= tol, "%s %s: normalized embedding differs by %.3g", name, tname, e);
        }
    }
    if (embed_texts(ctx, kv, ids, n_ids, 0, n_texts, true, all) == 0) {
        for (int t = 0; t < n_texts; t++) {
            json_t *item = json_array_get(texts, (size_t)t);
            double e = vector_error(all + (size_t)t * E, json_object_get(item, "embd"), E);
            CHECKF(e <= tol, "%s text %d in a batch of %d: differs by %.3g", name, t, n_texts, e);
        }
    }
    fprintf(stderr, "      %s: worst relative error of the embeddings %.2e (tolerance %.0e)\n", name, worst, tol);
    free(one), free(all);
    model_ctx_free(ctx), kv_cache_free(kv), model_free(m), json_decref(root);
}

static void test_arch_goldens(void)
{
    FILE *list = fopen(DATA "/models.tsv", "r");
    CHECKF(list != NULL, "%s/models.tsv is missing (run from the repository root)", DATA);
    if (!list)
        return;
    char line[512];
    int n_models = 0;
    while (fgets(line, sizeof line, list)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        recipe r;
        CHECKF(parse_recipe(line, &r) == 0, "models.tsv: bad line '%s'", line);
        char model_path[512], json_path[512], embed_path[512];
        snprintf(model_path, sizeof model_path, "%s/%s.gguf", tmpdir, r.name);
        snprintf(json_path, sizeof json_path, DATA "/%s.logits.json", r.name);
        snprintf(embed_path, sizeof embed_path, DATA "/%s.embed.json", r.name);
        if (write_model(&r, model_path) == 0) {
            if (access(embed_path, R_OK) == 0)
                run_embed_golden(r.name, model_path, embed_path, r.tol);
            else
                run_golden(r.name, model_path, json_path, r.tol, pool, MODEL_CACHE_F16);
        }
        unlink(model_path);
        n_models++;
    }
    fclose(list);
    CHECK(n_models > 0);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    pool = threadpool_create(2, NULL);
    RUN(test_arch_goldens);
    threadpool_free(pool);
    rmdir(tmpdir);
    return test_summary();
}
