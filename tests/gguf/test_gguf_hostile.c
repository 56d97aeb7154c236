/* Hostile files: every truncation, targeted header corruptions and random byte
 * flips of a small valid file. Each must be refused with a message (or, for
 * random flips that happen to stay valid, read safely), never crash.
 *
 * With GGUF_WRITE_CORPUS=DIR set, the targeted cases are also written there as
 * files (that is how tests/gguf/corpus/ was made). */
#include "base/rng.h"
#include "gguf/gguf.h"
#include "test.h"

#include <dirent.h>
#include <stdint.h>

/* ---- a valid file, with the offsets of the fields the cases corrupt ---------------- */

typedef struct layout {
    size_t version, tensor_count, kv_count;
    size_t arch_key_len, arch_value_len;
    size_t align_type, align_value;
    size_t arr_key, arr_type, arr_elem_type, arr_len;
    size_t strs_len, strs_first_len;
    size_t flag_key, flag_value;
    size_t t0_name, t0_n_dims, t0_ne0, t0_type, t0_offset;
    size_t t1_name, t1_n_dims, t1_ne0, t1_ne1, t1_type, t1_offset;
    size_t data;
} layout;

typedef struct buf {
    uint8_t p[1024];
    size_t len;
} buf;

static size_t put(buf *b, const void *src, size_t n)
{
    size_t at = b->len;
    memcpy(b->p + b->len, src, n);
    b->len += n;
    return at;
}

static size_t put_u32(buf *b, uint32_t v)
{
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return put(b, le, 4);
}

static size_t put_u64(buf *b, uint64_t v)
{
    size_t at = put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
    return at;
}

static size_t put_str(buf *b, const char *s)
{
    size_t at = put_u64(b, strlen(s));
    put(b, s, strlen(s));
    return at;
}

/* 5 keys, 2 F32 tensors (8 and 4x2 elements) at data offsets 0 and 32; the second ends the file. */
static void build_valid(buf *b, layout *l)
{
    memset(b, 0, sizeof *b);
    put(b, "GGUF", 4);
    l->version = put_u32(b, 3);
    l->tensor_count = put_u64(b, 2);
    l->kv_count = put_u64(b, 5);
    l->arch_key_len = put_str(b, "general.architecture");
    put_u32(b, 8);
    l->arch_value_len = put_str(b, "llama");
    put_str(b, "general.alignment");
    l->align_type = put_u32(b, 4);
    l->align_value = put_u32(b, 32);
    l->arr_key = put_str(b, "test.arr");
    l->arr_type = put_u32(b, 9);
    l->arr_elem_type = put_u32(b, 5);
    l->arr_len = put_u64(b, 3);
    put_u32(b, 1), put_u32(b, 2), put_u32(b, 3);
    put_str(b, "test.strings");
    put_u32(b, 9);
    put_u32(b, 8);
    l->strs_len = put_u64(b, 2);
    l->strs_first_len = put_str(b, "a");
    put_str(b, "bc");
    l->flag_key = put_str(b, "test.flg");
    put_u32(b, 7);
    uint8_t one = 1;
    l->flag_value = put(b, &one, 1);
    l->t0_name = put_str(b, "t0");
    l->t0_n_dims = put_u32(b, 1);
    l->t0_ne0 = put_u64(b, 8);
    l->t0_type = put_u32(b, 0);
    l->t0_offset = put_u64(b, 0);
    l->t1_name = put_str(b, "t1");
    l->t1_n_dims = put_u32(b, 2);
    l->t1_ne0 = put_u64(b, 4);
    l->t1_ne1 = put_u64(b, 2);
    l->t1_type = put_u32(b, 0);
    l->t1_offset = put_u64(b, 32);
    b->len = (b->len + 31) / 32 * 32;
    l->data = b->len;
    for (int i = 0; i < 64; i++)
        b->p[b->len++] = (uint8_t)i;
}

static void patch_u32(buf *b, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        b->p[at + i] = (uint8_t)(v >> (8 * i));
}

static void patch_u64(buf *b, size_t at, uint64_t v)
{
    patch_u32(b, at, (uint32_t)v);
    patch_u32(b, at + 4, (uint32_t)(v >> 32));
}

/* Reads everything a consumer might: proves the pointers handed out are in bounds
 * (ASan would object otherwise). */
