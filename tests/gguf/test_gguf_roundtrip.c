/* Writer -> reader round trips: every value type, arrays, tensor types and shapes,
 * alignment, key replacement, copying a vocabulary, and clean failure. */
#include "gguf/gguf.h"
#include "test.h"

#include <stdint.h>

static char tmp_dir[] = "/tmp/elliott-gguf-XXXXXX";

static const char *tmp_path(const char *name)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s/%s", tmp_dir, name);
    return buf;
}

static uint8_t pattern_byte(uint64_t tensor, uint64_t i) { return (uint8_t)(tensor * 31 + i * 7 + 1); }

static int fill_pattern(void *ctx, uint64_t index, const char *name, void *buf, uint64_t nbytes,
                        el_err *err)
{
    int *calls = ctx;
    (*calls)++;
    uint8_t *p = buf;
    for (uint64_t i = 0; i < nbytes; i++) {
        if (p[i] != 0)
            return el_fail(err, "buffer for %s not zeroed", name);
        p[i] = pattern_byte(index, i);
    }
    return 0;
}

static gguf_kv scalar_kv(const char *key, enum gguf_value_type type)
{
    gguf_kv kv = {.key = {key, strlen(key)}, .type = type};
    return kv;
}

static const char *const strings[] = {"", "a", "hello world", "\xe2\x96\x81token", "<end_of_turn>"};
static const int32_t int32s[] = {-5, 0, 7, INT32_MAX, INT32_MIN};
static const uint8_t bools[] = {1, 0, 1};
static const double float64s[] = {1.5, -2.25e100, 0.1};
static const uint16_t uint16s[] = {1, 65535};

static void add_every_value_type(gguf_writer *w)
{
    el_err err = {{0}};
    gguf_kv kv;
    kv = scalar_kv("v.u8", GGUF_VAL_UINT8), kv.v.u64 = 250;
    CHECKF(gguf_writer_copy_kv(w, &kv, &err) == 0, "%s", err.msg);
    kv = scalar_kv("v.i8", GGUF_VAL_INT8), kv.v.i64 = -100;
    CHECK(gguf_writer_copy_kv(w, &kv, &err) == 0);
    kv = scalar_kv("v.u16", GGUF_VAL_UINT16), kv.v.u64 = 65000;
    CHECK(gguf_writer_copy_kv(w, &kv, &err) == 0);
    kv = scalar_kv("v.i16", GGUF_VAL_INT16), kv.v.i64 = -32000;
    CHECK(gguf_writer_copy_kv(w, &kv, &err) == 0);
    kv = scalar_kv("v.u64", GGUF_VAL_UINT64), kv.v.u64 = UINT64_MAX - 3;
    CHECK(gguf_writer_copy_kv(w, &kv, &err) == 0);
    kv = scalar_kv("v.i64", GGUF_VAL_INT64), kv.v.i64 = INT64_MIN + 9;
    CHECK(gguf_writer_copy_kv(w, &kv, &err) == 0);
    kv = scalar_kv("v.f64", GGUF_VAL_FLOAT64), kv.v.f64 = 1e-300;
    CHECK(gguf_writer_copy_kv(w, &kv, &err) == 0);
    CHECK(gguf_writer_set_u32(w, "v.u32", 4000000000u, &err) == 0);
    CHECK(gguf_writer_set_i32(w, "v.i32", -123456, &err) == 0);
    CHECK(gguf_writer_set_f32(w, "v.f32", 0.1f, &err) == 0);
    CHECK(gguf_writer_set_bool(w, "v.bool", true, &err) == 0);
    CHECK(gguf_writer_set_str(w, "v.str", "gemma", &err) == 0);

    gguf_str strs[5];
    for (int i = 0; i < 5; i++)
        strs[i] = (gguf_str){strings[i], strlen(strings[i])};
    kv = scalar_kv("a.str", GGUF_VAL_ARRAY);
    kv.arr_type = GGUF_VAL_STRING, kv.arr_len = 5, kv.arr_strings = strs;
    CHECKF(gguf_writer_copy_kv(w, &kv, &err) == 0, "%s", err.msg);
    kv = scalar_kv("a.i32", GGUF_VAL_ARRAY);
    kv.arr_type = GGUF_VAL_INT32, kv.arr_len = 5, kv.arr_data = (const uint8_t *)int32s;
    CHECK(gguf_writer_copy_kv(w, &kv, &err) == 0);
    kv = scalar_kv("a.bool", GGUF_VAL_ARRAY);
    kv.arr_type = GGUF_VAL_BOOL, kv.arr_len = 3, kv.arr_data = bools;
    CHECK(gguf_writer_copy_kv(w, &kv, &err) == 0);
    kv = scalar_kv("a.f64", GGUF_VAL_ARRAY);
    kv.arr_type = GGUF_VAL_FLOAT64, kv.arr_len = 3, kv.arr_data = (const uint8_t *)float64s;
    CHECK(gguf_writer_copy_kv(w, &kv, &err) == 0);
    kv = scalar_kv("a.u16", GGUF_VAL_ARRAY);
    kv.arr_type = GGUF_VAL_UINT16, kv.arr_len = 2, kv.arr_data = (const uint8_t *)uint16s;
    CHECK(gguf_writer_copy_kv(w, &kv, &err) == 0);
    kv = scalar_kv("a.empty", GGUF_VAL_ARRAY);
    kv.arr_type = GGUF_VAL_UINT8, kv.arr_len = 0;
    CHECK(gguf_writer_copy_kv(w, &kv, &err) == 0);
}

