/* libFuzzer target for the GBNF parser and the matcher: any text either fails with a
 * message or compiles, quickly; a compiled grammar passes fuzz_walk's checks along a
 * path chosen by the input's own bytes. */
#include "fuzz_grammar_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    el_err err;
    grammar *g = grammar_from_gbnf(fuzz_vocab(), (const char *)data, size, &err);
    if (!g) {
        fuzz_check(err.msg[0] != 0, "failure without a message");
        return 0;
    }
    size_t len;
    free(fuzz_walk(g, data, size, 24, &len));
    grammar_free(g);
    return 0;
}
