/* The watch thread: what happens to connections between MHD's events.
 *
 * - Generations: a connection waiting for the engine is suspended, so it holds
 *   no thread. The engine's notify hook (called with the engine's lock held)
 *   only marks its waiter ready and writes an eventfd; this thread then resumes
 *   the connection. It also resumes streams for their keep-alive comment,
 *   probes suspended connections for a reset (MHD watches no suspended socket),
 *   and reaps generations whose client left: it cancels them, waits for their
 *   DONE and finishes the request.
 * - Deadlines: MHD's own timeout restarts with every byte, so a client sending
 *   one byte at a time would hold its connection forever. Each connection's
 *   phase has a deadline here instead, counted from the phase's start: a request
 *   line within --idle-timeout, then the head and body within --request-timeout.
 *   A connection past it is shut down (shutdown(2)); MHD then sees the end of
 *   the stream and closes it itself.
 *
 * Lock order: srv->lock, then the engine's lock, then srv->wake_lock (a leaf).
 * srv->conns_lock is taken alone. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/server_internal.h"

enum { WATCH_TICK_MS = 100, PROBE_EVERY_MS = 200, DEADLINE_EVERY_MS = 250 };

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static long long ms_of(const struct timespec *t)
{
    return (long long)t->tv_sec * 1000 + t->tv_nsec / 1000000;
}

static void wake_watch(server *srv)
{
    uint64_t one = 1;
    ssize_t w = write(srv->wake_fd, &one, sizeof one);
    (void)w; /* a full counter still wakes the reader */
}

/* The engine's notify hook: the engine's lock is held, so only a flag and a
 * write. */
static void waiter_notify(void *cls)
{
    gen_waiter *w = cls;
    server *srv = w->srv;
    pthread_mutex_lock(&srv->wake_lock);
    w->ready = true;
    bool wake = w->suspended || w->reap;
    pthread_mutex_unlock(&srv->wake_lock);
    if (wake)
        wake_watch(srv);
}

void waiter_start(server *srv, gen_waiter *w, struct MHD_Connection *conn, gen_request *g, int keepalive_ms)
{
    memset(w, 0, sizeof *w);
    w->srv = srv;
    w->conn = conn;
    w->gen = g;
    w->fd = http_connection_fd(conn);
    w->keepalive_ms = keepalive_ms;
    atomic_init(&w->client_gone, false);
    pthread_mutex_lock(&srv->lock);
    w->next = srv->gens;
    if (srv->gens)
        srv->gens->prev = w;
    srv->gens = w;
    w->listed = true;
    if (srv->cancel_all)
        gen_cancel(g);
    pthread_mutex_unlock(&srv->lock);
    gen_set_notify(g, waiter_notify, w);
}

static void unlist_locked(server *srv, gen_waiter *w)
{
    if (!w->listed)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        srv->gens = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->listed = false;
}

void waiter_stop(gen_waiter *w)
{
    if (!w->gen)
        return;
    gen_set_notify(w->gen, NULL, NULL);
    pthread_mutex_lock(&w->srv->lock);
    unlist_locked(w->srv, w);
    pthread_mutex_unlock(&w->srv->lock);
}

enum waiter_verdict waiter_wait(gen_waiter *w)
{
    server *srv = w->srv;
    enum waiter_verdict v;
    pthread_mutex_lock(&srv->wake_lock);
    /* Looked at under the lock: watch_abandon_all sets the flag, then resumes every
     * suspended waiter under this lock, so a waiter that saw the flag clear is
     * suspended before it is looked at there. Checked before the lock, a waiter
     * could suspend after that pass, and MHD_stop_daemon aborts the process on a
     * connection still suspended. */
    if (atomic_load(&srv->abandon)) {
        v = WAITER_ABANDON;
    } else if (w->ready) {
        w->ready = false;
        v = WAITER_POLL_AGAIN;
    } else {
        /* Under the lock, so that the watch thread cannot resume the connection
         * before it is suspended. */
        w->suspended = true;
        clock_gettime(CLOCK_MONOTONIC, &w->suspended_at);
        MHD_suspend_connection(w->conn);
        v = WAITER_SUSPENDED;
    }
    pthread_mutex_unlock(&srv->wake_lock);
    return v;
}

