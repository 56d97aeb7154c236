#include "registry/registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

typedef struct model_entry {
    char *names[REGISTRY_MAX_NAMES];
    size_t n_names;
    char *path;               /* NULL: a model in memory */
    engine_config cfg;        /* cfg.model_path points at path */
    uint64_t bytes;
    long long created;
    engine *eng;              /* started: loading, ready or failed; NULL: not in memory */
    int users;
    uint64_t last_used;       /* the registry's tick at its last acquire */
    uint64_t loads, unloads;
    bool loaded_once;
    long long keep_ms;        /* registry_set_keep_alive; < 0: no idle unload */
    struct timespec idle_until; /* keep_ms > 0: when the idle model goes (valid while idle) */
} model_entry;

/* An engine taken out of service, waiting for the reaper thread to free it. */
typedef struct retired {
    engine *eng;
    struct retired *next;
} retired;

struct registry {
    registry_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t changed;   /* a model's users or engine changed */
    model_entry *models;
    size_t n, cap;
    uint64_t tick;
    retired *to_free;         /* under mu */
    pthread_cond_t reap_cv;
    pthread_t reaper;
    bool reaper_started, stopping;
};

const char *registry_state_name(enum registry_state s)
{
    switch (s) {
    case REGISTRY_UNLOADED: return "unloaded";
    case REGISTRY_WAITING: return "waiting";
    case REGISTRY_LOADING: return "loading";
    case REGISTRY_READY: return "ready";
    case REGISTRY_FAILED: return "failed";
    }
    return "unknown";
}

/* ---- the reaper: engine_free off every caller's path ----------------------------- */

static bool before(const struct timespec *a, const struct timespec *b);
static bool retire_locked(registry *r, model_entry *m);
static enum registry_state state_locked(model_entry *m, el_err *why);

/* A model kept for a while after its last request may go once that time is up. */
static bool idle_timed_locked(model_entry *m)
{
    return m->eng && m->users == 0 && m->keep_ms > 0 && state_locked(m, NULL) != REGISTRY_LOADING;
}

/* Retires the idle models whose time is up; the earliest time still to come goes
 * to *next (has_next false when none). Under mu. */
static void expire_idle_locked(registry *r, struct timespec *next, bool *has_next)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    *has_next = false;
    for (size_t i = 0; i < r->n; i++) {
        model_entry *m = &r->models[i];
        if (!idle_timed_locked(m))
            continue;
        if (!before(&now, &m->idle_until)) {
            retire_locked(r, m);
        } else if (!*has_next || before(&m->idle_until, next)) {
            *next = m->idle_until;
            *has_next = true;
        }
    }
}

static void *reaper_main(void *arg)
{
    registry *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        for (;;) {
            struct timespec next;
            bool has_next;
            expire_idle_locked(r, &next, &has_next);
            if (r->to_free || r->stopping)
                break;
            if (has_next)
                pthread_cond_timedwait(&r->reap_cv, &r->mu, &next);
            else
                pthread_cond_wait(&r->reap_cv, &r->mu);
        }
        retired *list = r->to_free;
        r->to_free = NULL;
        if (!list && r->stopping)
            break;
        pthread_mutex_unlock(&r->mu);
        while (list) {
            retired *next = list->next;
            engine_free(list->eng);
            free(list);
            list = next;
        }
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* Hands m's engine to the reaper. Under mu. Returns false when out of memory
 * (the model then stays loaded). */
static bool retire_locked(registry *r, model_entry *m)
{
    retired *t = malloc(sizeof *t);
    if (!t)
        return false;
    t->eng = m->eng;
    t->next = r->to_free;
    r->to_free = t;
    m->eng = NULL;
    m->unloads++;
    pthread_cond_signal(&r->reap_cv);
    return true;
}

/* ---- creating and adding ----------------------------------------------------------- */

registry *registry_create(const registry_config *c, el_err *err)
{
    if (!c || c->max_loaded < 0) {
        el_fail(err, "registry: bad configuration");
        return NULL;
    }
    registry *r = calloc(1, sizeof *r);
    if (!r) {
        el_fail(err, "registry: out of memory");
        return NULL;
    }
    r->cfg = *c;
    if (pthread_mutex_init(&r->mu, NULL) || pthread_cond_init(&r->changed, NULL) ||
        pthread_cond_init(&r->reap_cv, NULL)) {
        free(r);
        el_fail(err, "registry: cannot create synchronisation objects");
        return NULL;
    }
    if (pthread_create(&r->reaper, NULL, reaper_main, r)) {
        registry_free(r);
        el_fail(err, "registry: cannot start its thread");
        return NULL;
    }
    r->reaper_started = true;
    return r;
}

static void entry_free(model_entry *m)
{
    for (size_t i = 0; i < m->n_names; i++)
        free(m->names[i]);
    free(m->path);
}

static int check_names(const registry *r, const registry_model_spec *s, el_err *err)
{
    if (!s->names || s->n_names < 1 || s->n_names > REGISTRY_MAX_NAMES)
        return el_fail(err, "a model needs 1 to %d names", REGISTRY_MAX_NAMES);
    for (size_t i = 0; i < s->n_names; i++) {
        const char *name = s->names[i];
        size_t len = name ? strlen(name) : 0;
        if (len < 1 || len > REGISTRY_MAX_NAME)
            return el_fail(err, "a model name must be 1 to %d bytes", REGISTRY_MAX_NAME);
        for (size_t j = 0; j < len; j++)
            if ((unsigned char)name[j] <= 0x20 || name[j] == 0x7f || name[j] == '"' || name[j] == '\\')
                return el_fail(err, "the model name '%s' has a space, a control character, '\"' or '\\'", name);
        if (registry_find(r, name) >= 0)
            return el_fail(err, "two models are named '%s'", name);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(s->names[j], name))
                return el_fail(err, "two models are named '%s'", name);
    }
    return 0;
}

