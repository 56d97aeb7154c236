/* Which handler a method and path reach, and the API key check. */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "server/server_internal.h"

static const char GET_METHODS[] = "GET, HEAD, OPTIONS";
static const char POST_METHODS[] = "POST, OPTIONS";

static enum api_route route_of_path(const char *path)
{
    if (!strcmp(path, "/"))
        return ROUTE_PAGE;
    if (!strcmp(path, "/health"))
        return ROUTE_HEALTH;
    if (!strcmp(path, "/metrics"))
        return ROUTE_METRICS;
    if (!strcmp(path, "/v1/models"))
        return ROUTE_MODELS;
    if (!strncmp(path, "/v1/models/", 11) && path[11] && !strchr(path + 11, '/'))
        return ROUTE_MODEL;
    if (!strcmp(path, "/v1/chat/completions") || !strcmp(path, "/v1/ai/chat/completions") ||
        !strcmp(path, "/v1/ai/chat/completions/"))
        return ROUTE_COMPLETIONS;
    return ROUTE_NONE;
}

api_route_match api_route_for(const char *method, const char *path)
{
    api_route_match m = {.route = route_of_path(path)};
    if (m.route == ROUTE_NONE)
        return m;
    bool is_post = m.route == ROUTE_COMPLETIONS;
    m.allow = is_post ? POST_METHODS : GET_METHODS;
    if (!strcmp(method, "OPTIONS"))
        m.method_ok = true;
    else if (is_post)
        m.method_ok = !strcmp(method, "POST");
    else
        m.method_ok = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    /* /health stays open for load balancers and / is a static page; a CORS
     * preflight never carries credentials. */
    m.needs_auth = m.route != ROUTE_HEALTH && m.route != ROUTE_PAGE && strcmp(method, "OPTIONS") != 0;
    return m;
}

const char *api_route_name(enum api_route r)
{
    switch (r) {
    case ROUTE_PAGE: return "page";
    case ROUTE_HEALTH: return "health";
    case ROUTE_METRICS: return "metrics";
    case ROUTE_MODELS: return "models";
    case ROUTE_MODEL: return "model";
    case ROUTE_COMPLETIONS: return "chat_completions";
    case ROUTE_NONE:
    case ROUTE_COUNT: break;
    }
    return "other";
}

bool api_authorized(const char *header, const char *key)
{
    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return false;
    const char *given = header + 7;
    while (*given == ' ')
        given++;
    size_t given_len = strlen(given), key_len = strlen(key);
    /* Every byte of the key is compared whatever the input; only the given
     * token's own length can show in the timing. */
    volatile unsigned char diff = (unsigned char)(given_len != key_len);
    for (size_t i = 0; i < key_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= (unsigned char)(g ^ (unsigned char)key[i]);
    }
    return diff == 0;
}
