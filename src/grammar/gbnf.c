/* llama.cpp's GBNF, parsed into rules over bytes.
 *
 * Literals become one single-byte element per UTF-8 byte; a character class (or '.')
 * whose code points are all ASCII becomes one byte-set element, otherwise a rule
 * whose alternatives are the UTF-8 byte sequences of its code points, so that a
 * class always matches whole code points. Groups and repetitions become auxiliary
 * rules the way llama.cpp builds them (x* as r ::= x r | "", x{m,n} as m copies and
 * a chain of n-m optional ones). */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar_internal.h"
#include "base/array.h"
#include "base/invariant.h"

enum { MAX_REPEAT_COUNT = 10000 };

typedef struct parser {
    gb_builder *b;
    const char *text, *end;
    el_err *err;
    int depth;
    bool failed;
} parser;

typedef struct elem_vec {
    uint32_t *v;
    size_t n, cap;
} elem_vec;

/* ---- errors with a position ------------------------------------------------------------ */

static void line_col(const parser *p, const char *at, int *line, int *col)
{
    *line = 1;
    *col = 1;
    for (const char *s = p->text; s < at && s < p->end; s++) {
        if (*s == '\n') {
            ++*line;
            *col = 1;
        } else if (((unsigned char)*s & 0xc0) != 0x80) {
            ++*col;
        }
    }
}

