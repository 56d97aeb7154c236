/* What the attention kernels' tests (F16 and Q8_0 caches) share: the rows' ranges a
 * model sends and the kernels' scratch. */
#ifndef ELLIOTT_TESTS_KERNELS_ATTN_TEST_UTIL_H
#define ELLIOTT_TESTS_KERNELS_ATTN_TEST_UTIL_H

#include <stdlib.h>

#include "base/rng.h"

/* Each row's positions [first, last] in a cache of max_pos: ending near the end, and
 * starting at 0 (a prompt's first tokens), a little before the end (one or a few
 * positions) or anywhere in the first 90 (a sliding window). */
static inline void attn_test_ranges(el_rng *rng, int n_rows, int max_pos, int *first, int *last)
{
    for (int r = 0; r < n_rows; r++) {
        last[r] = max_pos - 1 - (int)(el_rng_next(rng) % 120);
        int kind = (int)(el_rng_next(rng) % 4);
        first[r] = kind == 0 ? last[r] - (int)(el_rng_next(rng) % 3) : kind == 1 ? (int)(el_rng_next(rng) % 90) : 0;
    }
}

/* bytes of scratch, 64-byte aligned as the kernels require; free() it. */
static inline void *attn_test_scratch(size_t bytes)
{
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}

#endif
