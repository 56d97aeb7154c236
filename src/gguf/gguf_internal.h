/* Shared between the reader and the writer of this layer only. */
#ifndef ELLIOTT_GGUF_INTERNAL_H
#define ELLIOTT_GGUF_INTERNAL_H

#include "gguf/gguf.h"

enum { GGUF_DEFAULT_ALIGNMENT = 32, GGUF_MAX_NAME_BYTES = 65535 };

/* NULL if the bytes make a usable key or tensor name (non-empty, at most
 * GGUF_MAX_NAME_BYTES, valid UTF-8 without control characters), else what is wrong. */
const char *gguf_name_problem(const char *p, uint64_t len);

/* Encoded size of a fixed-size value type; 0 for STRING, ARRAY and unknown ids. */
uint32_t gguf_scalar_size(uint32_t type);

#endif