static int fail_at(parser *p, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail_at(parser *p, const char *at, const char *fmt, ...)
{
    if (p->failed)
        return -1;
    p->failed = true;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    line_col(p, at, &line, &col);
    return el_fail(p->err, "grammar: line %d, column %d: %s", line, col, msg);
}

/* ---- builder ------------------------------------------------------------------------------ */

void gb_builder_free(gb_builder *b)
{
    for (size_t i = 0; i < b->n_rules; i++) {
        free(b->rules[i].name);
        free(b->rules[i].elems);
    }
    for (size_t i = 0; i < b->n_repeats; i++)
        free(b->repeats[i].elems);
    free(b->rules);
    free(b->names);
    free(b->sets);
    free(b->repeats);
    memset(b, 0, sizeof *b);
}

static int vec_push(parser *p, elem_vec *v, uint32_t e)
{
    if (++p->b->total_elems > GRAMMAR_MAX_ELEMENTS) {
        if (!p->failed)
            el_fail(p->err, "grammar: larger than %d elements", GRAMMAR_MAX_ELEMENTS);
        p->failed = true;
        return -1;
    }
    if (grow_array((void **)&v->v, &v->cap, v->n + 1, sizeof *v->v) < 0)
        return fail_at(p, p->text, "out of memory");
    v->v[v->n++] = e;
    return 0;
}

static int vec_append(parser *p, elem_vec *v, const uint32_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (vec_push(p, v, e[i]) < 0)
            return -1;
    return 0;
}

static uint32_t set_index(parser *p, const byteset *s)
{
    gb_builder *b = p->b;
    for (size_t i = 0; i < b->n_sets; i++)
        if (!memcmp(&b->sets[i], s, sizeof *s))
            return (uint32_t)i;
    if (grow_array((void **)&b->sets, &b->cap_sets, b->n_sets + 1, sizeof *b->sets) < 0) {
        fail_at(p, p->text, "out of memory");
        return 0;
    }
    b->sets[b->n_sets] = *s;
    return (uint32_t)b->n_sets++;
}

static uint32_t byte_elem(parser *p, unsigned lo, unsigned hi)
{
    byteset s = {{0}};
    byteset_add_range(&s, lo, hi);
    return EL_MAKE(EL_BYTES, set_index(p, &s));
}

static uint64_t name_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* Rule names are found through an open-addressing table of rule index + 1. */
static int name_table_insert(gb_builder *b, size_t rule)
{
    if (2 * (b->n_rules + 1) > b->name_cap) {
        size_t cap = b->name_cap ? 2 * b->name_cap : 256;
        uint32_t *t = calloc(cap, sizeof *t);
        if (!t)
            return -1;
        for (size_t i = 0; i < b->name_cap; i++)
            if (b->names[i]) {
                const char *nm = b->rules[b->names[i] - 1].name;
                size_t j = name_hash(nm, strlen(nm)) & (cap - 1);
                while (t[j])
                    j = (j + 1) & (cap - 1);
                t[j] = b->names[i];
            }
        free(b->names);
        b->names = t;
        b->name_cap = cap;
    }
    const char *nm = b->rules[rule].name;
    size_t j = name_hash(nm, strlen(nm)) & (b->name_cap - 1);
    while (b->names[j])
        j = (j + 1) & (b->name_cap - 1);
    b->names[j] = (uint32_t)rule + 1;
    return 0;
}

/* Index of rule `name` (created, undefined, if new); -1 on failure. */
static long rule_index(parser *p, const char *name, size_t len, const char *at)
{
    gb_builder *b = p->b;
    if (b->name_cap) {
        size_t j = name_hash(name, len) & (b->name_cap - 1);
        while (b->names[j]) {
            const char *nm = b->rules[b->names[j] - 1].name;
            if (strlen(nm) == len && !memcmp(nm, name, len))
                return (long)b->names[j] - 1;
            j = (j + 1) & (b->name_cap - 1);
        }
    }
    if (b->n_rules >= (1u << 24))
        return fail_at(p, at, "too many rules");
    if (grow_array((void **)&b->rules, &b->cap_rules, b->n_rules + 1, sizeof *b->rules) < 0)
        return fail_at(p, at, "out of memory");
    gb_rule *r = &b->rules[b->n_rules];
    memset(r, 0, sizeof *r);
    r->name = strndup(name, len);
    if (!r->name)
        return fail_at(p, at, "out of memory");
    r->line = (int)(at - p->text); /* an offset until gbnf_parse resolves it */
    if (name_table_insert(b, b->n_rules) < 0) {
        free(r->name);
        return fail_at(p, at, "out of memory");
    }
    return (long)b->n_rules++;
}

/* A new auxiliary rule named after its parent. */
static long aux_rule(parser *p, const char *parent, const char *at)
{
    char name[96];
    snprintf(name, sizeof name, "%.60s~%zu", parent, p->b->n_rules);
    long r = rule_index(p, name, strlen(name), at);
    if (r >= 0)
        p->b->rules[r].defined = true;
    return r;
}

static int rule_set(parser *p, long r, elem_vec *v)
{
    gb_rule *rule = &p->b->rules[r];
    free(rule->elems);
    rule->elems = v->v;
    rule->n = v->n;
    rule->cap = v->cap;
    memset(v, 0, sizeof *v);
    return 0;
}

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

static int utf8_encode(uint32_t c, uint8_t *out)
{
    if (c < 0x80) {
        out[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (uint8_t)(0xc0 | (c >> 6));
        out[1] = (uint8_t)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (uint8_t)(0xe0 | (c >> 12));
        out[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
        out[2] = (uint8_t)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | (c >> 18));
    out[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3f));
    out[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3f));
    out[3] = (uint8_t)(0x80 | (c & 0x3f));
    return 4;
}

/* Decodes one code point of the source text; -1 on invalid UTF-8. */
static long utf8_decode(const char **s, const char *end)
{
    const unsigned char *u = (const unsigned char *)*s;
    size_t avail = (size_t)(end - *s);
    if (!avail)
        return -1;
    unsigned c = u[0];
    int n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (!n || (size_t)n > avail)
        return -1;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1f) : n == 3 ? (c & 0x0f) : (c & 0x07);
    for (int i = 1; i < n; i++) {
        if ((u[i] & 0xc0) != 0x80)
            return -1;
        cp = (cp << 6) | (u[i] & 0x3f);
    }
    static const uint32_t min_of[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_of[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return -1;
    *s += n;
    return (long)cp;
}

/* ---- code point classes -> byte sequences ------------------------------------------------ */

typedef struct cp_range {
    uint32_t lo, hi;
} cp_range;

typedef struct cp_class {
    cp_range *r;
    size_t n, cap;
} cp_class;

static int class_add(parser *p, cp_class *c, uint32_t lo, uint32_t hi)
{
    if (c->n >= 4096)
        return fail_at(p, p->text, "character class too large");
    if (grow_array((void **)&c->r, &c->cap, c->n + 1, sizeof *c->r) < 0)
        return fail_at(p, p->text, "out of memory");
    c->r[c->n++] = (cp_range){lo, hi};
    return 0;
}

static int cmp_range(const void *a, const void *b)
{
    const cp_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sorts and merges the ranges, removes surrogates, complements when negated. */
static int class_normalize(parser *p, cp_class *c, bool negated)
{
    if (c->n)
        qsort(c->r, c->n, sizeof *c->r, cmp_range);
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (k && c->r[i].lo <= c->r[k - 1].hi + 1) {
            if (c->r[i].hi > c->r[k - 1].hi)
                c->r[k - 1].hi = c->r[i].hi;
        } else {
            c->r[k++] = c->r[i];
        }
    }
    c->n = k;
    if (negated) {
        cp_class out = {0};
        uint32_t next = 0;
        for (size_t i = 0; i < c->n; i++) {
            if (c->r[i].lo > next && class_add(p, &out, next, c->r[i].lo - 1) < 0)
                return free(out.r), -1;
            next = c->r[i].hi + 1;
        }
        if (next <= 0x10ffff && class_add(p, &out, next, 0x10ffff) < 0)
            return free(out.r), -1;
        free(c->r);
        *c = out;
    }
    /* cut out the surrogates */
    cp_class out = {0};
    for (size_t i = 0; i < c->n; i++) {
        uint32_t lo = c->r[i].lo, hi = c->r[i].hi;
        if (hi < 0xd800 || lo > 0xdfff) {
            if (class_add(p, &out, lo, hi) < 0)
                return free(out.r), -1;
            continue;
        }
        if (lo < 0xd800 && class_add(p, &out, lo, 0xd7ff) < 0)
            return free(out.r), -1;
        if (hi > 0xdfff && class_add(p, &out, 0xe000, hi) < 0)
            return free(out.r), -1;
    }
    free(c->r);
    *c = out;
    return 0;
}

typedef struct seq_list { /* byte-range sequences, 1 to 4 ranges each */
    uint8_t lo[64][4], hi[64][4], len[64];
    int n;
} seq_list;

/* Splits [lo, hi] (same UTF-8 length) until each piece is a product of byte ranges. */
static void utf8_split(uint32_t lo, uint32_t hi, seq_list *out)
{
    static const uint32_t limits[] = {0x7f, 0x7ff, 0xffff};
    for (int i = 0; i < 3; i++)
        if (lo <= limits[i] && hi > limits[i]) {
            utf8_split(lo, limits[i], out);
            utf8_split(limits[i] + 1, hi, out);
            return;
        }
    uint8_t a[4], b[4];
    int n = utf8_encode(lo, a);
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if (lo & m) {
                utf8_split(lo, lo | m, out);
                utf8_split((lo | m) + 1, hi, out);
                return;
            }
            if ((hi & m) != m) {
                utf8_split(lo, (hi & ~m) - 1, out);
                utf8_split(hi & ~m, hi, out);
                return;
            }
        }
    }
    utf8_encode(hi, b);
    if (NEVER(out->n >= 64)) /* a class splits into at most ~30 sequences per range run */
        return;
    for (int i = 0; i < n; i++) {
        out->lo[out->n][i] = a[i];
        out->hi[out->n][i] = b[i];
    }
    out->len[out->n++] = (uint8_t)n;
}

