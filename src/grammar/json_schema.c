/* JSON Schema to GBNF.
 *
 * Every schema becomes a rule rN whose sentences are the JSON texts valid against it,
 * each followed by bounded whitespace (`space`). The translation only ever narrows:
 * where a keyword cannot be expressed exactly (number bounds with fractions, oneOf,
 * very long counts) the grammar admits a subset of the valid values, never an invalid
 * one; a keyword it cannot honour at all is refused with its JSON pointer. */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar_internal.h"

enum {
    MAX_COUNT = 1000,            /* minItems/minLength above this are refused; max* are lowered to it */
    MAX_INT_DIGITS = 16,         /* digits of an unbounded integer part */
    MAX_FRACTION_DIGITS = 16,
    MAX_REFS = 4096,
    MAX_POINTER = 512
};
#define MAX_INT_VALUE 9999999999999999LL /* 16 digits */

/* ---- growable text -------------------------------------------------------------------------- */

typedef struct strbuf {
    char *s;
    size_t n, cap;
    bool oom;
} strbuf;

static void sb_putn(strbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *t = realloc(b->s, cap);
        if (!t) {
            b->oom = true;
            return;
        }
        b->s = t;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_puts(strbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        sb_putn(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_putn(b, big, (size_t)n);
    free(big);
}

/* A GBNF literal for bytes (escaping quotes, backslashes and control bytes). */
static void sb_literal(strbuf *b, const char *s, size_t n)
{
    sb_putn(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            sb_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            sb_printf(b, "\\x%02x", c);
        else
            sb_putn(b, (const char *)&c, 1);
    }
    sb_putn(b, "\"", 1);
}

/* ---- the compiler --------------------------------------------------------------------------- */

typedef struct ref_memo {
    char *pointer;
    unsigned rule;
} ref_memo;

typedef struct compiler {
    json_t *root;
    strbuf out;
    el_err *err;
    bool failed;
    unsigned n_rules;
    ref_memo *refs;
    size_t n_refs;
} compiler;

static int fail(compiler *c, const char *ptr, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(compiler *c, const char *ptr, const char *fmt, ...)
{
    if (c->failed)
        return -1;
    c->failed = true;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return el_fail(c->err, "json schema: %s at '%s'", msg, *ptr ? ptr : "#");
}

/* out = parent + "/" + key, the key escaped as JSON pointers want (cut to fit). */
static void child_ptr(char *out, const char *parent, const char *key)
{
    size_t n = strnlen(parent, MAX_POINTER - 1);
    memmove(out, parent, n);
    if (n + 1 < MAX_POINTER)
        out[n++] = '/';
    for (const char *s = key; *s && n + 3 < MAX_POINTER; s++) {
        if (*s == '~') {
            out[n++] = '~', out[n++] = '0';
        } else if (*s == '/') {
            out[n++] = '~', out[n++] = '1';
        } else {
            out[n++] = *s;
        }
    }
    out[n] = 0;
}

static void child_index(char *out, const char *parent, const char *key, size_t i)
{
    char tmp[MAX_POINTER], idx[24];
    child_ptr(tmp, parent, key);
    snprintf(idx, sizeof idx, "%zu", i);
    child_ptr(out, tmp, idx);
}

/* Starts rule `id`'s definition; the caller appends the body and a newline. */
static void rule_begin(compiler *c, unsigned id)
{
    sb_printf(&c->out, "r%u ::= ", id);
}

/* Writes rule id as the alternatives gathered in body (built while visiting its
 * children, which write their own rules first), and releases body. */
static void rule_from_body(compiler *c, unsigned id, strbuf *body)
{
    rule_begin(c, id);
    sb_putn(&c->out, body->s, body->n);
    sb_puts(&c->out, "\n");
    c->out.oom |= body->oom;
    free(body->s);
}

static unsigned new_rule(compiler *c)
{
    return c->n_rules++;
}

/* The shared rules every schema grammar may use. */
static const char *const common_rules =
    "space ::= | \" \" | \"\\n\" [ \\t]{0,20}\n"
    "char ::= [^\"\\\\\\x7f\\x00-\\x1f] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-CeEfF] hex hex hex | [dD] "
    "[0-7] hex hex))\n"
    "hex ::= [0-9a-fA-F]\n"
    "string ::= \"\\\"\" char* \"\\\"\" space\n"
    "integral ::= \"0\" | [1-9] [0-9]{0,15}\n"
    "integer ::= \"-\"? integral space\n"
    "number ::= \"-\"? integral (\".\" [0-9]{1,16})? ([eE] [-+]? [0-9]{1,2})? space\n"
    "boolean ::= (\"true\" | \"false\") space\n"
    "null ::= \"null\" space\n"
    "value ::= object | array | string | number | boolean | null\n"
    "object ::= \"{\" space (string \":\" space value (\",\" space string \":\" space value)*)? \"}\" space\n"
    "array ::= \"[\" space (value (\",\" space value)*)? \"]\" space\n"
    "plainchar ::= [^\"\\\\\\x7f\\x00-\\x1f]\n"
    "jsonchar ::= plainchar | \"\\\\\\\"\" | \"\\\\\\\\\" | \"\\\\t\"\n";

static int visit(compiler *c, json_t *s, const char *ptr, int depth);
static bool has_any(json_t *s, const char *const *keys);

/* ---- keywords ------------------------------------------------------------------------------- */

static const char *const annotations[] = {
    "title", "description", "examples", "default", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "$anchor", "contentMediaType", "contentEncoding", "discriminator", "$defs", "definitions",
    NULL};
static const char *const supported[] = {
    "type", "properties", "required", "additionalProperties", "enum", "const", "anyOf", "oneOf", "allOf",
    "$ref", "items", "prefixItems", "minItems", "maxItems", "minLength", "maxLength", "pattern", "format",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", NULL};

static bool in_list(const char *const *list, const char *k)
{
    for (; *list; list++)
        if (!strcmp(*list, k))
            return true;
    return false;
}

static int check_keywords(compiler *c, json_t *s, const char *ptr)
{
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v)
    {
        if (in_list(annotations, k) || in_list(supported, k))
            continue;
        char p[MAX_POINTER];
        child_ptr(p, ptr, k);
        return fail(c, p, "unsupported keyword '%s'", k);
    }
    return 0;
}

/* Constraining keywords other than those listed (annotations never count). */
static const char *other_constraint(json_t *s, const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v)
    {
        if (!in_list(annotations, k) && !in_list(allowed, k))
            return k;
    }
    return NULL;
}

/* ---- counts and numbers --------------------------------------------------------------------- */

/* A non-negative integer keyword; -1 when absent. */
static long count_kw(compiler *c, json_t *s, const char *key, const char *ptr, bool is_min)
{
    json_t *v = json_object_get(s, key);
    if (!v)
        return -1;
    char p[MAX_POINTER];
    child_ptr(p, ptr, key);
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : -1;
    if (!json_is_number(v) || d < 0 || d != floor(d))
        return fail(c, p, "'%s' must be a non-negative integer", key), -2;
    if (d > MAX_COUNT) {
        if (is_min)
            return fail(c, p, "'%s' above %d is not supported", key, MAX_COUNT), -2;
        return MAX_COUNT; /* a narrower maximum admits only valid values */
    }
    return (long)d;
}

static void digits_of(long long v, char *out)
{
    snprintf(out, 24, "%lld", v);
}

/* Same-length decimal strings a <= b: the numbers between them. */
static void same_len_range(strbuf *b, const char *lo, const char *hi)
{
    size_t n = strlen(lo);
    if (!n)
        return;
    if (lo[0] == hi[0]) {
        sb_printf(b, "\"%c\" ", lo[0]);
        same_len_range(b, lo + 1, hi + 1);
        return;
    }
    bool lo_zeros = strspn(lo + 1, "0") == n - 1, hi_nines = strspn(hi + 1, "9") == n - 1;
    char a = lo[0], z = hi[0];
    sb_puts(b, "(");
    bool first = true;
    if (!lo_zeros) {
        char nines[24];
        memset(nines, '9', n - 1);
        nines[n - 1] = 0;
        sb_printf(b, "\"%c\" ", a);
        same_len_range(b, lo + 1, nines);
        a++;
        first = false;
    }
    char mid_hi = hi_nines ? z : (char)(z - 1);
    if (a <= mid_hi) {
        sb_printf(b, "%s[%c-%c]", first ? "" : " | ", a, mid_hi);
        if (n > 1)
            sb_printf(b, " [0-9]{%zu}", n - 1);
        first = false;
    }
    if (!hi_nines) {
        char zeros[24];
        memset(zeros, '0', n - 1);
        zeros[n - 1] = 0;
        sb_printf(b, "%s\"%c\" ", first ? "" : " | ", z);
        same_len_range(b, zeros, hi + 1);
    }
    sb_puts(b, ")");
}

/* Decimal integers in [lo, hi], 0 <= lo <= hi, without leading zeros. */
static void uint_range(strbuf *b, long long lo, long long hi)
{
    sb_puts(b, "(");
    bool first = true;
    long long p = 1;
    for (int d = 1; d <= 17 && (d == 1 || p <= hi); d++, p *= 10) {
        long long a = d == 1 ? 0 : p, z = p * 10 - 1;
        if (a < lo)
            a = lo;
        if (z > hi)
            z = hi;
        if (a > z)
            continue;
        char sa[24], sz[24];
        digits_of(a, sa);
        digits_of(z, sz);
        if (!first)
            sb_puts(b, " | ");
        sb_puts(b, "(");
        same_len_range(b, sa, sz);
        sb_puts(b, ")");
        first = false;
    }
    sb_puts(b, ")");
}

/* Integers in [lo, hi] (both within +-MAX_INT_VALUE), lo <= hi. */
static void int_range(strbuf *b, long long lo, long long hi)
{
    bool neg = lo < 0, pos = hi >= 0;
    if (neg && pos)
        sb_puts(b, "(");
    if (neg) {
        sb_puts(b, "\"-\" ");
        uint_range(b, hi < -1 ? -hi : 1, -lo);
    }
    if (neg && pos)
        sb_puts(b, " | ");
    if (pos)
        uint_range(b, lo > 0 ? lo : 0, hi);
    if (neg && pos)
        sb_puts(b, ")");
}

typedef struct bound {
    bool set, exclusive;
    double value;
} bound;

static int read_bounds(compiler *c, json_t *s, const char *ptr, bound *lo, bound *hi)
{
    *lo = (bound){0};
    *hi = (bound){0};
    static const char *const keys[] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    for (int i = 0; i < 4; i++) {
        json_t *v = json_object_get(s, keys[i]);
        if (!v)
            continue;
        char p[MAX_POINTER];
        child_ptr(p, ptr, keys[i]);
        bound *bd = i < 2 ? lo : hi;
        if (json_is_boolean(v) && (i == 1 || i == 3)) { /* draft 4: modifies minimum/maximum */
            if (json_is_true(v))
                bd->exclusive = true;
            continue;
        }
        if (!json_is_number(v))
            return fail(c, p, "'%s' must be a number", keys[i]);
        double d = json_number_value(v);
        if (!isfinite(d))
            return fail(c, p, "'%s' must be finite", keys[i]);
        bool excl = i == 1 || i == 3;
        /* keep the tighter of minimum and exclusiveMinimum */
        if (!bd->set || (i < 2 ? d > bd->value || (d == bd->value && excl) : d < bd->value || (d == bd->value && excl))) {
            bd->value = d;
            bd->exclusive = excl || (bd->set && bd->exclusive && d == bd->value);
            bd->set = true;
        }
    }
    return 0;
}

/* The least integer the lower bound allows, the greatest the upper allows (clamped to
 * the digits a grammar number may have). */
static long long int_low(const bound *lo)
{
    if (!lo->set)
        return -MAX_INT_VALUE;
    double v = lo->exclusive ? floor(lo->value) + 1 : ceil(lo->value);
    return v < -(double)MAX_INT_VALUE ? -MAX_INT_VALUE : v > (double)MAX_INT_VALUE ? MAX_INT_VALUE + 1 : (long long)v;
}

static long long int_high(const bound *hi)
{
    if (!hi->set)
        return MAX_INT_VALUE;
    double v = hi->exclusive ? ceil(hi->value) - 1 : floor(hi->value);
    return v > (double)MAX_INT_VALUE ? MAX_INT_VALUE : v < -(double)MAX_INT_VALUE ? -MAX_INT_VALUE - 1 : (long long)v;
}

static int emit_integer(compiler *c, json_t *s, const char *ptr, unsigned id)
{
    bound lo, hi;
    if (read_bounds(c, s, ptr, &lo, &hi) < 0)
        return -1;
    rule_begin(c, id);
    if (!lo.set && !hi.set) {
        sb_puts(&c->out, "integer\n");
        return 0;
    }
    long long a = int_low(&lo), z = int_high(&hi);
    if (a > z)
        return fail(c, ptr, "no integer satisfies the bounds");
    int_range(&c->out, a, z);
    sb_puts(&c->out, " space\n");
    return 0;
}

/* Numbers between bounds: the integers in range, and I.F where every value of the form
 * lies inside the bounds (so some valid fractions may be left out, none invalid let in). */
static int emit_number(compiler *c, json_t *s, const char *ptr, unsigned id)
{
    bound lo, hi;
    if (read_bounds(c, s, ptr, &lo, &hi) < 0)
        return -1;
    rule_begin(c, id);
    if (!lo.set && !hi.set) {
        sb_puts(&c->out, "number\n");
        return 0;
    }
    strbuf *b = &c->out;
    bool any = false;
    sb_puts(b, "(");
    long long a = int_low(&lo), z = int_high(&hi);
    if (a <= z) {
        int_range(b, a, z);
        any = true;
    }
    /* non-negative I.F: x in [I, I+1) */
    long long pa = a > 0 ? a : 0, pz;
    if (!hi.set)
        pz = MAX_INT_VALUE;
    else
        pz = (long long)fmin((double)MAX_INT_VALUE, hi.exclusive ? ceil(hi.value) - 2 : floor(hi.value) - 1);
    if (pa <= pz) {
        sb_printf(b, "%s", any ? " | " : "");
        uint_range(b, pa, pz);
        sb_printf(b, " \".\" [0-9]{1,%d}", MAX_FRACTION_DIGITS);
        any = true;
    }
    /* negative -I.F: x in (-(I+1), -I] */
    long long na, nz;
    if (!hi.set)
        na = 0;
    else
        na = (long long)fmax(0, hi.exclusive ? floor(-hi.value) + 1 : ceil(-hi.value));
    if (!lo.set)
        nz = MAX_INT_VALUE;
    else
        nz = (long long)fmin((double)MAX_INT_VALUE, lo.exclusive ? ceil(-lo.value) - 2 : floor(-lo.value) - 1);
    if (na <= nz && na <= MAX_INT_VALUE) {
        sb_printf(b, "%s\"-\" ", any ? " | " : "");
        uint_range(b, na, nz);
        sb_printf(b, " \".\" [0-9]{1,%d}", MAX_FRACTION_DIGITS);
        any = true;
    }
    if (!any)
        return fail(c, ptr, "no number satisfies the bounds");
    sb_puts(b, ") space\n");
    return 0;
}

/* ---- literals: enum and const --------------------------------------------------------------- */

typedef struct lit {
    char *s;
    size_t n;
} lit;

static int cmp_lit(const void *a, const void *b)
{
    const lit *x = a, *y = b;
    int r = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    return r ? r : (x->n > y->n) - (x->n < y->n);
}

/* Alternatives of sorted literals that share their first `pos` bytes, as rules that
 * branch once per distinct next byte (so matching stays deterministic). */
static unsigned emit_lit_trie(compiler *c, lit *l, size_t n, size_t pos)
{
    unsigned id = new_rule(c);
    strbuf body = {0};
    bool first = true;
    size_t i = 0;
    if (l[0].n == pos) { /* one literal ends here */
        sb_puts(&body, "\"\"");
        first = false;
        while (i < n && l[i].n == pos)
            i++;
    }
    while (i < n) {
        size_t j = i + 1;
        while (j < n && l[j].s[pos] == l[i].s[pos])
            j++;
        size_t common = l[i].n; /* longest prefix shared by l[i..j) */
        for (size_t k = i + 1; k < j; k++) {
            size_t m = pos;
            while (m < common && m < l[k].n && l[k].s[m] == l[i].s[m])
                m++;
            common = m;
        }
        if (!first)
            sb_puts(&body, " | ");
        first = false;
        sb_literal(&body, l[i].s + pos, common - pos);
        if (j - i > 1 || l[i].n > common) {
            unsigned sub = emit_lit_trie(c, l + i, j - i, common);
            sb_printf(&body, " r%u", sub);
        }
        i = j;
    }
    rule_begin(c, id);
    sb_putn(&c->out, body.s ? body.s : "", body.n);
    sb_puts(&c->out, "\n");
    c->out.oom |= body.oom;
    free(body.s);
    return id;
}

static int emit_literals(compiler *c, json_t **values, size_t n, const char *ptr, unsigned id)
{
    if (!n)
        return fail(c, ptr, "'enum' has no values");
    lit *l = calloc(n, sizeof *l);
    if (!l)
        return fail(c, ptr, "out of memory");
    int rc = 0;
    size_t total = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        l[i].s = json_dumps(values[i], JSON_COMPACT | JSON_ENCODE_ANY);
        if (!l[i].s)
            rc = fail(c, ptr, "out of memory");
        else
            total += l[i].n = strlen(l[i].s);
        if (total > GRAMMAR_MAX_SOURCE_BYTES)
            rc = fail(c, ptr, "'enum' is larger than %d bytes", GRAMMAR_MAX_SOURCE_BYTES);
    }
    if (!rc) {
        qsort(l, n, sizeof *l, cmp_lit);
        size_t k = 0; /* drop duplicates */
        for (size_t i = 0; i < n; i++) {
            if (k && l[k - 1].n == l[i].n && !memcmp(l[k - 1].s, l[i].s, l[i].n)) {
                free(l[i].s);
                continue;
            }
            l[k++] = l[i];
        }
        n = k;
        unsigned t = emit_lit_trie(c, l, n, 0);
        rule_begin(c, id);
        sb_printf(&c->out, "r%u space\n", t);
    }
    for (size_t i = 0; i < n; i++)
        free(l[i].s);
    free(l);
    return rc;
}

/* ---- strings ---------------------------------------------------------------------------------- */

static int emit_regex(compiler *c, const char *pattern, const char *ptr);

static int emit_format(compiler *c, const char *format, const char *ptr)
{
    static const char *const date = "[0-9]{4} \"-\" ((\"01\" | \"03\" | \"05\" | \"07\" | \"08\" | \"10\" | \"12\") "
                                    "\"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01]) | (\"04\" | \"06\" | \"09\" | "
                                    "\"11\") \"-\" (\"0\" [1-9] | [12] [0-9] | \"30\") | \"02\" \"-\" (\"0\" [1-9] | "
                                    "\"1\" [0-9] | \"2\" [0-8]))";
    static const char *const time = "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" "
                                    "[0-9]{1,6})? (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])";
    strbuf *b = &c->out;
    if (!strcmp(format, "date"))
        sb_puts(b, date);
    else if (!strcmp(format, "time"))
        sb_puts(b, time);
    else if (!strcmp(format, "date-time"))
        sb_printf(b, "%s \"T\" %s", date, time);
    else if (!strcmp(format, "uuid"))
        sb_puts(b, "hex{8} \"-\" hex{4} \"-\" hex{4} \"-\" hex{4} \"-\" hex{12}");
    else if (!strcmp(format, "email"))
        sb_puts(b, "[a-zA-Z0-9_+-] [a-zA-Z0-9._+-]* \"@\" [a-zA-Z0-9] [a-zA-Z0-9-]* (\".\" [a-zA-Z0-9] "
                   "[a-zA-Z0-9-]*)+");
    else if (!strcmp(format, "ipv4"))
        sb_puts(b, "(\"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9]? [0-9]) (\".\" (\"25\" [0-5] | "
                   "\"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9]? [0-9])){3}");
    else
        return fail(c, ptr, "unsupported format '%s'", format);
    return 0;
}

static int emit_string(compiler *c, json_t *s, const char *ptr, unsigned id)
{
    long min = count_kw(c, s, "minLength", ptr, true), max = count_kw(c, s, "maxLength", ptr, false);
    if (min == -2 || max == -2)
        return -1;
    json_t *pattern = json_object_get(s, "pattern"), *format = json_object_get(s, "format");
    char p[MAX_POINTER];
    if (pattern && !json_is_string(pattern))
        return child_ptr(p, ptr, "pattern"), fail(c, p, "'pattern' must be a string");
    if (format && !json_is_string(format))
        return child_ptr(p, ptr, "format"), fail(c, p, "'format' must be a string");
    if ((pattern || format) && (min >= 0 || max >= 0))
        return fail(c, ptr, "'%s' together with minLength/maxLength is not supported",
                    pattern ? "pattern" : "format");
    if (pattern && format)
        return fail(c, ptr, "'pattern' together with 'format' is not supported");
    if (min >= 0 && max >= 0 && min > max)
        return fail(c, ptr, "minLength is above maxLength");
    if (!pattern && !format && min < 0 && max < 0) {
        rule_begin(c, id);
        sb_puts(&c->out, "string\n");
        return 0;
    }
    if (pattern) {
        child_ptr(p, ptr, "pattern");
        int r = emit_regex(c, json_string_value(pattern), p);
        if (r < 0)
            return -1;
        rule_begin(c, id);
        sb_printf(&c->out, "\"\\\"\" r%d \"\\\"\" space\n", r);
        return 0;
    }
    /* format and lengths: the body goes straight into rule id */
    rule_begin(c, id);
    sb_puts(&c->out, "\"\\\"\" ");
    if (format) {
        child_ptr(p, ptr, "format");
        if (emit_format(c, json_string_value(format), p) < 0)
            return -1;
    } else if (max >= 0) {
        sb_printf(&c->out, "char{%ld,%ld}", min < 0 ? 0 : min, max);
    } else {
        sb_printf(&c->out, "char{%ld,}", min);
    }
    sb_puts(&c->out, " \"\\\"\" space\n");
    return 0;
}

/* ---- objects ---------------------------------------------------------------------------------- */

typedef struct prop {
    const char *name;
    unsigned rule;
    bool required;
} prop;

/* Keys other than `names` (written without escapes), as rules of a trie of code points. */
static unsigned emit_key_not_in(compiler *c, const char **names, size_t n, size_t pos)
{
    unsigned id = new_rule(c);
    strbuf body = {0};
    bool ends_here = false;
    /* the distinct next characters (as UTF-8 strings) */
    sb_puts(&body, "(");
    strbuf excluded = {0};
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (strlen(names[i]) == pos) {
            ends_here = true;
            continue;
        }
        const char *ch = names[i] + pos;
        size_t len = 1;
        while (((unsigned char)ch[len] & 0xc0) == 0x80)
            len++;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strlen(names[j]) > pos && !strncmp(names[j] + pos, ch, len) &&
                   (((unsigned char)names[j][pos + len] & 0xc0) != 0x80);
        if (seen)
            continue;
        const char **sub = malloc(n * sizeof *sub);
        if (!sub) {
            c->out.oom = true;
            break;
        }
        size_t ns = 0;
        for (size_t j = 0; j < n; j++)
            if (strlen(names[j]) > pos && !strncmp(names[j] + pos, ch, len))
                sub[ns++] = names[j];
        unsigned r = emit_key_not_in(c, sub, ns, pos + len);
        free(sub);
        if (!first)
            sb_puts(&body, " | ");
        first = false;
        sb_literal(&body, ch, len);
        sb_printf(&body, " r%u", r);
        sb_putn(&excluded, ch, len);
    }
    if (!first)
        sb_puts(&body, " | ");
    /* a character no name continues with, then anything */
    sb_puts(&body, "[^\"\\\\\\x7f\\x00-\\x1f");
    for (size_t i = 0; i < excluded.n; i++) {
        char ch = excluded.s[i];
        if (ch == ']' || ch == '\\' || ch == '^' || ch == '-')
            sb_printf(&body, "\\%c", ch);
        else
            sb_putn(&body, &ch, 1);
    }
    sb_puts(&body, "] plainchar* \"\\\"\"");
    if (!ends_here)
        sb_puts(&body, " | \"\\\"\"");
    sb_puts(&body, ")");
    rule_begin(c, id);
    sb_putn(&c->out, body.s ? body.s : "", body.n);
    sb_puts(&c->out, "\n");
    c->out.oom |= body.oom || excluded.oom;
    free(body.s);
    free(excluded.s);
    return id;
}