static uint64_t touch_everything(const gguf_file *f)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < gguf_kv_count(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        for (uint64_t j = 0; j < kv->key.len; j++)
            sum += (unsigned char)kv->key.ptr[j];
        if (kv->type == GGUF_VAL_STRING)
            for (uint64_t j = 0; j < kv->v.str.len; j++)
                sum += (unsigned char)kv->v.str.ptr[j];
        if (kv->type == GGUF_VAL_ARRAY && kv->arr_type == GGUF_VAL_STRING)
            for (uint64_t j = 0; j < kv->arr_len; j++)
                for (uint64_t k = 0; k < kv->arr_strings[j].len; k++)
                    sum += (unsigned char)kv->arr_strings[j].ptr[k];
        else if (kv->type == GGUF_VAL_ARRAY && kv->arr_len)
            sum += kv->arr_data[0];
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 200 ? kv->key.len : 200), kv->key.ptr);
        uint32_t u;
        el_err err;
        sum += (uint64_t)gguf_get_u32(f, key, &u, &err);
    }
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        const uint8_t *p = t->data;
        sum += p[0] + p[t->nbytes - 1];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 200 ? t->name.len : 200), t->name.ptr);
        sum += gguf_find_tensor(f, name) != NULL;
    }
    return sum;
}

/* Opens an exact-size heap copy so that any read past the end is caught by ASan. */
static gguf_file *open_copy(const uint8_t *p, size_t n, el_err *err)
{
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, p, n);
    gguf_file *f = gguf_open_memory(copy, n, err);
    if (f) {
        touch_everything(f);
        gguf_close(f);
    }
    free(copy);
    return f;
}

