/* The registry: names resolve to their model, models load on first use (once,
 * however many requests ask at the same moment), the least recently used idle
 * model is unloaded under a count or a byte budget, and a held model never is. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include "test.h"

#include "registry/registry.h"

static const char *stories_path = "models/stories260K.gguf";

static int add(registry *r, const char *name, const char *alias, const char *path)
{
    const char *names[2] = {name, alias};
    registry_model_spec s = {.names = names, .n_names = alias ? 2 : 1};
    engine_config_default(&s.engine);
    s.engine.model_path = path;
    s.engine.n_threads = 1;
    s.engine.n_ctx = 64;
    el_err err = {{0}};
    int rc = registry_add(r, &s, &err);
    if (rc < 0)
        fprintf(stderr, "  (registry_add: %s)\n", err.msg);
    return rc;
}

static registry *make(int max_loaded, uint64_t budget, int n_models)
{
    registry_config c = {.max_loaded = max_loaded, .memory_budget = budget};
    el_err err = {{0}};
    registry *r = registry_create(&c, &err);
    CHECKF(r != NULL, "%s", err.msg);
    static const char *const names[] = {"a", "b", "c"};
    for (int i = 0; r && i < n_models; i++)
        CHECK_EQ_INT(add(r, names[i], NULL, stories_path), 0);
    return r;
}

static enum registry_state use(registry *r, int model)
{
    registry_acquire(r, model);
    return registry_wait(r, model, 60000, NULL);
}

static enum registry_state state_of(registry *r, int model)
{
    registry_status st;
    registry_get_status(r, model, &st);
    return st.state;
}

static uint64_t loads_of(registry *r, int model)
{
    registry_status st;
    registry_get_status(r, model, &st);
    return st.loads;
}

static void test_names(void)
{
    registry *r = make(0, 0, 0);
    if (!r)
        return;
    CHECK_EQ_INT(add(r, "elliott-1", "stories260K", stories_path), 0);
    CHECK_EQ_INT(add(r, "second", NULL, stories_path), 0);
    CHECK_EQ_INT(registry_count(r), 2);
    CHECK_EQ_INT(registry_find(r, "elliott-1"), 0);
    CHECK_EQ_INT(registry_find(r, "stories260K"), 0);
    CHECK_EQ_INT(registry_find(r, "second"), 1);
    CHECK_EQ_INT(registry_find(r, "third"), -1);
    CHECK_EQ_INT(registry_find(r, ""), -1);
    CHECK_EQ_INT(registry_find(r, NULL), -1);
    CHECK(!strcmp(registry_name(r, 0), "elliott-1"));
    CHECK(!strcmp(registry_name(r, 1), "second"));
    /* refused: a name taken, a bad name, a missing file, a directory */
    CHECK_EQ_INT(add(r, "stories260K", NULL, stories_path), -1);
    CHECK_EQ_INT(add(r, "x", "x", stories_path), -1);
    CHECK_EQ_INT(add(r, "has space", NULL, stories_path), -1);
    CHECK_EQ_INT(add(r, "", NULL, stories_path), -1);
    CHECK_EQ_INT(add(r, "missing", NULL, "/nonexistent/model.gguf"), -1);
    CHECK_EQ_INT(add(r, "dir", NULL, "models"), -1);
    CHECK_EQ_INT(registry_count(r), 2);
    /* nothing loads before start or first use */
    CHECK_EQ_INT(state_of(r, 0), REGISTRY_UNLOADED);
    registry_free(r);
}

static void test_default_loads_at_start_others_on_first_use(void)
{
    registry *r = make(0, 0, 2);
    if (!r)
        return;
    el_err err = {{0}};
    CHECK_EQ_INT(registry_start(r, &err), 0);
    registry_acquire(r, 0);
    CHECK_EQ_INT(registry_wait(r, 0, 60000, NULL), REGISTRY_READY);
    CHECK(registry_engine(r, 0) != NULL);
    registry_release(r, 0);
    CHECK_EQ_INT(state_of(r, 1), REGISTRY_UNLOADED);
    CHECK_EQ_INT(loads_of(r, 1), 0);
    CHECK_EQ_INT(use(r, 1), REGISTRY_READY);
    engine_info info;
    engine_get_info(registry_engine(r, 1), &info);
    CHECK_EQ_INT(info.n_ctx, 64);
    registry_release(r, 1);
    CHECK_EQ_INT(loads_of(r, 1), 1);
    /* no limit: both stay */
    CHECK_EQ_INT(state_of(r, 0), REGISTRY_READY);
    CHECK_EQ_INT(state_of(r, 1), REGISTRY_READY);
    registry_free(r);
}