static int model_bytes(const engine_config *c, uint64_t *bytes, el_err *err)
{
    if (!c->model_path) {
        if (!c->model_data || !c->model_size)
            return el_fail(err, "a model needs a file or an image in memory");
        *bytes = c->model_size;
        return 0;
    }
    struct stat st;
    if (stat(c->model_path, &st) < 0)
        return el_fail(err, "cannot open the model %s: %s", c->model_path, strerror(errno));
    /* Only a directory is refused here: anything else is the loader's to judge
     * (opening a FIFO here could block). */
    if (S_ISDIR(st.st_mode))
        return el_fail(err, "the model %s is a directory, not a GGUF file", c->model_path);
    *bytes = (uint64_t)st.st_size;
    return 0;
}

static int grow(registry *r, el_err *err)
{
    if (r->n < r->cap)
        return 0;
    size_t cap = r->cap ? r->cap * 2 : 4;
    model_entry *m = realloc(r->models, cap * sizeof *m);
    if (!m)
        return el_fail(err, "registry: out of memory");
    r->models = m;
    r->cap = cap;
    return 0;
}

int registry_add(registry *r, const registry_model_spec *s, el_err *err)
{
    uint64_t bytes = 0;
    pthread_mutex_lock(&r->mu);
    int rc = check_names(r, s, err);
    if (rc == 0)
        rc = model_bytes(&s->engine, &bytes, err);
    if (rc == 0 && r->cfg.memory_budget && bytes > r->cfg.memory_budget)
        rc = el_fail(err, "the model %s (%llu bytes) is larger than the memory budget (%llu bytes)",
                     s->names[0], (unsigned long long)bytes, (unsigned long long)r->cfg.memory_budget);
    if (rc == 0)
        rc = grow(r, err);
    if (rc < 0) {
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    model_entry *m = &r->models[r->n];
    memset(m, 0, sizeof *m);
    bool oom = false;
    for (size_t i = 0; i < s->n_names; i++) {
        m->names[i] = strdup(s->names[i]);
        oom |= !m->names[i];
        m->n_names = i + 1;
    }
    m->cfg = s->engine;
    if (s->engine.model_path) {
        m->path = strdup(s->engine.model_path);
        oom |= !m->path;
        m->cfg.model_path = m->path;
    }
    if (oom) {
        entry_free(m);
        pthread_mutex_unlock(&r->mu);
        return el_fail(err, "registry: out of memory");
    }
    m->bytes = bytes;
    m->created = (long long)time(NULL);
    m->keep_ms = -1;
    r->n++;
    pthread_mutex_unlock(&r->mu);
    return 0;
}

/* ---- room and loading ------------------------------------------------------------------ */

/* The model's state; a READY engine seen here marks the model as loaded once. */
static enum registry_state state_locked(model_entry *m, el_err *why)
{
    if (!m->eng)
        return m->users > 0 ? REGISTRY_WAITING : REGISTRY_UNLOADED;
    switch (engine_state(m->eng, why)) {
    case ENGINE_LOADING: return REGISTRY_LOADING;
    case ENGINE_READY: m->loaded_once = true; return REGISTRY_READY;
    case ENGINE_FAILED: return REGISTRY_FAILED;
    }
    return REGISTRY_FAILED;
}

static bool fits_locked(const registry *r, const model_entry *want)
{
    int loaded = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->models[i].eng) {
            loaded++;
            bytes += r->models[i].bytes;
        }
    if (r->cfg.max_loaded && loaded + 1 > r->cfg.max_loaded)
        return false;
    return !r->cfg.memory_budget || bytes + want->bytes <= r->cfg.memory_budget;
}

