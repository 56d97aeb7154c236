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
    static const struct {
        const char *path;
        enum api_route route;
    } more[] = {
        {"/v1/completions", ROUTE_TEXT_COMPLETIONS}, {"/v1/embeddings", ROUTE_EMBEDDINGS},
        {"/api/tags", ROUTE_OLLAMA_TAGS},           {"/api/version", ROUTE_OLLAMA_VERSION},
        {"/api/show", ROUTE_OLLAMA_SHOW},           {"/api/chat", ROUTE_OLLAMA_CHAT},
        {"/api/generate", ROUTE_OLLAMA_GENERATE},   {"/api/embed", ROUTE_OLLAMA_EMBED},
        {"/api/embeddings", ROUTE_OLLAMA_EMBEDDINGS},
    };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        if (!strcmp(path, more[i].path))
            return more[i].route;
    return ROUTE_NONE;
}

bool api_route_takes_body(enum api_route r)
{
    switch (r) {
    case ROUTE_COMPLETIONS:
    case ROUTE_TEXT_COMPLETIONS:
    case ROUTE_EMBEDDINGS:
    case ROUTE_OLLAMA_SHOW:
    case ROUTE_OLLAMA_CHAT:
    case ROUTE_OLLAMA_GENERATE:
    case ROUTE_OLLAMA_EMBED:
    case ROUTE_OLLAMA_EMBEDDINGS:
        return true;
    default:
        return false;
    }
}

bool api_route_is_ollama(enum api_route r)
{
    return r >= ROUTE_OLLAMA_TAGS && r <= ROUTE_OLLAMA_EMBEDDINGS;
}

api_route_match api_route_for(const char *method, const char *path)
{
    api_route_match m = {.route = route_of_path(path)};
    if (m.route == ROUTE_NONE)
        return m;
    bool is_post = api_route_takes_body(m.route);
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
    case ROUTE_TEXT_COMPLETIONS: return "completions";
    case ROUTE_EMBEDDINGS: return "embeddings";
    case ROUTE_OLLAMA_TAGS: return "ollama_tags";
    case ROUTE_OLLAMA_VERSION: return "ollama_version";
    case ROUTE_OLLAMA_SHOW: return "ollama_show";
    case ROUTE_OLLAMA_CHAT: return "ollama_chat";
    case ROUTE_OLLAMA_GENERATE: return "ollama_generate";
    case ROUTE_OLLAMA_EMBED: return "ollama_embed";
    case ROUTE_OLLAMA_EMBEDDINGS: return "ollama_embeddings";
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
