/* The HTTP service: the elliott-1 chat completion API of docs/api.md over the
 * models of a registry (each request's "model" picks one). */
#ifndef ELLIOTT_SERVER_H
#define ELLIOTT_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "registry/registry.h"

typedef struct server_config {
    const char *host;        /* default "127.0.0.1" */
    int port;                /* default 8080; 0 picks a free port */
    const char *const *api_keys; /* the keys accepted (copied); none: no authentication */
    size_t n_api_keys;
    const char *tls_cert_pem; /* PEM certificate chain and private key: HTTPS;  */
    const char *tls_key_pem;  /* NULL: plain HTTP. Both must outlive the server. */
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
    int model_wait_ms;       /* a request waits this long for its model to load before
                                503 Retry-After, default 120000 */
} server_config;

void server_config_default(server_config *c);

typedef struct server server;

/* Checks a PEM certificate chain and its private key before serving: that
 * they parse, belong together and are valid now. */
int server_check_tls(const char *cert_pem, const char *key_pem, el_err *err);

/* Binds the socket and serves from background threads until server_stop. The
 * default model (the registry's first) may still be loading: /health says 503
 * until it is ready. c and models must outlive the server. */
server *server_start(const server_config *c, registry *models, el_err *err);
/* The port bound (the one chosen when the configuration said 0). */
int server_port(const server *s);
/* Replaces the accepted API keys (an empty set turns authentication off);
 * requests in flight are not disturbed. -1 (keys unchanged) when out of memory. */
int server_set_api_keys(server *s, const char *const *keys, size_t n, el_err *err);
/* Stops accepting, lets in-flight requests finish within the grace period
 * (cancelling the rest), stops and frees the server. */
void server_stop(server *s);

#endif
