/* The API keys a request may present: replaced whole at run time (a reloaded
 * key file) without disturbing requests, wiped when dropped. */
#include <stdlib.h>
#include <string.h>

#include "base/wipebuf.h"
#include "server/server_internal.h"

static void free_keys(char **keys, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wipe_free_string(keys[i]);
    free(keys);
}

int keys_set(server *srv, const char *const *keys, size_t n, el_err *err)
{
    char **copy = NULL;
    if (n) {
        copy = calloc(n, sizeof *copy);
        if (!copy)
            return el_fail(err, "out of memory");
        for (size_t i = 0; i < n; i++) {
            copy[i] = strdup(keys[i]);
            if (!copy[i]) {
                free_keys(copy, i);
                return el_fail(err, "out of memory");
            }
        }
    }
    pthread_mutex_lock(&srv->keys_lock);
    char **old = srv->keys;
    size_t old_n = srv->n_keys;
    srv->keys = copy;
    srv->n_keys = n;
    pthread_mutex_unlock(&srv->keys_lock);
    free_keys(old, old_n);
    return 0;
}

void keys_free(server *srv)
{
    free_keys(srv->keys, srv->n_keys);
    srv->keys = NULL;
    srv->n_keys = 0;
}

bool keys_required(server *srv)
{
    pthread_mutex_lock(&srv->keys_lock);
    bool required = srv->n_keys > 0;
    pthread_mutex_unlock(&srv->keys_lock);
    return required;
}

bool keys_authorized(server *srv, const char *header)
{
    /* Every key is compared in full whatever matches, so the time taken says
     * nothing about which key, or how much of one, was right. */
    bool any = false;
    pthread_mutex_lock(&srv->keys_lock);
    for (size_t i = 0; i < srv->n_keys; i++)
        any |= api_authorized(header, srv->keys[i]);
    pthread_mutex_unlock(&srv->keys_lock);
    return any;
}