bool waiter_reap_later(gen_waiter *w, void (*reap)(gen_waiter *w))
{
    server *srv = w->srv;
    pthread_mutex_lock(&srv->lock);
    bool ok = srv->watch_started && !atomic_load(&srv->watch_stop) && w->listed;
    if (ok) {
        gen_cancel(w->gen);
        pthread_mutex_lock(&srv->wake_lock);
        w->reap = reap;
        w->suspended = false;
        w->ready = true; /* look at once: the DONE may be there already */
        pthread_mutex_unlock(&srv->wake_lock);
    }
    pthread_mutex_unlock(&srv->lock);
    if (ok)
        wake_watch(srv);
    return ok;
}

void watch_cancel_everything(server *srv)
{
    pthread_mutex_lock(&srv->lock);
    srv->cancel_all = true;
    for (gen_waiter *w = srv->gens; w; w = w->next)
        gen_cancel(w->gen);
    pthread_mutex_unlock(&srv->lock);
}

/* Resumes w if it is suspended and something is due; srv->lock held (which
 * keeps w listed, and so its connection open). */
static void resume_if_due(server *srv, gen_waiter *w, long long now, bool force)
{
    pthread_mutex_lock(&srv->wake_lock);
    bool resume = w->suspended && !w->reap &&
                  (force || w->ready || atomic_load(&w->client_gone) ||
                   (w->keepalive_ms > 0 && now - ms_of(&w->suspended_at) >= w->keepalive_ms));
    if (resume) {
        w->suspended = false;
        w->ready = false;
    }
    pthread_mutex_unlock(&srv->wake_lock);
    if (resume)
        MHD_resume_connection(w->conn);
}

void watch_abandon_all(server *srv)
{
    atomic_store(&srv->abandon, true);
    pthread_mutex_lock(&srv->lock);
    for (gen_waiter *w = srv->gens; w; w = w->next)
        resume_if_due(srv, w, now_ms(), true);
    pthread_mutex_unlock(&srv->lock);
}

/* A reaped waiter whose DONE has come: unlisted here, reaped by the caller. */
static bool reap_due_locked(server *srv, gen_waiter *w)
{
    pthread_mutex_lock(&srv->wake_lock);
    bool look = w->reap && w->ready;
    w->ready = false;
    pthread_mutex_unlock(&srv->wake_lock);
    if (!look)
        return false;
    gen_event ev;
    while (gen_next(w->gen, &ev, 0) == 1) {
        if (ev.kind == GEN_EVENT_DONE) {
            unlist_locked(srv, w);
            return true;
        }
    }
    return false;
}

static bool is_suspended(server *srv, gen_waiter *w)
{
    pthread_mutex_lock(&srv->wake_lock);
    bool suspended = w->suspended;
    pthread_mutex_unlock(&srv->wake_lock);
    return suspended;
}

static void watch_generations(server *srv, bool probe)
{
    long long now = now_ms();
    gen_waiter *reaped = NULL;
    pthread_mutex_lock(&srv->lock);
    gen_waiter *next;
    for (gen_waiter *w = srv->gens; w; w = next) {
        next = w->next;
        if (w->reap) {
            if (reap_due_locked(srv, w)) {
                w->next = reaped;
                reaped = w;
            }
            continue;
        }
        /* Only a reset or a socket error counts: see http_client_gone. */
        if (probe && !atomic_load(&w->client_gone) && is_suspended(srv, w) && http_client_gone(w->fd)) {
            atomic_store(&w->client_gone, true);
            gen_cancel(w->gen);
        }
        resume_if_due(srv, w, now, false);
    }
    pthread_mutex_unlock(&srv->lock);
    while (reaped) {
        gen_waiter *w = reaped;
        reaped = w->next;
        gen_set_notify(w->gen, NULL, NULL);
        w->reap(w);
    }
}

/* ---- connections and their deadlines ------------------------------------------------ */

void watch_connection_opened(server *srv, struct MHD_Connection *conn, void **socket_context)
{
    conn_state *c = calloc(1, sizeof *c);
    *socket_context = c;
    if (!c)
        return; /* untracked: MHD's own idle timeout still applies */
    c->fd = http_connection_fd(conn);
    c->phase = CONN_IDLE;
    clock_gettime(CLOCK_MONOTONIC, &c->since);
    pthread_mutex_lock(&srv->conns_lock);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    pthread_mutex_unlock(&srv->conns_lock);
}

