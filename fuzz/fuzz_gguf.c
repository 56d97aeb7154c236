/* libFuzzer target for the GGUF reader: any bytes in, a clean refusal or a file
 * whose every key, value and tensor can be read within bounds. */
#include "gguf/gguf.h"

#include <stdint.h>
#include <stdio.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void touch_kv(const gguf_file *f, const gguf_kv *kv)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < kv->key.len; i++)
        sum += (unsigned char)kv->key.ptr[i];
    if (kv->type == GGUF_VAL_STRING) {
        for (uint64_t i = 0; i < kv->v.str.len; i++)
            sum += (unsigned char)kv->v.str.ptr[i];
    } else if (kv->type == GGUF_VAL_ARRAY && kv->arr_type == GGUF_VAL_STRING) {
        for (uint64_t i = 0; i < kv->arr_len; i++)
            for (uint64_t j = 0; j < kv->arr_strings[i].len; j++)
                sum += (unsigned char)kv->arr_strings[i].ptr[j];
    } else if (kv->type == GGUF_VAL_ARRAY && kv->arr_len > 0) {
        sum += kv->arr_data[0] + kv->arr_data[kv->arr_len - 1];
    } else {
        sum += kv->v.u64;
    }
    char key[300];
    snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 256 ? kv->key.len : 256), kv->key.ptr);
    el_err err;
    uint32_t u32;
    int64_t i64;
    float f32;
    bool b;
    gguf_str s;
    const gguf_kv *arr;
    sum += (uint64_t)gguf_get_u32(f, key, &u32, &err) + (uint64_t)gguf_get_i64(f, key, &i64, &err) +
           (uint64_t)gguf_get_f32(f, key, &f32, &err) + (uint64_t)gguf_get_bool(f, key, &b, &err) +
           (uint64_t)gguf_get_str(f, key, &s, &err) +
           (uint64_t)gguf_get_arr(f, key, GGUF_VAL_STRING, &arr, &err);
    sink += sum;
}

static void touch_tensor(const gguf_file *f, const gguf_tensor *t)
{
    const uint8_t *p = t->data;
    uint64_t sum = p[0] + p[t->nbytes - 1];
    char name[300];
    snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 256 ? t->name.len : 256), t->name.ptr);
    sum += gguf_find_tensor(f, name) != NULL;
    sum += gguf_row_size(t->type, t->ne[0]);
    sink += sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    el_err err = {{0}};
    gguf_file *f = gguf_open_memory(data, size, &err);
    if (!f) {
        if (!err.msg[0])
            __builtin_trap(); /* every refusal must say why */
        return 0;
    }
    for (uint64_t i = 0; i < gguf_kv_count(f); i++)
        touch_kv(f, gguf_kv_at(f, i));
    for (uint64_t i = 0; i < gguf_tensor_count(f); i++)
        touch_tensor(f, gguf_tensor_at(f, i));
    gguf_close(f);
    return 0;
}
