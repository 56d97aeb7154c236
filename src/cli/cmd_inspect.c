/* elliott inspect: a GGUF file's header, metadata and tensor table, as text or JSON. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "gguf/gguf.h"
#include "model/model.h"

enum {
    ARRAY_HEAD = 8,         /* array elements shown */
    TEXT_STRING_MAX = 72,   /* bytes of a string value shown in text output */
    TEXT_ELEMENT_MAX = 24,  /* bytes of a string array element shown in text output */
    JSON_STRING_MAX = 4096, /* bytes of a string value in JSON output */
};

typedef struct inspect_opts {
    const char *path;
    bool json;
    bool tensors;
} inspect_opts;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: elliott inspect MODEL.gguf [--json] [--tensors | --no-tensors]\n\n"
            "Validates a GGUF file and shows its version, alignment and size, every metadata\n"
            "key with its type and value (arrays as TYPE[length] with the first %d elements,\n"
            "long strings such as chat templates shortened), the tensor table (name, type,\n"
            "shape, offset in the data section, bytes, and the part it plays: matrix, table\n"
            "(looked up by token), router (kept F32) or vector), totals (tensor count, bytes by\n"
            "type, parameters), and whether elliott runs the model (its architecture and\n"
            "sizes, or why not).\n\n"
            "options:\n"
            "      --json         print one JSON object instead of text\n"
            "      --tensors      list every tensor (the default)\n"
            "      --no-tensors   leave the tensor list out (totals are still shown)\n"
            "  -h, --help         this help\n\n"
            "Exit status: 0 for a valid file, 1 for an invalid or unreadable one, 2 for usage errors.\n",
            ARRAY_HEAD);
}

/* 0: go on; otherwise the exit status (help printed, or a usage error). */
static int parse_args(int argc, char **argv, inspect_opts *o, int *exit_status)
{
    static const struct option long_opts[] = {
        {"json", no_argument, NULL, 'j'},       {"tensors", no_argument, NULL, 't'},
        {"no-tensors", no_argument, NULL, 'n'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (inspect_opts){.tensors = true};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'j': o->json = true; break;
        case 't': o->tensors = true; break;
        case 'n': o->tensors = false; break;
        case 'h':
            usage(stdout);
            *exit_status = 0;
            return 1;
        default:
            *exit_status = args_option_error("inspect", c, argv);
            return 1;
        }
    }
    if (optind != argc - 1) {
        *exit_status = args_usage_error("inspect", "%s", optind == argc ? "no GGUF file given"
                                                                        : "exactly one GGUF file expected");
        return 1;
    }
    o->path = argv[optind];
    return 0;
}

/* ---- values -------------------------------------------------------------------- */

static size_t element_size(enum gguf_value_type t)
{
    switch (t) {
    case GGUF_VAL_UINT8: case GGUF_VAL_INT8: case GGUF_VAL_BOOL: return 1;
    case GGUF_VAL_UINT16: case GGUF_VAL_INT16: return 2;
    case GGUF_VAL_UINT32: case GGUF_VAL_INT32: case GGUF_VAL_FLOAT32: return 4;
    default: return 8;
    }
}

/* Element i of a non-string array, decoded into a scalar gguf_kv. */
static gguf_kv array_element(const gguf_kv *arr, uint64_t i)
{
    gguf_kv e = {.type = arr->arr_type};
    size_t n = element_size(arr->arr_type);
    const uint8_t *p = arr->arr_data + i * n;
    uint64_t u = 0;
    for (size_t b = 0; b < n; b++)
        u |= (uint64_t)p[b] << (8 * b);
    uint32_t u32 = (uint32_t)u;
    float f;
    switch (arr->arr_type) {
    case GGUF_VAL_INT8: e.v.i64 = (int8_t)u; break;
    case GGUF_VAL_INT16: e.v.i64 = (int16_t)u; break;
    case GGUF_VAL_INT32: e.v.i64 = (int32_t)u32; break;
    case GGUF_VAL_INT64: e.v.i64 = (int64_t)u; break;
    case GGUF_VAL_FLOAT32:
        memcpy(&f, &u32, sizeof f);
        e.v.f64 = f;
        break;
    case GGUF_VAL_FLOAT64: memcpy(&e.v.f64, &u, sizeof e.v.f64); break;
    default: e.v.u64 = u; break;
    }
    return e;
}