/* A key whose JSON text needs no escape. */
static bool plain_key(const char *name)
{
    for (const unsigned char *u = (const unsigned char *)name; *u; u++)
        if (*u < 0x20 || *u == 0x7f || *u == '"' || *u == '\\')
            return false;
    return true;
}

static int emit_object_rules(compiler *c, prop *props, size_t n, long extra_value, const char *ptr, unsigned id)
{
    /* extra properties: a key other than the declared ones, then a value */
    unsigned extra_kv = 0;
    if (extra_value >= 0) {
        const char **names = malloc((n ? n : 1) * sizeof *names);
        if (!names)
            return fail(c, ptr, "out of memory");
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (plain_key(props[i].name)) /* others differ from every key written without escapes */
                names[k++] = props[i].name;
        extra_kv = new_rule(c);
        if (n) {
            unsigned key = emit_key_not_in(c, names, k, 0);
            rule_begin(c, extra_kv);
            sb_printf(&c->out, "\"\\\"\" r%u space \":\" space r%ld\n", key, extra_value);
        } else {
            rule_begin(c, extra_kv);
            sb_printf(&c->out, "string \":\" space r%ld\n", extra_value);
        }
        free(names);
    }
    /* first[i]: properties i.. with none written yet; after[i]: with one written */
    unsigned base = c->n_rules;
    c->n_rules += 2 * (unsigned)(n + 1);
    for (size_t i = 0; i <= n; i++) {
        unsigned first = base + 2 * (unsigned)i, after = first + 1;
        unsigned next_first = first + 2, next_after = after + 2;
        if (i == n) {
            rule_begin(c, first);
            if (extra_value >= 0)
                sb_printf(&c->out, "(r%u (\",\" space r%u)*)?\n", extra_kv, extra_kv);
            else
                sb_puts(&c->out, "\"\"\n");
            rule_begin(c, after);
            if (extra_value >= 0)
                sb_printf(&c->out, "(\",\" space r%u)*\n", extra_kv);
            else
                sb_puts(&c->out, "\"\"\n");
            continue;
        }
        strbuf kv = {0};
        json_t *name = json_string(props[i].name);
        char *key = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
        json_decref(name);
        if (!key)
            return fail(c, ptr, "out of memory");
        sb_literal(&kv, key, strlen(key));
        free(key);
        sb_printf(&kv, " space \":\" space r%u", props[i].rule);
        rule_begin(c, first);
        if (props[i].required)
            sb_printf(&c->out, "%s r%u\n", kv.s, next_after);
        else
            sb_printf(&c->out, "%s r%u | r%u\n", kv.s, next_after, next_first);
        rule_begin(c, after);
        if (props[i].required)
            sb_printf(&c->out, "\",\" space %s r%u\n", kv.s, next_after);
        else
            sb_printf(&c->out, "\",\" space %s r%u | r%u\n", kv.s, next_after, next_after);
        c->out.oom |= kv.oom;
        free(kv.s);
    }
    rule_begin(c, id);
    sb_printf(&c->out, "\"{\" space r%u \"}\" space\n", base);
    return 0;
}

