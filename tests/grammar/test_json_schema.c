/* JSON Schema: each keyword accepts valid JSON texts and refuses invalid ones (byte-wise
 * and token-wise with masks checked against the reference), and unsupported or bad
 * schemas are refused with the keyword and its JSON pointer. */
#include "grammar/grammar_internal.h"
#include "grammar_test_util.h"

static grammar_vocab *vocab;

static grammar *compile(const char *schema)
{
    el_err err;
    grammar *g = grammar_from_json_schema(vocab, schema, strlen(schema), &err);
    if (!g) {
        fprintf(stderr, "compile failed: %s\n  schema: %s\n", err.msg, schema);
        char *gbnf = json_schema_to_gbnf(schema, strlen(schema), &err);
        if (gbnf)
            fprintf(stderr, "%s\n", gbnf);
        free(gbnf);
    }
    return g;
}

static void expect(const char *schema, const char *const *yes, const char *const *no)
{
    grammar *g = compile(schema);
    CHECKF(g != NULL, "%s", schema);
    if (!g)
        return;
    for (; yes && *yes; yes++) {
        CHECKF(util_match_bytes(g, *yes, strlen(*yes)) == 1, "'%s' refused by %s", *yes, schema);
        CHECKF(util_match_tokens(vocab, g, *yes, strlen(*yes)) == 1, "tokens of '%s' refused by %s", *yes, schema);
    }
    for (; no && *no; no++)
        CHECKF(util_match_bytes(g, *no, strlen(*no)) == 0, "'%s' accepted by %s", *no, schema);
    grammar_free(g);
}

#define S(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_types(void)
{
    expect("{\"type\":\"string\"}", S("\"\"", "\"ab c\"", "\"\\n\\\"\\u00e9\"", "\"\xc3\xa9\"", "\"a\" "),
           S("\"a", "\"\\x\"", "\"\\ud800\"", "a", "\"\n\"", " \"a\""));
    expect("{\"type\":\"integer\"}", S("0", "-12", "1234567890123456"), S("01", "1.5", "-", "12345678901234567"));
    expect("{\"type\":\"number\"}", S("0", "-1.25", "3e+10", "2E-3"), S("1.", ".5", "+1", "1e"));
    expect("{\"type\":\"boolean\"}", S("true", "false"), S("True", "1"));
    expect("{\"type\":\"null\"}", S("null"), S("nil"));
    expect("{\"type\":[\"string\",\"null\"]}", S("null", "\"x\""), S("1"));
    expect("{}", S("{\"a\":[1,{\"b\":null}]}", "12", "\"s\""), S("{a:1}"));
    expect("true", S("[]"), S("]"));
}

static void test_whitespace_bounded(void)
{
    expect("{\"type\":\"array\"}", S("[ 1 ]", "[\n  1,\n  2\n]"),
           S("[  1]", "[\n                      1]", "[\t1]"));
}

static void test_objects(void)
{
    const char *s = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"},"
                    "\"c\":{\"type\":\"boolean\"}},\"required\":[\"b\"]}";
    expect(s, S("{\"b\":\"x\"}", "{\"a\":1,\"b\":\"x\"}", "{\"a\":1,\"b\":\"x\",\"c\":true}", "{\"b\":\"x\",\"c\":false}",
                "{ \"b\" : \"x\" }"),
           S("{}", "{\"a\":1}", "{\"b\":\"x\",\"a\":1}", "{\"b\":\"x\",\"d\":1}", "{\"b\":\"x\",}", "{\"b\":1}"));
    expect("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"additionalProperties\":{\"type\":"
           "\"string\"}}",
           S("{}", "{\"a\":1}", "{\"a\":1,\"z\":\"q\"}", "{\"z\":\"q\",\"y\":\"r\"}", "{\"ab\":\"q\"}"),
           S("{\"a\":\"q\"}", "{\"z\":1}", "{\"a\":1,\"a\":\"x\"}"));
    expect("{\"type\":\"object\",\"additionalProperties\":true}", S("{}", "{\"k\":[1]}"), S("[]"));
    /* extra keys never repeat a listed one (whose value would then be unchecked) */
    expect("{\"type\":\"object\",\"properties\":{\"a\\nb\":{\"type\":\"integer\"},\"ab\":{\"type\":\"integer\"},\"a\":{"
           "\"const\":1}},\"additionalProperties\":{\"type\":\"string\"}}",
           S("{\"a\\nb\":1,\"ab\":2,\"a\":1,\"abc\":\"x\",\"\":\"y\",\"b\":\"z\"}", "{\"aa\":\"q\"}"),
           S("{\"ab\":\"x\"}", "{\"x\":\"1\",\"a\":\"s\"}", "{\"a\nb\":\"s\"}", "{\"a\\nb\":\"s\"}"));
    expect("{\"type\":\"object\",\"properties\":{\"x\":{}},\"required\":[\"x\",\"y\"]}",
           S("{\"x\":1,\"y\":\"2\"}"), S("{\"x\":1}"));
    expect("{\"type\":\"object\",\"properties\":{\"a\\\"b\":{\"const\":1}},\"required\":[\"a\\\"b\"]}",
           S("{\"a\\\"b\":1}"), S("{\"a\"b\":1}"));
}

