/* A minimal test harness: CHECK macros that report and count failures, and
 * where the reference data lies.
 *
 * A test file defines tests as `static void test_x(void)` and lists them in main
 * with RUN(test_x); main returns test_summary(). */
#ifndef ELLIOTT_TEST_H
#define ELLIOTT_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int test_failures;
static int test_checks;
static const char *test_current = "";

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        test_checks++;                                                                        \
        if (!(cond)) {                                                                        \
            test_failures++;                                                                  \
            fprintf(stderr, "FAIL %s:%d in %s: %s\n", __FILE__, __LINE__, test_current, #cond); \
        }                                                                                     \
    } while (0)

#define CHECKF(cond, ...)                                                                     \
    do {                                                                                      \
        test_checks++;                                                                        \
        if (!(cond)) {                                                                        \
            test_failures++;                                                                  \
            fprintf(stderr, "FAIL %s:%d in %s: %s: ", __FILE__, __LINE__, test_current, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
        }                                                                                     \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                    \
    CHECKF((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))

#define CHECK_NEAR(a, b, tol)                                                                 \
    CHECKF(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %g)", (double)(a),    \
           (double)(b), (double)(tol))

#define RUN(fn)                                                                               \
    do {                                                                                      \
        test_current = #fn;                                                                   \
        int before_ = test_failures;                                                          \
        fn();                                                                                 \
        fprintf(stderr, "%s %s\n", test_failures == before_ ? "  ok  " : "  FAIL", #fn);     \
    } while (0)

static inline int test_summary(void)
{
    fprintf(stderr, "%d checks, %d failures\n", test_checks, test_failures);
    return test_failures ? 1 : 0;
}

/* The repository's reference data (tests/data/README.md); tests run from the
 * repository root, so paths are relative to it. */
#define TEST_DATA "tests/data/"

#endif