static int emit_object(compiler *c, json_t *s, const char *ptr, int depth, unsigned id)
{
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *addl = json_object_get(s, "additionalProperties");
    char p[MAX_POINTER];
    if (props && !json_is_object(props))
        return child_ptr(p, ptr, "properties"), fail(c, p, "'properties' must be an object");
    if (req && !json_is_array(req))
        return child_ptr(p, ptr, "required"), fail(c, p, "'required' must be an array");
    size_t n_props = props ? json_object_size(props) : 0, n_req = req ? json_array_size(req) : 0;
    prop *list = calloc(n_props + n_req + 1, sizeof *list);
    if (!list)
        return fail(c, ptr, "out of memory");
    size_t n = 0;
    int rc = 0;
    const char *k;
    json_t *v;
    char props_ptr[MAX_POINTER];
    child_ptr(props_ptr, ptr, "properties");
    if (props)
        json_object_foreach(props, k, v)
        {
            child_ptr(p, props_ptr, k);
            int r = visit(c, v, p, depth + 1);
            if (r < 0) {
                rc = -1;
                break;
            }
            list[n++] = (prop){k, (unsigned)r, false};
        }
    long extra = -1; /* rule of additional property values, -1: none allowed */
    if (!rc && addl && !json_is_false(addl)) {
        child_ptr(p, ptr, "additionalProperties");
        int r = json_is_true(addl) ? -3 : visit(c, addl, p, depth + 1);
        if (r == -3) {
            extra = new_rule(c);
            rule_begin(c, (unsigned)extra);
            sb_puts(&c->out, "value\n");
        } else if (r < 0) {
            rc = -1;
        } else {
            extra = r;
        }
    }
    for (size_t i = 0; !rc && i < n_req; i++) {
        json_t *name = json_array_get(req, i);
        child_index(p, ptr, "required", i);
        if (!json_is_string(name)) {
            rc = fail(c, p, "'required' entries must be strings");
            break;
        }
        size_t j = 0;
        while (j < n && strcmp(list[j].name, json_string_value(name)))
            j++;
        if (j < n) {
            list[j].required = true;
            continue;
        }
        /* required but not described: any value (or the additionalProperties schema) */
        if (addl && json_is_false(addl)) {
            rc = fail(c, p, "required property '%s' is not allowed by additionalProperties false",
                      json_string_value(name));
            break;
        }
        unsigned r = extra >= 0 ? (unsigned)extra : new_rule(c);
        if (extra < 0) {
            rule_begin(c, r);
            sb_puts(&c->out, "value\n");
        }
        list[n++] = (prop){json_string_value(name), r, true};
    }
    if (!rc)
        rc = emit_object_rules(c, list, n, extra, ptr, id);
    free(list);
    return rc;
}