static void test_arrays(void)
{
    expect("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":1,\"maxItems\":3}",
           S("[1]", "[1,2,3]", "[ 1, 2 ]"), S("[]", "[1,2,3,4]", "[\"a\"]", "[1,]"));
    expect("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},{\"type\":\"integer\"}],\"items\":false}",
           S("[]", "[\"a\"]", "[\"a\",1]"), S("[1]", "[\"a\",1,2]"));
    expect("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"}],\"items\":{\"type\":\"null\"},"
           "\"minItems\":2}",
           S("[\"a\",null]", "[\"a\",null,null]"), S("[\"a\"]", "[null,null]"));
    expect("{\"type\":\"array\",\"maxItems\":0}", S("[]"), S("[1]"));
}

static void test_enum_const(void)
{
    expect("{\"enum\":[\"red\",\"green\",\"greenish\",1,null,{\"a\":[1]}]}",
           S("\"red\"", "\"green\"", "\"greenish\"", "1", "null", "{\"a\":[1]}"), S("\"gre\"", "\"blue\"", "2", "{}"));
    expect("{\"const\":\"x\\ny\"}", S("\"x\\ny\""), S("\"x\""));
    expect("{\"type\":\"string\",\"enum\":[\"a\",1]}", S("\"a\""), S("1"));
}

static void test_combinators(void)
{
    expect("{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"string\",\"maxLength\":2}]}", S("1", "\"ab\""),
           S("\"abc\"", "true"));
    expect("{\"oneOf\":[{\"type\":\"boolean\"},{\"type\":\"null\"}]}", S("true", "null"), S("1"));
    expect("{\"oneOf\":[{\"type\":\"object\",\"properties\":{\"k\":{\"const\":\"a\"},\"x\":{\"type\":\"integer\"}},"
           "\"required\":[\"k\",\"x\"]},{\"type\":\"object\",\"properties\":{\"k\":{\"enum\":[\"b\",\"c\"]}},"
           "\"required\":[\"k\"]}]}",
           S("{\"k\":\"a\",\"x\":1}", "{\"k\":\"c\"}"), S("{\"k\":\"a\"}", "{\"k\":\"d\"}"));
    expect("{\"allOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},\"required\":[\"a\"]},"
           "{\"properties\":{\"b\":{\"type\":\"string\"}}}]}",
           S("{\"a\":1}", "{\"a\":1,\"b\":\"x\"}"), S("{\"b\":\"x\"}", "{\"a\":1,\"c\":2}"));
}

static void test_refs(void)
{
    const char *tree = "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                       "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},"
                       "\"$ref\":\"#/$defs/node\"}";
    expect(tree, S("{\"v\":1}", "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[]},{\"v\":3}]}"), S("{\"kids\":[]}"));
    expect("{\"definitions\":{\"s\":{\"type\":\"string\"}},\"type\":\"array\",\"items\":{\"$ref\":\"#/definitions/"
           "s\"}}",
           S("[\"a\",\"b\"]"), S("[1]"));
    expect("{\"type\":\"object\",\"properties\":{\"next\":{\"$ref\":\"#\"}}}", S("{}", "{\"next\":{\"next\":{}}}"),
           S("{\"next\":1}"));
}