static void check_every_value_type(const gguf_file *f)
{
    el_err err = {{0}};
    const gguf_kv *kv;
    CHECK((kv = gguf_find(f, "v.u8")) && kv->type == GGUF_VAL_UINT8 && kv->v.u64 == 250);
    CHECK((kv = gguf_find(f, "v.i8")) && kv->type == GGUF_VAL_INT8 && kv->v.i64 == -100);
    CHECK((kv = gguf_find(f, "v.u16")) && kv->type == GGUF_VAL_UINT16 && kv->v.u64 == 65000);
    CHECK((kv = gguf_find(f, "v.i16")) && kv->type == GGUF_VAL_INT16 && kv->v.i64 == -32000);
    CHECK((kv = gguf_find(f, "v.u64")) && kv->type == GGUF_VAL_UINT64 && kv->v.u64 == UINT64_MAX - 3);
    CHECK((kv = gguf_find(f, "v.i64")) && kv->type == GGUF_VAL_INT64 && kv->v.i64 == INT64_MIN + 9);
    CHECK((kv = gguf_find(f, "v.f64")) && kv->type == GGUF_VAL_FLOAT64 && kv->v.f64 == 1e-300);
    CHECK((kv = gguf_find(f, "v.f32")) && kv->type == GGUF_VAL_FLOAT32 && kv->v.f64 == (double)0.1f);
    CHECK((kv = gguf_find(f, "v.bool")) && kv->type == GGUF_VAL_BOOL && kv->v.u64 == 1);

    uint32_t u32 = 0;
    CHECK_EQ_INT(gguf_get_u32(f, "v.u32", &u32, &err), 0);
    CHECK(u32 == 4000000000u);
    CHECK_EQ_INT(gguf_get_u32(f, "v.u8", &u32, &err), 0);
    CHECK_EQ_INT(u32, 250);
    CHECK_EQ_INT(gguf_get_u32(f, "v.i32", &u32, &err), -1); /* negative */
    CHECK(strstr(err.msg, "v.i32") != NULL);
    CHECK_EQ_INT(gguf_get_u32(f, "v.u64", &u32, &err), -1); /* too large */
    CHECK_EQ_INT(gguf_get_u32(f, "v.str", &u32, &err), -1);
    CHECK(strstr(err.msg, "STRING") != NULL);
    CHECK_EQ_INT(gguf_get_u32(f, "v.f32", &u32, &err), -1);
    int64_t i64 = 0;
    CHECK_EQ_INT(gguf_get_i64(f, "v.i32", &i64, &err), 0);
    CHECK_EQ_INT(i64, -123456);
    CHECK_EQ_INT(gguf_get_i64(f, "v.i64", &i64, &err), 0);
    CHECK(i64 == INT64_MIN + 9);
    CHECK_EQ_INT(gguf_get_i64(f, "v.u64", &i64, &err), -1);
    float f32 = 0;
    CHECK_EQ_INT(gguf_get_f32(f, "v.f32", &f32, &err), 0);
    CHECK(f32 == 0.1f);
    CHECK_EQ_INT(gguf_get_f32(f, "v.i16", &f32, &err), 0);
    CHECK(f32 == -32000.0f);
    CHECK_EQ_INT(gguf_get_f32(f, "v.u32", &f32, &err), -1); /* not exact in float */
    CHECK_EQ_INT(gguf_get_f32(f, "v.f64", &f32, &err), 0);
    CHECK_EQ_INT(gguf_get_f32(f, "v.bool", &f32, &err), -1);
    bool b = false;
    CHECK_EQ_INT(gguf_get_bool(f, "v.bool", &b, &err), 0);
    CHECK(b);
    CHECK_EQ_INT(gguf_get_bool(f, "v.u8", &b, &err), -1);
    gguf_str s = {0};
    CHECK_EQ_INT(gguf_get_str(f, "v.str", &s, &err), 0);
    CHECK(gguf_str_eq(s, "gemma"));
    CHECK(!gguf_str_eq(s, "gemm"));
    CHECK_EQ_INT(gguf_get_str(f, "missing", &s, &err), 1);

    const gguf_kv *arr = NULL;
    CHECK_EQ_INT(gguf_get_arr(f, "a.str", GGUF_VAL_STRING, &arr, &err), 0);
    if (arr) {
        CHECK_EQ_INT(arr->arr_len, 5);
        for (int i = 0; i < 5 && arr->arr_strings; i++)
            CHECK(gguf_str_eq(arr->arr_strings[i], strings[i]));
    }
    CHECK_EQ_INT(gguf_get_arr(f, "a.str", GGUF_VAL_INT32, &arr, &err), -1);
    CHECK(strstr(err.msg, "ARRAY of STRING") != NULL);
    CHECK_EQ_INT(gguf_get_arr(f, "a.i32", GGUF_VAL_INT32, &arr, &err), 0);
    CHECK(arr && arr->arr_len == 5 && memcmp(arr->arr_data, int32s, sizeof int32s) == 0);
    CHECK_EQ_INT(gguf_get_arr(f, "a.bool", GGUF_VAL_BOOL, &arr, &err), 0);
    CHECK(arr && arr->arr_len == 3 && memcmp(arr->arr_data, bools, sizeof bools) == 0);
    CHECK_EQ_INT(gguf_get_arr(f, "a.f64", GGUF_VAL_FLOAT64, &arr, &err), 0);
    CHECK(arr && arr->arr_len == 3 && memcmp(arr->arr_data, float64s, sizeof float64s) == 0);
    CHECK_EQ_INT(gguf_get_arr(f, "a.u16", GGUF_VAL_UINT16, &arr, &err), 0);
    CHECK(arr && arr->arr_len == 2 && memcmp(arr->arr_data, uint16s, sizeof uint16s) == 0);
    CHECK_EQ_INT(gguf_get_arr(f, "a.empty", GGUF_VAL_UINT8, &arr, &err), 0);
    CHECK(arr && arr->arr_len == 0);
    CHECK_EQ_INT(gguf_get_arr(f, "v.u8", GGUF_VAL_UINT8, &arr, &err), -1);
}