/* ---- arrays ---------------------------------------------------------------------------------- */

static int emit_array(compiler *c, json_t *s, const char *ptr, int depth, unsigned id)
{
    long min = count_kw(c, s, "minItems", ptr, true), max = count_kw(c, s, "maxItems", ptr, false);
    if (min == -2 || max == -2)
        return -1;
    if (min < 0)
        min = 0;
    json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems");
    char p[MAX_POINTER];
    if (prefix && !json_is_array(prefix))
        return child_ptr(p, ptr, "prefixItems"), fail(c, p, "'prefixItems' must be an array");
    if (items && json_is_array(items))
        return child_ptr(p, ptr, "items"), fail(c, p, "'items' as an array (draft 4 tuples) is not supported; use prefixItems");
    size_t k = prefix ? json_array_size(prefix) : 0;
    if (k > MAX_COUNT)
        return child_ptr(p, ptr, "prefixItems"), fail(c, p, "more than %d prefixItems", MAX_COUNT);
    unsigned *elem = malloc((k + 1) * sizeof *elem);
    if (!elem)
        return fail(c, ptr, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < k && !rc; i++) {
        child_index(p, ptr, "prefixItems", i);
        int r = visit(c, json_array_get(prefix, i), p, depth + 1);
        if (r < 0)
            rc = -1;
        else
            elem[i] = (unsigned)r;
    }
    long item = -1; /* -1: no items past the prefix */
    if (!rc) {
        if (!items || json_is_true(items)) {
            item = new_rule(c);
            rule_begin(c, (unsigned)item);
            sb_puts(&c->out, "value\n");
        } else if (!json_is_false(items)) {
            child_ptr(p, ptr, "items");
            int r = visit(c, items, p, depth + 1);
            if (r < 0)
                rc = -1;
            item = r;
        }
    }
    if (!rc && item < 0 && (max < 0 || max > (long)k))
        max = (long)k;
    if (!rc && max >= 0 && min > max)
        rc = fail(c, ptr, "minItems is above what maxItems (or items false) allows");
    if (rc) {
        free(elem);
        return rc;
    }
    /* list[i] (i from 1): element i and what may follow it */
    unsigned lists = c->n_rules;
    long last = min > (long)k ? min : (long)k; /* past this, only `item` repeats */
    if (item >= 0 && last == 0)
        last = 1;
    if (max >= 0 && last > max)
        last = max;
    c->n_rules += (unsigned)last + 1;
    for (long i = 1; i <= last; i++) {
        rule_begin(c, lists + (unsigned)i);
        sb_printf(&c->out, "r%u", i <= (long)k ? elem[i - 1] : (unsigned)item);
        if (max >= 0 && i >= max) {
            sb_puts(&c->out, "\n");
        } else if (i < last) {
            sb_printf(&c->out, i < min ? " \",\" space r%u\n" : " (\",\" space r%u)?\n", lists + (unsigned)i + 1);
        } else if (max < 0) {
            sb_printf(&c->out, " (\",\" space r%ld)*\n", item);
        } else {
            sb_printf(&c->out, " (\",\" space r%ld){0,%ld}\n", item, max - i);
        }
    }
    rule_begin(c, id);
    if (last == 0)
        sb_puts(&c->out, "\"[\" space \"]\" space\n");
    else
        sb_printf(&c->out, "\"[\" space r%u%s \"]\" space\n", lists + 1, min == 0 ? "?" : "");
    free(elem);
    return 0;
}

/* ---- combinators and references ------------------------------------------------------------- */

static json_t *resolve_pointer(compiler *c, const char *ref)
{
    if (ref[0] != '#')
        return NULL;
    json_t *node = c->root;
    const char *s = ref + 1;
    while (*s) {
        if (*s != '/')
            return NULL;
        s++;
        char key[MAX_POINTER];
        size_t n = 0;
        while (*s && *s != '/' && n + 1 < sizeof key) {
            if (s[0] == '~' && s[1] == '0')
                key[n++] = '~', s += 2;
            else if (s[0] == '~' && s[1] == '1')
                key[n++] = '/', s += 2;
            else
                key[n++] = *s++;
        }
        key[n] = 0;
        if (json_is_object(node)) {
            node = json_object_get(node, key);
        } else if (json_is_array(node)) {
            char *end;
            unsigned long i = strtoul(key, &end, 10);
            node = *key && !*end ? json_array_get(node, i) : NULL;
        } else {
            node = NULL;
        }
        if (!node)
            return NULL;
    }
    return node;
}