static void test_strings(void)
{
    expect("{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}", S("\"ab\"", "\"abc\"", "\"\xc3\xa9\xc3\xa9\"", "\"\\n\\t\""),
           S("\"a\"", "\"abcd\""));
    expect("{\"type\":\"string\",\"pattern\":\"^[a-z]+-[0-9]{2,3}$\"}", S("\"ab-12\"", "\"x-123\""),
           S("\"ab-1\"", "\"AB-12\"", "\"ab-1234\""));
    expect("{\"type\":\"string\",\"pattern\":\"^(ab|cd)*x?$\"}", S("\"\"", "\"abcdab\"", "\"cdx\""), S("\"abc\""));
    expect("{\"type\":\"string\",\"pattern\":\"\\\\d\"}", S("\"5\"", "\"a5b\""), S("\"ab\""));
    expect("{\"type\":\"string\",\"pattern\":\"^[^a]\\\"\\\\\\\\.$\"}", S("\"b\\\"\\\\x\"", "\"\\\"\\\"\\\\\\\\\""),
           S("\"a\\\"\\\\x\""));
    expect("{\"type\":\"string\",\"pattern\":\"^(a|a)*b$\"}", S("\"aaab\""), S("\"aa\""));
}

static void test_formats(void)
{
    expect("{\"type\":\"string\",\"format\":\"date\"}", S("\"2024-02-28\"", "\"1999-12-31\""),
           S("\"2024-02-30\"", "\"2024-13-01\"", "\"2024-04-31\"", "\"24-01-01\""));
    expect("{\"type\":\"string\",\"format\":\"time\"}", S("\"23:59:59Z\"", "\"01:02:03.5+02:00\""),
           S("\"24:00:00Z\"", "\"12:00\""));
    expect("{\"type\":\"string\",\"format\":\"date-time\"}", S("\"2024-01-02T03:04:05Z\""), S("\"2024-01-02 03:04:05Z\""));
    expect("{\"type\":\"string\",\"format\":\"uuid\"}", S("\"123e4567-e89b-12d3-a456-426614174000\""),
           S("\"123e4567e89b12d3a456426614174000\""));
    expect("{\"type\":\"string\",\"format\":\"email\"}", S("\"a.b@example.com\""), S("\"a@b\"", "\"@x.com\""));
}

static void test_numeric_bounds(void)
{
    expect("{\"type\":\"integer\",\"minimum\":-5,\"maximum\":120}", S("-5", "0", "7", "99", "120"),
           S("-6", "121", "200", "1000", "-10"));
    expect("{\"type\":\"integer\",\"exclusiveMinimum\":10}", S("11", "99999"), S("10", "-1", "0"));
    expect("{\"type\":\"integer\",\"exclusiveMaximum\":0}", S("-1", "-99"), S("0", "1"));
    expect("{\"type\":\"integer\",\"minimum\":1000,\"maximum\":1234}", S("1000", "1099", "1234", "1200"),
           S("999", "1235", "1300", "2000"));
    expect("{\"type\":\"number\",\"minimum\":0,\"maximum\":1}", S("0", "1", "0.5", "0.999"), S("-0.5", "1.5", "2"));
    expect("{\"type\":\"number\",\"minimum\":-2.5,\"exclusiveMaximum\":3}", S("-2", "-1.5", "2", "1.99"),
           S("3", "-3", "3.0", "-2.75"));
}