static void test_valid_base_file_opens(void)
{
    buf b;
    layout l;
    build_valid(&b, &l);
    el_err err = {{0}};
    gguf_file *f = gguf_open_memory(b.p, b.len, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (!f)
        return;
    CHECK_EQ_INT(gguf_kv_count(f), 5);
    CHECK_EQ_INT(gguf_tensor_count(f), 2);
    CHECK_EQ_INT(gguf_data_offset(f), l.data);
    const gguf_tensor *t1 = gguf_find_tensor(f, "t1");
    CHECK(t1 && t1->nbytes == 32 && ((const uint8_t *)t1->data)[0] == 32);
    touch_everything(f);
    gguf_close(f);
}

static void test_every_truncation_is_refused(void)
{
    buf b;
    layout l;
    build_valid(&b, &l);
    int accepted = 0, silent = 0;
    for (size_t n = 0; n < b.len; n++) {
        el_err err = {{0}};
        if (open_copy(b.p, n, &err))
            accepted++;
        else if (err.msg[0] == '\0')
            silent++;
    }
    CHECK_EQ_INT(accepted, 0);
    CHECK_EQ_INT(silent, 0);
    el_err err = {{0}};
    CHECK(gguf_open_memory(NULL, 0, &err) == NULL && err.msg[0]);
}

/* ---- targeted corruptions ------------------------------------------------------------ */

typedef struct hostile_case {
    const char *name;    /* also the corpus file name */
    const char *expect;  /* a phrase the message must contain */
    void (*corrupt)(buf *b, const layout *l);
} hostile_case;

#define CASE(fn, body) static void fn(buf *b, const layout *l) { (void)l; body; }
CASE(bad_magic, b->p[0] = 'X')
CASE(version_1, patch_u32(b, l->version, 1))
CASE(version_4, patch_u32(b, l->version, 4))
CASE(big_endian, patch_u32(b, l->version, 0x03000000))
CASE(kv_count_2p63, patch_u64(b, l->kv_count, 1ull << 63))
CASE(kv_count_2p32, patch_u64(b, l->kv_count, 1ull << 32))
CASE(tensor_count_2p63, patch_u64(b, l->tensor_count, 1ull << 63))
CASE(tensor_count_2p32, patch_u64(b, l->tensor_count, 1ull << 32))
CASE(key_len_2p63, patch_u64(b, l->arch_key_len, 1ull << 63))
CASE(key_len_2p32, patch_u64(b, l->arch_key_len, 1ull << 32))
CASE(string_len_2p63, patch_u64(b, l->arch_value_len, 1ull << 63))
CASE(string_len_2p32, patch_u64(b, l->arch_value_len, 1ull << 32))
CASE(array_len_2p63, patch_u64(b, l->arr_len, 1ull << 63))
CASE(array_len_2p32, patch_u64(b, l->arr_len, 1ull << 32))
CASE(string_array_len_2p63, patch_u64(b, l->strs_len, 1ull << 63))
CASE(string_array_len_2p32, patch_u64(b, l->strs_len, 1ull << 32))
CASE(string_in_array_len_2p63, patch_u64(b, l->strs_first_len, 1ull << 63))
CASE(unknown_value_type, patch_u32(b, l->arr_type, 13))
CASE(nested_array, patch_u32(b, l->arr_elem_type, 9))
CASE(unknown_array_type, patch_u32(b, l->arr_elem_type, 77))
CASE(bool_value_2, b->p[l->flag_value] = 2)
CASE(empty_key, patch_u64(b, l->arch_key_len, 0))
CASE(control_char_in_key, b->p[l->arr_key + 8 + 4] = 0x01)
CASE(invalid_utf8_in_key, b->p[l->arr_key + 8 + 4] = 0xff)
CASE(duplicate_key, memcpy(b->p + l->flag_key + 8, "test.arr", 8))
CASE(alignment_0, patch_u32(b, l->align_value, 0))
CASE(alignment_3, patch_u32(b, l->align_value, 3))
CASE(alignment_wrong_type, patch_u32(b, l->align_type, 5))
CASE(unknown_tensor_type, patch_u32(b, l->t0_type, 99))
CASE(retired_tensor_type, patch_u32(b, l->t0_type, 4))
CASE(n_dims_0, patch_u32(b, l->t0_n_dims, 0))
CASE(n_dims_5, patch_u32(b, l->t0_n_dims, 5))
CASE(ne_0, patch_u64(b, l->t0_ne0, 0))
CASE(ne_2p63, patch_u64(b, l->t0_ne0, 1ull << 63))
CASE(ne_product_overflow, patch_u64(b, l->t1_ne0, 1ull << 40); patch_u64(b, l->t1_ne1, 1ull << 40))
CASE(byte_size_overflow, patch_u64(b, l->t1_ne0, 1ull << 62); patch_u64(b, l->t1_ne1, 1))
CASE(row_not_block_multiple, patch_u32(b, l->t0_type, 8))
CASE(misaligned_offset, patch_u64(b, l->t1_offset, 16))
CASE(offset_past_end, patch_u64(b, l->t1_offset, 64))
CASE(offset_wraps, patch_u64(b, l->t1_offset, UINT64_MAX - 31))
CASE(overlapping_tensors, patch_u64(b, l->t1_offset, 0))
CASE(partial_overlap, patch_u64(b, l->t0_ne0, 9); patch_u64(b, l->t1_offset, 32))
CASE(duplicate_tensor_name, b->p[l->t1_name + 9] = '0')
CASE(empty_tensor_name, patch_u64(b, l->t0_name, 0))
CASE(f64_tensor_past_end, patch_u32(b, l->t1_type, 28))
#undef CASE

static const hostile_case hostile_cases[] = {
    {"bad-magic", "not a GGUF file", bad_magic},
    {"version-1", "version 1", version_1},
    {"version-4", "version 4", version_4},
    {"big-endian", "big-endian", big_endian},
    {"kv-count-2p63", "key/value count", kv_count_2p63},
    {"kv-count-2p32", "key/value count", kv_count_2p32},
    {"tensor-count-2p63", "tensor count", tensor_count_2p63},
    {"tensor-count-2p32", "tensor count", tensor_count_2p32},
    {"key-len-2p63", "exceeds", key_len_2p63},
    {"key-len-2p32", "exceeds", key_len_2p32},
    {"string-len-2p63", "general.architecture", string_len_2p63},
    {"string-len-2p32", "general.architecture", string_len_2p32},
    {"array-len-2p63", "test.arr", array_len_2p63},
    {"array-len-2p32", "test.arr", array_len_2p32},
    {"string-array-len-2p63", "test.strings", string_array_len_2p63},
    {"string-array-len-2p32", "test.strings", string_array_len_2p32},
    {"string-in-array-len-2p63", "test.strings", string_in_array_len_2p63},
    {"unknown-value-type", "unknown value type 13", unknown_value_type},
    {"nested-array", "nested arrays", nested_array},
    {"unknown-array-type", "unknown array element type", unknown_array_type},
    {"bool-value-2", "not 0 or 1", bool_value_2},
    {"empty-key", "", empty_key},
    {"control-char-in-key", "'test\\x01arr' contains a control character", control_char_in_key},
    {"invalid-utf8-in-key", "'test\\xffarr' is not valid UTF-8", invalid_utf8_in_key},
    {"duplicate-key", "duplicate key 'test.arr'", duplicate_key},
    {"alignment-0", "power of two", alignment_0},
    {"alignment-3", "power of two", alignment_3},
    {"alignment-wrong-type", "general.alignment", alignment_wrong_type},
    {"unknown-tensor-type", "unknown tensor type id 99", unknown_tensor_type},
    {"retired-tensor-type", "unknown tensor type id 4", retired_tensor_type},
    {"n-dims-0", "n_dims 0", n_dims_0},
    {"n-dims-5", "n_dims 5", n_dims_5},
    {"ne-0", "dimension 0 is 0", ne_0},
    {"ne-2p63", "dimension 0", ne_2p63},
    {"ne-product-overflow", "overflows", ne_product_overflow},
    {"byte-size-overflow", "'t1'", byte_size_overflow},
    {"row-not-block-multiple", "block size", row_not_block_multiple},
    {"misaligned-offset", "not a multiple of the alignment", misaligned_offset},
    {"offset-past-end", "extends past end of file", offset_past_end},
    {"offset-wraps", "overflows", offset_wraps},
    {"overlapping-tensors", "overlap", overlapping_tensors},
    {"partial-overlap", "overlap", partial_overlap},
    {"duplicate-tensor-name", "duplicate tensor name 't0'", duplicate_tensor_name},
    {"empty-tensor-name", "", empty_tensor_name},
    {"f64-tensor-past-end", "'t1'", f64_tensor_past_end},
};

static void write_corpus_file(const char *dir, const char *name, const buf *b)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, name);
    FILE *out = fopen(path, "wb");
    CHECKF(out != NULL, "%s", path);
    if (out) {
        CHECK(fwrite(b->p, 1, b->len, out) == b->len);
        fclose(out);
    }
}