static int visit_ref(compiler *c, json_t *s, const char *ptr, int depth)
{
    json_t *ref = json_object_get(s, "$ref");
    char p[MAX_POINTER];
    child_ptr(p, ptr, "$ref");
    if (!json_is_string(ref))
        return fail(c, p, "'$ref' must be a string");
    const char *target = json_string_value(ref);
    const char *extra = other_constraint(s, (const char *const[]){"$ref", NULL});
    if (extra)
        return fail(c, ptr, "'%s' beside '$ref' is not supported", extra);
    for (size_t i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].pointer, target))
            return (int)c->refs[i].rule;
    json_t *node = resolve_pointer(c, target);
    if (!node)
        return fail(c, p, "cannot resolve '$ref' '%s' (only local JSON pointers such as '#/$defs/name')", target);
    if (c->n_refs >= MAX_REFS)
        return fail(c, p, "more than %d distinct $ref targets", MAX_REFS);
    ref_memo *grown = realloc(c->refs, (c->n_refs + 1) * sizeof *c->refs);
    if (!grown)
        return fail(c, p, "out of memory");
    c->refs = grown;
    unsigned id = new_rule(c);
    c->refs[c->n_refs].pointer = strdup(target);
    if (!c->refs[c->n_refs].pointer)
        return fail(c, p, "out of memory");
    c->refs[c->n_refs++].rule = id;
    char tp[MAX_POINTER];
    snprintf(tp, sizeof tp, "%s", target + 1);
    int r = visit(c, node, tp, depth + 1);
    if (r < 0)
        return -1;
    rule_begin(c, id);
    sb_printf(&c->out, "r%d\n", r);
    return (int)id;
}

/* ---- oneOf: honoured when no value can match two branches ---------------------------------- */

enum { T_NULL = 1, T_BOOL = 2, T_OBJECT = 4, T_ARRAY = 8, T_STRING = 16, T_NUMBER = 32, T_ALL = 63 };

static unsigned type_bit(const char *t)
{
    return !strcmp(t, "null") ? T_NULL : !strcmp(t, "boolean") ? T_BOOL : !strcmp(t, "object") ? T_OBJECT
         : !strcmp(t, "array") ? T_ARRAY : !strcmp(t, "string") ? T_STRING
         : !strcmp(t, "number") || !strcmp(t, "integer") ? T_NUMBER : 0;
}

static unsigned value_type(json_t *v)
{
    return json_is_null(v) ? T_NULL : json_is_boolean(v) ? T_BOOL : json_is_object(v) ? T_OBJECT
         : json_is_array(v) ? T_ARRAY : json_is_string(v) ? T_STRING : T_NUMBER;
}

static json_t *deref(compiler *c, json_t *s)
{
    for (int hops = 0; json_is_object(s) && json_is_string(json_object_get(s, "$ref")) && hops < 32; hops++)
        s = resolve_pointer(c, json_string_value(json_object_get(s, "$ref")));
    return s;
}

/* The JSON types a schema's values may have (a superset). */
static unsigned possible_types(compiler *c, json_t *s, int depth)
{
    s = deref(c, s);
    if (!json_is_object(s) || depth > 16)
        return json_is_false(s) ? 0 : T_ALL;
    json_t *v;
    if ((v = json_object_get(s, "const")))
        return value_type(v);
    if ((v = json_object_get(s, "enum")) && json_is_array(v)) {
        unsigned t = 0;
        for (size_t i = 0; i < json_array_size(v); i++)
            t |= value_type(json_array_get(v, i));
        return t;
    }
    const char *list_keys[] = {"anyOf", "oneOf"};
    for (int k = 0; k < 2; k++)
        if ((v = json_object_get(s, list_keys[k])) && json_is_array(v)) {
            unsigned t = 0;
            for (size_t i = 0; i < json_array_size(v); i++)
                t |= possible_types(c, json_array_get(v, i), depth + 1);
            return t;
        }
    if (json_object_get(s, "allOf"))
        return T_OBJECT;
    if ((v = json_object_get(s, "type"))) {
        if (json_is_string(v))
            return type_bit(json_string_value(v));
        unsigned t = 0;
        for (size_t i = 0; json_is_array(v) && i < json_array_size(v); i++)
            if (json_is_string(json_array_get(v, i)))
                t |= type_bit(json_string_value(json_array_get(v, i)));
        return t;
    }
    unsigned t = 0;
    if (has_any(s, (const char *const[]){"properties", "required", "additionalProperties", NULL}))
        t |= T_OBJECT;
    if (has_any(s, (const char *const[]){"items", "prefixItems", "minItems", "maxItems", NULL}))
        t |= T_ARRAY;
    if (has_any(s, (const char *const[]){"minLength", "maxLength", "pattern", "format", NULL}))
        t |= T_STRING;
    if (has_any(s, (const char *const[]){"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", NULL}))
        t |= T_NUMBER;
    return t ? t : T_ALL;
}

/* The values a required property of an object schema is limited to (const or enum). */
static json_t *discriminator_values(compiler *c, json_t *s, const char *name)
{
    s = deref(c, s);
    json_t *req = json_object_get(s, "required"), *schema = json_object_get(json_object_get(s, "properties"), name);
    bool required = false;
    for (size_t i = 0; json_is_array(req) && i < json_array_size(req); i++)
        required = required || (json_is_string(json_array_get(req, i)) &&
                                !strcmp(json_string_value(json_array_get(req, i)), name));
    schema = deref(c, schema);
    if (!required || !json_is_object(schema))
        return NULL;
    json_t *v = json_object_get(schema, "const");
    if (v)
        return json_pack("[O]", v);
    v = json_object_get(schema, "enum");
    return json_is_array(v) ? json_incref(v) : NULL;
}

/* Two object branches told apart by a required property with disjoint const/enum values. */
static bool discriminated(compiler *c, json_t *a, json_t *b)
{
    json_t *props = json_object_get(deref(c, a), "properties");
    const char *name;
    json_t *unused;
    json_object_foreach(props, name, unused)
    {
        json_t *va = discriminator_values(c, a, name), *vb = discriminator_values(c, b, name);
        bool disjoint = va && vb;
        for (size_t i = 0; disjoint && i < json_array_size(va); i++)
            for (size_t j = 0; disjoint && j < json_array_size(vb); j++)
                disjoint = !json_equal(json_array_get(va, i), json_array_get(vb, j));
        json_decref(va);
        json_decref(vb);
        if (disjoint)
            return true;
    }
    return false;
}

static int check_one_of_disjoint(compiler *c, json_t *list, const char *ptr)
{
    size_t n = json_array_size(list);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            json_t *a = json_array_get(list, i), *b = json_array_get(list, j);
            unsigned common = possible_types(c, a, 0) & possible_types(c, b, 0);
            if (!common || (common == T_OBJECT && (discriminated(c, a, b) || discriminated(c, b, a))))
                continue;
            char p[MAX_POINTER];
            child_index(p, ptr, "oneOf", j);
            return fail(c, p, "'oneOf' branches %zu and %zu may both match a value (only branches of different "
                              "types or told apart by a required const/enum property are supported; anyOf is)",
                        i, j);
        }
    return 0;
}

static int visit_any_of(compiler *c, json_t *s, const char *ptr, int depth, const char *key)
{
    json_t *list = json_object_get(s, key);
    char p[MAX_POINTER];
    child_ptr(p, ptr, key);
    if (!json_is_array(list) || !json_array_size(list))
        return fail(c, p, "'%s' must be a non-empty array", key);
    const char *extra = other_constraint(s, (const char *const[]){key, NULL});
    if (extra)
        return fail(c, ptr, "'%s' beside '%s' is not supported", extra, key);
    if (!strcmp(key, "oneOf") && check_one_of_disjoint(c, list, ptr) < 0)
        return -1;
    unsigned id = new_rule(c);
    strbuf body = {0};
    for (size_t i = 0; i < json_array_size(list); i++) {
        child_index(p, ptr, key, i);
        int r = visit(c, json_array_get(list, i), p, depth + 1);
        if (r < 0) {
            free(body.s);
            return -1;
        }
        sb_printf(&body, "%sr%d", i ? " | " : "", r);
    }
    rule_from_body(c, id, &body);
    return (int)id;
}

