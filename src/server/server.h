/* The HTTP service: the elliott-1 chat completion API of SPEC.md over an engine. */
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
    int max_connections;     /* open connections at once, default 16384 */
    int max_connections_per_ip; /* per client address; 0 (default): no limit */
    int request_timeout_ms;  /* a request's head and body must arrive within this
                                of its request line, default 10000 */
    int idle_timeout_ms;     /* a request line must arrive within this of the
                                connection's opening or its previous answer, default 10000 */
    int http_threads;        /* event loops serving the connections, default 4 */
    int shutdown_grace_ms;   /* in-flight requests get this long in server_stop */
} server_config;

void server_config_default(server_config *c);

typedef struct server server;

/* Binds the socket and serves from background threads until server_stop. The
 * engine may still be loading: requests get 503 until it is ready. c and e must
 * outlive the server. */
server *server_start(const server_config *c, engine *e, el_err *err);
/* The port bound (the one chosen when the configuration said 0). */
int server_port(const server *s);
/* Stops accepting, lets in-flight requests finish within the grace period
 * (cancelling the rest), stops and frees the server. */
void server_stop(server *s);

#endif