/* Emits a class: one byte-set element when it is all ASCII, else a reference to a rule
 * of byte sequences (identical classes share their rule). */
static int emit_class(parser *p, elem_vec *out, cp_class *c, const char *parent, const char *at)
{
    byteset ascii = {{0}};
    bool any_ascii = false, any_multi = false;
    for (size_t i = 0; i < c->n; i++) {
        if (c->r[i].lo < 0x80) {
            byteset_add_range(&ascii, c->r[i].lo, c->r[i].hi < 0x80 ? c->r[i].hi : 0x7f);
            any_ascii = true;
        }
        if (c->r[i].hi >= 0x80)
            any_multi = true;
    }
    if (!any_ascii && !any_multi)
        return fail_at(p, at, "empty character class");
    if (!any_multi)
        return vec_push(p, out, EL_MAKE(EL_BYTES, set_index(p, &ascii)));

    (void)parent;
    elem_vec body = {0};
    bool first = true;
    if (any_ascii) {
        if (vec_push(p, &body, EL_MAKE(EL_BYTES, set_index(p, &ascii))) < 0)
            return free(body.v), -1;
        first = false;
    }
    for (size_t i = 0; i < c->n; i++) {
        if (c->r[i].hi < 0x80)
            continue;
        seq_list seqs;
        seqs.n = 0;
        utf8_split(c->r[i].lo < 0x80 ? 0x80 : c->r[i].lo, c->r[i].hi, &seqs);
        for (int s = 0; s < seqs.n; s++) {
            if (!first && vec_push(p, &body, EL_MAKE(EL_ALT, 0)) < 0)
                return free(body.v), -1;
            first = false;
            for (int k = 0; k < seqs.len[s]; k++)
                if (vec_push(p, &body, byte_elem(p, seqs.lo[s][k], seqs.hi[s][k])) < 0)
                    return free(body.v), -1;
        }
    }
    /* equal classes share one rule */
    gb_builder *b = p->b;
    for (size_t i = 0; i < b->n_rules; i++)
        if (!strncmp(b->rules[i].name, "class~", 6) && b->rules[i].n == body.n &&
            !memcmp(b->rules[i].elems, body.v, body.n * sizeof *body.v)) {
            b->total_elems -= body.n;
            free(body.v);
            return vec_push(p, out, EL_MAKE(EL_REF, i));
        }
    char name[32];
    snprintf(name, sizeof name, "class~%zu", b->n_rules);
    long r = rule_index(p, name, strlen(name), at);
    if (r < 0)
        return free(body.v), -1;
    b->rules[r].defined = true;
    rule_set(p, r, &body);
    return vec_push(p, out, EL_MAKE(EL_REF, (uint32_t)r));
}

