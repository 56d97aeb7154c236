#include "cli/serve_models.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli_engine.h"
#include "cli/embedded_model.h"

enum { MAX_MODELS = 1024 };

typedef struct pending_model {
    char *path;               /* NULL: the built-in model */
    const char *names[REGISTRY_MAX_NAMES];
    size_t n_names;
    const char *aliases[REGISTRY_MAX_NAMES]; /* --alias names of a file served anyway: after its own */
    size_t n_aliases;
    char stem[REGISTRY_MAX_NAME + 1], base[REGISTRY_MAX_NAME + 1];
    dev_t dev;
    ino_t ino;
} pending_model;

typedef struct model_list {
    pending_model *items;
    size_t n;
} model_list;

__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "elliott serve: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

/* A name once: repeats (the stem equal to the NAME given, say) are dropped. */
static int add_name(pending_model *m, const char *name)
{
    for (size_t i = 0; i < m->n_names; i++)
        if (!strcmp(m->names[i], name))
            return 0;
    if (m->n_names == REGISTRY_MAX_NAMES)
        return fail("the model %s has more than %d names (%s is one too many)", m->path ? m->path : "built-in", REGISTRY_MAX_NAMES, name);
    m->names[m->n_names++] = name;
    return 0;
}

/* The file's name with and without ".gguf"; a name too long for the registry is left out. */
static void file_names(pending_model *m)
{
    const char *slash = strrchr(m->path, '/');
    const char *base = slash ? slash + 1 : m->path;
    size_t len = strlen(base);
    if (len > REGISTRY_MAX_NAME || !len)
        return;
    memcpy(m->base, base, len + 1);
    static const char ext[] = ".gguf";
    size_t ext_len = sizeof ext - 1;
    if (len > ext_len && !strcmp(base + len - ext_len, ext)) {
        memcpy(m->stem, base, len - ext_len);
        m->stem[len - ext_len] = '\0';
    }
}

static pending_model *find_file(model_list *l, const struct stat *st)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i].path && l->items[i].dev == st->st_dev && l->items[i].ino == st->st_ino)
            return &l->items[i];
    return NULL;
}

/* The model in path: the one already listed for that file, or a new one. */
static pending_model *model_for(model_list *l, const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        fail("cannot open the model %s: %s", path, strerror(errno));
        return NULL;
    }
    /* Only stat: opening could block on a FIFO, which the loader is left to handle. */
    if (S_ISDIR(st.st_mode)) {
        fail("the model %s is a directory, not a GGUF file", path);
        return NULL;
    }
    pending_model *m = find_file(l, &st);
    if (m)
        return m;
    if (l->n == MAX_MODELS) {
        fail("more than %d models (%s is one too many)", MAX_MODELS, path);
        return NULL;
    }
    m = &l->items[l->n];
    memset(m, 0, sizeof *m);
    m->path = strdup(path);
    if (!m->path) {
        fail("out of memory");
        return NULL;
    }
    m->dev = st.st_dev;
    m->ino = st.st_ino;
    file_names(m);
    l->n++;
    return m;
}

/* NAME=FILE, or FILE (a FILE whose own name has '=' in it is taken whole when it exists). */
static void split_named(const char *arg, char *name, size_t cap, const char **path)
{
    struct stat st;
    const char *eq = strchr(arg, '=');
    name[0] = '\0';
    *path = arg;
    if (!eq || eq == arg || stat(arg, &st) == 0 || (size_t)(eq - arg) >= cap)
        return;
    memcpy(name, arg, (size_t)(eq - arg));
    name[eq - arg] = '\0';
    *path = eq + 1;
}

static int has_gguf_suffix(const char *name)
{
    size_t len = strlen(name);
    return len > 5 && !strcmp(name + len - 5, ".gguf");
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every *.gguf in dir, in name order. */
static int add_directory(model_list *l, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return fail("cannot read the models directory %s: %s", dir, strerror(errno));
    char **files = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *ent;
    while (rc == 0 && (ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.' || !has_gguf_suffix(ent->d_name))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(files, cap * sizeof *files);
            if (!grown) {
                rc = fail("out of memory");
                break;
            }
            files = grown;
        }
        size_t len = strlen(dir) + strlen(ent->d_name) + 2;
        files[n] = malloc(len);
        if (!files[n]) {
            rc = fail("out of memory");
            break;
        }
        snprintf(files[n], len, "%s/%s", dir, ent->d_name);
        n++;
    }
    closedir(d);
    if (rc == 0 && n == 0)
        rc = fail("the models directory %s has no .gguf file", dir);
    if (rc == 0)
        qsort(files, n, sizeof *files, by_name);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && !model_for(l, files[i]))
            rc = -1;
        free(files[i]);
    }
    free(files);
    return rc;
}