static void test_targeted_corruptions_are_refused(void)
{
    const char *corpus_dir = getenv("GGUF_WRITE_CORPUS");
    for (size_t i = 0; i < sizeof hostile_cases / sizeof *hostile_cases; i++) {
        const hostile_case *c = &hostile_cases[i];
        buf b;
        layout l;
        build_valid(&b, &l);
        c->corrupt(&b, &l);
        el_err err = {{0}};
        gguf_file *f = open_copy(b.p, b.len, &err);
        CHECKF(f == NULL, "%s was accepted", c->name);
        CHECKF(strncmp(err.msg, "<memory>: ", 10) == 0 && strlen(err.msg) > 12, "%s: message '%s'",
               c->name, err.msg);
        CHECKF(strstr(err.msg, c->expect) != NULL, "%s: '%s' lacks '%s'", c->name, err.msg, c->expect);
        if (corpus_dir)
            write_corpus_file(corpus_dir, c->name, &b);
    }
}

/* The F64 tensor type is a legal type (llama.cpp crashes on it; the reader must not). */
static void test_f64_tensor_loads(void)
{
    buf b;
    layout l;
    build_valid(&b, &l);
    patch_u32(&b, l.t1_type, 28);
    patch_u64(&b, l.t1_ne1, 1); /* 4 x F64 = 32 bytes, as before */
    el_err err = {{0}};
    gguf_file *f = gguf_open_memory(b.p, b.len, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (f) {
        const gguf_tensor *t = gguf_find_tensor(f, "t1");
        CHECK(t && t->type == GGUF_TYPE_F64 && t->nbytes == 32);
        gguf_close(f);
    }
}

static void test_random_byte_flips_never_crash(void)
{
    buf base;
    layout l;
    build_valid(&base, &l);
    el_rng rng;
    el_rng_seed(&rng, 1234);
    int opened = 0, refused_silently = 0;
    for (int iter = 0; iter < 4000; iter++) {
        buf b = base;
        int flips = 1 + (int)(el_rng_next(&rng) % 4);
        for (int k = 0; k < flips; k++) {
            /* Mostly the header: flips in tensor data are uninteresting. */
            size_t at = (size_t)(el_rng_next(&rng) % l.data);
            uint64_t r = el_rng_next(&rng);
            b.p[at] = (r & 1) ? (uint8_t)(r >> 8) : (uint8_t)(b.p[at] ^ (1u << ((r >> 8) % 8)));
        }
        size_t len = b.len;
        if (el_rng_next(&rng) % 8 == 0)
            len = (size_t)(el_rng_next(&rng) % (b.len + 1));
        el_err err = {{0}};
        if (open_copy(b.p, len, &err))
            opened++;
        else if (!err.msg[0])
            refused_silently++;
    }
    CHECK_EQ_INT(refused_silently, 0);
    CHECK(opened < 4000);
    fprintf(stderr, "      %d of 4000 mutated files still valid\n", opened);
}

/* Every file in tests/gguf/corpus/ is broken on purpose (see its README). */
static void test_committed_corpus_is_refused(void)
{
    DIR *dir = opendir("tests/gguf/corpus");
    CHECK(dir != NULL);
    if (!dir)
        return;
    int files = 0;
    struct dirent *e;
    while ((e = readdir(dir))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".gguf") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "tests/gguf/corpus/%s", e->d_name);
        el_err err = {{0}};
        gguf_file *f = gguf_open(path, &err);
        CHECKF(f == NULL, "%s was accepted", path);
        CHECKF(strncmp(err.msg, path, strlen(path)) == 0, "%s: message '%s'", path, err.msg);
        gguf_close(f);
        files++;
    }
    closedir(dir);
    CHECK(files >= 8);
}

int main(void)
{
    RUN(test_valid_base_file_opens);
    RUN(test_every_truncation_is_refused);
    RUN(test_targeted_corruptions_are_refused);
    RUN(test_f64_tensor_loads);
    RUN(test_random_byte_flips_never_crash);
    RUN(test_committed_corpus_is_refused);
    return test_summary();
}