/* ---- lexical helpers ----------------------------------------------------------------------- */

static bool is_word(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_';
}

/* Skips spaces, tabs, comments and (when newline_ok) line breaks. */
static const char *skip_space(parser *p, const char *s, bool newline_ok)
{
    while (s < p->end) {
        if (*s == ' ' || *s == '\t') {
            s++;
        } else if (*s == '#') {
            while (s < p->end && *s != '\n')
                s++;
        } else if (newline_ok && (*s == '\n' || *s == '\r')) {
            s++;
        } else {
            break;
        }
    }
    return s;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One character of a literal or class (escapes decoded); -1 with an error. */
static long parse_char(parser *p, const char **s)
{
    const char *at = *s;
    if (*s >= p->end)
        return fail_at(p, at, "unexpected end of grammar");
    if (**s != '\\') {
        long c = utf8_decode(s, p->end);
        if (c < 0)
            return fail_at(p, at, "invalid UTF-8");
        return c;
    }
    (*s)++;
    if (*s >= p->end)
        return fail_at(p, at, "unfinished escape");
    char e = *(*s)++;
    int digits = 0;
    switch (e) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case '0': return 0;
    case '\\': case '"': case '[': case ']': case '-': case '^': case '/': case '\'': return e;
    case 'x': digits = 2; break;
    case 'u': digits = 4; break;
    case 'U': digits = 8; break;
    default: return fail_at(p, at, "unknown escape '\\%c'", e);
    }
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        int h = *s < p->end ? hex_value(**s) : -1;
        if (h < 0)
            return fail_at(p, at, "escape '\\%c' needs %d hex digits", e, digits);
        v = v * 16 + (uint32_t)h;
        (*s)++;
    }
    if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return fail_at(p, at, "escape is not a Unicode scalar value");
    return (long)v;
}

/* ---- the grammar ------------------------------------------------------------------------------ */

static const char *parse_alternates(parser *p, const char *s, const char *rule_name, elem_vec *out, bool nested);

static int parse_count(parser *p, const char **s, unsigned long *v)
{
    const char *at = *s;
    if (*s >= p->end || !isdigit((unsigned char)**s))
        return fail_at(p, at, "expected a number");
    *v = 0;
    while (*s < p->end && isdigit((unsigned char)**s)) {
        *v = *v * 10 + (unsigned long)(**s - '0');
        if (*v > MAX_REPEAT_COUNT)
            return fail_at(p, at, "repetition count above %d", MAX_REPEAT_COUNT);
        (*s)++;
    }
    return 0;
}