typedef struct tensor_case {
    const char *name;
    uint32_t type;
    uint32_t n_dims;
    int64_t ne[4];
    uint64_t nbytes;
} tensor_case;

static const tensor_case tensor_cases[] = {
    {"f32.vec", GGUF_TYPE_F32, 1, {7, 1, 1, 1}, 28},
    {"f16.mat", GGUF_TYPE_F16, 2, {4, 3, 1, 1}, 24},
    {"q8_0.mat", GGUF_TYPE_Q8_0, 2, {64, 2, 1, 1}, 4 * 34},
    {"q4_0.mat", GGUF_TYPE_Q4_0, 2, {32, 3, 1, 1}, 3 * 18},
    {"q4_k.3d", GGUF_TYPE_Q4_K, 3, {256, 1, 2, 1}, 2 * 144},
    {"i8.4d", GGUF_TYPE_I8, 4, {5, 2, 3, 4}, 120},
    {"f64.vec", GGUF_TYPE_F64, 1, {3, 1, 1, 1}, 24},
    {"bf16.vec", GGUF_TYPE_BF16, 1, {9, 1, 1, 1}, 18},
    {"mxfp4.vec", GGUF_TYPE_MXFP4, 1, {64, 1, 1, 1}, 34},
};
enum { N_TENSOR_CASES = sizeof tensor_cases / sizeof *tensor_cases };

static void add_tensor_cases(gguf_writer *w)
{
    el_err err = {{0}};
    for (int i = 0; i < N_TENSOR_CASES; i++) {
        const tensor_case *c = &tensor_cases[i];
        CHECKF(gguf_writer_add_tensor(w, c->name, c->type, c->n_dims, c->ne, &err) == 0, "%s", err.msg);
    }
}