static bool is_signed_type(enum gguf_value_type t)
{
    return t == GGUF_VAL_INT8 || t == GGUF_VAL_INT16 || t == GGUF_VAL_INT32 || t == GGUF_VAL_INT64;
}

/* ---- totals ------------------------------------------------------------------- */

typedef struct totals {
    uint64_t tensors, bytes, params;
    uint64_t count_by_type[GGUF_TYPE_COUNT];
    uint64_t bytes_by_type[GGUF_TYPE_COUNT];
} totals;

static void sum_tensors(const gguf_file *f, totals *t)
{
    memset(t, 0, sizeof *t);
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *ti = gguf_tensor_at(f, i);
        uint64_t elems = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++)
            elems *= (uint64_t)ti->ne[d]; /* the reader checked that this cannot overflow */
        t->tensors++;
        t->bytes += ti->nbytes;
        t->params += elems;
        t->count_by_type[ti->type]++;
        t->bytes_by_type[ti->type] += ti->nbytes;
    }
}

/* ---- text output ----------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p, 0 if the byte starts none. */
static size_t utf8_len(const unsigned char *p, uint64_t n)
{
    size_t len = p[0] < 0x80 ? 1 : (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || len > n || (len == 2 && p[0] < 0xc2))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* A quoted string with control characters and invalid bytes escaped, cut after about
 * max bytes with its full length noted. */
static void print_string(FILE *out, gguf_str s, size_t max)
{
    const unsigned char *p = (const unsigned char *)s.ptr;
    uint64_t i = 0;
    fputc('"', out);
    while (i < s.len && i < max) {
        size_t n = utf8_len(p + i, s.len - i);
        unsigned char c = p[i];
        if (n == 1 && c == '\n')
            fputs("\\n", out);
        else if (n == 1 && c == '\t')
            fputs("\\t", out);
        else if (n == 1 && (c == '"' || c == '\\'))
            fprintf(out, "\\%c", c);
        else if (n == 0 || (n == 1 && (c < 0x20 || c == 0x7f)))
            fprintf(out, "\\x%02x", c);
        else
            fwrite(p + i, 1, n, out);
        i += n ? n : 1;
    }
    fputc('"', out);
    if (i < s.len)
        fprintf(out, "... (%" PRIu64 " bytes)", s.len);
}

/* The shortest decimal that reads back as the same float (1e-06, not 9.99999997e-07). */
static void print_float(FILE *out, double v, bool single)
{
    char buf[40];
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, v);
        double back = strtod(buf, NULL);
        if ((single ? (double)(float)back == v : back == v) || isnan(v))
            break;
    }
    fputs(buf, out);
}

static void print_scalar(FILE *out, const gguf_kv *kv)
{
    if (kv->type == GGUF_VAL_BOOL)
        fputs(kv->v.u64 ? "true" : "false", out);
    else if (kv->type == GGUF_VAL_FLOAT32 || kv->type == GGUF_VAL_FLOAT64)
        print_float(out, kv->v.f64, kv->type == GGUF_VAL_FLOAT32);
    else if (is_signed_type(kv->type))
        fprintf(out, "%" PRId64, kv->v.i64);
    else
        fprintf(out, "%" PRIu64, kv->v.u64);
}

static void print_value(FILE *out, const gguf_kv *kv)
{
    if (kv->type == GGUF_VAL_STRING) {
        print_string(out, kv->v.str, TEXT_STRING_MAX);
        return;
    }
    if (kv->type != GGUF_VAL_ARRAY) {
        print_scalar(out, kv);
        return;
    }
    fputc('[', out);
    uint64_t shown = kv->arr_len < ARRAY_HEAD ? kv->arr_len : ARRAY_HEAD;
    for (uint64_t i = 0; i < shown; i++) {
        if (i)
            fputs(", ", out);
        if (kv->arr_type == GGUF_VAL_STRING) {
            print_string(out, kv->arr_strings[i], TEXT_ELEMENT_MAX);
        } else {
            gguf_kv e = array_element(kv, i);
            print_scalar(out, &e);
        }
    }
    if (shown < kv->arr_len)
        fputs(", ...", out);
    fputc(']', out);
}

