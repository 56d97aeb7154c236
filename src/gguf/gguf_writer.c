/* The GGUF writer: collects keys and tensor descriptions, then writes the header
 * and streams each tensor's data through the caller's fill callback into
 * PATH.tmp, renamed to PATH only once everything is on disk. */
#include "gguf/gguf.h"
#include "gguf/gguf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct writer_kv {
    char *key;
    uint32_t type;
    uint8_t *value; /* the encoded value, as it follows the type in the file */
    size_t value_len;
} writer_kv;

typedef struct writer_tensor {
    char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
} writer_tensor;

struct gguf_writer {
    writer_kv *kvs;
    size_t n_kv, cap_kv;
    writer_tensor *tensors;
    size_t n_tensors, cap_tensors;
};

/* ---- a growable byte buffer ----------------------------------------------------- */

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} bytes;

static void put(bytes *b, const void *src, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (n > SIZE_MAX / 2 - b->len) {
        b->oom = true;
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_le(bytes *b, uint64_t v, unsigned n)
{
    uint8_t le[8];
    for (unsigned i = 0; i < n; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    put(b, le, n);
}

static void put_str(bytes *b, const char *p, uint64_t n)
{
    put_le(b, n, 8);
    put(b, p, (size_t)n);
}

static void put_zeros(bytes *b, size_t n)
{
    static const uint8_t zeros[64];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        put(b, zeros, k);
        n -= k;
    }
}

/* ---- creating and freeing --------------------------------------------------------- */

gguf_writer *gguf_writer_create(el_err *err)
{
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w)
        el_fail(err, "gguf writer: out of memory");
    return w;
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].value);
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

static int reserve(void **items, size_t *cap, size_t count, size_t item_size)
{
    if (count < *cap)
        return 0;
    size_t n = *cap ? *cap * 2 : 16;
    void *p = realloc(*items, n * item_size);
    if (!p)
        return -1;
    *items = p;
    *cap = n;
    return 0;
}

/* ---- keys ------------------------------------------------------------------------ */

static writer_kv *find_kv(gguf_writer *w, const char *key, size_t key_len)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (strlen(w->kvs[i].key) == key_len && memcmp(w->kvs[i].key, key, key_len) == 0)
            return &w->kvs[i];
    return NULL;
}

/* Stores an encoded value under the key, replacing an earlier one; takes the buffer. */
static int store_kv(gguf_writer *w, const char *key, size_t key_len, uint32_t type, bytes *value,
                    el_err *err)
{
    if (value->oom) {
        free(value->p);
        return el_fail(err, "gguf writer: out of memory encoding key '%.*s'", (int)key_len, key);
    }
    writer_kv *kv = find_kv(w, key, key_len);
    if (!kv) {
        char *copy = malloc(key_len + 1);
        if (!copy || reserve((void **)&w->kvs, &w->cap_kv, w->n_kv, sizeof *w->kvs) < 0) {
            free(copy);
            free(value->p);
            return el_fail(err, "gguf writer: out of memory adding key '%.*s'", (int)key_len, key);
        }
        memcpy(copy, key, key_len);
        copy[key_len] = '\0';
        kv = &w->kvs[w->n_kv++];
        *kv = (writer_kv){.key = copy};
    }
    free(kv->value);
    kv->type = type;
    kv->value = value->p;
    kv->value_len = value->len;
    return 0;
}

static int check_key(const char *key, size_t len, el_err *err)
{
    const char *problem = gguf_name_problem(key, len);
    if (problem)
        return el_fail(err, "gguf writer: key '%.*s' %s", (int)(len > 120 ? 120 : len), key, problem);
    return 0;
}

static int set_scalar(gguf_writer *w, const char *key, uint32_t type, uint64_t bits, el_err *err)
{
    if (!w || !key)
        return el_fail(err, "gguf writer: no writer or key");
    size_t len = strlen(key);
    if (check_key(key, len, err) < 0)
        return -1;
    bytes value = {0};
    put_le(&value, bits, gguf_scalar_size(type));
    return store_kv(w, key, len, type, &value, err);
}

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, el_err *err)
{
    return set_scalar(w, key, GGUF_VAL_UINT32, v, err);
}

int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, el_err *err)
{
    return set_scalar(w, key, GGUF_VAL_INT32, (uint32_t)v, err);
}

