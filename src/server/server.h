/* The HTTP service: the elliott-1 chat completion API of docs/api.md over an engine. */
#ifndef ELLIOTT_SERVER_H
#define ELLIOTT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/engine.h"

typedef struct server_config {
    const char *host;        /* default "127.0.0.1" */
    int port;                /* default 8080; 0 picks a free port */
    const char *alias;       /* served model name, default "elliott-1" */
    const char *api_key;     /* NULL: no authentication */
    size_t max_body;         /* default 1 MiB */
    const char *cors_origin; /* NULL: no CORS headers */
    int max_connections;     /* default 64 */
    int shutdown_grace_ms;   /* in-flight requests get this long on SIGINT/SIGTERM */
    void (*on_listening)(int port, void *ctx); /* called once the socket is bound */
    void *on_listening_ctx;
} server_config;

void server_config_default(server_config *c);

/* Serves until SIGINT or SIGTERM, then stops accepting, lets in-flight requests
 * finish within the grace period (cancelling the rest) and returns 0. The engine
 * may still be loading: requests get 503 until it is ready. */
int server_run(const server_config *c, engine *e, el_err *err);

#endif
