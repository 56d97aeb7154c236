/* GBNF: each construct accepts what it should and refuses the rest (byte-wise and
 * token-wise, masks equal to the reference), and bad grammars fail with a position. */
#include "grammar_test_util.h"

static grammar_vocab *vocab;

static grammar *compile(const char *text)
{
    el_err err;
    grammar *g = grammar_from_gbnf(vocab, text, strlen(text), &err);
    if (!g)
        fprintf(stderr, "compile failed: %s\n  grammar: %s\n", err.msg, text);
    return g;
}

/* Each string in yes[] is accepted, each in no[] refused. */
static void expect(const char *text, const char *const *yes, const char *const *no)
{
    grammar *g = compile(text);
    CHECKF(g != NULL, "%s", text);
    if (!g)
        return;
    for (; yes && *yes; yes++) {
        CHECKF(util_match_bytes(g, *yes, strlen(*yes)) == 1, "bytes of '%s' refused by %s", *yes, text);
        CHECKF(util_match_tokens(vocab, g, *yes, strlen(*yes)) == 1, "tokens of '%s' refused by %s", *yes, text);
    }
    for (; no && *no; no++) {
        CHECKF(util_match_bytes(g, *no, strlen(*no)) == 0, "'%s' accepted by %s", *no, text);
        CHECKF(util_match_tokens(vocab, g, *no, strlen(*no)) == 0, "tokens of '%s' accepted by %s", *no, text);
    }
    grammar_free(g);
}

#define S(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_literals(void)
{
    expect("root ::= \"abc\"", S("abc"), S("", "ab", "abcd", "abd"));
    expect("root ::= \"a\\n\\t\\\\\\\"\\x41\\u00e9\"", S("a\n\t\\\"A\xc3\xa9"), S("a"));
    expect("root ::= \"\xe2\x82\xac\"  # a comment\n", S("\xe2\x82\xac"), S("\xe2\x82", "E"));
    expect("root ::= \"\"", S(""), S("a"));
}

static void test_alternation_and_groups(void)
{
    expect("root ::= \"a\" | \"bc\" | \"\"", S("a", "bc", ""), S("b", "abc"));
    expect("root ::= (\"a\" | \"b\") (\"c\" | \"d\")", S("ac", "bd"), S("a", "cd"));
    expect("root ::= x y\nx ::= \"a\"\ny ::= \"b\" | x", S("ab", "aa"), S("ba"));
    expect("root ::= \"a\"\n   | \"b\"\n", S("a", "b"), S("ab"));
    expect("root ::= (\"a\"\n  | \"b\")\n", S("a", "b"), S("ab"));
}

static void test_classes(void)
{
    expect("root ::= [a-c0-9_]", S("a", "c", "5", "_"), S("d", "", "ab", "A"));
    expect("root ::= [^a-c]", S("d", "\xc3\xa9", "\xf0\x9f\x98\x80", "\n"), S("a", "b", "\xc3", "\xff"));
    expect("root ::= [\xc3\xa0-\xc3\xbf]", S("\xc3\xa9", "\xc3\xa0"), S("\xc3\x9f", "a"));
    expect("root ::= [\\]\\-^]", S("]", "-", "^"), S("a"));
    expect("root ::= . .", S("ab", "\xe2\x82\xac\xc3\xa9", "\x01\x7f"), S("a", "\xed\xa0\x80x", "\xc0\x80"));
    expect("root ::= [^\"\\\\]*", S("", "abc", "\xc3\xa9t\xc3\xa9"), S("\"", "a\\"));
}

static void test_repetitions(void)
{
    expect("root ::= \"a\"*", S("", "a", "aaaa"), S("b", "ab"));
    expect("root ::= \"ab\"+", S("ab", "abab"), S("", "aba"));
    expect("root ::= \"a\"? \"b\"", S("b", "ab"), S("aab", "a"));
    expect("root ::= [0-9]{3}", S("123"), S("12", "1234"));
    expect("root ::= [0-9]{2,}", S("12", "12345"), S("1"));
    expect("root ::= [0-9]{1,3}", S("1", "123"), S("", "1234"));
    expect("root ::= [0-9]{0,2} \"x\"", S("x", "1x", "12x"), S("123x"));
    expect("root ::= (\"a\" \"b\"?){2}", S("aa", "aba", "abab", "aab"), S("a", "abb"));
}