static void type_label(const gguf_kv *kv, char *buf, size_t cap)
{
    if (kv->type == GGUF_VAL_ARRAY)
        snprintf(buf, cap, "%s[%" PRIu64 "]", gguf_value_type_name(kv->arr_type), kv->arr_len);
    else
        snprintf(buf, cap, "%s", gguf_value_type_name(kv->type));
}

static void shape_label(const gguf_tensor *t, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
}

static const char *kind_name(enum model_tensor_kind k)
{
    switch (k) {
    case MODEL_TENSOR_MATRIX: return "matrix";
    case MODEL_TENSOR_TABLE: return "table";
    case MODEL_TENSOR_ROUTER: return "router";
    case MODEL_TENSOR_VECTOR: return "vector";
    }
    return "?";
}

static const char *tensor_kind(const gguf_tensor *t)
{
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
    if (t->n_dims < 2 && model_tensor_kind_of(name) == MODEL_TENSOR_MATRIX)
        return kind_name(MODEL_TENSOR_VECTOR);
    return kind_name(model_tensor_kind_of(name));
}

/* Whether the model layer accepts the file: its loader validates every tensor the
 * architecture needs. */
typedef struct model_check {
    bool ok;
    model_hparams *hp; /* when ok */
    char error[sizeof(((el_err *)0)->msg)];
} model_check;

static void check_model(const char *path, model_check *c)
{
    el_err err = {{0}};
    model *m = model_load(path, NULL, &err);
    c->ok = m != NULL;
    c->hp = NULL;
    if (m) {
        c->hp = malloc(sizeof *c->hp);
        if (c->hp)
            *c->hp = *model_hparams_of(m);
        c->ok = c->hp != NULL;
        model_free(m);
    } else {
        snprintf(c->error, sizeof c->error, "%s", err.msg);
    }
}

static void print_model_text(FILE *out, const model_check *c)
{
    if (!c->ok) {
        fprintf(out, "\nmodel: elliott does not run this file: %s\n", c->error);
        return;
    }
    const model_hparams *hp = c->hp;
    fprintf(out, "\nmodel: runs here: %s, %d layers, embedding %d, %d heads, vocabulary %d", model_arch_name(hp->arch),
            hp->n_layer, hp->n_embd, hp->n_head, hp->n_vocab);
    if (hp->n_expert > 0)
        fprintf(out, ", %d experts (%d per token)", hp->n_expert, hp->n_expert_used);
    if (hp->n_layer_kv < hp->n_layer)
        fprintf(out, ", %d layers sharing KV", hp->n_layer - hp->n_layer_kv);
    if (hp->n_embd_per_layer > 0)
        fprintf(out, ", per-layer inputs of %d", hp->n_embd_per_layer);
    if (!hp->causal)
        fprintf(out, ", embeddings (pooling %d)", (int)hp->pooling);
    fputc('\n', out);
}

static json_t *model_json(const model_check *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "runs", json_boolean(c->ok));
    if (!c->ok) {
        json_object_set_new(o, "error", json_string(c->error));
        return o;
    }
    const model_hparams *hp = c->hp;
    json_object_set_new(o, "arch", json_string(model_arch_name(hp->arch)));
    json_object_set_new(o, "layers", json_integer(hp->n_layer));
    json_object_set_new(o, "embedding", json_integer(hp->n_embd));
    json_object_set_new(o, "heads", json_integer(hp->n_head));
    json_object_set_new(o, "vocabulary", json_integer(hp->n_vocab));
    json_object_set_new(o, "experts", json_integer(hp->n_expert));
    json_object_set_new(o, "experts_used", json_integer(hp->n_expert_used));
    json_object_set_new(o, "layers_with_kv", json_integer(hp->n_layer_kv));
    json_object_set_new(o, "per_layer_input", json_integer(hp->n_embd_per_layer));
    json_object_set_new(o, "embedding_model", json_boolean(!hp->causal));
    return o;
}

static void print_bytes_human(FILE *out, uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4)
        v /= 1024, u++;
    fprintf(out, "%" PRIu64 " bytes (%.*f %s)", bytes, u ? 1 : 0, v, units[u]);
}

