/* GGUF files: a validating, memory-mapped reader and a streaming writer.
 *
 * Nothing in a file is trusted. `gguf_open` checks the header, every key and
 * value, every tensor's name, type, shape, offset and size against the file
 * before it returns; afterwards all pointers it hands out are in bounds.
 * Strings are not NUL-terminated: they are (pointer, length) into the mapping.
 *
 * The tensor type ids and block layouts are ggml's; this header is where the
 * rest of the project learns them. */
#ifndef ELLIOTT_GGUF_H
#define ELLIOTT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

/* ---- tensor types (ggml ids) ------------------------------------------------ */

enum gguf_type {
    GGUF_TYPE_F32 = 0,
    GGUF_TYPE_F16 = 1,
    GGUF_TYPE_Q4_0 = 2,
    GGUF_TYPE_Q4_1 = 3,
    GGUF_TYPE_Q5_0 = 6,
    GGUF_TYPE_Q5_1 = 7,
    GGUF_TYPE_Q8_0 = 8,
    GGUF_TYPE_Q8_1 = 9,
    GGUF_TYPE_Q2_K = 10,
    GGUF_TYPE_Q3_K = 11,
    GGUF_TYPE_Q4_K = 12,
    GGUF_TYPE_Q5_K = 13,
    GGUF_TYPE_Q6_K = 14,
    GGUF_TYPE_Q8_K = 15,
    GGUF_TYPE_IQ2_XXS = 16,
    GGUF_TYPE_IQ2_XS = 17,
    GGUF_TYPE_IQ3_XXS = 18,
    GGUF_TYPE_IQ1_S = 19,
    GGUF_TYPE_IQ4_NL = 20,
    GGUF_TYPE_IQ3_S = 21,
    GGUF_TYPE_IQ2_S = 22,
    GGUF_TYPE_IQ4_XS = 23,
    GGUF_TYPE_I8 = 24,
    GGUF_TYPE_I16 = 25,
    GGUF_TYPE_I32 = 26,
    GGUF_TYPE_I64 = 27,
    GGUF_TYPE_F64 = 28,
    GGUF_TYPE_IQ1_M = 29,
    GGUF_TYPE_BF16 = 30,
    GGUF_TYPE_TQ1_0 = 34,
    GGUF_TYPE_TQ2_0 = 35,
    GGUF_TYPE_MXFP4 = 39,
    GGUF_TYPE_COUNT = 40
};

typedef struct gguf_type_info {
    const char *name;    /* "Q4_K" */
    uint32_t block_size; /* elements per block */
    uint32_t type_size;  /* bytes per block */
} gguf_type_info;

/* NULL for an id that is not a known type (including ggml's retired ids). */
const gguf_type_info *gguf_type_get(uint32_t type);
/* Type id for a case-insensitive name ("q4_k"), or -1. */
int gguf_type_from_name(const char *name);
/* Bytes in a row of n elements; 0 if n is not a multiple of the block size or the type is unknown. */
size_t gguf_row_size(uint32_t type, int64_t n);

/* ---- values ------------------------------------------------------------------ */

enum gguf_value_type {
    GGUF_VAL_UINT8 = 0,
    GGUF_VAL_INT8 = 1,
    GGUF_VAL_UINT16 = 2,
    GGUF_VAL_INT16 = 3,
    GGUF_VAL_UINT32 = 4,
    GGUF_VAL_INT32 = 5,
    GGUF_VAL_FLOAT32 = 6,
    GGUF_VAL_BOOL = 7,
    GGUF_VAL_STRING = 8,
    GGUF_VAL_ARRAY = 9,
    GGUF_VAL_UINT64 = 10,
    GGUF_VAL_INT64 = 11,
    GGUF_VAL_FLOAT64 = 12,
    GGUF_VAL_COUNT = 13
};

const char *gguf_value_type_name(enum gguf_value_type t);

typedef struct gguf_str {
    const char *ptr; /* not NUL-terminated */
    uint64_t len;
} gguf_str;

bool gguf_str_eq(gguf_str s, const char *cstr);

