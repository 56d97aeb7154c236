/* What the server layer's request-parsing tests share: the defaults a request is
 * parsed against, and the checks every refusal must pass. */
#ifndef ELLIOTT_TESTS_SERVER_TEST_UTIL_H
#define ELLIOTT_TESTS_SERVER_TEST_UTIL_H

#include <stdbool.h>
#include <string.h>

#include "server/server_internal.h"
#include "test.h"

/* The CLI's sampling defaults (temperature 1, top_p 1, no penalty, seed 42). */
static inline gen_params server_test_defaults(void)
{
    gen_params p;
    memset(&p, 0, sizeof p);
    p.sampling.temperature = 1.0f;
    p.sampling.top_p = 1.0f;
    p.sampling.repetition_penalty = 1.0f;
    p.sampling.seed = 42;
    return p;
}

/* Checks that a parse of body was refused (rc -1) with a 400 naming param (NULL: none).
 * Returns false when it was accepted, so the caller frees what was parsed. */
static inline bool server_test_refused(int rc, const api_error *e, const char *param, const char *body)
{
    CHECKF(rc == -1, "accepted: %s", body);
    if (rc != -1)
        return false;
    CHECK_EQ_INT(e->status, 400);
    if (param)
        CHECKF(!strcmp(e->param, param), "param '%s', want '%s' for %s", e->param, param, body);
    return true;
}

#endif