static void test_recursion(void)
{
    expect("root ::= \"(\" root \")\" | \"x\"", S("x", "(x)", "(((x)))"), S("()", "(x", "x)"));
    expect("root ::= item (\",\" item)*\nitem ::= [a-z]+", S("a", "ab,c,def"), S("a,", ",a"));
}

static void test_json_like(void)
{
    const char *json = "root ::= value\n"
                       "value ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
                       "object ::= \"{\" ( string \":\" value (\",\" string \":\" value)* )? \"}\"\n"
                       "array ::= \"[\" ( value (\",\" value)* )? \"]\"\n"
                       "string ::= \"\\\"\" ( [^\"\\\\] | \"\\\\\" [\"\\\\nt] )* \"\\\"\"\n"
                       "number ::= \"-\"? [0-9]+ (\".\" [0-9]+)?\n";
    /* deep nesting: stacks far taller than the frames a token check looks at first */
    char deep[1024];
    size_t n = 0;
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"a\":[");
    n += (size_t)snprintf(deep + n, sizeof deep - n, "\"x\"");
    for (int i = 0; i < 40; i++)
        n += (size_t)snprintf(deep + n, sizeof deep - n, i % 2 ? ",{}]}" : "]}");
    expect(json, S(deep), S("{\"a\":[{\"a\":[\"x\"]}"));
    expect(json,
           S("{}", "{\"a\":1}", "[true,null,\"x\\n\"]", "{\"ab\":{\"abc\":[12,-1,0.5]}}", "\"\xc3\xa9\xe2\x82\xac\""),
           S("{", "{\"a\"}", "[1,]", "\"\\x\"", "01.", "{\"a\xc3\":1}"));
}

/* The layout llama.cpp's own grammars use: rules over several lines inside groups, '|'
 * at line ends, comments, \x escapes in classes. */
static void test_llama_cpp_style(void)
{
    const char *json = "root   ::= object\n"
                       "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
                       "\n"
                       "object ::=\n"
                       "  \"{\" ws (\n"
                       "            string \":\" ws value\n"
                       "    (\",\" ws string \":\" ws value)*\n"
                       "  )? \"}\" ws\n"
                       "\n"
                       "array  ::=\n"
                       "  \"[\" ws (\n"
                       "            value\n"
                       "    (\",\" ws value)*\n"
                       "  )? \"]\" ws\n"
                       "\n"
                       "string ::=\n"
                       "  \"\\\"\" (\n"
                       "    [^\"\\\\\\x7F\\x00-\\x1F] |\n"
                       "    \"\\\\\" ([\"\\\\bfnrt] | \"u\" [0-9a-fA-F]{4}) # escapes\n"
                       "  )* \"\\\"\" ws\n"
                       "\n"
                       "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws\n"
                       "\n"
                       "# Optional space: by convention, applied in this grammar after literal chars when allowed\n"
                       "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";
    expect(json, S("{}", "{ \"a\": [1, 2.5e+3, \"x\\u00e9\"] }", "{\"k\":{\"n\":null}}\n  "),
           S("[]", "{\"a\":01}", "{\"a\" 1}", "{\"\x7f\":1}"));
}

static void test_errors(void)
{
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"root ::= foo", "line 1, column 10: undefined rule 'foo'"},
        {"x ::= \"a\"", "no rule named 'root'"},
        {"root ::= root \"a\" | \"b\"", "left-recursive"},
        {"root ::= a\na ::= b? a \"x\" | \"y\"\nb ::= \"z\"", "left-recursive"},
        {"root ::= (\"a\"?)*", "line 1, column 16: the repeated item can match nothing"},
        {"root ::= \"abc", "line 1, column 10: unterminated literal"},
        {"root ::= [a-", "unterminated character class"},
        {"root ::= [z-a]", "out of order"},
        {"root ::= \"a\"{3,2}", "maximum below minimum"},
        {"root ::= \"a\"{99999}", "repetition count above"},
        {"root ::= ( \"a\"", "unclosed '('"},
        {"root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule 'root' defined twice"},
        {"root ::= \"\\q\"", "unknown escape"},
        {"root ::= \"a\" )", "unexpected ')'"},
        {"root := \"a\"", "expected '::='"},
        {"root ::= *", "without an item"},
        {"root ::= \"\\ud800\"", "not a Unicode scalar value"},
        {"root ::= \"\xff\"", "invalid UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        el_err err = {{0}};
        grammar *g = grammar_from_gbnf(vocab, cases[i].text, strlen(cases[i].text), &err);
        CHECKF(g == NULL, "%s", cases[i].text);
        CHECKF(strstr(err.msg, cases[i].want) != NULL, "'%s': got '%s', want '%s'", cases[i].text, err.msg,
               cases[i].want);
        grammar_free(g);
    }
    /* bounds: deep nesting and size */
    char deep[400];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "root ::= ");
    for (int i = 0; i < 70; i++)
        deep[n++] = '(';
    deep[n++] = '"', deep[n++] = 'a', deep[n++] = '"';
    for (int i = 0; i < 70; i++)
        deep[n++] = ')';
    deep[n] = 0;
    el_err err;
    CHECK(grammar_from_gbnf(vocab, deep, n, &err) == NULL);
    CHECK(strstr(err.msg, "nested deeper") != NULL);
    const char *big = "root ::= \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"{10000}";
    CHECK(grammar_from_gbnf(vocab, big, strlen(big), &err) == NULL);
    CHECK(strstr(err.msg, "elements") != NULL);
}