/* allOf of object schemas: one object with every member's properties and required. */
static int visit_all_of(compiler *c, json_t *s, const char *ptr, int depth)
{
    json_t *list = json_object_get(s, "allOf");
    char p[MAX_POINTER];
    child_ptr(p, ptr, "allOf");
    if (!json_is_array(list) || !json_array_size(list))
        return fail(c, p, "'allOf' must be a non-empty array");
    json_t *merged = json_object(), *props = json_object(), *req = json_array();
    json_t *members = json_array();
    int rc = 0;
    if (!merged || !props || !req || !members)
        rc = fail(c, ptr, "out of memory");
    /* the schema itself (less allOf) is a member too */
    json_t *self = json_deep_copy(s);
    if (self)
        json_object_del(self, "allOf");
    json_array_append_new(members, self);
    for (size_t i = 0; i < json_array_size(list); i++)
        json_array_append(members, json_array_get(list, i));
    bool closed = false;
    for (size_t i = 0; !rc && i < json_array_size(members); i++) {
        json_t *m = json_array_get(members, i);
        if (i)
            child_index(p, ptr, "allOf", i - 1);
        else
            snprintf(p, sizeof p, "%s", ptr);
        for (int hops = 0; json_is_object(m) && json_object_get(m, "$ref") && hops < 32; hops++) {
            json_t *r = json_object_get(m, "$ref");
            m = json_is_string(r) ? resolve_pointer(c, json_string_value(r)) : NULL;
            if (!m)
                rc = fail(c, p, "cannot resolve '$ref' in 'allOf'");
        }
        if (rc)
            break;
        if (json_is_true(m))
            continue;
        if (!json_is_object(m)) {
            rc = fail(c, p, "'allOf' members must be object schemas");
            break;
        }
        if (check_keywords(c, m, p) < 0) {
            rc = -1;
            break;
        }
        const char *extra =
            other_constraint(m, (const char *const[]){"type", "properties", "required", "additionalProperties", NULL});
        if (extra) {
            rc = fail(c, p, "'%s' in an 'allOf' member is not supported (allOf merges object schemas only)", extra);
            break;
        }
        json_t *t = json_object_get(m, "type");
        if (t && !(json_is_string(t) && !strcmp(json_string_value(t), "object"))) {
            rc = fail(c, p, "'allOf' members must be of type object");
            break;
        }
        json_t *ap = json_object_get(m, "additionalProperties");
        if (ap && !json_is_boolean(ap)) {
            rc = fail(c, p, "'additionalProperties' schemas inside 'allOf' are not supported");
            break;
        }
        if (ap && json_is_false(ap) && i)
            closed = true;
        const char *k;
        json_t *v;
        json_t *mp = json_object_get(m, "properties");
        if (mp)
            json_object_foreach(mp, k, v)
            {
                json_t *old = json_object_get(props, k);
                if (old && !json_equal(old, v)) {
                    rc = fail(c, p, "property '%s' is defined differently by two 'allOf' members", k);
                    break;
                }
                json_object_set(props, k, v);
            }
        json_t *mr = json_object_get(m, "required");
        for (size_t j = 0; !rc && json_is_array(mr) && j < json_array_size(mr); j++)
            json_array_append(req, json_array_get(mr, j));
    }
    (void)closed; /* extra properties are never generated, so a closed member is honoured */
    int result = -1;
    if (!rc) {
        json_object_set_new(merged, "type", json_string("object"));
        json_object_set(merged, "properties", props);
        json_object_set(merged, "required", req);
        json_object_set_new(merged, "additionalProperties", json_false());
        result = visit(c, merged, ptr, depth + 1);
    }
    json_decref(merged);
    json_decref(props);
    json_decref(req);
    json_decref(members);
    return rc ? -1 : result;
}

/* ---- one schema -------------------------------------------------------------------------------- */

static bool has_any(json_t *s, const char *const *keys)
{
    for (; *keys; keys++)
        if (json_object_get(s, *keys))
            return true;
    return false;
}

static int emit_type(compiler *c, json_t *s, const char *type, const char *ptr, int depth, unsigned id)
{
    if (!strcmp(type, "string"))
        return emit_string(c, s, ptr, id);
    if (!strcmp(type, "integer"))
        return emit_integer(c, s, ptr, id);
    if (!strcmp(type, "number"))
        return emit_number(c, s, ptr, id);
    if (!strcmp(type, "object"))
        return emit_object(c, s, ptr, depth, id);
    if (!strcmp(type, "array"))
        return emit_array(c, s, ptr, depth, id);
    if (!strcmp(type, "boolean") || !strcmp(type, "null")) {
        rule_begin(c, id);
        sb_printf(&c->out, "%s\n", type);
        return 0;
    }
    char p[MAX_POINTER];
    child_ptr(p, ptr, "type");
    return fail(c, p, "unknown type '%s'", type);
}

static int visit(compiler *c, json_t *s, const char *ptr, int depth)
{
    if (c->failed)
        return -1;
    if (depth > GRAMMAR_MAX_DEPTH)
        return fail(c, ptr, "nested deeper than %d", GRAMMAR_MAX_DEPTH);
    if (c->out.n > GRAMMAR_MAX_SOURCE_BYTES)
        return fail(c, ptr, "the schema's grammar is larger than %d bytes", GRAMMAR_MAX_SOURCE_BYTES);
    if (json_is_true(s) || (json_is_object(s) && !other_constraint(s, (const char *const[]){NULL}))) {
        unsigned id = new_rule(c);
        rule_begin(c, id);
        sb_puts(&c->out, "value\n");
        return (int)id;
    }
    if (json_is_false(s))
        return fail(c, ptr, "the schema 'false' allows no value");
    if (!json_is_object(s))
        return fail(c, ptr, "a schema must be an object or a boolean");
    if (check_keywords(c, s, ptr) < 0)
        return -1;
    if (json_object_get(s, "$ref"))
        return visit_ref(c, s, ptr, depth);
    if (json_object_get(s, "allOf"))
        return visit_all_of(c, s, ptr, depth);
    if (json_object_get(s, "anyOf"))
        return visit_any_of(c, s, ptr, depth, "anyOf");
    if (json_object_get(s, "oneOf"))
        return visit_any_of(c, s, ptr, depth, "oneOf");

    unsigned id = new_rule(c);
    char p[MAX_POINTER];
    json_t *cst = json_object_get(s, "const"), *en = json_object_get(s, "enum");
    if (cst || en) {
        const char *extra = other_constraint(s, (const char *const[]){"const", "enum", "type", NULL});
        if (extra)
            return fail(c, ptr, "'%s' beside '%s' is not supported", extra, cst ? "const" : "enum");
        if (cst && en)
            return fail(c, ptr, "'const' and 'enum' together are not supported");
        if (en && !json_is_array(en))
            return child_ptr(p, ptr, "enum"), fail(c, p, "'enum' must be an array");
        if (en && !json_array_size(en))
            return child_ptr(p, ptr, "enum"), fail(c, p, "'enum' has no values");
        /* type beside enum/const: keep only the values of that type */
        json_t **values = malloc((en ? json_array_size(en) : 1) * sizeof *values + 1);
        if (!values)
            return fail(c, ptr, "out of memory");
        size_t n = 0;
        json_t *type = json_object_get(s, "type");
        for (size_t i = 0; i < (en ? json_array_size(en) : 1); i++) {
            json_t *v = en ? json_array_get(en, i) : cst;
            bool ok = true;
            if (json_is_string(type)) {
                const char *t = json_string_value(type);
                ok = (!strcmp(t, "string") && json_is_string(v)) || (!strcmp(t, "integer") && json_is_integer(v)) ||
                     (!strcmp(t, "number") && json_is_number(v)) || (!strcmp(t, "boolean") && json_is_boolean(v)) ||
                     (!strcmp(t, "null") && json_is_null(v)) || (!strcmp(t, "object") && json_is_object(v)) ||
                     (!strcmp(t, "array") && json_is_array(v));
            }
            if (ok)
                values[n++] = v;
        }
        int rc = n ? emit_literals(c, values, n, ptr, id) : fail(c, ptr, "no value of 'enum' has the given type");
        free(values);
        return rc < 0 ? -1 : (int)id;
    }

    json_t *type = json_object_get(s, "type");
    if (type && json_is_string(type)) {
        if (emit_type(c, s, json_string_value(type), ptr, depth, id) < 0)
            return -1;
        return (int)id;
    }
    /* a list of types, or types implied by the keywords present */
    const char *types[8];
    size_t n = 0;
    if (type) {
        child_ptr(p, ptr, "type");
        if (!json_is_array(type) || !json_array_size(type) || json_array_size(type) > 7)
            return fail(c, p, "'type' must be a string or a non-empty array of strings");
        for (size_t i = 0; i < json_array_size(type); i++) {
            if (!json_is_string(json_array_get(type, i)))
                return fail(c, p, "'type' must be a string or a non-empty array of strings");
            types[n++] = json_string_value(json_array_get(type, i));
        }
    } else {
        if (has_any(s, (const char *const[]){"properties", "required", "additionalProperties", NULL}))
            types[n++] = "object";
        if (has_any(s, (const char *const[]){"items", "prefixItems", "minItems", "maxItems", NULL}))
            types[n++] = "array";
        if (has_any(s, (const char *const[]){"minLength", "maxLength", "pattern", "format", NULL}))
            types[n++] = "string";
        if (has_any(s, (const char *const[]){"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", NULL}))
            types[n++] = "number";
    }
    strbuf body = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned t = new_rule(c);
        if (emit_type(c, s, types[i], ptr, depth, t) < 0) {
            free(body.s);
            return -1;
        }
        sb_printf(&body, "%sr%u", i ? " | " : "", t);
    }
    rule_from_body(c, id, &body);
    return (int)id;
}

