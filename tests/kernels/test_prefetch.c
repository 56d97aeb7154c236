/* The decode tiles' software prefetch plan (kq_plan_prefetch): walking a matrix tile
 * by tile as the kernels do (four rows side by side, one unit of each row per step),
 * every cache line past the first tiles must have been prefetched before a step reads
 * it, for short rows (shorter than the prefetch distance), long rows, and the block
 * sizes of Q8_0 (34 bytes), Q4_0 quads (72) and Q4_0 blocks (18); at both distances
 * (KQ_PREFETCH_AHEAD into L1, KQ_PREFETCH_FAR into L2). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/kernels_internal.h"
#include "test.h"

enum { LINE = 64, TILE_ROWS = 4 };

typedef struct walk {
    size_t unit, row_bytes, stride;
    int n_tiles;
    bool *fetched; /* per cache line of the matrix (and past its end) */
    size_t n_lines;
    long unfetched; /* lines read before any prefetch reached them, past the warm-up */
    size_t warm_up;  /* bytes at the start where demand misses are expected */
} walk;

static void mark(walk *w, size_t from, size_t bytes, bool is_prefetch)
{
    for (size_t line = from / LINE; line <= (from + bytes - 1) / LINE && line < w->n_lines; line++) {
        if (!is_prefetch && !w->fetched[line] && line * LINE >= w->warm_up)
            w->unfetched++;
        w->fetched[line] = true;
    }
}

/* naive: a plain `distance` along each row (the plan before the continuation) */
static long count_unfetched_plan(size_t distance, size_t unit, int64_t n_units, size_t stride_pad, int n_tiles,
                                 bool naive)
{
    walk w = {.unit = unit, .row_bytes = unit * (size_t)n_units, .n_tiles = n_tiles};
    w.stride = w.row_bytes + stride_pad;
    size_t next_tile = TILE_ROWS * w.stride, total = next_tile * (size_t)(n_tiles + 4);
    w.n_lines = total / LINE + 1;
    w.fetched = calloc(w.n_lines, 1);
    kq_prefetch_plan plan = naive ? (kq_prefetch_plan){distance, 0, INT64_MAX}
                                  : kq_plan_prefetch_at(distance, w.row_bytes, unit, next_tile);
    /* the first tiles' lines (up to the lead) have nothing earlier to fetch them */
    w.warm_up = (plan.lead + next_tile - 1) / next_tile * next_tile;
    if (w.warm_up < next_tile)
        w.warm_up = next_tile;
    for (int t = 0; t < n_tiles; t++) {
        size_t tile = (size_t)t * next_tile;
        for (int64_t i = 0; i < n_units; i++) {
            size_t ahead = kq_prefetch_offset(&plan, i);
            for (int r = 0; r < TILE_ROWS; r++) {
                size_t at = tile + (size_t)r * w.stride + (size_t)i * unit;
                mark(&w, at + ahead, 1, true);
                if (unit > LINE) /* a unit over a line: the kernels fetch its second line too */
                    mark(&w, at + ahead + LINE, 1, true);
                mark(&w, at, unit, false);
            }
        }
    }
    free(w.fetched);
    return w.unfetched;
}

static long count_unfetched(size_t unit, int64_t n_units, size_t stride_pad, int n_tiles)
{
    return count_unfetched_plan(KQ_PREFETCH_AHEAD, unit, n_units, stride_pad, n_tiles, false) +
           count_unfetched_plan(KQ_PREFETCH_FAR, unit, n_units, stride_pad, n_tiles, false);
}

static void test_every_line_fetched_ahead(void)
{
    /* unit bytes, units per row: Q8_0 at 2048 and 16384 columns, Q4_0 quads at 1152,
     * 2048 and 16384, Q4_0 blocks at 2048, Q5_0 (22 bytes) at 2560 */
    const struct {
        size_t unit;
        int64_t n_units;
    } shapes[] = {{34, 64}, {34, 512}, {72, 9}, {72, 16}, {72, 128}, {18, 64}, {22, 80}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        long missed = count_unfetched(shapes[s].unit, shapes[s].n_units, 0, 12);
        CHECKF(missed == 0, "unit %zu x %lld: %ld lines read before being prefetched", shapes[s].unit,
               (long long)shapes[s].n_units, missed);
    }
}

static void test_plain_distance_misses_row_starts(void)
{
    /* what the plan fixes: a plain 4 KiB along 2176-byte Q8_0 rows leaves the start of
     * two rows in every four to demand misses */
    CHECK(count_unfetched_plan(KQ_PREFETCH_AHEAD, 34, 64, 0, 12, true) > 0);
    CHECK(count_unfetched_plan(KQ_PREFETCH_AHEAD, 34, 512, 0, 6, true) > 0);
}

static void test_rows_with_padding(void)
{
    /* a row stride larger than the row (the kernels allow one): the continuation
     * still lands on the next tile's row */
    CHECK_EQ_INT(count_unfetched(34, 512, 64, 6), 0);
    CHECK_EQ_INT(count_unfetched(34, 64, 128, 12), 0);
}

static void test_lone_row_prefetches_straight_on(void)
{
    kq_prefetch_plan plan = kq_plan_prefetch(34 * 512, 34, 0);
    CHECK_EQ_INT(kq_prefetch_offset(&plan, 0), KQ_PREFETCH_AHEAD);
    CHECK_EQ_INT(kq_prefetch_offset(&plan, 511), KQ_PREFETCH_AHEAD);
    plan = kq_plan_prefetch_at(KQ_PREFETCH_FAR, 34 * 512, 34, 0);
    CHECK_EQ_INT(kq_prefetch_offset(&plan, 511), KQ_PREFETCH_FAR);
}

int main(void)
{
    RUN(test_every_line_fetched_ahead);
    RUN(test_plain_distance_misses_row_starts);
    RUN(test_rows_with_padding);
    RUN(test_lone_row_prefetches_straight_on);
    return test_summary();
}
