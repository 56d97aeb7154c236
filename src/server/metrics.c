/* Request counters and latency histograms, rendered in Prometheus text format. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_internal.h"

static const double BUCKETS[METRICS_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                1,     2.5,  5,     10,   30,  60,  120};
static const int STATUSES[METRICS_STATUSES] = {200, 204, 400, 401, 404, 405, 413, 500, 503, 0};

void metrics_init(server_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
}

void metrics_destroy(server_metrics *m)
{
    pthread_mutex_destroy(&m->lock);
}

static int status_index(int status)
{
    for (int i = 0; i < METRICS_STATUSES - 1; i++)
        if (STATUSES[i] == status)
            return i;
    return METRICS_STATUSES - 1; /* any other status */
}

static void observe(metrics_histogram *h, double seconds)
{
    int b = 0;
    while (b < METRICS_BUCKETS && seconds > BUCKETS[b])
        b++;
    h->counts[b]++;
    h->count++;
    h->sum_seconds += seconds;
}

void metrics_record_request(server_metrics *m, enum api_route route, int status, double seconds)
{
    pthread_mutex_lock(&m->lock);
    m->requests[route][status_index(status)]++;
    observe(&m->latency, seconds);
    pthread_mutex_unlock(&m->lock);
}

void metrics_record_ttft(server_metrics *m, double seconds)
{
    pthread_mutex_lock(&m->lock);
    observe(&m->ttft, seconds);
    pthread_mutex_unlock(&m->lock);
}

void metrics_record_tokens(server_metrics *m, int prompt, int completion)
{
    pthread_mutex_lock(&m->lock);
    m->prompt_tokens += (uint64_t)(prompt > 0 ? prompt : 0);
    m->completion_tokens += (uint64_t)(completion > 0 ? completion : 0);
    pthread_mutex_unlock(&m->lock);
}

void metrics_record_cancel(server_metrics *m)
{
    pthread_mutex_lock(&m->lock);
    m->cancelled++;
    pthread_mutex_unlock(&m->lock);
}

/* A growing text buffer; on allocation failure it stops growing and reports it. */
typedef struct text_buf {
    char *data;
    size_t len, cap;
    bool failed;
} text_buf;

__attribute__((format(printf, 2, 3))) static void put(text_buf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->data && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
}

static void put_histogram(text_buf *b, const char *name, const char *help, const metrics_histogram *h)
{
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cumulative = 0;
    for (int i = 0; i < METRICS_BUCKETS; i++) {
        cumulative += h->counts[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, BUCKETS[i], (unsigned long long)cumulative);
    }
    cumulative += h->counts[METRICS_BUCKETS];
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
    put(b, "%s_sum %.6f\n%s_count %llu\n", name, h->sum_seconds, name, (unsigned long long)h->count);
}