int gguf_writer_set_f32(gguf_writer *w, const char *key, float v, el_err *err)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return set_scalar(w, key, GGUF_VAL_FLOAT32, bits, err);
}

int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, el_err *err)
{
    return set_scalar(w, key, GGUF_VAL_BOOL, v ? 1 : 0, err);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v, el_err *err)
{
    if (!w || !key || !v)
        return el_fail(err, "gguf writer: no writer, key or value");
    size_t len = strlen(key);
    if (check_key(key, len, err) < 0)
        return -1;
    bytes value = {0};
    put_str(&value, v, strlen(v));
    return store_kv(w, key, len, GGUF_VAL_STRING, &value, err);
}

/* Bits of a scalar as the file stores them; -1 if the value does not fit its type
 * (possible only in a gguf_kv built by hand). */
static int scalar_bits(enum gguf_value_type type, const gguf_kv *kv, uint64_t *bits)
{
    float f;
    uint32_t b32;
    switch (type) {
    case GGUF_VAL_UINT8: *bits = kv->v.u64; return kv->v.u64 <= UINT8_MAX ? 0 : -1;
    case GGUF_VAL_UINT16: *bits = kv->v.u64; return kv->v.u64 <= UINT16_MAX ? 0 : -1;
    case GGUF_VAL_UINT32: *bits = kv->v.u64; return kv->v.u64 <= UINT32_MAX ? 0 : -1;
    case GGUF_VAL_UINT64: *bits = kv->v.u64; return 0;
    case GGUF_VAL_BOOL: *bits = kv->v.u64; return kv->v.u64 <= 1 ? 0 : -1;
    case GGUF_VAL_INT8: *bits = (uint64_t)kv->v.i64; return kv->v.i64 >= INT8_MIN && kv->v.i64 <= INT8_MAX ? 0 : -1;
    case GGUF_VAL_INT16: *bits = (uint64_t)kv->v.i64; return kv->v.i64 >= INT16_MIN && kv->v.i64 <= INT16_MAX ? 0 : -1;
    case GGUF_VAL_INT32: *bits = (uint64_t)kv->v.i64; return kv->v.i64 >= INT32_MIN && kv->v.i64 <= INT32_MAX ? 0 : -1;
    case GGUF_VAL_INT64: *bits = (uint64_t)kv->v.i64; return 0;
    case GGUF_VAL_FLOAT32:
        f = (float)kv->v.f64;
        memcpy(&b32, &f, sizeof b32);
        *bits = b32;
        return 0;
    case GGUF_VAL_FLOAT64: memcpy(bits, &kv->v.f64, sizeof *bits); return 0;
    default: return -1;
    }
}

static int encode_array(bytes *value, const gguf_kv *kv, const char *key, el_err *err)
{
    if (kv->arr_type == GGUF_VAL_ARRAY || (unsigned)kv->arr_type >= GGUF_VAL_COUNT)
        return el_fail(err, "gguf writer: key '%s': invalid array element type %u", key,
                       (unsigned)kv->arr_type);
    put_le(value, (uint32_t)kv->arr_type, 4);
    put_le(value, kv->arr_len, 8);
    if (kv->arr_len == 0)
        return 0;
    if (kv->arr_type == GGUF_VAL_STRING) {
        if (!kv->arr_strings)
            return el_fail(err, "gguf writer: key '%s': string array without strings", key);
        for (uint64_t i = 0; i < kv->arr_len && !value->oom; i++)
            put_str(value, kv->arr_strings[i].ptr, kv->arr_strings[i].len);
        return 0;
    }
    uint64_t esize = gguf_scalar_size(kv->arr_type), total;
    if (!kv->arr_data || __builtin_mul_overflow(kv->arr_len, esize, &total) || total > SIZE_MAX / 2)
        return el_fail(err, "gguf writer: key '%s': array data missing or too large", key);
    if (kv->arr_type == GGUF_VAL_BOOL)
        for (uint64_t i = 0; i < kv->arr_len; i++)
            if (kv->arr_data[i] > 1)
                return el_fail(err, "gguf writer: key '%s': bool element %llu is not 0 or 1", key,
                               (unsigned long long)i);
    put(value, kv->arr_data, (size_t)total);
    return 0;
}

