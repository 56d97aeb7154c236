/* libFuzzer target for the JSON Schema compiler: any document either fails with a
 * message or compiles, quickly; along a path chosen by the input's bytes the masks are
 * right, and every text that ends is valid JSON (jansson parses it). */
#include <jansson.h>

#include "fuzz_grammar_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    el_err err;
    grammar *g = grammar_from_json_schema(fuzz_vocab(), (const char *)data, size, &err);
    if (!g) {
        fuzz_check(err.msg[0] != 0, "failure without a message");
        return 0;
    }
    size_t len;
    char *text = fuzz_walk(g, data, size, 48, &len);
    if (text) {
        json_error_t jerr;
        json_t *value = json_loadb(text, len, JSON_DECODE_ANY, &jerr);
        if (!value)
            fprintf(stderr, "not JSON: %s\n", text);
        fuzz_check(value != NULL, "a finished answer is not JSON");
        json_decref(value);
        free(text);
    }
    grammar_free(g);
    return 0;
}