static void check_tensor_cases(const gguf_file *f, uint32_t alignment)
{
    CHECK_EQ_INT(gguf_tensor_count(f), N_TENSOR_CASES);
    CHECK_EQ_INT(gguf_alignment(f), alignment);
    CHECK_EQ_INT(gguf_data_offset(f) % alignment, 0);
    for (int i = 0; i < N_TENSOR_CASES; i++) {
        const tensor_case *c = &tensor_cases[i];
        const gguf_tensor *t = gguf_find_tensor(f, c->name);
        CHECKF(t != NULL, "%s", c->name);
        if (!t)
            continue;
        CHECK(t == gguf_tensor_at(f, (uint64_t)i));
        CHECK_EQ_INT(t->type, c->type);
        CHECK_EQ_INT(t->n_dims, c->n_dims);
        for (int d = 0; d < 4; d++)
            CHECK_EQ_INT(t->ne[d], c->ne[d]);
        CHECK_EQ_INT(t->nbytes, c->nbytes);
        CHECK_EQ_INT(t->offset % alignment, 0);
        CHECK_EQ_INT(((const char *)t->data - (const char *)gguf_base(f)) % alignment, 0);
        CHECK_EQ_INT(gguf_row_size(c->type, c->ne[0]) * (uint64_t)(c->ne[1] * c->ne[2] * c->ne[3]),
                     c->nbytes);
        const uint8_t *p = t->data;
        int bad = 0;
        for (uint64_t b = 0; b < t->nbytes; b++)
            bad += p[b] != pattern_byte((uint64_t)i, b);
        CHECKF(bad == 0, "%s: %d bytes differ", c->name, bad);
    }
}

static void test_round_trip_values_and_tensors(void)
{
    el_err err = {{0}};
    gguf_writer *w = gguf_writer_create(&err);
    CHECK(w != NULL);
    if (!w)
        return;
    CHECK(gguf_writer_set_str(w, "general.architecture", "llama", &err) == 0);
    CHECK(gguf_writer_set_u32(w, "replace.me", 1, &err) == 0);
    add_every_value_type(w);
    CHECK(gguf_writer_set_str(w, "replace.me", "now a string", &err) == 0);
    add_tensor_cases(w);
    int calls = 0;
    const char *path = tmp_path("roundtrip.gguf");
    CHECKF(gguf_writer_write(w, path, fill_pattern, &calls, &err) == 0, "%s", err.msg);
    CHECK_EQ_INT(calls, N_TENSOR_CASES);
    gguf_writer_free(w);

    gguf_file *f = gguf_open(path, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (!f)
        return;
    CHECK_EQ_INT(gguf_version(f), 3);
    CHECK_EQ_INT(gguf_kv_count(f), 2 + 7 + 5 + 6);
    const gguf_kv *kv = gguf_kv_at(f, 1);
    CHECK(kv && gguf_str_eq(kv->key, "replace.me") && kv->type == GGUF_VAL_STRING &&
          gguf_str_eq(kv->v.str, "now a string")); /* replaced in place, order kept */
    check_every_value_type(f);
    check_tensor_cases(f, 32);
    CHECK(gguf_kv_at(f, gguf_kv_count(f)) == NULL);
    CHECK(gguf_tensor_at(f, N_TENSOR_CASES) == NULL);

    /* The same bytes through gguf_open_memory. */
    gguf_file *m = gguf_open_memory(gguf_base(f), gguf_size(f), &err);
    CHECKF(m != NULL, "%s", err.msg);
    if (m) {
        check_every_value_type(m);
        check_tensor_cases(m, 32);
        gguf_close(m);
    }
    gguf_close(f);
}

static void test_alignment_is_honoured(void)
{
    el_err err = {{0}};
    gguf_writer *w = gguf_writer_create(&err);
    CHECK(gguf_writer_set_u32(w, "general.alignment", 256, &err) == 0);
    add_tensor_cases(w);
    int calls = 0;
    const char *path = tmp_path("aligned.gguf");
    CHECKF(gguf_writer_write(w, path, fill_pattern, &calls, &err) == 0, "%s", err.msg);
    gguf_writer_free(w);
    gguf_file *f = gguf_open(path, &err);
    CHECKF(f != NULL, "%s", err.msg);
    if (f) {
        check_tensor_cases(f, 256);
        gguf_close(f);
    }

    w = gguf_writer_create(&err);
    CHECK(gguf_writer_set_u32(w, "general.alignment", 48, &err) == 0);
    CHECK_EQ_INT(gguf_writer_write(w, tmp_path("bad-align.gguf"), NULL, NULL, &err), -1);
    CHECK(strstr(err.msg, "power of two") != NULL);
    CHECK(access(tmp_path("bad-align.gguf"), F_OK) != 0);
    gguf_writer_free(w);
}

static int fill_fails_on_third(void *ctx, uint64_t index, const char *name, void *buf,
                               uint64_t nbytes, el_err *err)
{
    (void)ctx, (void)buf, (void)nbytes;
    if (index == 2)
        return el_fail(err, "source data for %s unavailable", name);
    return 0;
}

static void test_failed_write_leaves_nothing(void)
{
    el_err err = {{0}};
    gguf_writer *w = gguf_writer_create(&err);
    add_tensor_cases(w);
    const char *path = tmp_path("failed.gguf");
    CHECK_EQ_INT(gguf_writer_write(w, path, fill_fails_on_third, NULL, &err), -1);
    CHECK(strstr(err.msg, "q8_0.mat") != NULL);
    CHECK(access(path, F_OK) != 0);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);
    CHECK_EQ_INT(gguf_writer_write(w, "/nonexistent-dir/x.gguf", NULL, NULL, &err), -1);
    CHECK(strstr(err.msg, "/nonexistent-dir/x.gguf.tmp") != NULL);
    gguf_writer_free(w);
}