static void put_gauge(text_buf *b, const char *name, const char *help, long long v)
{
    put(b, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

static void put_counter(text_buf *b, const char *name, const char *help, uint64_t v)
{
    put(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name, (unsigned long long)v);
}

/* One family per value, a line per model. */
static void put_model_family(text_buf *b, const char *name, const char *type, const char *help,
                             const metrics_model *models, size_t n, unsigned long long (*value)(const metrics_model *))
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    for (size_t i = 0; i < n; i++)
        put(b, "%s{model=\"%s\"} %llu\n", name, models[i].name, value(&models[i]));
}

static unsigned long long model_loaded(const metrics_model *m) { return m->state == REGISTRY_READY; }
static unsigned long long model_loading(const metrics_model *m)
{
    return m->state == REGISTRY_LOADING || m->state == REGISTRY_WAITING;
}
static unsigned long long model_failed(const metrics_model *m) { return m->state == REGISTRY_FAILED; }
static unsigned long long model_users(const metrics_model *m) { return (unsigned long long)m->users; }
static unsigned long long model_queue(const metrics_model *m) { return (unsigned long long)m->queue_depth; }
static unsigned long long model_active(const metrics_model *m) { return (unsigned long long)m->active_slots; }
static unsigned long long model_loads(const metrics_model *m) { return m->loads; }
static unsigned long long model_kv_reserved(const metrics_model *m) { return (unsigned long long)m->kv_reserved; }
static unsigned long long model_kv_cached(const metrics_model *m) { return (unsigned long long)m->kv_cached; }
static unsigned long long model_kv_capacity(const metrics_model *m) { return (unsigned long long)m->kv_capacity; }

/* An info-style family: 1 on the line of each loaded model's KV cache type. */
static void put_kv_types(text_buf *b, const metrics_model *models, size_t n)
{
    const char *name = "elliott_model_kv_cache_type";
    put(b, "# HELP %s 1 for the type (f16 or q8_0) in which the loaded model's KV pool stores keys and values.\n"
           "# TYPE %s gauge\n", name, name);
    for (size_t i = 0; i < n; i++)
        if (models[i].kv_type)
            put(b, "%s{model=\"%s\",type=\"%s\"} 1\n", name, models[i].name, models[i].kv_type);
}
static unsigned long long model_unloads(const metrics_model *m) { return m->unloads; }

static void put_models(text_buf *b, const metrics_model *models, size_t n)
{
    if (!n)
        return;
    put_model_family(b, "elliott_model_loaded", "gauge", "1 while the model is in memory and ready.", models, n,
                     model_loaded);
    put_model_family(b, "elliott_model_loading", "gauge", "1 while the model loads or waits for room to load.",
                     models, n, model_loading);
    put_model_family(b, "elliott_model_failed", "gauge", "1 when the model's last load failed.", models, n,
                     model_failed);
    put_model_family(b, "elliott_model_requests", "gauge", "Requests using (or waiting for) the model.", models, n,
                     model_users);
    put_model_family(b, "elliott_model_queue_depth", "gauge", "The model's requests waiting for a slot.", models,
                     n, model_queue);
    put_model_family(b, "elliott_model_active_slots", "gauge", "The model's slots generating.", models, n,
                     model_active);
    put_model_family(b, "elliott_model_loads_total", "counter", "Loads of the model begun.", models, n, model_loads);
    put_model_family(b, "elliott_model_unloads_total", "counter", "Times the model was unloaded to make room.",
                     models, n, model_unloads);
    put_model_family(b, "elliott_model_kv_tokens_capacity", "gauge",
                     "Positions in the model's KV pool, shared by its slots (0 while not loaded).", models, n,
                     model_kv_capacity);
    put_model_family(b, "elliott_model_kv_tokens_reserved", "gauge",
                     "KV pool positions the model's running requests may fill (prompt + max_tokens).", models, n,
                     model_kv_reserved);
    put_model_family(b, "elliott_model_kv_tokens_cached", "gauge",
                     "KV pool positions finished conversations keep for reuse.", models, n, model_kv_cached);
    put_kv_types(b, models, n);
}

char *metrics_render(server_metrics *m, const metrics_gauges *g, size_t *len)
{
    text_buf b = {0};
    pthread_mutex_lock(&m->lock);
    put(&b, "# HELP elliott_http_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE elliott_http_requests_total counter\n");
    for (int r = 0; r < ROUTE_COUNT; r++)
        for (int s = 0; s < METRICS_STATUSES; s++)
            if (m->requests[r][s]) {
                char status[8];
                if (STATUSES[s])
                    snprintf(status, sizeof status, "%d", STATUSES[s]);
                else
                    snprintf(status, sizeof status, "other");
                put(&b, "elliott_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                    api_route_name((enum api_route)r), status, (unsigned long long)m->requests[r][s]);
            }
    put_counter(&b, "elliott_prompt_tokens_total", "Prompt tokens processed.", m->prompt_tokens);
    put_counter(&b, "elliott_completion_tokens_total", "Completion tokens generated.", m->completion_tokens);
    put_counter(&b, "elliott_requests_cancelled_total", "Generations stopped because the client disconnected.",
                m->cancelled);
    put_histogram(&b, "elliott_http_request_duration_seconds", "Time from request arrival to its end.",
                  &m->latency);
    put_histogram(&b, "elliott_time_to_first_token_seconds",
                  "Time from a completion request's arrival to its first generated text.", &m->ttft);
    pthread_mutex_unlock(&m->lock);
    put_gauge(&b, "elliott_model_ready", "1 while the default model is loaded.", g->ready);
    put_gauge(&b, "elliott_queue_depth", "Requests waiting for a slot.", g->queue_depth);
    put_gauge(&b, "elliott_active_slots", "Slots generating.", g->active_slots);
    put_gauge(&b, "elliott_http_requests_in_flight", "HTTP requests being handled.", g->in_flight);
    put_gauge(&b, "elliott_http_connections_open", "Open client connections.", g->open_connections);
    put_counter(&b, "elliott_http_connections_timed_out_total",
                "Connections closed because their request line, head or body missed its deadline.",
                g->connections_timed_out);
    put_models(&b, g->models, g->n_models);
    if (b.failed) {
        free(b.data);
        return NULL;
    }
    *len = b.len;
    return b.data;
}
