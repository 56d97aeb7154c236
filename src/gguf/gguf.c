/* The GGUF reader: maps a file and validates every byte of its header before
 * handing anything out.
 *
 * Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 kv count,
 * the key/value pairs, the tensor descriptions, padding to the alignment, then
 * the tensor data. A string is a u64 length and that many bytes. */
#include "gguf/gguf.h"
#include "gguf/gguf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/mapguard.h"

enum {
    /* Smallest encodings, used to bound counts by the bytes left before anything
     * is allocated: a kv is a 1-byte key (8 + 1), a type (4) and a 1-byte value;
     * a tensor is a 1-byte name, n_dims, one dimension, a type and an offset. */
    MIN_KV_BYTES = 8 + 1 + 4 + 1,
    MIN_TENSOR_BYTES = 8 + 1 + 4 + 8 + 4 + 8,
    MIN_STRING_BYTES = 8,
    QUOTE_BYTES = 120,
};

/* Open addressing over a power-of-two table; a slot holds index + 1, 0 is empty. */
typedef struct name_index {
    uint64_t *slots;
    uint64_t mask;
} name_index;

struct gguf_file {
    const uint8_t *base;
    uint64_t size;
    void *map; /* non-NULL when gguf_open mapped the file */
    int fd;    /* the mapped file, open for the mapping's life (mapguard and fstat read it); -1 */
    int guard; /* mapguard id of the mapping; -1 */
    struct stat loaded; /* the file as it was mapped */
    char *path;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    gguf_kv *kvs;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    name_index kv_index;
    name_index tensor_index;
};

/* ---- error messages ------------------------------------------------------------ */

static size_t utf8_seq_len(const unsigned char *p, uint64_t n);

/* Writes a name into buf for a message: valid UTF-8 as it is, control characters,
 * backslashes and invalid bytes as \xNN, cut at QUOTE_BYTES so that a hostile
 * 64 KiB name cannot swamp the message. */
static void quote_name(gguf_str s, char *buf, size_t cap)
{
    const unsigned char *p = (const unsigned char *)s.ptr;
    size_t o = 0;
    uint64_t i = 0;
    while (i < s.len && i < QUOTE_BYTES && o + 8 < cap) {
        size_t n = utf8_seq_len(p + i, s.len - i);
        if (n == 0 || p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\') {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", p[i]);
            i++;
        } else {
            memcpy(buf + o, p + i, n);
            o += n;
            i += n;
        }
    }
    if (i < s.len && o + 4 <= cap) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o < cap ? o : cap - 1] = '\0';
}

typedef struct reader {
    const uint8_t *base;
    uint64_t size;
    uint64_t pos;
    const char *path;
    el_err *err;
} reader;

