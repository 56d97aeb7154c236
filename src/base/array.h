/* Growing arrays whose contents are not private (grammar rules, parser stacks):
 * one place for the doubling and its overflow check. Private text grows with
 * wipe_grow_array (base/wipebuf.h) instead, which never leaves a copy behind. */
#ifndef ELLIOTT_BASE_ARRAY_H
#define ELLIOTT_BASE_ARRAY_H

#include <stddef.h>

/* Makes room for need items of item_size bytes in *items, of which *cap are
 * allocated (doubling from 16). Nothing to do when need <= *cap. -1, with *items
 * and *cap unchanged, when out of memory or the size overflows. */
int grow_array(void **items, size_t *cap, size_t need, size_t item_size);

#endif