typedef struct gguf_kv {
    gguf_str key;
    enum gguf_value_type type;
    union {
        uint64_t u64; /* every unsigned integer type, and bool (0/1) */
        int64_t i64;  /* every signed integer type */
        double f64;   /* FLOAT32 and FLOAT64 */
        gguf_str str;
    } v;
    /* type == GGUF_VAL_ARRAY: */
    enum gguf_value_type arr_type; /* never ARRAY: nested arrays are rejected */
    uint64_t arr_len;
    const uint8_t *arr_data;  /* raw little-endian elements; for strings, the serialized strings */
    gguf_str *arr_strings;    /* arr_type == STRING: arr_len parsed strings */
} gguf_kv;

/* ---- tensors ----------------------------------------------------------------- */

enum { GGUF_MAX_DIMS = 4 };

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous dimension; unused dims are 1 */
    uint32_t type;             /* enum gguf_type */
    uint64_t offset;           /* from the start of the data section */
    uint64_t nbytes;
    const void *data;          /* in bounds of the file, aligned as the file says */
} gguf_tensor;

/* ---- reading ----------------------------------------------------------------- */

typedef struct gguf_file gguf_file;

/* Maps and validates a file. */
gguf_file *gguf_open(const char *path, el_err *err);
/* Validates a buffer the caller keeps alive for the life of the result (e.g. a model
 * embedded in the binary). */
gguf_file *gguf_open_memory(const void *data, size_t size, el_err *err);
void gguf_close(gguf_file *f);
/* Whether a mapped file still holds what was read at gguf_open: -1, saying why, when it
 * was cut short (a read past its new end returned zeros instead of killing the process:
 * base/mapguard.h), changed size or was written to (its modification time moved) since.
 * Whatever was computed from the mapping since then is garbage. 0 for a memory image. */
int gguf_check_intact(const gguf_file *f, el_err *err);

uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
const void *gguf_base(const gguf_file *f); /* start of the file in memory */
uint64_t gguf_size(const gguf_file *f);
/* Where the tensor data section starts; a file without tensors may end before its
 * padding, and then this is the file size. */
uint64_t gguf_data_offset(const gguf_file *f);

uint64_t gguf_kv_count(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i);
const gguf_kv *gguf_find(const gguf_file *f, const char *key); /* NULL if absent */

/* Typed lookups. Each returns 0 and stores the value, 1 if the key is absent (out
 * untouched, so preset the default), or -1 with a message if present with a type
 * that cannot be converted losslessly (any integer type fits where its value does).
 * gguf_get_f32 also takes integers of magnitude <= 2^24 (exact in float) and FLOAT64
 * values within float range (rounded to nearest: the same hyperparameter, stored wider). */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, el_err *err);
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, el_err *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, el_err *err);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, el_err *err);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, el_err *err);
/* Arrays: present with the element type asked for, or -1. */
int gguf_get_arr(const gguf_file *f, const char *key, enum gguf_value_type elem,
                 const gguf_kv **out, el_err *err);

uint64_t gguf_tensor_count(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name); /* NULL if absent */

/* ---- writing ----------------------------------------------------------------- */

/* Writes GGUF v3. Metadata and tensor descriptions are collected first; tensor data
 * is then streamed through a callback, so a multi-gigabyte model never has to be in
 * memory at once. */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_create(el_err *err);
void gguf_writer_free(gguf_writer *w);

/* Setting a key that was already set replaces its value. */
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v, el_err *err);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v, el_err *err);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v, el_err *err);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v, el_err *err);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v, el_err *err);
/* Copies one key with its value (any type, arrays included) from an open file. The
 * kv may also be built by hand (scalars in v, numeric arrays in arr_data as
 * little-endian elements, string arrays in arr_strings): this is how to write value
 * types without a setter of their own. Values that do not fit their type are refused. */
int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv, el_err *err);

/* ne[0] is the contiguous dimension. Tensors are written in the order added. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const int64_t *ne, el_err *err);

/* Called once per tensor, in order, with a zeroed buffer of exactly the tensor's size. */
typedef int (*gguf_fill_fn)(void *ctx, uint64_t index, const char *name, void *buf,
                            uint64_t nbytes, el_err *err);

/* Writes to path.tmp and renames on success, so a failed write never leaves a
 * file that looks complete (path.tmp is removed on failure). fill may be NULL: the
 * tensors are then written as zeros. Tensor data is aligned to 32 bytes, or to
 * general.alignment when that key is set (UINT32, a power of two). */
int gguf_writer_write(gguf_writer *w, const char *path, gguf_fill_fn fill, void *ctx, el_err *err);

#endif