/* Unloading happens on the registry's thread: wait until it shows. */
static bool becomes(registry *r, int model, enum registry_state want)
{
    for (int i = 0; i < 3000; i++) {
        if (state_of(r, model) == want)
            return true;
        usleep(10000);
    }
    return false;
}

static void test_max_loaded_unloads_least_recently_used(void)
{
    registry *r = make(2, 0, 3);
    if (!r)
        return;
    CHECK_EQ_INT(use(r, 0), REGISTRY_READY);
    registry_release(r, 0);
    CHECK_EQ_INT(use(r, 1), REGISTRY_READY);
    registry_release(r, 1);
    CHECK_EQ_INT(use(r, 0), REGISTRY_READY); /* a used again: b is now the oldest */
    registry_release(r, 0);
    CHECK_EQ_INT(use(r, 2), REGISTRY_READY);
    registry_release(r, 2);
    CHECK(becomes(r, 1, REGISTRY_UNLOADED));
    CHECK_EQ_INT(state_of(r, 0), REGISTRY_READY);
    registry_status st;
    registry_get_status(r, 1, &st);
    CHECK_EQ_INT(st.unloads, 1);
    CHECK(st.loaded_once); /* what /health tells from a failed load that was unloaded */
    /* b again: a is the oldest now; b loads a second time */
    CHECK_EQ_INT(use(r, 1), REGISTRY_READY);
    registry_release(r, 1);
    CHECK(becomes(r, 0, REGISTRY_UNLOADED));
    CHECK_EQ_INT(loads_of(r, 1), 2);
    registry_free(r);
}

static void test_budget_unloads(void)
{
    struct stat st;
    CHECK(stat(stories_path, &st) == 0);
    uint64_t size = (uint64_t)st.st_size;
    registry *r = make(0, size * 2 + size / 2, 3); /* room for two */
    if (!r)
        return;
    /* a model larger than the budget is refused when added */
    registry_config c = {.memory_budget = size - 1};
    el_err err = {{0}};
    registry *small = registry_create(&c, &err);
    CHECK(small != NULL);
    if (small) {
        CHECK_EQ_INT(add(small, "big", NULL, stories_path), -1);
        registry_free(small);
    }
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(use(r, i), REGISTRY_READY);
        registry_release(r, i);
    }
    CHECK(becomes(r, 0, REGISTRY_UNLOADED));
    CHECK_EQ_INT(state_of(r, 1), REGISTRY_READY);
    CHECK_EQ_INT(state_of(r, 2), REGISTRY_READY);
    registry_free(r);
}

static void test_busy_model_is_never_unloaded(void)
{
    registry *r = make(1, 0, 2);
    if (!r)
        return;
    CHECK_EQ_INT(use(r, 0), REGISTRY_READY); /* held */
    engine *held = registry_engine(r, 0);
    registry_acquire(r, 1);
    /* no room while a is held: b waits, a stays */
    CHECK_EQ_INT(registry_wait(r, 1, 200, NULL), REGISTRY_WAITING);
    CHECK_EQ_INT(state_of(r, 0), REGISTRY_READY);
    CHECK(registry_engine(r, 0) == held);
    CHECK(engine_state(held, NULL) == ENGINE_READY);
    /* a's release makes the room */
    registry_release(r, 0);
    CHECK_EQ_INT(registry_wait(r, 1, 60000, NULL), REGISTRY_READY);
    CHECK(becomes(r, 0, REGISTRY_UNLOADED));
    registry_release(r, 1);
    registry_free(r);
}

typedef struct racer {
    registry *r;
    pthread_barrier_t *go;
    enum registry_state got;
} racer;