/* The least recently used model that may be unloaded: in memory, held by no
 * request, not loading (a load cannot be interrupted). NULL if none. */
static model_entry *victim_locked(registry *r)
{
    model_entry *best = NULL;
    for (size_t i = 0; i < r->n; i++) {
        model_entry *m = &r->models[i];
        if (!m->eng || m->users > 0 || state_locked(m, NULL) == REGISTRY_LOADING)
            continue;
        if (!best || m->last_used < best->last_used)
            best = m;
    }
    return best;
}

/* Starts m's load if room can be made. Under mu. */
static void place_locked(registry *r, model_entry *m)
{
    if (m->eng)
        return;
    while (!fits_locked(r, m)) {
        model_entry *v = victim_locked(r);
        if (!v || !retire_locked(r, v))
            return; /* waits for a model to go idle */
    }
    el_err err = {{0}};
    m->eng = engine_start(&m->cfg, &err);
    if (m->eng)
        m->loads++;
    /* else: engine_start refuses only a bad configuration or a thread it cannot
     * create; the model stays WAITING and the next wait tries again */
    pthread_cond_broadcast(&r->changed);
}

/* Models that requests wait for get the room that has appeared. Under mu. */
static void place_waiting_locked(registry *r)
{
    for (size_t i = 0; i < r->n; i++)
        if (!r->models[i].eng && r->models[i].users > 0)
            place_locked(r, &r->models[i]);
}

static model_entry *entry(const registry *r, int model)
{
    if (model < 0 || (size_t)model >= r->n)
        return NULL;
    return &r->models[model];
}