/* Appends item repeated min..max times (max < 0: unbounded) to out. */
static int emit_repetition(parser *p, elem_vec *out, const uint32_t *item, size_t n, long min, long max,
                           const char *rule_name, const char *at)
{
    if ((unsigned long)(max < 0 ? min + 1 : max) * n > GRAMMAR_MAX_ELEMENTS)
        return fail_at(p, at, "repetition makes the grammar larger than %d elements", GRAMMAR_MAX_ELEMENTS);
    for (long i = 0; i < min; i++)
        if (vec_append(p, out, item, n) < 0)
            return -1;
    if (max < 0) { /* r ::= item r | "" */
        long r = aux_rule(p, rule_name, at);
        if (r < 0)
            return -1;
        elem_vec body = {0};
        if (vec_append(p, &body, item, n) < 0 || vec_push(p, &body, EL_MAKE(EL_REF, r)) < 0 ||
            vec_push(p, &body, EL_MAKE(EL_ALT, 0)) < 0)
            return free(body.v), -1;
        rule_set(p, r, &body);
        return vec_push(p, out, EL_MAKE(EL_REF, r));
    }
    long prev = -1; /* r_k ::= item r_{k-1} | "" */
    for (long k = 0; k < max - min; k++) {
        long r = aux_rule(p, rule_name, at);
        if (r < 0)
            return -1;
        elem_vec body = {0};
        if (vec_append(p, &body, item, n) < 0 || (prev >= 0 && vec_push(p, &body, EL_MAKE(EL_REF, prev)) < 0) ||
            vec_push(p, &body, EL_MAKE(EL_ALT, 0)) < 0)
            return free(body.v), -1;
        rule_set(p, r, &body);
        p->b->rules[r].chain_k = (uint32_t)k + 1;
        prev = r;
    }
    if (prev >= 0)
        return vec_push(p, out, EL_MAKE(EL_REF, prev));
    return 0;
}

/* Replaces out[start..] (the last item) by its repetition min..max (max < 0: unbounded). */
static int repeat_last(parser *p, elem_vec *out, size_t start, long min, long max, const char *rule_name,
                       const char *at)
{
    size_t n = out->n - start;
    if (!n)
        return fail_at(p, at, "repetition without an item before it");
    uint32_t *item = malloc(n * sizeof *item);
    if (!item)
        return fail_at(p, at, "out of memory");
    memcpy(item, out->v + start, n * sizeof *item);
    gb_builder *b = p->b;
    if (max < 0) { /* an unbounded repetition of what can match nothing would never end */
        if (grow_array((void **)&b->repeats, &b->cap_repeats, b->n_repeats + 1, sizeof *b->repeats) < 0)
            return free(item), fail_at(p, at, "out of memory");
        gb_repeat *rep = &b->repeats[b->n_repeats++];
        rep->elems = malloc(n * sizeof *item);
        if (!rep->elems)
            return free(item), fail_at(p, at, "out of memory");
        memcpy(rep->elems, item, n * sizeof *item);
        rep->n = n;
        rep->line = (int)(at - p->text);
    }
    out->n = start;
    b->total_elems -= n;
    int rc = emit_repetition(p, out, item, n, min, max, rule_name, at);
    free(item);
    return rc;
}

static const char *parse_class(parser *p, const char *s, elem_vec *out, const char *rule_name)
{
    const char *at = s;
    s++; /* [ */
    bool negated = s < p->end && *s == '^';
    if (negated)
        s++;
    cp_class c = {0};
    while (s < p->end && *s != ']') {
        long lo = parse_char(p, &s);
        if (lo < 0)
            goto fail;
        long hi = lo;
        if (s + 1 < p->end && *s == '-' && s[1] != ']') {
            s++;
            hi = parse_char(p, &s);
            if (hi < 0)
                goto fail;
            if (hi < lo) {
                fail_at(p, at, "character range out of order");
                goto fail;
            }
        }
        if (class_add(p, &c, (uint32_t)lo, (uint32_t)hi) < 0)
            goto fail;
    }
    if (s >= p->end) {
        fail_at(p, at, "unterminated character class");
        goto fail;
    }
    s++;
    if (class_normalize(p, &c, negated) < 0 || emit_class(p, out, &c, rule_name, at) < 0)
        goto fail;
    free(c.r);
    return s;
fail:
    free(c.r);
    return NULL;
}