static void *race(void *arg)
{
    racer *x = arg;
    pthread_barrier_wait(x->go);
    x->got = use(x->r, 1);
    registry_release(x->r, 1);
    return NULL;
}

static void test_concurrent_first_use_loads_once(void)
{
    registry *r = make(0, 0, 2);
    if (!r)
        return;
    enum { N = 8 };
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, N);
    pthread_t t[N];
    racer x[N];
    for (int i = 0; i < N; i++) {
        x[i] = (racer){r, &go, REGISTRY_UNLOADED};
        pthread_create(&t[i], NULL, race, &x[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(x[i].got, REGISTRY_READY);
    }
    pthread_barrier_destroy(&go);
    CHECK_EQ_INT(loads_of(r, 1), 1);
    CHECK_EQ_INT(loads_of(r, 0), 0);
    registry_free(r);
}

/* keep_alive: 0 unloads a model as its last request ends, a time unloads it that
 * long after (a request in between keeps it), and -1 restores the default. */
static void test_keep_alive(void)
{
    registry *r = make(0, 0, 2);
    if (!r)
        return;
    CHECK_EQ_INT(use(r, 0), REGISTRY_READY);
    registry_release(r, 0);
    CHECK_EQ_INT(use(r, 1), REGISTRY_READY);
    registry_set_keep_alive(r, 1, 0);
    CHECK_EQ_INT(state_of(r, 1), REGISTRY_READY); /* held: stays */
    registry_release(r, 1);
    CHECK_EQ_INT(state_of(r, 1), REGISTRY_UNLOADED);

    CHECK_EQ_INT(use(r, 1), REGISTRY_READY);
    registry_set_keep_alive(r, 1, 300);
    registry_release(r, 1);
    CHECK_EQ_INT(state_of(r, 1), REGISTRY_READY);
    CHECK(becomes(r, 1, REGISTRY_UNLOADED));
    CHECK_EQ_INT(loads_of(r, 1), 2);

    /* -1: kept while room allows, however long idle */
    CHECK_EQ_INT(use(r, 1), REGISTRY_READY);
    registry_set_keep_alive(r, 1, -1);
    registry_release(r, 1);
    usleep(400000);
    CHECK_EQ_INT(state_of(r, 1), REGISTRY_READY);
    CHECK_EQ_INT(state_of(r, 0), REGISTRY_READY); /* the other model kept its default */
    registry_free(r);
}

static void test_failed_load_is_reported_and_retried(void)
{
    char path[] = "/tmp/elliott-registry-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, "GGUF but not really a model", 27) == 27);
    close(fd);
    registry *r = make(1, 0, 1);
    if (!r) {
        unlink(path);
        return;
    }
    CHECK_EQ_INT(add(r, "broken", NULL, path), 0);
    el_err why = {{0}};
    registry_acquire(r, 1);
    CHECK_EQ_INT(registry_wait(r, 1, 60000, &why), REGISTRY_FAILED);
    CHECK(why.msg[0] != '\0');
    registry_status st;
    registry_get_status(r, 1, &st);
    CHECK_EQ_INT(st.state, REGISTRY_FAILED);
    CHECK(st.error.msg[0] != '\0');
    CHECK(!st.loaded_once);
    registry_release(r, 1);
    /* an idle failed model makes room for another; asked again, it is tried again */
    CHECK_EQ_INT(use(r, 0), REGISTRY_READY);
    registry_release(r, 0);
    CHECK_EQ_INT(use(r, 1), REGISTRY_FAILED);
    registry_release(r, 1);
    CHECK_EQ_INT(loads_of(r, 1), 2);
    registry_free(r);
    unlink(path);
}

int main(void)
{
    RUN(test_names);
    RUN(test_default_loads_at_start_others_on_first_use);
    RUN(test_max_loaded_unloads_least_recently_used);
    RUN(test_budget_unloads);
    RUN(test_busy_model_is_never_unloaded);
    RUN(test_concurrent_first_use_loads_once);
    RUN(test_failed_load_is_reported_and_retried);
    RUN(test_keep_alive);
    return test_summary();
}