static void print_text(FILE *out, const gguf_file *f, const inspect_opts *o, const model_check *mc)
{
    fprintf(out, "%s: GGUF version %u, alignment %u, ", o->path, gguf_version(f), gguf_alignment(f));
    print_bytes_human(out, gguf_size(f));
    fprintf(out, ", tensor data at offset %" PRIu64 "\n", gguf_data_offset(f));

    fprintf(out, "\nmetadata: %" PRIu64 " keys\n", gguf_kv_count(f));
    for (uint64_t i = 0; i < gguf_kv_count(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        char type[48];
        type_label(kv, type, sizeof type);
        fprintf(out, "  %-44.*s %-16s ", (int)kv->key.len, kv->key.ptr, type);
        print_value(out, kv);
        fputc('\n', out);
    }

    totals t;
    sum_tensors(f, &t);
    if (o->tensors && t.tensors) {
        fprintf(out, "\ntensors: %" PRIu64 "\n  %-36s %-8s %-22s %14s %14s  %s\n", t.tensors, "name", "type",
                "shape", "offset", "bytes", "part");
        for (uint64_t i = 0; i < t.tensors; i++) {
            const gguf_tensor *ti = gguf_tensor_at(f, i);
            char shape[128];
            shape_label(ti, shape, sizeof shape);
            fprintf(out, "  %-36.*s %-8s %-22s %14" PRIu64 " %14" PRIu64 "  %s\n", (int)ti->name.len,
                    ti->name.ptr, gguf_type_get(ti->type)->name, shape, ti->offset, ti->nbytes, tensor_kind(ti));
        }
    }
    fprintf(out, "\ntotals: %" PRIu64 " tensors, %" PRIu64 " parameters, ", t.tensors, t.params);
    print_bytes_human(out, t.bytes);
    fputc('\n', out);
    for (uint32_t ty = 0; ty < GGUF_TYPE_COUNT; ty++) {
        if (!t.count_by_type[ty])
            continue;
        fprintf(out, "  %-8s %6" PRIu64 " tensors  ", gguf_type_get(ty)->name, t.count_by_type[ty]);
        print_bytes_human(out, t.bytes_by_type[ty]);
        fputc('\n', out);
    }
    print_model_text(out, mc);
}

/* ---- JSON output -------------------------------------------------------------------- */

/* A JSON string from bytes that may not be valid UTF-8 (bad bytes become U+FFFD),
 * cut after about max bytes. */
static json_t *json_bytes(gguf_str s, size_t max)
{
    uint64_t len = s.len < max ? s.len : max;
    char *clean = malloc((size_t)len * 3 + 4);
    if (!clean)
        return json_null();
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)s.ptr;
    for (uint64_t i = 0; i < len;) {
        size_t n = utf8_len(p + i, s.len - i);
        if (n) {
            memcpy(clean + o, p + i, n);
            o += n, i += n;
        } else {
            memcpy(clean + o, "\xef\xbf\xbd", 3);
            o += 3, i++;
        }
    }
    json_t *j = json_stringn(clean, o);
    free(clean);
    return j ? j : json_null();
}

static json_t *json_u64(uint64_t v)
{
    if (v <= (uint64_t)INT64_MAX)
        return json_integer((json_int_t)v);
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return json_string(buf); /* beyond JSON integers that parsers keep exactly */
}

static json_t *json_scalar(const gguf_kv *kv)
{
    if (kv->type == GGUF_VAL_BOOL)
        return json_boolean(kv->v.u64);
    if (kv->type == GGUF_VAL_FLOAT32 || kv->type == GGUF_VAL_FLOAT64) {
        if (isfinite(kv->v.f64))
            return json_real(kv->v.f64);
        return json_string(isnan(kv->v.f64) ? "nan" : kv->v.f64 > 0 ? "inf" : "-inf");
    }
    if (is_signed_type(kv->type))
        return json_integer((json_int_t)kv->v.i64);
    return json_u64(kv->v.u64);
}