int registry_start(registry *r, el_err *err)
{
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    if (!r->n) {
        rc = el_fail(err, "no model to serve");
    } else {
        el_err why = {{0}};
        model_entry *m = &r->models[0];
        m->last_used = ++r->tick;
        m->eng = engine_start(&m->cfg, &why);
        if (m->eng)
            m->loads++;
        else
            rc = el_fail(err, "%s", why.msg);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void registry_acquire(registry *r, int model)
{
    pthread_mutex_lock(&r->mu);
    model_entry *m = entry(r, model);
    if (m) {
        m->users++;
        m->last_used = ++r->tick;
        place_locked(r, m);
    }
    pthread_mutex_unlock(&r->mu);
}

engine *registry_acquire_loaded(registry *r, int model)
{
    pthread_mutex_lock(&r->mu);
    model_entry *m = entry(r, model);
    engine *e = m && m->eng && state_locked(m, NULL) == REGISTRY_READY ? m->eng : NULL;
    if (e)
        m->users++; /* a look, not a use: the LRU order stays */
    pthread_mutex_unlock(&r->mu);
    return e;
}

/* The model's last request has ended: it goes now, later, or when room is needed,
 * as its keep-alive says. Under mu. */
static void went_idle_locked(registry *r, model_entry *m)
{
    if (m->keep_ms == 0 && m->eng && state_locked(m, NULL) != REGISTRY_LOADING) {
        retire_locked(r, m);
    } else if (m->keep_ms > 0) {
        clock_gettime(CLOCK_REALTIME, &m->idle_until);
        long long ns = m->idle_until.tv_nsec + m->keep_ms % 1000 * 1000000LL;
        m->idle_until.tv_sec += (time_t)(m->keep_ms / 1000 + ns / 1000000000LL);
        m->idle_until.tv_nsec = (long)(ns % 1000000000LL);
        pthread_cond_signal(&r->reap_cv);
    }
}

void registry_release(registry *r, int model)
{
    pthread_mutex_lock(&r->mu);
    model_entry *m = entry(r, model);
    if (m && m->users > 0) {
        m->users--;
        if (!m->users) {
            went_idle_locked(r, m);
            place_waiting_locked(r);
        }
        pthread_cond_broadcast(&r->changed);
    }
    pthread_mutex_unlock(&r->mu);
}

void registry_set_keep_alive(registry *r, int model, long long keep_ms)
{
    pthread_mutex_lock(&r->mu);
    model_entry *m = entry(r, model);
    if (m)
        m->keep_ms = keep_ms < 0 ? -1 : keep_ms;
    pthread_mutex_unlock(&r->mu);
}

static void deadline_after(struct timespec *t, int ms)
{
    clock_gettime(CLOCK_REALTIME, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static bool before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

enum registry_state registry_wait(registry *r, int model, int timeout_ms, el_err *why)
{
    /* A load ends inside the engine, which says so to nobody: the state is
     * looked at again every POLL_MS, and whenever a model's users change. */
    enum { POLL_MS = 20 };
    struct timespec deadline;
    deadline_after(&deadline, timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&r->mu);
    model_entry *m = entry(r, model);
    enum registry_state s = REGISTRY_UNLOADED;
    while (m) {
        /* A load that engine_start could not begin, or room that a finished load made. */
        place_waiting_locked(r);
        s = state_locked(m, why);
        if (s == REGISTRY_READY || s == REGISTRY_FAILED)
            break;
        struct timespec now, tick;
        clock_gettime(CLOCK_REALTIME, &now);
        if (!before(&now, &deadline))
            break;
        deadline_after(&tick, POLL_MS);
        pthread_cond_timedwait(&r->changed, &r->mu, before(&tick, &deadline) ? &tick : &deadline);
    }
    pthread_mutex_unlock(&r->mu);
    return s;
}

engine *registry_engine(registry *r, int model)
{
    pthread_mutex_lock(&r->mu);
    model_entry *m = entry(r, model);
    engine *e = m ? m->eng : NULL;
    pthread_mutex_unlock(&r->mu);
    return e;
}

/* ---- looking up and reporting ----------------------------------------------------------- */

size_t registry_count(const registry *r)
{
    return r->n;
}

int registry_find(const registry *r, const char *name)
{
    if (!name)
        return -1;
    for (size_t i = 0; i < r->n; i++)
        for (size_t j = 0; j < r->models[i].n_names; j++)
            if (!strcmp(r->models[i].names[j], name))
                return (int)i;
    return -1;
}

const char *registry_name(const registry *r, int model)
{
    model_entry *m = entry(r, model);
    return m ? m->names[0] : NULL;
}

void registry_get_status(registry *r, int model, registry_status *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&r->mu);
    model_entry *m = entry(r, model);
    if (m) {
        out->name = m->names[0];
        out->path = m->path;
        out->state = state_locked(m, &out->error);
        out->loaded_once = m->loaded_once;
        out->users = m->users;
        out->bytes = m->bytes;
        out->loads = m->loads;
        out->unloads = m->unloads;
        out->created = m->created;
    }
    pthread_mutex_unlock(&r->mu);
}

void registry_drain(registry *r)
{
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        if (r->models[i].eng)
            engine_drain(r->models[i].eng);
    pthread_mutex_unlock(&r->mu);
}

void registry_free(registry *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        if (r->models[i].eng && !retire_locked(r, &r->models[i])) {
            /* no memory for the list: freed here, after the lock */
            engine *e = r->models[i].eng;
            r->models[i].eng = NULL;
            pthread_mutex_unlock(&r->mu);
            engine_free(e);
            pthread_mutex_lock(&r->mu);
        }
    r->stopping = true;
    pthread_cond_signal(&r->reap_cv);
    pthread_mutex_unlock(&r->mu);
    if (r->reaper_started)
        pthread_join(r->reaper, NULL);
    for (size_t i = 0; i < r->n; i++)
        entry_free(&r->models[i]);
    free(r->models);
    pthread_cond_destroy(&r->reap_cv);
    pthread_cond_destroy(&r->changed);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
