/* The newer architectures against llama.cpp, from the repository's own data: each model
 * of tests/data/goldens-arch/models.tsv is written here by model_write_random (what
 * `elliott make-model` runs; same seed, same bytes) and checked against the
 * NAME.logits.json that llama.cpp computed on that file (scripts/make-arch-goldens.sh),
 * as golden_logits.h describes, at the tolerance the list gives. */
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
        char model_path[512], json_path[512];
        snprintf(model_path, sizeof model_path, "%s/%s.gguf", tmpdir, r.name);
        snprintf(json_path, sizeof json_path, DATA "/%s.logits.json", r.name);
        if (write_model(&r, model_path) == 0)
            run_golden(r.name, model_path, json_path, r.tol, pool);
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