int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv, el_err *err)
{
    if (!w || !kv || !kv->key.ptr)
        return el_fail(err, "gguf writer: no writer or key");
    if (check_key(kv->key.ptr, kv->key.len, err) < 0)
        return -1;
    char key[128];
    snprintf(key, sizeof key, "%.*s", (int)(kv->key.len > 120 ? 120 : kv->key.len), kv->key.ptr);
    bytes value = {0};
    int rc = 0;
    uint64_t bits = 0;
    if (kv->type == GGUF_VAL_STRING) {
        put_str(&value, kv->v.str.ptr, kv->v.str.len);
    } else if (kv->type == GGUF_VAL_ARRAY) {
        rc = encode_array(&value, kv, key, err);
    } else if ((unsigned)kv->type >= GGUF_VAL_COUNT) {
        rc = el_fail(err, "gguf writer: key '%s': unknown value type %u", key, (unsigned)kv->type);
    } else if (scalar_bits(kv->type, kv, &bits) < 0) {
        rc = el_fail(err, "gguf writer: key '%s': value does not fit its type %s", key,
                     gguf_value_type_name(kv->type));
    } else {
        put_le(&value, bits, gguf_scalar_size(kv->type));
    }
    if (rc < 0) {
        free(value.p);
        return -1;
    }
    return store_kv(w, kv->key.ptr, kv->key.len, kv->type, &value, err);
}

/* ---- tensors ----------------------------------------------------------------------- */

static int tensor_bytes(const char *name, uint32_t type, uint32_t n_dims, const int64_t *ne,
                        uint64_t *nbytes, el_err *err)
{
    const gguf_type_info *info = gguf_type_get(type);
    if (!info)
        return el_fail(err, "gguf writer: tensor '%s': unknown type id %u", name, type);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS || !ne)
        return el_fail(err, "gguf writer: tensor '%s': n_dims %u is not in 1..%d", name, n_dims,
                       GGUF_MAX_DIMS);
    uint64_t elems = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 1)
            return el_fail(err, "gguf writer: tensor '%s': dimension %u is %lld", name, d,
                           (long long)ne[d]);
        if (__builtin_mul_overflow(elems, (uint64_t)ne[d], &elems) || elems > (uint64_t)INT64_MAX)
            return el_fail(err, "gguf writer: tensor '%s': element count overflows", name);
    }
    if (ne[0] % info->block_size != 0)
        return el_fail(err, "gguf writer: tensor '%s': row length %lld is not a multiple of the %s block size %u",
                       name, (long long)ne[0], info->name, info->block_size);
    if (__builtin_mul_overflow(elems / info->block_size, (uint64_t)info->type_size, nbytes))
        return el_fail(err, "gguf writer: tensor '%s': byte size overflows", name);
    return 0;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const int64_t *ne, el_err *err)
{
    if (!w || !name)
        return el_fail(err, "gguf writer: no writer or tensor name");
    size_t len = strlen(name);
    const char *problem = gguf_name_problem(name, len);
    if (problem)
        return el_fail(err, "gguf writer: tensor name '%.*s' %s", (int)(len > 120 ? 120 : len), name,
                       problem);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return el_fail(err, "gguf writer: duplicate tensor name '%s'", name);
    writer_tensor t = {.type = type, .n_dims = n_dims};
    if (tensor_bytes(name, type, n_dims, ne, &t.nbytes, err) < 0)
        return -1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t.ne[d] = d < (int)n_dims ? ne[d] : 1;
    t.name = strdup(name);
    if (!t.name || reserve((void **)&w->tensors, &w->cap_tensors, w->n_tensors, sizeof *w->tensors) < 0) {
        free(t.name);
        return el_fail(err, "gguf writer: out of memory adding tensor '%s'", name);
    }
    w->tensors[w->n_tensors++] = t;
    return 0;
}

/* ---- writing ------------------------------------------------------------------------- */

static int writer_alignment(gguf_writer *w, uint32_t *alignment, el_err *err)
{
    *alignment = GGUF_DEFAULT_ALIGNMENT;
    writer_kv *kv = find_kv(w, "general.alignment", strlen("general.alignment"));
    if (!kv)
        return 0;
    if (kv->type != GGUF_VAL_UINT32 || kv->value_len != 4)
        return el_fail(err, "gguf writer: general.alignment must be UINT32");
    uint32_t a = (uint32_t)kv->value[0] | (uint32_t)kv->value[1] << 8 |
                 (uint32_t)kv->value[2] << 16 | (uint32_t)kv->value[3] << 24;
    if (a == 0 || (a & (a - 1)) != 0)
        return el_fail(err, "gguf writer: general.alignment %u is not a nonzero power of two", a);
    *alignment = a;
    return 0;
}

