#include "base/invariant.h"

#include <stdio.h>
#include <stdlib.h>

/* Declared only without NDEBUG, defined always: a library built either way links. */
_Noreturn void el_invariant_failed(const char *file, int line, const char *cond);

_Noreturn void el_invariant_failed(const char *file, int line, const char *cond)
{
    fprintf(stderr, "elliott: invariant failed at %s:%d: %s\n", file, line, cond);
    abort();
}