void watch_connection_closed(server *srv, void *socket_context)
{
    conn_state *c = socket_context;
    if (!c)
        return;
    pthread_mutex_lock(&srv->conns_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->n_conns--;
    pthread_mutex_unlock(&srv->conns_lock);
    free(c);
}

conn_state *watch_state_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

void watch_set_phase(server *srv, struct MHD_Connection *conn, enum conn_phase phase)
{
    conn_state *c = watch_state_of(conn);
    if (!c)
        return;
    pthread_mutex_lock(&srv->conns_lock);
    c->phase = phase;
    clock_gettime(CLOCK_MONOTONIC, &c->since);
    pthread_mutex_unlock(&srv->conns_lock);
}

int watch_connection_count(server *srv)
{
    pthread_mutex_lock(&srv->conns_lock);
    int n = srv->n_conns;
    pthread_mutex_unlock(&srv->conns_lock);
    return n;
}

static void enforce_deadlines(server *srv)
{
    long long now = now_ms();
    long long idle_ms = (long long)srv->cfg->idle_timeout_ms, request_ms = (long long)srv->cfg->request_timeout_ms;
    pthread_mutex_lock(&srv->conns_lock);
    for (conn_state *c = srv->conns; c; c = c->next) {
        if (c->expired || c->phase == CONN_BUSY)
            continue;
        long long limit = c->phase == CONN_IDLE ? idle_ms : request_ms;
        if (limit > 0 && now - ms_of(&c->since) > limit) {
            /* The fd stays open until MHD's close, which unlinks c first
             * (under this lock): it cannot have been reused. */
            shutdown(c->fd, SHUT_RDWR);
            c->expired = true;
            atomic_fetch_add(&srv->timed_out, 1);
        }
    }
    pthread_mutex_unlock(&srv->conns_lock);
}

/* ---- the thread --------------------------------------------------------------------- */

static void *watch_main(void *cls)
{
    server *srv = cls;
    struct pollfd p = {.fd = srv->wake_fd, .events = POLLIN};
    long long last_probe = 0, last_deadlines = 0;
    while (!atomic_load(&srv->watch_stop)) {
        if (poll(&p, 1, WATCH_TICK_MS) > 0) {
            uint64_t count;
            ssize_t r = read(srv->wake_fd, &count, sizeof count);
            (void)r;
        }
        long long now = now_ms();
        bool probe = now - last_probe >= PROBE_EVERY_MS;
        if (probe)
            last_probe = now;
        watch_generations(srv, probe);
        if (now - last_deadlines >= DEADLINE_EVERY_MS) {
            last_deadlines = now;
            enforce_deadlines(srv);
        }
    }
    return NULL;
}

int watch_start(server *srv, el_err *err)
{
    srv->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (srv->wake_fd < 0)
        return el_fail(err, "eventfd: %s", strerror(errno));
    atomic_init(&srv->watch_stop, false);
    int rc = pthread_create(&srv->watch_thread, NULL, watch_main, srv);
    if (rc != 0) {
        close(srv->wake_fd);
        srv->wake_fd = -1;
        return el_fail(err, "cannot start the watch thread: %s", strerror(rc));
    }
    srv->watch_started = true;
    return 0;
}

void watch_stop(server *srv)
{
    if (!srv->watch_started)
        return;
    pthread_mutex_lock(&srv->lock);
    atomic_store(&srv->watch_stop, true);
    pthread_mutex_unlock(&srv->lock);
    wake_watch(srv);
    pthread_join(srv->watch_thread, NULL);
    srv->watch_started = false;
    close(srv->wake_fd);
    srv->wake_fd = -1;
    /* Generations still stopping: reaped now, without their DONE. */
    gen_waiter *left = NULL;
    pthread_mutex_lock(&srv->lock);
    gen_waiter *next;
    for (gen_waiter *w = srv->gens; w; w = next) {
        next = w->next;
        if (w->reap) {
            unlist_locked(srv, w);
            w->next = left;
            left = w;
        }
    }
    pthread_mutex_unlock(&srv->lock);
    while (left) {
        gen_waiter *w = left;
        left = w->next;
        gen_set_notify(w->gen, NULL, NULL);
        w->reap(w);
    }
}