static void test_matcher_states(void)
{
    grammar *g = compile("root ::= \"a\" \"b\"?");
    if (!g)
        return;
    grammar_matcher *m = grammar_matcher_new(g, NULL);
    CHECK(!grammar_matcher_can_end(m));
    CHECK(!grammar_matcher_must_end(m));
    CHECK_EQ_INT(grammar_matcher_accept_token(m, UTIL_END), -1);
    CHECK_EQ_INT(grammar_matcher_accept_token(m, UTIL_NEVER), -1);
    CHECK_EQ_INT(grammar_matcher_accept_bytes(m, "x", 1), -1);
    CHECK_EQ_INT(grammar_matcher_accept_bytes(m, "a", 1), 0);
    CHECK(grammar_matcher_can_end(m));
    CHECK(!grammar_matcher_must_end(m));
    CHECK_EQ_INT(grammar_matcher_accept_bytes(m, "bb", 2), -1); /* unchanged on refusal */
    CHECK_EQ_INT(grammar_matcher_accept_bytes(m, "b", 1), 0);
    CHECK(grammar_matcher_must_end(m));
    size_t words = grammar_mask_words(vocab);
    uint32_t *mask = calloc(words, 4);
    CHECK_EQ_INT(grammar_matcher_fill_mask(m, mask), 1);
    CHECK(util_bit(mask, UTIL_END));
    CHECK_EQ_INT(grammar_matcher_accept_token(m, UTIL_END), 0);
    CHECK(grammar_matcher_finished(m));
    CHECK_EQ_INT(grammar_matcher_fill_mask(m, mask), 0);
    CHECK_EQ_INT(grammar_matcher_accept_bytes(m, "", 0), -1);
    free(mask);
    grammar_matcher_free(m);
    grammar_free(g);
}

static void test_split_code_points(void)
{
    /* "a\xc3" then "\xa9z": a token that ends inside a code point, completed by the next */
    grammar *g = compile("root ::= \"a\" [^a-z] \"z\"");
    if (!g)
        return;
    grammar_matcher *m = grammar_matcher_new(g, NULL);
    size_t words = grammar_mask_words(vocab);
    uint32_t *mask = calloc(words, 4);
    grammar_matcher_fill_mask(m, mask);
    int a_c3 = 256 + 11, a9_z = 256 + 12;
    CHECK(util_bit(mask, a_c3));
    CHECK_EQ_INT(grammar_matcher_accept_token(m, a_c3), 0);
    grammar_matcher_fill_mask(m, mask);
    CHECK(util_bit(mask, a9_z));
    CHECK(util_bit(mask, 0xa9));
    CHECK(!util_bit(mask, 'z'));
    CHECK(!util_bit(mask, 0xc3));
    CHECK_EQ_INT(grammar_matcher_accept_token(m, a9_z), 0);
    CHECK(grammar_matcher_must_end(m));
    free(mask);
    grammar_matcher_free(m);
    grammar_free(g);
}

int main(void)
{
    vocab = util_vocab();
    if (!vocab)
        return 1;
    RUN(test_literals);
    RUN(test_alternation_and_groups);
    RUN(test_classes);
    RUN(test_repetitions);
    RUN(test_recursion);
    RUN(test_json_like);
    RUN(test_llama_cpp_style);
    RUN(test_errors);
    RUN(test_matcher_states);
    RUN(test_split_code_points);
    grammar_vocab_free(vocab);
    return test_summary();
}