static void test_writer_rejects_bad_input(void)
{
    el_err err = {{0}};
    gguf_writer *w = gguf_writer_create(&err);
    int64_t ne[4] = {32, 2, 1, 1};
    CHECK_EQ_INT(gguf_writer_set_u32(w, "", 1, &err), -1);
    CHECK(strstr(err.msg, "empty") != NULL);
    CHECK_EQ_INT(gguf_writer_set_u32(w, "bad\nkey", 1, &err), -1);
    CHECK_EQ_INT(gguf_writer_set_str(w, "bad.utf8.\xff", "x", &err), -1);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "t", 4, 2, ne, &err), -1); /* retired Q4_2 */
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "t", GGUF_TYPE_COUNT, 2, ne, &err), -1);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "t", GGUF_TYPE_F32, 0, ne, &err), -1);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "t", GGUF_TYPE_F32, 5, ne, &err), -1);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "t", GGUF_TYPE_Q4_K, 2, ne, &err), -1);
    CHECK(strstr(err.msg, "block size") != NULL);
    int64_t zero[2] = {0, 1}, huge[2] = {INT64_MAX, 4};
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "t", GGUF_TYPE_F32, 2, zero, &err), -1);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "t", GGUF_TYPE_F32, 2, huge, &err), -1);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "t", GGUF_TYPE_F32, 2, ne, &err), 0);
    CHECK_EQ_INT(gguf_writer_add_tensor(w, "t", GGUF_TYPE_F32, 2, ne, &err), -1);
    CHECK(strstr(err.msg, "duplicate") != NULL);
    gguf_kv kv = scalar_kv("nested", GGUF_VAL_ARRAY);
    kv.arr_type = GGUF_VAL_ARRAY;
    CHECK_EQ_INT(gguf_writer_copy_kv(w, &kv, &err), -1);
    kv = scalar_kv("u8.too.big", GGUF_VAL_UINT8), kv.v.u64 = 256;
    CHECK_EQ_INT(gguf_writer_copy_kv(w, &kv, &err), -1);
    kv = scalar_kv("bool.two", GGUF_VAL_BOOL), kv.v.u64 = 2;
    CHECK_EQ_INT(gguf_writer_copy_kv(w, &kv, &err), -1);
    kv = scalar_kv("bad.type", (enum gguf_value_type)13);
    CHECK_EQ_INT(gguf_writer_copy_kv(w, &kv, &err), -1);
    gguf_writer_free(w);
}

