/* Invariants, stated in the code (SQLite's assert / ALWAYS / NEVER).
 *
 * An invariant is what this program's own code guarantees: a length the loader
 * checked, a count a function returns within its bounds. It is not an outside
 * input (a request, a file, an option): those are validated with an error.
 *
 *   EL_ASSERT(x)   x holds. Checked in debug and test builds; compiled out (x not
 *                  even evaluated) when NDEBUG is defined.
 *   ALWAYS(x)      x holds, but a release build keeps a branch for when it does not:
 *   NEVER(x)       if (NEVER(n > cap)) return el_fail(err, "...");
 *                  In debug and test builds a false ALWAYS or a true NEVER stops the
 *                  process, so that a test finds the bug; with NDEBUG they are just
 *                  (x), and the branch handles it without a crash.
 *
 * A failed check prints the file, line and condition and aborts: never reached in a
 * correct program, so no request path "calls abort()" by design. Release builds
 * define NDEBUG (make CFLAGS=-DNDEBUG). */
#ifndef ELLIOTT_BASE_INVARIANT_H
#define ELLIOTT_BASE_INVARIANT_H

#ifdef NDEBUG
#define EL_ASSERT(x) ((void)0)
#define ALWAYS(x) (x)
#define NEVER(x) (x)
#else
_Noreturn void el_invariant_failed(const char *file, int line, const char *cond);
#define EL_ASSERT(x) ((x) ? (void)0 : el_invariant_failed(__FILE__, __LINE__, #x))
#define ALWAYS(x) ((x) ? 1 : (el_invariant_failed(__FILE__, __LINE__, "ALWAYS(" #x ")"), 0))
#define NEVER(x) ((x) ? (el_invariant_failed(__FILE__, __LINE__, "NEVER(" #x ")"), 1) : 0)
#endif

#endif