/* ---- regular expressions (pattern) --------------------------------------------------------------- */

/* A regular-expression subset (ECMA-262 syntax: anchors ^ and $ at the ends, literals,
 * escapes, classes, '.', groups, alternation, * + ? {m} {m,} {m,n}) translated to a
 * GBNF expression over the JSON text of the string: a '"' in the value is written
 * \" in the answer, a newline \n, and so on. JSON Schema patterns are unanchored
 * searches; an end without an anchor may hold any other characters. */

typedef struct rx {
    compiler *c;
    const char *s, *ptr, *start;
    int depth;
} rx;

typedef struct cp_set {
    uint32_t lo[512], hi[512];
    int n;
} cp_set;

static int rx_fail(rx *r, const char *what)
{
    return fail(r->c, r->ptr, "pattern: %s (at offset %d)", what, (int)(r->s - r->start));
}

static int set_add(rx *r, cp_set *set, uint32_t lo, uint32_t hi)
{
    if (set->n >= 512)
        return rx_fail(r, "character class too large");
    set->lo[set->n] = lo;
    set->hi[set->n++] = hi;
    return 0;
}

static void set_normalize(cp_set *set, bool negate)
{
    /* insertion sort (small), merge, then complement over the code points */
    for (int i = 1; i < set->n; i++)
        for (int j = i; j > 0 && set->lo[j] < set->lo[j - 1]; j--) {
            uint32_t a = set->lo[j], b = set->hi[j];
            set->lo[j] = set->lo[j - 1], set->hi[j] = set->hi[j - 1];
            set->lo[j - 1] = a, set->hi[j - 1] = b;
        }
    int k = 0;
    for (int i = 0; i < set->n; i++) {
        if (k && set->lo[i] <= set->hi[k - 1] + 1) {
            if (set->hi[i] > set->hi[k - 1])
                set->hi[k - 1] = set->hi[i];
        } else {
            set->lo[k] = set->lo[i], set->hi[k++] = set->hi[i];
        }
    }
    set->n = k;
    if (!negate)
        return;
    cp_set out;
    out.n = 0;
    uint32_t next = 0;
    for (int i = 0; i < set->n; i++) {
        if (set->lo[i] > next)
            out.lo[out.n] = next, out.hi[out.n++] = set->lo[i] - 1;
        next = set->hi[i] + 1;
    }
    if (next <= 0x10ffff)
        out.lo[out.n] = next, out.hi[out.n++] = 0x10ffff;
    *set = out;
}

static bool set_has(const cp_set *set, uint32_t cp)
{
    for (int i = 0; i < set->n; i++)
        if (cp >= set->lo[i] && cp <= set->hi[i])
            return true;
    return false;
}

/* The JSON text of one character of a string value, as a GBNF literal. */
static void emit_json_char(strbuf *b, uint32_t cp)
{
    switch (cp) {
    case '"': sb_puts(b, "\"\\\\\\\"\""); return;
    case '\\': sb_puts(b, "\"\\\\\\\\\""); return;
    case '\n': sb_puts(b, "\"\\\\n\""); return;
    case '\t': sb_puts(b, "\"\\\\t\""); return;
    case '\r': sb_puts(b, "\"\\\\r\""); return;
    case '\b': sb_puts(b, "\"\\\\b\""); return;
    case '\f': sb_puts(b, "\"\\\\f\""); return;
    default: break;
    }
    if (cp < 0x20 || cp == 0x7f) {
        sb_printf(b, "\"\\\\u%04x\"", cp);
        return;
    }
    sb_printf(b, "\"\\U%08x\"", cp);
}

/* A set of characters as the GBNF of their JSON text: the characters written as
 * themselves in one class, the others (quote, backslash, controls) as escapes. */
static int emit_json_set(rx *r, strbuf *b, const cp_set *set)
{
    bool any = false;
    sb_puts(b, "(");
    strbuf cls = {0};
    for (int i = 0; i < set->n; i++) {
        /* the part of [lo, hi] written as itself: not '"', '\\', controls, DEL, surrogates */
        static const uint32_t cut_lo[] = {0x00, '"', '\\', 0x7f, 0xd800};
        static const uint32_t cut_hi[] = {0x1f, '"', '\\', 0x7f, 0xdfff};
        uint32_t lo = set->lo[i], hi = set->hi[i];
        while (lo <= hi) {
            uint32_t end = hi;
            bool cut = false;
            for (int k = 0; k < 5; k++) {
                if (lo >= cut_lo[k] && lo <= cut_hi[k]) {
                    lo = cut_hi[k] + 1;
                    cut = true;
                    break;
                }
                if (cut_lo[k] > lo && cut_lo[k] - 1 < end)
                    end = cut_lo[k] - 1;
            }
            if (cut)
                continue;
            sb_printf(&cls, "\\U%08x-\\U%08x", lo, end);
            if (end == 0x10ffff)
                break;
            lo = end + 1;
        }
    }
    if (cls.n) {
        sb_printf(b, "[%s]", cls.s);
        any = true;
    }
    free(cls.s);
    static const uint32_t specials[] = {'"', '\\', '\n', '\t', '\r'};
    for (int k = 0; k < 5; k++)
        if (set_has(set, specials[k])) {
            sb_puts(b, any ? " | " : "");
            emit_json_char(b, specials[k]);
            any = true;
        }
    sb_puts(b, ")");
    if (!any)
        return rx_fail(r, "a character class matches nothing that can be written");
    return 0;
}

static int class_escape(rx *r, char e, cp_set *set)
{
    cp_set tmp;
    tmp.n = 0;
    bool neg = isupper((unsigned char)e);
    switch (tolower((unsigned char)e)) {
    case 'd':
        set_add(r, &tmp, '0', '9');
        break;
    case 'w':
        set_add(r, &tmp, '0', '9'), set_add(r, &tmp, 'A', 'Z'), set_add(r, &tmp, 'a', 'z'), set_add(r, &tmp, '_', '_');
        break;
    case 's':
        set_add(r, &tmp, ' ', ' '), set_add(r, &tmp, '\t', '\r');
        break;
    default:
        return 1; /* not a class escape */
    }
    /* ASCII only: ECMA-262 and Python (which validators use) disagree on which other
     * characters are digits, word characters or spaces, so both readings must hold */
    set_normalize(&tmp, neg);
    if (neg && tmp.n && tmp.hi[tmp.n - 1] > 0x7f) {
        while (tmp.n && tmp.lo[tmp.n - 1] > 0x7f)
            tmp.n--;
        if (tmp.n && tmp.hi[tmp.n - 1] > 0x7f)
            tmp.hi[tmp.n - 1] = 0x7f;
    }
    for (int i = 0; i < tmp.n; i++)
        if (set_add(r, set, tmp.lo[i], tmp.hi[i]) < 0)
            return -1;
    return 0;
}

static int hexn(const char **s, int n, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*s)[i];
        int h = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (h < 0)
            return -1;
        *v = *v * 16 + (uint32_t)h;
    }
    *s += n;
    return 0;
}

/* One literal character (after a backslash if escaped); -1 on error. */
static long rx_char(rx *r)
{
    const unsigned char *u = (const unsigned char *)r->s;
    if (!*u)
        return rx_fail(r, "unexpected end");
    if (*u == '\\') {
        r->s++;
        char e = *r->s++;
        uint32_t v;
        switch (e) {
        case 'n': return '\n';
        case 't': return '\t';
        case 'r': return '\r';
        case 'f': return '\f';
        case 'v': return '\v';
        case '0': return 0;
        case 'x':
            if (hexn(&r->s, 2, &v) < 0)
                return rx_fail(r, "\\x needs two hex digits");
            return v;
        case 'u':
            if (hexn(&r->s, 4, &v) < 0 || (v >= 0xd800 && v <= 0xdfff))
                return rx_fail(r, "\\u needs four hex digits of a scalar value");
            return v;
        case 0:
            return rx_fail(r, "unfinished escape");
        default:
            if (isalnum((unsigned char)e))
                return rx_fail(r, "unsupported escape (backreferences, word boundaries and the like)");
            return (unsigned char)e;
        }
    }
    /* a UTF-8 code point (the pattern came from valid JSON) */
    int n = *u < 0x80 ? 1 : (*u & 0xe0) == 0xc0 ? 2 : (*u & 0xf0) == 0xe0 ? 3 : 4;
    uint32_t cp = n == 1 ? *u : n == 2 ? (*u & 0x1f) : n == 3 ? (*u & 0x0f) : (*u & 0x07);
    for (int i = 1; i < n; i++) {
        if ((u[i] & 0xc0) != 0x80)
            return rx_fail(r, "invalid UTF-8");
        cp = (cp << 6) | (u[i] & 0x3f);
    }
    r->s += n;
    return cp;
}

