/* The models one server serves: their names, which are loaded, and when one is
 * loaded or unloaded.
 *
 * Each model is an engine configuration with the names it answers to. The
 * first model added is the default one; registry_start begins loading it.
 * Any other model is loaded the first time a request acquires it, in the
 * background (engine_start returns at once): acquiring never waits for a load.
 * When loading a model would pass the limits (a number of models loaded at
 * once, a budget of bytes), the least recently used idle model is unloaded
 * first; a model that a request holds, or that is still loading, is never
 * unloaded, and a wanted model waits until room appears. Unloading (engine_free)
 * runs on the registry's own thread, never on the caller's. */
#ifndef ELLIOTT_REGISTRY_H
#define ELLIOTT_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/engine.h"

enum { REGISTRY_MAX_NAME = 128, REGISTRY_MAX_NAMES = 8 };

typedef struct registry_config {
    int max_loaded;          /* models loaded at once; 0: no limit */
    uint64_t memory_budget;  /* bytes of model files loaded at once; 0: no limit */
} registry_config;

typedef struct registry_model_spec {
    const char *const *names; /* the first is the id it is listed and answers as; all
                                 are unique in the registry, 1..REGISTRY_MAX_NAME bytes */
    size_t n_names;           /* 1..REGISTRY_MAX_NAMES */
    engine_config engine;     /* copied (the path too); model_data must outlive the registry */
} registry_model_spec;

typedef struct registry registry;

registry *registry_create(const registry_config *c, el_err *err);
/* Adds a model (nothing is loaded). Its size is its file's, or model_size.
 * Refuses a duplicate name, a missing file, and a model larger than the budget. */
int registry_add(registry *r, const registry_model_spec *spec, el_err *err);
/* Begins loading the default model (the first added). */
int registry_start(registry *r, el_err *err);
/* Unloads everything; no lease may be held. */
void registry_free(registry *r);
/* engine_drain on every loaded model (the start of a graceful stop). */
void registry_drain(registry *r);

size_t registry_count(const registry *r);
/* The model a name stands for (any of its names), or -1. */
int registry_find(const registry *r, const char *name);
/* The model's id (its first name); valid while the registry lives. */
const char *registry_name(const registry *r, int model);

enum registry_state {
    REGISTRY_UNLOADED,  /* not in memory (not yet loaded, or unloaded) */
    REGISTRY_WAITING,   /* wanted, but there is no room until a model goes idle */
    REGISTRY_LOADING,
    REGISTRY_READY,
    REGISTRY_FAILED     /* its load failed; an idle failed model is unloaded first,
                           and the next acquire tries again */
};
const char *registry_state_name(enum registry_state s);

/* Holds the model in memory for a request (it is never unloaded while held),
 * starting its load, or queuing it for room, when it is not loaded. Each
 * acquire is matched by one release. */
void registry_acquire(registry *r, int model);
void registry_release(registry *r, int model);
/* How long the model stays loaded once no request holds it (Ollama's keep_alive,
 * set by each request that gives one): keep_ms < 0 for as long as room allows (the
 * default), 0 unloaded as soon as it is idle, > 0 unloaded that many milliseconds
 * after its last request ends unless another one comes. */
void registry_set_keep_alive(registry *r, int model, long long keep_ms);
/* Holds the model only if it is loaded and READY (for a look at it that must not
 * load it): its engine, to be released; NULL (nothing held) otherwise. */
engine *registry_acquire_loaded(registry *r, int model);
/* Waits up to timeout_ms (0: not at all) for a held model to be READY or FAILED,
 * and returns its state; why (if not NULL) receives the load error when FAILED. */
enum registry_state registry_wait(registry *r, int model, int timeout_ms, el_err *why);
/* The held model's engine once registry_wait said READY. */
engine *registry_engine(registry *r, int model);

typedef struct registry_status {
    const char *name;
    const char *path;          /* the GGUF file, or NULL for a model in memory */
    enum registry_state state;
    bool loaded_once;          /* a load of it has succeeded (its engine was READY) */
    int users;                 /* requests holding it */
    uint64_t bytes;            /* its size counted against the budget */
    uint64_t loads, unloads;
    long long created;         /* UNIX seconds: when it was added */
    el_err error;              /* FAILED: why */
} registry_status;

void registry_get_status(registry *r, int model, registry_status *out);

#endif
