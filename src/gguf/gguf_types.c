/* The ggml tensor type table: names and block layouts, indexed by type id. */
#include "gguf/gguf.h"

#include <strings.h>

/* Ids 4, 5 (Q4_2, Q4_3), 31..33 (Q4_0_4_4 ...) and 36..38 (IQ4_NL_4_4 ...) were
 * retired by ggml: their entries stay empty so that files using them are refused. */
static const gguf_type_info type_table[GGUF_TYPE_COUNT] = {
    [GGUF_TYPE_F32] = {"F32", 1, 4},
    [GGUF_TYPE_F16] = {"F16", 1, 2},
    [GGUF_TYPE_Q4_0] = {"Q4_0", 32, 18},
    [GGUF_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [GGUF_TYPE_Q5_0] = {"Q5_0", 32, 22},
    [GGUF_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [GGUF_TYPE_Q8_0] = {"Q8_0", 32, 34},
    [GGUF_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [GGUF_TYPE_Q2_K] = {"Q2_K", 256, 84},
    [GGUF_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [GGUF_TYPE_Q4_K] = {"Q4_K", 256, 144},
    [GGUF_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [GGUF_TYPE_Q6_K] = {"Q6_K", 256, 210},
    [GGUF_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [GGUF_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66},
    [GGUF_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74},
    [GGUF_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98},
    [GGUF_TYPE_IQ1_S] = {"IQ1_S", 256, 50},
    [GGUF_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18},
    [GGUF_TYPE_IQ3_S] = {"IQ3_S", 256, 110},
    [GGUF_TYPE_IQ2_S] = {"IQ2_S", 256, 82},
    [GGUF_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136},
    [GGUF_TYPE_I8] = {"I8", 1, 1},
    [GGUF_TYPE_I16] = {"I16", 1, 2},
    [GGUF_TYPE_I32] = {"I32", 1, 4},
    [GGUF_TYPE_I64] = {"I64", 1, 8},
    [GGUF_TYPE_F64] = {"F64", 1, 8},
    [GGUF_TYPE_IQ1_M] = {"IQ1_M", 256, 56},
    [GGUF_TYPE_BF16] = {"BF16", 1, 2},
    [GGUF_TYPE_TQ1_0] = {"TQ1_0", 256, 54},
    [GGUF_TYPE_TQ2_0] = {"TQ2_0", 256, 66},
    [GGUF_TYPE_MXFP4] = {"MXFP4", 32, 17},
};

const gguf_type_info *gguf_type_get(uint32_t type)
{
    if (type >= GGUF_TYPE_COUNT || !type_table[type].name)
        return NULL;
    return &type_table[type];
}

int gguf_type_from_name(const char *name)
{
    if (!name)
        return -1;
    for (uint32_t t = 0; t < GGUF_TYPE_COUNT; t++)
        if (type_table[t].name && strcasecmp(type_table[t].name, name) == 0)
            return (int)t;
    return -1;
}

size_t gguf_row_size(uint32_t type, int64_t n)
{
    const gguf_type_info *info = gguf_type_get(type);
    if (!info || n <= 0 || n % info->block_size != 0)
        return 0;
    uint64_t blocks = (uint64_t)n / info->block_size;
    uint64_t bytes;
    if (__builtin_mul_overflow(blocks, (uint64_t)info->type_size, &bytes) || bytes > SIZE_MAX)
        return 0;
    return (size_t)bytes;
}

static const char *const value_type_names[GGUF_VAL_COUNT] = {
    [GGUF_VAL_UINT8] = "UINT8",   [GGUF_VAL_INT8] = "INT8",       [GGUF_VAL_UINT16] = "UINT16",
    [GGUF_VAL_INT16] = "INT16",   [GGUF_VAL_UINT32] = "UINT32",   [GGUF_VAL_INT32] = "INT32",
    [GGUF_VAL_FLOAT32] = "FLOAT32", [GGUF_VAL_BOOL] = "BOOL",     [GGUF_VAL_STRING] = "STRING",
    [GGUF_VAL_ARRAY] = "ARRAY",   [GGUF_VAL_UINT64] = "UINT64",   [GGUF_VAL_INT64] = "INT64",
    [GGUF_VAL_FLOAT64] = "FLOAT64",
};

const char *gguf_value_type_name(enum gguf_value_type t)
{
    if ((unsigned)t >= GGUF_VAL_COUNT)
        return "INVALID";
    return value_type_names[t];
}