static int fail(const reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const reader *r, const char *fmt, ...)
{
    char msg[sizeof(((el_err *)0)->msg)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return el_fail(r->err, "%s: %s", r->path, msg);
}

/* Inserts context after the path of the message fail() made: "PATH: CONTEXT: rest". */
static int add_context(const reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_context(const reader *r, const char *fmt, ...)
{
    if (!r->err)
        return -1;
    char context[sizeof r->err->msg], rest[sizeof r->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(context, sizeof context, fmt, ap);
    va_end(ap);
    size_t n = strlen(r->path);
    const char *tail = r->err->msg;
    if (strncmp(tail, r->path, n) == 0 && strncmp(tail + n, ": ", 2) == 0)
        tail += n + 2;
    snprintf(rest, sizeof rest, "%s", tail);
    return el_fail(r->err, "%s: %s: %s", r->path, context, rest);
}

/* ---- primitive reads ------------------------------------------------------------ */

static uint64_t bytes_left(const reader *r) { return r->size - r->pos; }

static uint32_t load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_u64(const uint8_t *p) { return load_u32(p) | (uint64_t)load_u32(p + 4) << 32; }

static int need(reader *r, uint64_t n, const char *what)
{
    if (n > bytes_left(r))
        return fail(r, "%s at offset %llu needs %llu bytes but the file ends at %llu", what,
                    (unsigned long long)r->pos, (unsigned long long)n, (unsigned long long)r->size);
    return 0;
}

static int read_u32(reader *r, uint32_t *out, const char *what)
{
    if (need(r, 4, what) < 0)
        return -1;
    *out = load_u32(r->base + r->pos);
    r->pos += 4;
    return 0;
}

static int read_u64(reader *r, uint64_t *out, const char *what)
{
    if (need(r, 8, what) < 0)
        return -1;
    *out = load_u64(r->base + r->pos);
    r->pos += 8;
    return 0;
}

static int read_string(reader *r, gguf_str *out, const char *what)
{
    uint64_t len;
    if (read_u64(r, &len, what) < 0)
        return -1;
    if (len > bytes_left(r))
        return fail(r, "%s: length %llu at offset %llu exceeds the %llu bytes left in the file", what,
                    (unsigned long long)len, (unsigned long long)(r->pos - 8),
                    (unsigned long long)bytes_left(r));
    out->ptr = (const char *)r->base + r->pos;
    out->len = len;
    r->pos += len;
    return 0;
}

/* ---- names --------------------------------------------------------------------- */

/* Length of the UTF-8 sequence at p (at most n bytes), 0 if invalid: overlong forms,
 * surrogates and code points past U+10FFFF are refused. */
static size_t utf8_seq_len(const unsigned char *p, uint64_t n)
{
    unsigned char c = p[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

const char *gguf_name_problem(const char *name, uint64_t len)
{
    if (len == 0)
        return "is empty";
    if (len > GGUF_MAX_NAME_BYTES)
        return "is longer than 65535 bytes";
    const unsigned char *p = (const unsigned char *)name;
    for (uint64_t i = 0; i < len;) {
        if (p[i] < 0x20 || p[i] == 0x7f)
            return "contains a control character";
        size_t n = utf8_seq_len(p + i, len - i);
        if (n == 0)
            return "is not valid UTF-8";
        i += n;
    }
    return NULL;
}

static int read_name(reader *r, gguf_str *out, const char *what)
{
    if (read_string(r, out, what) < 0)
        return -1;
    const char *problem = gguf_name_problem(out->ptr, out->len);
    if (problem) {
        char q[QUOTE_BYTES * 4 + 8];
        quote_name(*out, q, sizeof q);
        return fail(r, "%s '%s' %s", what, q, problem);
    }
    return 0;
}

/* ---- name lookup --------------------------------------------------------------- */

static uint64_t hash_bytes(const char *p, uint64_t n)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool str_eq_bytes(gguf_str s, const char *p, uint64_t n)
{
    return s.len == n && (n == 0 || memcmp(s.ptr, p, n) == 0);
}

/* Builds the index over n names; returns the first index whose name repeats an
 * earlier one in *dup, or -1 on allocation failure. */
static int index_build(name_index *ix, uint64_t n, gguf_str (*name_at)(const void *, uint64_t),
                       const void *items, uint64_t *dup)
{
    uint64_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots)
        return -1;
    ix->mask = cap - 1;
    *dup = UINT64_MAX;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str name = name_at(items, i);
        uint64_t h = hash_bytes(name.ptr, name.len) & ix->mask;
        while (ix->slots[h]) {
            if (str_eq_bytes(name_at(items, ix->slots[h] - 1), name.ptr, name.len)) {
                *dup = i;
                return 0;
            }
            h = (h + 1) & ix->mask;
        }
        ix->slots[h] = i + 1;
    }
    return 0;
}

/* Index + 1 of the name, 0 if absent. */
static uint64_t index_find(const name_index *ix, gguf_str (*name_at)(const void *, uint64_t),
                           const void *items, const char *name)
{
    if (!ix->slots || !name)
        return 0;
    size_t n = strlen(name);
    uint64_t h = hash_bytes(name, n) & ix->mask;
    while (ix->slots[h]) {
        if (str_eq_bytes(name_at(items, ix->slots[h] - 1), name, n))
            return ix->slots[h];
        h = (h + 1) & ix->mask;
    }
    return 0;
}

static gguf_str kv_name_at(const void *items, uint64_t i) { return ((const gguf_kv *)items)[i].key; }
static gguf_str tensor_name_at(const void *items, uint64_t i)
{
    return ((const gguf_tensor *)items)[i].name;
}

/* ---- values -------------------------------------------------------------------- */

uint32_t gguf_scalar_size(uint32_t type)
{
    switch (type) {
    case GGUF_VAL_UINT8: case GGUF_VAL_INT8: case GGUF_VAL_BOOL: return 1;
    case GGUF_VAL_UINT16: case GGUF_VAL_INT16: return 2;
    case GGUF_VAL_UINT32: case GGUF_VAL_INT32: case GGUF_VAL_FLOAT32: return 4;
    case GGUF_VAL_UINT64: case GGUF_VAL_INT64: case GGUF_VAL_FLOAT64: return 8;
    default: return 0;
    }
}

static void decode_scalar(gguf_kv *kv, const uint8_t *p)
{
    uint32_t bits32;
    uint64_t bits64;
    float f32;
    double f64;
    switch (kv->type) {
    case GGUF_VAL_UINT8: case GGUF_VAL_BOOL: kv->v.u64 = p[0]; break;
    case GGUF_VAL_INT8: kv->v.i64 = (int8_t)p[0]; break;
    case GGUF_VAL_UINT16: kv->v.u64 = (uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_VAL_INT16: kv->v.i64 = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_VAL_UINT32: kv->v.u64 = load_u32(p); break;
    case GGUF_VAL_INT32: kv->v.i64 = (int32_t)load_u32(p); break;
    case GGUF_VAL_UINT64: kv->v.u64 = load_u64(p); break;
    case GGUF_VAL_INT64: kv->v.i64 = (int64_t)load_u64(p); break;
    case GGUF_VAL_FLOAT32:
        bits32 = load_u32(p);
        memcpy(&f32, &bits32, 4);
        kv->v.f64 = f32;
        break;
    case GGUF_VAL_FLOAT64:
        bits64 = load_u64(p);
        memcpy(&f64, &bits64, 8);
        kv->v.f64 = f64;
        break;
    default: break;
    }
}

static int read_array(reader *r, gguf_kv *kv, const char *key)
{
    uint32_t elem;
    uint64_t len;
    if (read_u32(r, &elem, "array element type") < 0 || read_u64(r, &len, "array length") < 0)
        return add_context(r, "key '%s'", key);
    if (elem == GGUF_VAL_ARRAY)
        return fail(r, "key '%s': nested arrays are not supported", key);
    if (elem >= GGUF_VAL_COUNT)
        return fail(r, "key '%s': unknown array element type %u", key, elem);
    kv->arr_type = (enum gguf_value_type)elem;
    kv->arr_len = len;
    kv->arr_data = r->base + r->pos;
    uint32_t esize = elem == GGUF_VAL_STRING ? MIN_STRING_BYTES : gguf_scalar_size(elem);
    if (len > bytes_left(r) / esize)
        return fail(r, "key '%s': array length %llu cannot fit in the %llu bytes left in the file",
                    key, (unsigned long long)len, (unsigned long long)bytes_left(r));
    if (elem != GGUF_VAL_STRING) {
        if (elem == GGUF_VAL_BOOL)
            for (uint64_t i = 0; i < len; i++)
                if (kv->arr_data[i] > 1)
                    return fail(r, "key '%s': bool element %llu is %u, not 0 or 1", key,
                                (unsigned long long)i, kv->arr_data[i]);
        r->pos += len * esize;
        return 0;
    }
    /* Walk the strings once before allocating, so that the allocation matches
     * strings that really are in the file. */
    uint64_t start = r->pos;
    for (uint64_t i = 0; i < len; i++) {
        gguf_str s;
        if (read_string(r, &s, "array string") < 0)
            return add_context(r, "key '%s' element %llu", key, (unsigned long long)i);
    }
    if (len == 0)
        return 0;
    kv->arr_strings = malloc(len * sizeof *kv->arr_strings);
    if (!kv->arr_strings)
        return fail(r, "key '%s': out of memory for %llu strings", key, (unsigned long long)len);
    for (uint64_t i = 0, pos = start; i < len; i++) {
        uint64_t n = load_u64(r->base + pos);
        kv->arr_strings[i].ptr = (const char *)r->base + pos + 8;
        kv->arr_strings[i].len = n;
        pos += 8 + n;
    }
    return 0;
}

static int read_value(reader *r, gguf_kv *kv, uint32_t type, const char *key)
{
    if (type >= GGUF_VAL_COUNT)
        return fail(r, "key '%s': unknown value type %u", key, type);
    kv->type = (enum gguf_value_type)type;
    if (type == GGUF_VAL_STRING) {
        if (read_string(r, &kv->v.str, "string value") < 0)
            return add_context(r, "key '%s'", key);
        return 0;
    }
    if (type == GGUF_VAL_ARRAY)
        return read_array(r, kv, key);
    uint32_t n = gguf_scalar_size(type);
    if (need(r, n, "value") < 0)
        return add_context(r, "key '%s'", key);
    const uint8_t *p = r->base + r->pos;
    if (type == GGUF_VAL_BOOL && p[0] > 1)
        return fail(r, "key '%s': bool value %u is not 0 or 1", key, p[0]);
    decode_scalar(kv, p);
    r->pos += n;
    return 0;
}

/* ---- the header ------------------------------------------------------------------ */

static int grow(void **items, uint64_t *cap, uint64_t need_count, size_t item_size)
{
    if (need_count <= *cap)
        return 0;
    uint64_t n = *cap ? *cap * 2 : 16;
    void *p = realloc(*items, n * item_size);
    if (!p)
        return -1;
    memset((char *)p + *cap * item_size, 0, (n - *cap) * item_size);
    *items = p;
    *cap = n;
    return 0;
}

static int read_preamble(reader *r, gguf_file *f, uint64_t *n_tensors, uint64_t *n_kv)
{
    if (r->size < 4 || memcmp(r->base, "GGUF", 4) != 0)
        return fail(r, "not a GGUF file (the first bytes are not \"GGUF\")");
    r->pos = 4;
    if (read_u32(r, &f->version, "version") < 0)
        return -1;
    if (f->version == 1)
        return fail(r, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xffff) == 0 && f->version != 0)
            return fail(r, "big-endian GGUF files are not supported");
        return fail(r, "unsupported GGUF version %u (only versions 2 and 3)", f->version);
    }
    if (read_u64(r, n_tensors, "tensor count") < 0 || read_u64(r, n_kv, "key/value count") < 0)
        return -1;
    uint64_t left = bytes_left(r);
    if (*n_kv > left / MIN_KV_BYTES)
        return fail(r, "key/value count %llu cannot fit in the %llu bytes left in the file",
                    (unsigned long long)*n_kv, (unsigned long long)left);
    if (*n_tensors > (left - *n_kv * MIN_KV_BYTES) / MIN_TENSOR_BYTES)
        return fail(r, "tensor count %llu cannot fit, after %llu keys, in the %llu bytes left in the file",
                    (unsigned long long)*n_tensors, (unsigned long long)*n_kv, (unsigned long long)left);
    return 0;
}

static int read_kvs(reader *r, gguf_file *f, uint64_t n_kv)
{
    uint64_t cap = 0;
    for (uint64_t i = 0; i < n_kv; i++) {
        if (grow((void **)&f->kvs, &cap, i + 1, sizeof *f->kvs) < 0)
            return fail(r, "out of memory reading key/value pairs");
        gguf_kv *kv = &f->kvs[i];
        char what[48];
        snprintf(what, sizeof what, "name of key #%llu", (unsigned long long)i);
        if (read_name(r, &kv->key, what) < 0)
            return -1;
        f->n_kv = i + 1; /* from here on, close frees what this kv owns */
        char key[QUOTE_BYTES * 4 + 8];
        quote_name(kv->key, key, sizeof key);
        uint32_t type;
        if (read_u32(r, &type, "value type") < 0)
            return add_context(r, "key '%s'", key);
        if (read_value(r, kv, type, key) < 0)
            return -1;
    }
    return 0;
}

static int check_alignment(reader *r, gguf_file *f)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find(f, "general.alignment");
    if (!kv)
        return 0;
    if (kv->type != GGUF_VAL_UINT32)
        return fail(r, "key 'general.alignment' is %s, expected UINT32", gguf_value_type_name(kv->type));
    uint64_t a = kv->v.u64;
    if (a == 0 || (a & (a - 1)) != 0)
        return fail(r, "key 'general.alignment' is %llu, not a nonzero power of two",
                    (unsigned long long)a);
    f->alignment = (uint32_t)a;
    return 0;
}

static int read_tensor_shape(reader *r, gguf_tensor *t, const char *name)
{
    if (read_u32(r, &t->n_dims, "n_dims") < 0)
        return add_context(r, "tensor '%s'", name);
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return fail(r, "tensor '%s': n_dims %u is not in 1..%d", name, t->n_dims, GGUF_MAX_DIMS);
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        if (read_u64(r, &ne, "dimension") < 0)
            return add_context(r, "tensor '%s'", name);
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return fail(r, "tensor '%s': dimension %u is %llu (must be 1..2^63-1)", name, d,
                        (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    return 0;
}

static int check_tensor_size(reader *r, gguf_tensor *t, const char *name)
{
    const gguf_type_info *info = gguf_type_get(t->type);
    if (!info)
        return fail(r, "tensor '%s': unknown tensor type id %u", name, t->type);
    uint64_t elems = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        if (__builtin_mul_overflow(elems, (uint64_t)t->ne[d], &elems) || elems > (uint64_t)INT64_MAX)
            return fail(r, "tensor '%s': element count overflows", name);
    if (t->ne[0] % info->block_size != 0)
        return fail(r, "tensor '%s': row length %lld is not a multiple of the %s block size %u",
                    name, (long long)t->ne[0], info->name, info->block_size);
    uint64_t bytes = (elems / info->block_size);
    if (__builtin_mul_overflow(bytes, (uint64_t)info->type_size, &bytes))
        return fail(r, "tensor '%s': byte size overflows", name);
    t->nbytes = bytes;
    return 0;
}

static int read_tensor_infos(reader *r, gguf_file *f, uint64_t n_tensors)
{
    uint64_t cap = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        if (grow((void **)&f->tensors, &cap, i + 1, sizeof *f->tensors) < 0)
            return fail(r, "out of memory reading tensor descriptions");
        gguf_tensor *t = &f->tensors[i];
        char what[48];
        snprintf(what, sizeof what, "name of tensor #%llu", (unsigned long long)i);
        if (read_name(r, &t->name, what) < 0)
            return -1;
        char name[QUOTE_BYTES * 4 + 8];
        quote_name(t->name, name, sizeof name);
        if (read_tensor_shape(r, t, name) < 0)
            return -1;
        if (read_u32(r, &t->type, "tensor type") < 0 || read_u64(r, &t->offset, "tensor offset") < 0)
            return add_context(r, "tensor '%s'", name);
        if (check_tensor_size(r, t, name) < 0)
            return -1;
        f->n_tensors = i + 1;
    }
    return 0;
}

typedef struct extent {
    uint64_t start;
    uint64_t end;
    uint64_t index;
} extent;

static int extent_cmp(const void *a, const void *b)
{
    const extent *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

static int place_tensors(reader *r, gguf_file *f)
{
    uint64_t header_end = r->pos;
    uint64_t a = f->alignment;
    f->data_offset = (header_end + a - 1) / a * a; /* header_end < 2^63, a <= 2^31 */
    if (f->n_tensors == 0) {
        /* Nothing to read there; a vocabulary-only file may end without padding. */
        if (f->data_offset > f->size)
            f->data_offset = f->size;
        return 0;
    }
    if (f->data_offset > f->size)
        return fail(r, "the tensor data section at offset %llu starts past the end of the file (size %llu)",
                    (unsigned long long)f->data_offset, (unsigned long long)f->size);
    extent *ext = malloc(f->n_tensors * sizeof *ext);
    if (!ext)
        return fail(r, "out of memory checking tensor placement");
    int rc = 0;
    for (uint64_t i = 0; i < f->n_tensors && rc == 0; i++) {
        gguf_tensor *t = &f->tensors[i];
        char name[QUOTE_BYTES * 4 + 8];
        quote_name(t->name, name, sizeof name);
        uint64_t start, end;
        if (t->offset % a != 0)
            rc = fail(r, "tensor '%s': offset %llu is not a multiple of the alignment %u", name,
                      (unsigned long long)t->offset, f->alignment);
        else if (__builtin_add_overflow(f->data_offset, t->offset, &start) ||
                 __builtin_add_overflow(start, t->nbytes, &end))
            rc = fail(r, "tensor '%s': data offset %llu + %llu bytes overflows", name,
                      (unsigned long long)t->offset, (unsigned long long)t->nbytes);
        else if (end > f->size)
            rc = fail(r, "tensor '%s': data [%llu, %llu) extends past end of file (size %llu)", name,
                      (unsigned long long)start, (unsigned long long)end, (unsigned long long)f->size);
        else {
            t->data = f->base + start;
            ext[i] = (extent){start, end, i};
        }
    }
    if (rc == 0) {
        qsort(ext, f->n_tensors, sizeof *ext, extent_cmp);
        for (uint64_t i = 1; i < f->n_tensors && rc == 0; i++) {
            if (ext[i].start < ext[i - 1].end) {
                char n1[QUOTE_BYTES * 4 + 8], n2[QUOTE_BYTES * 4 + 8];
                quote_name(f->tensors[ext[i - 1].index].name, n1, sizeof n1);
                quote_name(f->tensors[ext[i].index].name, n2, sizeof n2);
                rc = fail(r, "tensors '%s' and '%s' overlap in the file", n1, n2);
            }
        }
    }
    free(ext);
    return rc;
}

static int index_keys(reader *r, gguf_file *f)
{
    uint64_t dup;
    if (index_build(&f->kv_index, f->n_kv, kv_name_at, f->kvs, &dup) < 0)
        return fail(r, "out of memory indexing keys");
    if (dup != UINT64_MAX) {
        char q[QUOTE_BYTES * 4 + 8];
        quote_name(f->kvs[dup].key, q, sizeof q);
        return fail(r, "duplicate key '%s'", q);
    }
    return 0;
}

static int index_tensors(reader *r, gguf_file *f)
{
    uint64_t dup;
    if (index_build(&f->tensor_index, f->n_tensors, tensor_name_at, f->tensors, &dup) < 0)
        return fail(r, "out of memory indexing tensors");
    if (dup != UINT64_MAX) {
        char q[QUOTE_BYTES * 4 + 8];
        quote_name(f->tensors[dup].name, q, sizeof q);
        return fail(r, "duplicate tensor name '%s'", q);
    }
    return 0;
}

static int parse(gguf_file *f, el_err *err)
{
    reader r = {.base = f->base, .size = f->size, .pos = 0, .path = f->path, .err = err};
    uint64_t n_tensors, n_kv;
    /* Keys are indexed before the tensors are read so that general.alignment can be
     * looked up. */
    if (read_preamble(&r, f, &n_tensors, &n_kv) < 0 || read_kvs(&r, f, n_kv) < 0 ||
        index_keys(&r, f) < 0 || check_alignment(&r, f) < 0 ||
        read_tensor_infos(&r, f, n_tensors) < 0 || index_tensors(&r, f) < 0)
        return -1;
    return place_tensors(&r, f);
}

/* ---- opening and closing ---------------------------------------------------------- */

static gguf_file *open_buffer(const void *data, uint64_t size, const char *label, el_err *err)
{
    gguf_file *f = calloc(1, sizeof *f);
    char *path = strdup(label);
    if (!f || !path) {
        free(f);
        free(path);
        el_fail(err, "%s: out of memory", label);
        return NULL;
    }
    f->base = data;
    f->size = size;
    f->fd = -1;
    f->guard = -1;
    f->path = path;
    return f;
}

static gguf_file *parse_or_close(gguf_file *f, el_err *err)
{
    if (parse(f, err) < 0) {
        gguf_close(f);
        return NULL;
    }
    return f;
}

/* Maps the whole file and has mapguard watch the mapping, so that a file cut short
 * while it is mapped shows in gguf_check_intact instead of killing the process. */
static gguf_file *map_file(const char *path, int fd, const struct stat *st, el_err *err)
{
    void *map = mmap(NULL, (size_t)st->st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        el_fail(err, "%s: cannot map: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    gguf_file *f = open_buffer(map, (uint64_t)st->st_size, path, err);
    if (!f) {
        munmap(map, (size_t)st->st_size);
        close(fd);
        return NULL;
    }
    f->map = map;
    f->fd = fd;
    f->loaded = *st;
    f->guard = mapguard_watch(map, (size_t)st->st_size, fd, err);
    if (f->guard < 0) {
        el_wrap(err, "%s", path);
        gguf_close(f);
        return NULL;
    }
    return f;
}

gguf_file *gguf_open(const char *path, el_err *err)
{
    if (!path) {
        el_fail(err, "gguf_open: no path");
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        el_fail(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        el_fail(err, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    if (st.st_size < 4) {
        el_fail(err, "%s: not a GGUF file (only %lld bytes)", path, (long long)st.st_size);
        close(fd);
        return NULL;
    }
    gguf_file *f = map_file(path, fd, &st, err);
    return f ? parse_or_close(f, err) : NULL;
}

gguf_file *gguf_open_memory(const void *data, size_t size, el_err *err)
{
    if (!data && size) {
        el_fail(err, "<memory>: no buffer");
        return NULL;
    }
    static const uint8_t empty[1];
    gguf_file *f = open_buffer(data ? data : empty, size, "<memory>", err);
    return f ? parse_or_close(f, err) : NULL;
}

void gguf_close(gguf_file *f)
{
    if (!f)
        return;
    for (uint64_t i = 0; i < f->n_kv; i++)
        free(f->kvs[i].arr_strings);
    free(f->kvs);
    free(f->tensors);
    free(f->kv_index.slots);
    free(f->tensor_index.slots);
    mapguard_unwatch(f->guard);
    if (f->map)
        munmap(f->map, (size_t)f->size);
    if (f->fd >= 0)
        close(f->fd);
    free(f->path);
    free(f);
}

int gguf_check_intact(const gguf_file *f, el_err *err)
{
    if (!f->map)
        return 0;
    if (mapguard_damaged(f->guard))
        return el_fail(err, "%s: the file was cut short while in use (a read past its end)", f->path);
    struct stat now;
    if (fstat(f->fd, &now) < 0)
        return el_fail(err, "%s: cannot check the file: %s", f->path, strerror(errno));
    if (now.st_size != f->loaded.st_size)
        return el_fail(err, "%s: the file changed size while in use (%lld bytes, was %lld)", f->path,
                       (long long)now.st_size, (long long)f->loaded.st_size);
    if (now.st_mtim.tv_sec != f->loaded.st_mtim.tv_sec || now.st_mtim.tv_nsec != f->loaded.st_mtim.tv_nsec)
        return el_fail(err, "%s: the file was written to while in use", f->path);
    return 0;
}

/* ---- accessors -------------------------------------------------------------------- */

uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }
const void *gguf_base(const gguf_file *f) { return f->base; }
uint64_t gguf_size(const gguf_file *f) { return f->size; }
uint64_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }
uint64_t gguf_kv_count(const gguf_file *f) { return f->n_kv; }
uint64_t gguf_tensor_count(const gguf_file *f) { return f->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i) { return i < f->n_kv ? &f->kvs[i] : NULL; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i)
{
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_kv *gguf_find(const gguf_file *f, const char *key)
{
    uint64_t i = index_find(&f->kv_index, kv_name_at, f->kvs, key);
    return i ? &f->kvs[i - 1] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    uint64_t i = index_find(&f->tensor_index, tensor_name_at, f->tensors, name);
    return i ? &f->tensors[i - 1] : NULL;
}

bool gguf_str_eq(gguf_str s, const char *cstr) { return cstr && str_eq_bytes(s, cstr, strlen(cstr)); }

/* ---- typed lookups ------------------------------------------------------------------ */

static bool is_unsigned(enum gguf_value_type t)
{
    return t == GGUF_VAL_UINT8 || t == GGUF_VAL_UINT16 || t == GGUF_VAL_UINT32 || t == GGUF_VAL_UINT64;
}

static bool is_signed(enum gguf_value_type t)
{
    return t == GGUF_VAL_INT8 || t == GGUF_VAL_INT16 || t == GGUF_VAL_INT32 || t == GGUF_VAL_INT64;
}

static void describe_type(const gguf_kv *kv, char *buf, size_t cap)
{
    if (kv->type == GGUF_VAL_ARRAY)
        snprintf(buf, cap, "ARRAY of %s", gguf_value_type_name(kv->arr_type));
    else
        snprintf(buf, cap, "%s", gguf_value_type_name(kv->type));
}

static int wrong_type(const gguf_file *f, const gguf_kv *kv, const char *key, const char *want,
                      el_err *err)
{
    char have[48];
    describe_type(kv, have, sizeof have);
    return el_fail(err, "%s: key '%s' is %s, expected %s", f->path, key, have, want);
}

static int does_not_fit(const gguf_file *f, const gguf_kv *kv, const char *key, const char *want,
                        el_err *err)
{
    if (is_unsigned(kv->type))
        return el_fail(err, "%s: key '%s' is %llu, which does not fit in %s", f->path, key,
                       (unsigned long long)kv->v.u64, want);
    return el_fail(err, "%s: key '%s' is %lld, which does not fit in %s", f->path, key,
                   (long long)kv->v.i64, want);
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, el_err *err)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv)
        return 1;
    if (is_unsigned(kv->type)) {
        if (kv->v.u64 > UINT32_MAX)
            return does_not_fit(f, kv, key, "uint32", err);
        *out = (uint32_t)kv->v.u64;
        return 0;
    }
    if (is_signed(kv->type)) {
        if (kv->v.i64 < 0 || kv->v.i64 > (int64_t)UINT32_MAX)
            return does_not_fit(f, kv, key, "uint32", err);
        *out = (uint32_t)kv->v.i64;
        return 0;
    }
    return wrong_type(f, kv, key, "an unsigned 32-bit integer", err);
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, el_err *err)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv)
        return 1;
    if (is_unsigned(kv->type)) {
        if (kv->v.u64 > (uint64_t)INT64_MAX)
            return does_not_fit(f, kv, key, "int64", err);
        *out = (int64_t)kv->v.u64;
        return 0;
    }
    if (is_signed(kv->type)) {
        *out = kv->v.i64;
        return 0;
    }
    return wrong_type(f, kv, key, "an integer", err);
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, el_err *err)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv)
        return 1;
    if (kv->type == GGUF_VAL_FLOAT32) {
        *out = (float)kv->v.f64;
        return 0;
    }
    if (kv->type == GGUF_VAL_FLOAT64) {
        /* A double-precision hyperparameter is the same parameter rounded to float;
         * only magnitudes past float's range are refused. */
        if (isfinite(kv->v.f64) && fabs(kv->v.f64) > FLT_MAX)
            return el_fail(err, "%s: key '%s' is %g, outside the float32 range", f->path, key,
                           kv->v.f64);
        *out = (float)kv->v.f64;
        return 0;
    }
    if (is_unsigned(kv->type) || is_signed(kv->type)) {
        /* Integers whose magnitude is at most 2^24 are exact in float. */
        const int64_t exact = (int64_t)1 << 24;
        bool fits = is_unsigned(kv->type) ? kv->v.u64 <= (uint64_t)exact
                                          : kv->v.i64 >= -exact && kv->v.i64 <= exact;
        if (!fits)
            return does_not_fit(f, kv, key, "float32 exactly", err);
        *out = is_unsigned(kv->type) ? (float)kv->v.u64 : (float)kv->v.i64;
        return 0;
    }
    return wrong_type(f, kv, key, "a float", err);
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, el_err *err)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv)
        return 1;
    if (kv->type != GGUF_VAL_BOOL)
        return wrong_type(f, kv, key, "BOOL", err);
    *out = kv->v.u64 != 0;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, el_err *err)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv)
        return 1;
    if (kv->type != GGUF_VAL_STRING)
        return wrong_type(f, kv, key, "STRING", err);
    *out = kv->v.str;
    return 0;
}

int gguf_get_arr(const gguf_file *f, const char *key, enum gguf_value_type elem,
                 const gguf_kv **out, el_err *err)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv)
        return 1;
    if (kv->type != GGUF_VAL_ARRAY || kv->arr_type != elem) {
        char want[48];
        snprintf(want, sizeof want, "ARRAY of %s", gguf_value_type_name(elem));
        return wrong_type(f, kv, key, want, err);
    }
    *out = kv;
    return 0;
}