/* -m values, then the directory's files, then --alias NAME=FILE: each file once. */
static int collect(model_list *l, const serve_model_args *a, char (*given)[REGISTRY_MAX_NAME + 1])
{
    for (size_t i = 0; i < a->n_models; i++) {
        const char *path;
        split_named(a->models[i], given[i], REGISTRY_MAX_NAME + 1, &path);
        pending_model *m = model_for(l, path);
        if (!m || (given[i][0] && add_name(m, given[i]) < 0))
            return -1;
    }
    if (a->models_dir && add_directory(l, a->models_dir) < 0)
        return -1;
    for (size_t i = 0; i < a->n_aliases; i++) {
        char *name = given[a->n_models + i];
        const char *path;
        split_named(a->aliases[i], name, REGISTRY_MAX_NAME + 1, &path);
        if (!name[0])
            return fail("--alias %s: give NAME (the default model's name) or NAME=FILE", a->aliases[i]);
        size_t before = l->n;
        pending_model *m = model_for(l, path);
        if (!m)
            return -1;
        if (l->n > before) { /* served for this alias only: it is the model's id */
            if (add_name(m, name) < 0)
                return -1;
        } else if (m->n_aliases == REGISTRY_MAX_NAMES) {
            return fail("the model %s has more than %d names (%s is one too many)", path, REGISTRY_MAX_NAMES, name);
        } else {
            m->aliases[m->n_aliases++] = name;
        }
    }
    return 0;
}

static int register_all(registry *r, model_list *l, const serve_model_args *a, const engine_config *base)
{
    pending_model *def = &l->items[0];
    /* The default model's id comes first; the names collected so far follow. */
    const char *named[REGISTRY_MAX_NAMES];
    size_t n_named = def->n_names;
    memcpy(named, def->names, n_named * sizeof *named);
    def->n_names = 0;
    if (add_name(def, a->default_name ? a->default_name : "elliott-1") < 0)
        return -1;
    for (size_t i = 0; i < n_named; i++)
        if (add_name(def, named[i]) < 0)
            return -1;
    for (size_t i = 0; i < l->n; i++) {
        pending_model *m = &l->items[i];
        if ((m->stem[0] && add_name(m, m->stem) < 0) || (m->base[0] && add_name(m, m->base) < 0))
            return -1;
        if (!m->path && add_name(m, EMBEDDED_MODEL_NAME) < 0)
            return -1;
        for (size_t j = 0; j < m->n_aliases; j++)
            if (add_name(m, m->aliases[j]) < 0)
                return -1;
        if (!m->n_names)
            return fail("the model %s needs a name: give it as NAME=%s", m->path, m->path);
        registry_model_spec spec = {.names = m->names, .n_names = m->n_names, .engine = *base};
        cli_engine_use_model("serve", &spec.engine, m->path);
        el_err err = {{0}};
        if (registry_add(r, &spec, &err) < 0)
            return fail("%s", err.msg);
    }
    return 0;
}

int serve_models_add(registry *r, const serve_model_args *a, const engine_config *base)
{
    model_list l = {calloc(MAX_MODELS, sizeof *l.items), 0};
    char (*given)[REGISTRY_MAX_NAME + 1] = calloc(2 * SERVE_MAX_MODEL_ARGS, sizeof *given);
    int rc = -1;
    if (!l.items || !given) {
        fail("out of memory");
    } else if (collect(&l, a, given) == 0) {
        if (l.n == 0)
            l.n = 1; /* the built-in model (calloc left its path NULL) */
        rc = register_all(r, &l, a, base);
    }
    for (size_t i = 0; l.items && i < l.n; i++)
        free(l.items[i].path);
    free(l.items);
    free(given);
    return rc;
}