static const char *parse_sequence(parser *p, const char *s, const char *rule_name, elem_vec *out, bool nested)
{
    size_t last_start = (size_t)-1;
    while (s < p->end) {
        const char *at = s;
        char c = *s;
        if (c == '"') {
            s++;
            last_start = out->n;
            while (s < p->end && *s != '"') {
                long ch = parse_char(p, &s);
                if (ch < 0)
                    return NULL;
                uint8_t bytes[4];
                int nb = utf8_encode((uint32_t)ch, bytes);
                for (int i = 0; i < nb; i++)
                    if (vec_push(p, out, byte_elem(p, bytes[i], bytes[i])) < 0)
                        return NULL;
            }
            if (s >= p->end)
                return fail_at(p, at, "unterminated literal"), NULL;
            s++;
        } else if (c == '[') {
            last_start = out->n;
            if (!(s = parse_class(p, s, out, rule_name)))
                return NULL;
        } else if (c == '.') {
            last_start = out->n;
            cp_class any = {0};
            int rc = class_add(p, &any, 0, 0x10ffff);
            if (rc == 0)
                rc = class_normalize(p, &any, false);
            if (rc == 0)
                rc = emit_class(p, out, &any, rule_name, at);
            free(any.r);
            if (rc < 0)
                return NULL;
            s++;
        } else if (is_word(c)) {
            const char *name = s;
            while (s < p->end && is_word(*s))
                s++;
            /* `name ::=` starts the next rule: the sequence ends before it */
            const char *after = skip_space(p, s, false);
            if (!nested && after + 2 < p->end && !memcmp(after, "::=", 3)) {
                s = name;
                break;
            }
            long r = rule_index(p, name, (size_t)(s - name), name);
            if (r < 0)
                return NULL;
            last_start = out->n;
            if (vec_push(p, out, EL_MAKE(EL_REF, r)) < 0)
                return NULL;
        } else if (c == '(') {
            if (++p->depth > GRAMMAR_MAX_DEPTH)
                return fail_at(p, at, "groups nested deeper than %d", GRAMMAR_MAX_DEPTH), NULL;
            long r = aux_rule(p, rule_name, at);
            if (r < 0)
                return NULL;
            elem_vec body = {0};
            s = parse_alternates(p, skip_space(p, s + 1, true), rule_name, &body, true);
            if (!s) {
                free(body.v);
                return NULL;
            }
            if (s >= p->end || *s != ')') {
                free(body.v);
                return fail_at(p, at, "unclosed '('"), NULL;
            }
            s++;
            p->depth--;
            rule_set(p, r, &body);
            last_start = out->n;
            if (vec_push(p, out, EL_MAKE(EL_REF, r)) < 0)
                return NULL;
        } else if (c == '*' || c == '+' || c == '?') {
            if (last_start == (size_t)-1)
                return fail_at(p, at, "'%c' without an item before it", c), NULL;
            long min = c == '+', max = c == '?' ? 1 : -1;
            if (repeat_last(p, out, last_start, min, max, rule_name, at) < 0)
                return NULL;
            last_start = (size_t)-1;
            s++;
        } else if (c == '{') {
            if (last_start == (size_t)-1)
                return fail_at(p, at, "'{' without an item before it"), NULL;
            s = skip_space(p, s + 1, true);
            unsigned long min, max;
            if (parse_count(p, &s, &min) < 0)
                return NULL;
            s = skip_space(p, s, true);
            long maxl = (long)min;
            if (s < p->end && *s == ',') {
                s = skip_space(p, s + 1, true);
                maxl = -1;
                if (s < p->end && isdigit((unsigned char)*s)) {
                    if (parse_count(p, &s, &max) < 0)
                        return NULL;
                    maxl = (long)max;
                    if (max < min)
                        return fail_at(p, at, "repetition {%lu,%lu}: maximum below minimum", min, max), NULL;
                }
                s = skip_space(p, s, true);
            }
            if (s >= p->end || *s != '}')
                return fail_at(p, at, "expected '}'"), NULL;
            s++;
            if (repeat_last(p, out, last_start, (long)min, maxl, rule_name, at) < 0)
                return NULL;
            last_start = (size_t)-1;
        } else {
            break;
        }
        s = skip_space(p, s, nested);
    }
    return s;
}