static void test_errors(void)
{
    static const struct {
        const char *schema, *want;
    } cases[] = {
        {"{\"type\":\"integer\",\"multipleOf\":3}", "unsupported keyword 'multipleOf' at '/multipleOf'"},
        {"{\"properties\":{\"a\":{\"type\":\"array\",\"uniqueItems\":true}}}", "'uniqueItems' at '/properties/a/uniqueItems'"},
        {"{\"not\":{}}", "'not'"},
        {"{\"if\":{}}", "'if'"},
        {"{\"type\":\"object\",\"patternProperties\":{}}", "'patternProperties'"},
        {"{\"type\":\"object\",\"minProperties\":1}", "'minProperties'"},
        {"{\"$ref\":\"#/$defs/missing\"}", "cannot resolve '$ref'"},
        {"{\"$ref\":\"http://example.com/s.json\"}", "cannot resolve"},
        {"{\"type\":\"strin\"}", "unknown type 'strin'"},
        {"{\"type\":\"string\",\"format\":\"hostname-ish\"}", "unsupported format"},
        {"{\"type\":\"string\",\"pattern\":\"(?=a)\"}", "lookaround"},
        {"{\"type\":\"string\",\"pattern\":\"(a*)*\"}", "can match the empty string"},
        {"{\"type\":\"string\",\"pattern\":\"a\\\\1\"}", "unsupported escape"},
        {"{\"type\":\"array\",\"minItems\":100000}", "'minItems' above 1000"},
        {"{\"type\":\"string\",\"minLength\":5,\"maxLength\":2}", "minLength is above maxLength"},
        {"{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "no integer satisfies"},
        {"{\"enum\":[]}", "no values"},
        {"{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "'oneOf' branches 0 and 1 may both match"},
        {"{\"oneOf\":[{\"type\":\"object\"},{\"properties\":{\"a\":{}}}]}", "may both match"},
        {"false", "allows no value"},
        {"{\"type\":", "not valid JSON"},
        {"{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}", "left-recursive"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        el_err err = {{0}};
        grammar *g = grammar_from_json_schema(vocab, cases[i].schema, strlen(cases[i].schema), &err);
        CHECKF(g == NULL, "%s", cases[i].schema);
        CHECKF(strstr(err.msg, cases[i].want) != NULL, "'%s': got '%s', want '%s'", cases[i].schema, err.msg,
               cases[i].want);
        grammar_free(g);
    }
}

static void test_hostile(void)
{
    /* deep nesting */
    char *deep = malloc(100000);
    size_t n = 0;
    for (int i = 0; i < 2000; i++)
        n += (size_t)sprintf(deep + n, "{\"type\":\"array\",\"items\":");
    n += (size_t)sprintf(deep + n, "{}");
    for (int i = 0; i < 2000; i++)
        deep[n++] = '}';
    deep[n] = 0;
    el_err err;
    CHECK(grammar_from_json_schema(vocab, deep, n, &err) == NULL);
    CHECK(strstr(err.msg, "nested deeper") != NULL);
    free(deep);
    /* a 100k-entry enum: refused or compiled, quickly either way */
    char *big = malloc(2000000);
    n = (size_t)sprintf(big, "{\"enum\":[");
    for (int i = 0; i < 100000; i++)
        n += (size_t)sprintf(big + n, "%s\"value-%d\"", i ? "," : "", i);
    n += (size_t)sprintf(big + n, "]}");
    grammar *g = grammar_from_json_schema(vocab, big, n, &err);
    CHECK(g != NULL || strstr(err.msg, "larger") || strstr(err.msg, "longer") || strstr(err.msg, "elements"));
    if (g) {
        CHECK(util_match_bytes(g, "\"value-99999\"", 13) == 1);
        CHECK(util_match_bytes(g, "\"value-100000\"", 14) == 0);
    }
    grammar_free(g);
    free(big);
    /* exponential regexes and nested counts */
    const char *hostile[] = {
        "{\"type\":\"string\",\"pattern\":\"^((a|a)*|(a|aa)*)*b$\"}",
        "{\"type\":\"string\",\"pattern\":\"^((a{1000}){1000}){1000}$\"}",
        "{\"type\":\"string\",\"maxLength\":1000000}",
        "{\"type\":\"array\",\"maxItems\":1000000000}",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        g = grammar_from_json_schema(vocab, hostile[i], strlen(hostile[i]), &err);
        grammar_free(g); /* either way is fine: it must return, bounded */
        CHECK(1);
    }
}

static void test_json_object(void)
{
    el_err err;
    grammar *g = grammar_json_object(vocab, &err);
    CHECK(g != NULL);
    if (!g)
        return;
    const char *yes[] = {"{}", "{\"a\":1}", "{\"a\":{\"b\":[1,\"x\",null,true]}}", NULL};
    const char *no[] = {"[]", "1", "\"s\"", "{", NULL};
    for (int i = 0; yes[i]; i++)
        CHECK(util_match_tokens(vocab, g, yes[i], strlen(yes[i])) == 1);
    for (int i = 0; no[i]; i++)
        CHECK(util_match_bytes(g, no[i], strlen(no[i])) == 0);
    grammar_free(g);
}

int main(void)
{
    vocab = util_vocab();
    if (!vocab)
        return 1;
    RUN(test_types);
    RUN(test_whitespace_bounded);
    RUN(test_objects);
    RUN(test_arrays);
    RUN(test_enum_const);
    RUN(test_combinators);
    RUN(test_refs);
    RUN(test_strings);
    RUN(test_formats);
    RUN(test_numeric_bounds);
    RUN(test_errors);
    RUN(test_hostile);
    RUN(test_json_object);
    grammar_vocab_free(vocab);
    return test_summary();
}