static uint64_t pad_to(uint64_t n, uint64_t alignment) { return (alignment - n % alignment) % alignment; }

/* The header through the padding before the data section. */
static int encode_header(gguf_writer *w, uint32_t alignment, bytes *h, el_err *err)
{
    put(h, "GGUF", 4);
    put_le(h, 3, 4);
    put_le(h, w->n_tensors, 8);
    put_le(h, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(h, w->kvs[i].key, strlen(w->kvs[i].key));
        put_le(h, w->kvs[i].type, 4);
        put(h, w->kvs[i].value, w->kvs[i].value_len);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        put_str(h, t->name, strlen(t->name));
        put_le(h, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++)
            put_le(h, (uint64_t)t->ne[d], 8);
        put_le(h, t->type, 4);
        put_le(h, offset, 8);
        if (__builtin_add_overflow(offset, t->nbytes + pad_to(t->nbytes, alignment), &offset))
            return el_fail(err, "gguf writer: total tensor size overflows");
    }
    put_zeros(h, (size_t)pad_to(h->len, alignment));
    if (h->oom)
        return el_fail(err, "gguf writer: out of memory encoding the header");
    return 0;
}

static int write_all(int fd, const void *p, uint64_t n, const char *path, el_err *err)
{
    const uint8_t *b = p;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t k = write(fd, b, chunk);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return el_fail(err, "%s: write failed: %s", path, k < 0 ? strerror(errno) : "no progress");
        b += k;
        n -= (uint64_t)k;
    }
    return 0;
}

static int write_tensors(gguf_writer *w, int fd, uint32_t alignment, const char *tmp,
                         gguf_fill_fn fill, void *ctx, el_err *err)
{
    uint64_t largest = 0;
    for (size_t i = 0; i < w->n_tensors; i++)
        if (w->tensors[i].nbytes > largest)
            largest = w->tensors[i].nbytes;
    if (largest == 0)
        return 0;
    if (largest > SIZE_MAX / 2)
        return el_fail(err, "gguf writer: a tensor of %llu bytes is too large", (unsigned long long)largest);
    uint8_t *buf = malloc((size_t)largest);
    if (!buf)
        return el_fail(err, "gguf writer: out of memory for a %llu-byte tensor", (unsigned long long)largest);
    static const uint8_t zeros[256];
    int rc = 0;
    for (size_t i = 0; i < w->n_tensors && rc == 0; i++) {
        const writer_tensor *t = &w->tensors[i];
        memset(buf, 0, (size_t)t->nbytes);
        if (fill && fill(ctx, i, t->name, buf, t->nbytes, err) < 0) {
            rc = el_wrap(err, "tensor '%s'", t->name);
            break;
        }
        rc = write_all(fd, buf, t->nbytes, tmp, err);
        if (rc == 0)
            rc = write_all(fd, zeros, pad_to(t->nbytes, alignment), tmp, err);
    }
    free(buf);
    return rc;
}

int gguf_writer_write(gguf_writer *w, const char *path, gguf_fill_fn fill, void *ctx, el_err *err)
{
    if (!w || !path)
        return el_fail(err, "gguf writer: no writer or path");
    uint32_t alignment;
    bytes header = {0};
    if (writer_alignment(w, &alignment, err) < 0 || encode_header(w, alignment, &header, err) < 0) {
        free(header.p);
        return -1;
    }
    size_t tmp_len = strlen(path) + sizeof ".tmp";
    char *tmp = malloc(tmp_len);
    if (!tmp) {
        free(header.p);
        return el_fail(err, "gguf writer: out of memory");
    }
    snprintf(tmp, tmp_len, "%s.tmp", path);
    int rc = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        el_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        rc = write_all(fd, header.p, header.len, tmp, err);
        if (rc == 0)
            rc = write_tensors(w, fd, alignment, tmp, fill, ctx, err);
        if (close(fd) < 0 && rc == 0)
            rc = el_fail(err, "%s: close failed: %s", tmp, strerror(errno));
        if (rc == 0 && rename(tmp, path) < 0)
            rc = el_fail(err, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
        if (rc < 0)
            unlink(tmp);
    }
    free(tmp);
    free(header.p);
    return rc;
}