static json_t *json_kv(const gguf_kv *kv)
{
    json_t *o = json_object();
    json_object_set_new(o, "key", json_bytes(kv->key, SIZE_MAX));
    json_object_set_new(o, "type", json_string(gguf_value_type_name(kv->type)));
    if (kv->type == GGUF_VAL_STRING) {
        json_object_set_new(o, "value", json_bytes(kv->v.str, JSON_STRING_MAX));
        json_object_set_new(o, "bytes", json_u64(kv->v.str.len));
        return o;
    }
    if (kv->type != GGUF_VAL_ARRAY) {
        json_object_set_new(o, "value", json_scalar(kv));
        return o;
    }
    json_object_set_new(o, "element_type", json_string(gguf_value_type_name(kv->arr_type)));
    json_object_set_new(o, "length", json_u64(kv->arr_len));
    json_t *head = json_array();
    uint64_t shown = kv->arr_len < ARRAY_HEAD ? kv->arr_len : ARRAY_HEAD;
    for (uint64_t i = 0; i < shown; i++) {
        if (kv->arr_type == GGUF_VAL_STRING) {
            json_array_append_new(head, json_bytes(kv->arr_strings[i], JSON_STRING_MAX));
        } else {
            gguf_kv e = array_element(kv, i);
            json_array_append_new(head, json_scalar(&e));
        }
    }
    json_object_set_new(o, "head", head);
    return o;
}

static json_t *json_tensor(const gguf_tensor *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_bytes(t->name, SIZE_MAX));
    json_object_set_new(o, "type", json_string(gguf_type_get(t->type)->name));
    json_t *shape = json_array();
    for (uint32_t d = 0; d < t->n_dims; d++)
        json_array_append_new(shape, json_integer((json_int_t)t->ne[d]));
    json_object_set_new(o, "shape", shape);
    json_object_set_new(o, "offset", json_u64(t->offset));
    json_object_set_new(o, "bytes", json_u64(t->nbytes));
    json_object_set_new(o, "part", json_string(tensor_kind(t)));
    return o;
}

static json_t *json_totals(const totals *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "tensors", json_u64(t->tensors));
    json_object_set_new(o, "bytes", json_u64(t->bytes));
    json_object_set_new(o, "parameters", json_u64(t->params));
    json_t *by_type = json_object();
    for (uint32_t ty = 0; ty < GGUF_TYPE_COUNT; ty++) {
        if (!t->count_by_type[ty])
            continue;
        json_t *e = json_object();
        json_object_set_new(e, "tensors", json_u64(t->count_by_type[ty]));
        json_object_set_new(e, "bytes", json_u64(t->bytes_by_type[ty]));
        json_object_set_new(by_type, gguf_type_get(ty)->name, e);
    }
    json_object_set_new(o, "by_type", by_type);
    return o;
}

static int print_json(FILE *out, const gguf_file *f, const inspect_opts *o, const model_check *mc)
{
    json_t *root = json_object();
    json_object_set_new(root, "path", json_bytes((gguf_str){o->path, strlen(o->path)}, SIZE_MAX));
    json_object_set_new(root, "version", json_integer(gguf_version(f)));
    json_object_set_new(root, "alignment", json_integer(gguf_alignment(f)));
    json_object_set_new(root, "size", json_u64(gguf_size(f)));
    json_object_set_new(root, "data_offset", json_u64(gguf_data_offset(f)));
    json_t *metadata = json_array();
    for (uint64_t i = 0; i < gguf_kv_count(f); i++)
        json_array_append_new(metadata, json_kv(gguf_kv_at(f, i)));
    json_object_set_new(root, "metadata", metadata);
    if (o->tensors) {
        json_t *tensors = json_array();
        for (uint64_t i = 0; i < gguf_tensor_count(f); i++)
            json_array_append_new(tensors, json_tensor(gguf_tensor_at(f, i)));
        json_object_set_new(root, "tensors", tensors);
    }
    totals t;
    sum_tensors(f, &t);
    json_object_set_new(root, "totals", json_totals(&t));
    json_object_set_new(root, "model", model_json(mc));
    int rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', out);
    json_decref(root);
    return rc;
}

int cmd_inspect(int argc, char **argv)
{
    inspect_opts o;
    int status;
    if (parse_args(argc, argv, &o, &status))
        return status;
    el_err err = {{0}};
    gguf_file *f = gguf_open(o.path, &err);
    if (!f) {
        fprintf(stderr, "elliott inspect: %s\n", err.msg);
        return 1;
    }
    model_check mc;
    check_model(o.path, &mc);
    int rc = 0;
    if (o.json)
        rc = print_json(stdout, f, &o, &mc);
    else
        print_text(stdout, f, &o, &mc);
    free(mc.hp);
    gguf_close(f);
    if (rc < 0 || fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "elliott inspect: cannot write the output\n");
        return 1;
    }
    return 0;
}
