/* Inside the kernels layer: where the blocks of a 16-row repacked group lie when a
 * group block is a body of whole cache lines plus a 32-byte tail (its row scales):
 * Q4_0 (256 + 32 bytes) and Q6_K (3328 + 32).
 *
 * Group blocks back to back would put every other body 32 bytes off a cache line, so
 * that each of its 64-byte loads straddles two lines. Blocks go in pairs instead, a
 * pair's two bodies and two tails in whole lines:
 *   group 64-byte aligned:    body0 body1 tail0 tail1
 *   group 32 bytes off:       tail0 body0 body1 tail1
 * and an odd last block alone as body tail, or tail body. Either way every body starts
 * a cache line, and a group keeps exactly its rows' bytes. Which of the two a group
 * uses follows from its address, so a repacked matrix must not move (it does not: it
 * is repacked where it lies, kernels_repack_matrix). Groups further off than 32 bytes
 * (a GGUF alignment under 32) use the second order and load unaligned, correctly. */
#ifndef ELLIOTT_KERNELS_R16_PAIRS_H
#define ELLIOTT_KERNELS_R16_PAIRS_H

#include <stddef.h>
#include <stdint.h>

enum { R16_TAIL_BYTES = 32 };

/* Bytes before a pair's first body: a tail when the group starts mid-line. */
static inline size_t r16_lead(const void *group)
{
    return ((uintptr_t)group & 63) != 0 ? R16_TAIL_BYTES : 0;
}

/* Offsets from a pair's first byte of its two blocks' bodies and tails (body_bytes a
 * multiple of 64); r16_single_* for an odd last block. */
static inline size_t r16_pair_body(size_t lead, size_t body_bytes, int k)
{
    return lead + (size_t)k * body_bytes;
}

static inline size_t r16_pair_tail(size_t lead, size_t body_bytes, int k)
{
    if (k == 1)
        return 2 * body_bytes + R16_TAIL_BYTES;
    return lead != 0 ? 0 : 2 * body_bytes;
}

static inline size_t r16_single_tail(size_t lead, size_t body_bytes)
{
    return lead != 0 ? 0 : body_bytes;
}

/* Block b of a group of nb blocks, each body_bytes + R16_TAIL_BYTES: the offsets of its
 * body and tail from the group's first byte (lead = r16_lead(group)). */
static inline void r16_block_offsets(size_t lead, size_t body_bytes, int64_t nb, int64_t b, size_t *body,
                                     size_t *tail)
{
    size_t pair = (size_t)(b / 2) * 2 * (body_bytes + R16_TAIL_BYTES);
    int k = (int)(b % 2);
    *body = pair + r16_pair_body(lead, body_bytes, k);
    *tail = pair + (b == nb - 1 && k == 0 ? r16_single_tail(lead, body_bytes) : r16_pair_tail(lead, body_bytes, k));
}

#endif