static const char *parse_alternates(parser *p, const char *s, const char *rule_name, elem_vec *out, bool nested)
{
    for (;;) {
        s = parse_sequence(p, s, rule_name, out, nested);
        if (!s)
            return NULL;
        /* an alternative may also continue on the next line, starting with '|' */
        const char *next = skip_space(p, s, true);
        if (next < p->end && *next == '|') {
            if (vec_push(p, out, EL_MAKE(EL_ALT, 0)) < 0)
                return NULL;
            s = skip_space(p, next + 1, true);
            continue;
        }
        return s;
    }
}

static const char *parse_rule(parser *p, const char *s)
{
    const char *name = s;
    while (s < p->end && is_word(*s))
        s++;
    if (s == name)
        return fail_at(p, name, "expected a rule name"), NULL;
    size_t name_len = (size_t)(s - name);
    s = skip_space(p, s, false);
    if (s + 3 > p->end || memcmp(s, "::=", 3))
        return fail_at(p, s, "expected '::=' after the rule name"), NULL;
    long r = rule_index(p, name, name_len, name);
    if (r < 0)
        return NULL;
    if (p->b->rules[r].defined)
        return fail_at(p, name, "rule '%.*s' defined twice", (int)name_len, name), NULL;
    p->b->rules[r].defined = true;
    p->b->rules[r].line = (int)(name - p->text);
    char *rule_name = strndup(name, name_len);
    if (!rule_name)
        return fail_at(p, name, "out of memory"), NULL;
    elem_vec body = {0};
    s = parse_alternates(p, skip_space(p, s + 3, true), rule_name, &body, false);
    free(rule_name);
    if (!s) {
        free(body.v);
        return NULL;
    }
    rule_set(p, r, &body);
    if (s < p->end && *s != '\n' && *s != '\r')
        return fail_at(p, s, "unexpected '%c'", *s), NULL;
    return s;
}

/* Turns the offsets kept in rules and repeats into lines and columns. */
static void offset_to_line_col(const parser *p, const size_t *line_starts, size_t n_lines, int *line, int *col)
{
    size_t off = (size_t)*line, lo = 0, hi = n_lines;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (line_starts[mid] <= off)
            lo = mid;
        else
            hi = mid;
    }
    *line = (int)lo + 1;
    *col = 1;
    for (const char *s = p->text + line_starts[lo]; s < p->text + off; s++)
        *col += ((unsigned char)*s & 0xc0) != 0x80;
}

static void resolve_positions(parser *p)
{
    size_t n_lines = 1;
    for (const char *s = p->text; s < p->end; s++)
        n_lines += *s == '\n';
    size_t *starts = malloc(n_lines * sizeof *starts);
    if (!starts) { /* positions stay offsets: only messages lose precision */
        for (size_t i = 0; i < p->b->n_rules; i++)
            p->b->rules[i].col = 0;
        return;
    }
    size_t k = 0;
    starts[k++] = 0;
    for (const char *s = p->text; s < p->end; s++)
        if (*s == '\n')
            starts[k++] = (size_t)(s - p->text) + 1;
    for (size_t i = 0; i < p->b->n_rules; i++)
        offset_to_line_col(p, starts, n_lines, &p->b->rules[i].line, &p->b->rules[i].col);
    for (size_t i = 0; i < p->b->n_repeats; i++)
        offset_to_line_col(p, starts, n_lines, &p->b->repeats[i].line, &p->b->repeats[i].col);
    free(starts);
}

int gbnf_parse(gb_builder *b, const char *text, size_t len, el_err *err)
{
    parser p = {b, text, text + len, err, 0, false};
    if (len > GRAMMAR_MAX_SOURCE_BYTES)
        return el_fail(err, "grammar: longer than %d bytes", GRAMMAR_MAX_SOURCE_BYTES);
    if (memchr(text, 0, len))
        return el_fail(err, "grammar: contains a NUL byte");
    const char *s = skip_space(&p, text, true);
    while (s < p.end) {
        s = parse_rule(&p, s);
        if (!s)
            return -1;
        s = skip_space(&p, s, true);
    }
    resolve_positions(&p);
    for (size_t i = 0; i < b->n_rules; i++)
        if (!b->rules[i].defined)
            return el_fail(err, "grammar: line %d, column %d: undefined rule '%s'", b->rules[i].line,
                           b->rules[i].col, b->rules[i].name);
    return 0;
}