/* The make-model path: a whole vocabulary copied key by key from a real file. */
static void test_copy_vocabulary(void)
{
    const char *src_path = TEST_DATA "vocab-gemma3.gguf";
    el_err err = {{0}};
    gguf_file *src = gguf_open(src_path, &err);
    CHECKF(src != NULL, "%s", err.msg);
    if (!src)
        return;
    gguf_writer *w = gguf_writer_create(&err);
    for (uint64_t i = 0; i < gguf_kv_count(src); i++)
        CHECKF(gguf_writer_copy_kv(w, gguf_kv_at(src, i), &err) == 0, "%s", err.msg);
    const char *path = tmp_path("vocab-copy.gguf");
    CHECKF(gguf_writer_write(w, path, NULL, NULL, &err) == 0, "%s", err.msg);
    gguf_writer_free(w);
    gguf_file *dst = gguf_open(path, &err);
    CHECKF(dst != NULL, "%s", err.msg);
    if (dst) {
        CHECK_EQ_INT(gguf_kv_count(dst), gguf_kv_count(src));
        for (uint64_t i = 0; i < gguf_kv_count(src); i++) {
            const gguf_kv *a = gguf_kv_at(src, i), *b = gguf_kv_at(dst, i);
            CHECK(a->key.len == b->key.len && memcmp(a->key.ptr, b->key.ptr, a->key.len) == 0);
            CHECK_EQ_INT(a->type, b->type);
            if (a->type == GGUF_VAL_ARRAY) {
                CHECK_EQ_INT(a->arr_len, b->arr_len);
                CHECK_EQ_INT(a->arr_type, b->arr_type);
                if (a->arr_type == GGUF_VAL_STRING) {
                    int bad = 0;
                    for (uint64_t j = 0; j < a->arr_len; j++)
                        bad += a->arr_strings[j].len != b->arr_strings[j].len ||
                               memcmp(a->arr_strings[j].ptr, b->arr_strings[j].ptr, a->arr_strings[j].len) != 0;
                    CHECK_EQ_INT(bad, 0);
                }
            } else if (a->type == GGUF_VAL_STRING) {
                CHECK(a->v.str.len == b->v.str.len && memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len) == 0);
            } else {
                CHECK(a->v.u64 == b->v.u64);
            }
        }
        gguf_close(dst);
    }
    gguf_close(src);
}

static void test_type_table(void)
{
    const gguf_type_info *q4k = gguf_type_get(GGUF_TYPE_Q4_K);
    CHECK(q4k && strcmp(q4k->name, "Q4_K") == 0 && q4k->block_size == 256 && q4k->type_size == 144);
    static const uint32_t retired[] = {4, 5, 31, 32, 33, 36, 37, 38, 40, 1000};
    for (size_t i = 0; i < sizeof retired / sizeof *retired; i++)
        CHECK(gguf_type_get(retired[i]) == NULL);
    CHECK_EQ_INT(gguf_type_from_name("q4_k"), GGUF_TYPE_Q4_K);
    CHECK_EQ_INT(gguf_type_from_name("BF16"), GGUF_TYPE_BF16);
    CHECK_EQ_INT(gguf_type_from_name("iq2_xxs"), GGUF_TYPE_IQ2_XXS);
    CHECK_EQ_INT(gguf_type_from_name("q4_2"), -1);
    CHECK_EQ_INT(gguf_type_from_name(""), -1);
    CHECK_EQ_INT(gguf_row_size(GGUF_TYPE_Q8_0, 64), 68);
    CHECK_EQ_INT(gguf_row_size(GGUF_TYPE_Q8_0, 65), 0);
    CHECK_EQ_INT(gguf_row_size(GGUF_TYPE_F32, 0), 0);
    CHECK_EQ_INT(gguf_row_size(GGUF_TYPE_Q6_K, 512), 420);
    CHECK_EQ_INT(gguf_row_size(GGUF_TYPE_TQ1_0, 256), 54);
    CHECK_EQ_INT(gguf_row_size(4, 32), 0);
    int known = 0;
    for (uint32_t t = 0; t < GGUF_TYPE_COUNT; t++) {
        const gguf_type_info *info = gguf_type_get(t);
        if (!info)
            continue;
        known++;
        CHECK_EQ_INT(gguf_type_from_name(info->name), t);
    }
    CHECK_EQ_INT(known, 32);
    CHECK(strcmp(gguf_value_type_name(GGUF_VAL_FLOAT64), "FLOAT64") == 0);
}

int main(void)
{
    if (!mkdtemp(tmp_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_type_table);
    RUN(test_round_trip_values_and_tensors);
    RUN(test_alignment_is_honoured);
    RUN(test_failed_write_leaves_nothing);
    RUN(test_writer_rejects_bad_input);
    RUN(test_copy_vocabulary);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp_dir);
    return test_summary();
}
