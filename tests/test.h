/* A minimal test harness: CHECK macros that report and count failures, and
 * helpers for locating the shared golden data.
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

/* The shared reference data: $ELLIOTT_SHARED, else ../shared from the repository
 * root (tests run from the root). Returns NULL, saying so once, when absent. */
static inline const char *test_shared_dir(void)
{
    static int warned;
    const char *dir = getenv("ELLIOTT_SHARED");
    if (!dir || !*dir)
        dir = "../shared";
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/golden/README.md", dir);
    if (access(probe, R_OK) != 0) {
        if (!warned++)
            fprintf(stderr, "SKIP: golden data absent at %s (set ELLIOTT_SHARED)\n", dir);
        return NULL;
    }
    return dir;
}

/* Path to a file under the shared directory, in a static buffer; NULL if absent. */
static inline const char *test_shared_path(const char *rel)
{
    static char buf[4096];
    const char *dir = test_shared_dir();
    if (!dir)
        return NULL;
    snprintf(buf, sizeof buf, "%s/%s", dir, rel);
    return buf;
}

#endif
