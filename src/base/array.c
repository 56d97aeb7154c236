#include "base/array.h"

#include <stdint.h>
#include <stdlib.h>

int grow_array(void **items, size_t *cap, size_t need, size_t item_size)
{
    if (need <= *cap)
        return 0;
    if (item_size == 0 || need > SIZE_MAX / 2 / item_size)
        return -1;
    size_t bigger_cap = *cap ? *cap : 16;
    while (bigger_cap < need)
        bigger_cap *= 2;
    void *bigger = realloc(*items, bigger_cap * item_size);
    if (!bigger)
        return -1;
    *items = bigger;
    *cap = bigger_cap;
    return 0;
}