static int rx_class(rx *r, strbuf *b)
{
    r->s++; /* [ */
    bool neg = *r->s == '^';
    if (neg)
        r->s++;
    cp_set set;
    set.n = 0;
    bool first = true;
    while (*r->s && (*r->s != ']' || first)) {
        first = false;
        if (r->s[0] == '\\' && r->s[1]) {
            int k = class_escape(r, r->s[1], &set);
            if (k < 0)
                return -1;
            if (k == 0) {
                r->s += 2;
                continue;
            }
        }
        long lo = rx_char(r);
        if (lo < 0)
            return -1;
        long hi = lo;
        if (r->s[0] == '-' && r->s[1] && r->s[1] != ']') {
            r->s++;
            hi = rx_char(r);
            if (hi < 0)
                return -1;
            if (hi < lo)
                return rx_fail(r, "character range out of order");
        }
        if (set_add(r, &set, (uint32_t)lo, (uint32_t)hi) < 0)
            return -1;
    }
    if (*r->s != ']')
        return rx_fail(r, "unterminated character class");
    r->s++;
    set_normalize(&set, neg);
    return emit_json_set(r, b, &set);
}

static int rx_alternation(rx *r, strbuf *b, bool *nullable);

/* One atom into b; sets *nullable. */
static int rx_atom(rx *r, strbuf *b, bool *nullable)
{
    *nullable = false;
    char ch = *r->s;
    if (ch == '(') {
        r->s++;
        if (r->s[0] == '?') {
            if (r->s[1] == ':')
                r->s += 2;
            else if (r->s[1] == '<' && r->s[2] != '=' && r->s[2] != '!') {
                const char *end = strchr(r->s, '>');
                if (!end)
                    return rx_fail(r, "unterminated group name");
                r->s = end + 1;
            } else
                return rx_fail(r, "lookaround and other (?...) groups are not supported");
        }
        if (++r->depth > 32)
            return rx_fail(r, "groups nested deeper than 32");
        sb_puts(b, "(");
        if (rx_alternation(r, b, nullable) < 0)
            return -1;
        sb_puts(b, ")");
        r->depth--;
        if (*r->s != ')')
            return rx_fail(r, "unclosed '('");
        r->s++;
        return 0;
    }
    if (ch == '[')
        return rx_class(r, b);
    if (ch == '.') {
        r->s++;
        cp_set set;
        set.n = 0;
        set_add(r, &set, '\n', '\n'), set_add(r, &set, '\r', '\r'), set_add(r, &set, 0x2028, 0x2029);
        set_normalize(&set, true);
        return emit_json_set(r, b, &set);
    }
    if (ch == '^' || ch == '$')
        return rx_fail(r, "anchors are supported only at the start and the end");
    if (ch == '*' || ch == '+' || ch == '?' || ch == '{')
        return rx_fail(r, "a quantifier without anything before it");
    if (ch == '\\' && r->s[1]) {
        cp_set set;
        set.n = 0;
        int k = class_escape(r, r->s[1], &set);
        if (k < 0)
            return -1;
        if (k == 0) {
            r->s += 2;
            set_normalize(&set, false);
            return emit_json_set(r, b, &set);
        }
    }
    long cp = rx_char(r);
    if (cp < 0)
        return -1;
    emit_json_char(b, (uint32_t)cp);
    return 0;
}

/* {m}, {m,}, {m,n} at r->s: 1 if parsed, 0 if not a quantifier, -1 on error. */
static int rx_braces(rx *r, long *min, long *max)
{
    const char *s = r->s + 1;
    if (!isdigit((unsigned char)*s))
        return 0;
    char *end;
    *min = strtol(s, &end, 10);
    *max = *min;
    if (*end == ',') {
        s = end + 1;
        if (*s == '}') {
            *max = -1;
            end = (char *)s;
        } else {
            if (!isdigit((unsigned char)*s))
                return 0;
            *max = strtol(s, &end, 10);
        }
    }
    if (*end != '}')
        return 0;
    if (*min > MAX_COUNT || *max > MAX_COUNT)
        return rx_fail(r, "repetition count above 1000");
    if (*max >= 0 && *max < *min)
        return rx_fail(r, "repetition {m,n} with n below m");
    r->s = end + 1;
    return 1;
}

static int rx_sequence(rx *r, strbuf *b, bool *nullable)
{
    *nullable = true;
    while (*r->s && *r->s != '|' && *r->s != ')') {
        if (*r->s == '$' && r->s[1] == 0)
            break; /* the end anchor, handled by the caller */
        strbuf atom = {0};
        bool atom_null;
        if (rx_atom(r, &atom, &atom_null) < 0) {
            free(atom.s);
            return -1;
        }
        long min = 1, max = 1;
        char q = *r->s;
        int braces = 0;
        if (q == '*')
            min = 0, max = -1, r->s++;
        else if (q == '+')
            min = 1, max = -1, r->s++;
        else if (q == '?')
            min = 0, max = 1, r->s++;
        else if (q == '{' && (braces = rx_braces(r, &min, &max)) < 0) {
            free(atom.s);
            return -1;
        }
        bool quantified = q == '*' || q == '+' || q == '?' || braces == 1;
        if (quantified && *r->s == '?')
            r->s++; /* lazy: the same language */
        if (quantified && atom_null && max < 0) {
            free(atom.s);
            return rx_fail(r, "a repeated part can match the empty string");
        }
        sb_puts(b, " (");
        sb_putn(b, atom.s ? atom.s : "", atom.n);
        sb_puts(b, ")");
        if (quantified) {
            if (max < 0)
                sb_printf(b, "{%ld,}", min);
            else
                sb_printf(b, "{%ld,%ld}", min, max);
        }
        b->oom |= atom.oom;
        free(atom.s);
        *nullable = *nullable && (atom_null || min == 0);
    }
    return 0;
}

static int rx_alternation(rx *r, strbuf *b, bool *nullable)
{
    *nullable = false;
    for (bool first = true;; first = false) {
        if (!first)
            sb_puts(b, " | ");
        bool seq_null;
        sb_puts(b, "\"\"");
        if (rx_sequence(r, b, &seq_null) < 0)
            return -1;
        *nullable = *nullable || seq_null;
        if (*r->s != '|')
            return 0;
        r->s++;
    }
}

static int emit_regex(compiler *c, const char *pattern, const char *ptr)
{
    rx r = {c, pattern, ptr, pattern, 0};
    bool start = *r.s == '^';
    if (start)
        r.s++;
    strbuf body = {0};
    bool nullable;
    int rc = rx_alternation(&r, &body, &nullable);
    bool end = false;
    if (!rc && *r.s == '$' && r.s[1] == 0) {
        end = true;
        r.s++;
    }
    if (!rc && *r.s)
        rc = rx_fail(&r, *r.s == ')' ? "unmatched ')'" : "unexpected character");
    if (rc < 0) {
        free(body.s);
        return -1;
    }
    unsigned id = new_rule(c);
    rule_begin(c, id);
    sb_printf(&c->out, "%s(%s)%s\n", start ? "" : "jsonchar* ", body.s ? body.s : "\"\"", end ? "" : " jsonchar*");
    c->out.oom |= body.oom;
    free(body.s);
    return (int)id;
}
/* ---- entry ------------------------------------------------------------------------------------- */

static char *finish(compiler *c, int root_rule)
{
    char *result = NULL;
    if (root_rule >= 0 && !c->failed) {
        sb_printf(&c->out, "root ::= r%d\n", root_rule);
        sb_puts(&c->out, common_rules);
        if (c->out.oom)
            el_fail(c->err, "json schema: out of memory");
        else if (c->out.n > GRAMMAR_MAX_SOURCE_BYTES)
            el_fail(c->err, "json schema: too large (its grammar would exceed %d bytes)", GRAMMAR_MAX_SOURCE_BYTES);
        else
            result = c->out.s, c->out.s = NULL;
    }
    free(c->out.s);
    for (size_t i = 0; i < c->n_refs; i++)
        free(c->refs[i].pointer);
    free(c->refs);
    return result;
}

char *json_schema_to_gbnf(const char *schema, size_t len, el_err *err)
{
    if (len > GRAMMAR_MAX_SOURCE_BYTES) {
        el_fail(err, "json schema: longer than %d bytes", GRAMMAR_MAX_SOURCE_BYTES);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(schema, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        el_fail(err, "json schema: not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return NULL;
    }
    compiler c = {.root = root, .err = err};
    int r = visit(&c, root, "", 0);
    char *out = finish(&c, r);
    json_decref(root);
    return out;
}

char *json_object_gbnf(el_err *err)
{
    compiler c = {.err = err};
    sb_puts(&c.out, "root ::= object\n");
    sb_puts(&c.out, common_rules);
    if (c.out.oom) {
        free(c.out.s);
        el_fail(err, "json object: out of memory");
        return NULL;
    }
    return c.out.s;
}
