/* From source rules to the automaton: checks (undefined and left-recursive rules,
 * repetitions of what can match nothing), the flat element array, the items of
 * every live position, each rule's return sites, then the token masks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar_internal.h"
#include "base/array.h"

enum {
    MAX_ITEMS_PER_POS = 4096,   /* terminals reachable from one position without input */
    MAX_ITEMS = 1 << 21,
    MAX_EXPAND_DEPTH = 256,     /* rules entered without input */
    MAX_CONTS = 256             /* return sites per rule for the mask analysis */
};

void grammar_free(grammar *g)
{
    if (!g)
        return;
    if (g->masks) {
        grammar_free_lazy_dfa(g);
        for (size_t i = 0; i < g->n_elems; i++) {
            if (g->masks[i].borrowed)
                continue;
            free(g->masks[i].list);
            free(g->masks[i].bitmap);
            free(g->masks[i].uncertain);
        }
        free(g->masks);
        pthread_mutex_destroy(&g->mask_lock);
    }
    free(g->elems);
    free(g->rule_start);
    free(g->rule_of);
    free(g->rule_nullable);
    free(g->nullable_rest);
    free(g->sets);
    free(g->item_off);
    free(g->item_n);
    free(g->items);
    free(g->seqs);
    free(g->cont_off);
    free(g->cont_n);
    free(g->conts);
    free(g->rule_can_finish);
    free(g->rule_chain_k);
    free(g->rule_cont_unknown);
    free(g);
}

/* ---- flat layout -------------------------------------------------------------------------- */

static int flatten(grammar *g, const gb_builder *b, uint32_t root, el_err *err)
{
    g->n_rules = (uint32_t)b->n_rules + 1; /* + the start rule: start ::= root */
    size_t n = 4;
    for (size_t r = 0; r < b->n_rules; r++)
        n += b->rules[r].n + 1;
    g->n_elems = n;
    g->elems = malloc(n * sizeof *g->elems);
    g->rule_of = malloc(n * sizeof *g->rule_of);
    g->rule_start = malloc(g->n_rules * sizeof *g->rule_start);
    if (!g->elems || !g->rule_of || !g->rule_start)
        return el_fail(err, "grammar: out of memory");
    size_t k = 0;
    for (size_t r = 0; r < b->n_rules; r++) {
        g->rule_start[r] = (uint32_t)k;
        for (size_t i = 0; i < b->rules[r].n; i++) {
            g->rule_of[k] = (uint32_t)r;
            g->elems[k++] = b->rules[r].elems[i];
        }
        g->rule_of[k] = (uint32_t)r;
        g->elems[k++] = EL_MAKE(EL_END, 0);
    }
    uint32_t start = g->n_rules - 1;
    g->rule_start[start] = (uint32_t)k;
    g->start_pos = (uint32_t)k;
    g->rule_of[k] = start;
    g->elems[k++] = EL_MAKE(EL_REF, root);
    g->rule_of[k] = start;
    g->elems[k++] = EL_MAKE(EL_END, 0);
    /* the floor: a terminal that matches nothing, in no rule's alternatives */
    g->floor_pos = (uint32_t)k;
    g->rule_of[k] = start;
    g->elems[k++] = EL_MAKE(EL_BYTES, b->n_sets); /* the empty set, added after the source's */
    g->rule_of[k] = start;
    g->elems[k++] = EL_MAKE(EL_END, 0);
    return 0;
}

/* ---- nullability ---------------------------------------------------------------------------- */

static bool elem_nullable(const grammar *g, uint32_t e)
{
    return EL_TYPE(e) == EL_REF && g->rule_nullable[EL_VALUE(e)];
}

static bool seq_nullable(const grammar *g, const uint32_t *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!elem_nullable(g, e[i]))
            return false;
    return true;
}

static int compute_nullable(grammar *g, el_err *err)
{
    g->rule_nullable = calloc(g->n_rules, sizeof *g->rule_nullable);
    g->nullable_rest = calloc(g->n_elems, sizeof *g->nullable_rest);
    if (!g->rule_nullable || !g->nullable_rest)
        return el_fail(err, "grammar: out of memory");
    for (bool changed = true; changed;) {
        changed = false;
        for (uint32_t r = 0; r < g->n_rules; r++) {
            if (g->rule_nullable[r])
                continue;
            bool alt_ok = true;
            for (uint32_t q = g->rule_start[r];; q++) {
                uint32_t e = g->elems[q];
                if (EL_IS_BOUNDARY(e)) {
                    if (alt_ok) {
                        g->rule_nullable[r] = true;
                        changed = true;
                        break;
                    }
                    if (EL_TYPE(e) == EL_END)
                        break;
                    alt_ok = true;
                } else if (!elem_nullable(g, e)) {
                    alt_ok = false;
                }
            }
        }
    }
    bool rest = true;
    for (size_t q = g->n_elems; q-- > 0;) {
        uint32_t e = g->elems[q];
        if (EL_IS_BOUNDARY(e))
            rest = true;
        else
            rest = rest && elem_nullable(g, e);
        g->nullable_rest[q] = rest;
    }
    return 0;
}

/* ---- left recursion ------------------------------------------------------------------------- */

static int check_left_recursion(const grammar *g, const gb_builder *b, el_err *err)
{
    /* iterative DFS over "r can start with s" edges; color 1 = on the path */
    uint8_t *color = calloc(g->n_rules, 1);
    uint32_t *stack_rule = malloc(g->n_rules * sizeof *stack_rule);
    uint32_t *stack_pos = malloc(g->n_rules * sizeof *stack_pos);
    if (!color || !stack_rule || !stack_pos) {
        free(color), free(stack_rule), free(stack_pos);
        return el_fail(err, "grammar: out of memory");
    }
    int rc = 0;
    for (uint32_t r0 = 0; r0 < g->n_rules && !rc; r0++) {
        if (color[r0])
            continue;
        size_t top = 0;
        stack_rule[top] = r0;
        stack_pos[top++] = g->rule_start[r0];
        color[r0] = 1;
        while (top && !rc) {
            uint32_t r = stack_rule[top - 1], q = stack_pos[top - 1];
            uint32_t e = g->elems[q];
            if (EL_TYPE(e) == EL_END) {
                color[r] = 2;
                top--;
                continue;
            }
            /* next position to look at in r: skip to the next alternative unless e is a
             * nullable reference (then what follows is also at the left edge) */
            uint32_t next = q + 1;
            if (EL_TYPE(e) == EL_BYTES || (EL_TYPE(e) == EL_REF && !g->rule_nullable[EL_VALUE(e)]))
                while (!EL_IS_BOUNDARY(g->elems[next]))
                    next++;
            stack_pos[top - 1] = next;
            if (EL_TYPE(e) != EL_REF)
                continue;
            uint32_t s = EL_VALUE(e);
            if (color[s] == 1) {
                uint32_t shown = s < b->n_rules ? s : r;
                const gb_rule *rule = &b->rules[shown];
                bool aux = strchr(rule->name, '~') != NULL;
                rc = el_fail(err, "grammar: line %d, column %d: %s '%s' is left-recursive (it can reach itself "
                                  "before matching any character)",
                             rule->line, rule->col, aux ? "the group or repetition in rule" : "rule",
                             aux ? strtok(rule->name, "~") : rule->name);
            } else if (!color[s]) {
                color[s] = 1;
                stack_rule[top] = s;
                stack_pos[top++] = g->rule_start[s];
            }
        }
    }
    free(color), free(stack_rule), free(stack_pos);
    return rc;
}

static int check_repeats(const grammar *g, const gb_builder *b, el_err *err)
{
    for (size_t i = 0; i < b->n_repeats; i++)
        if (seq_nullable(g, b->repeats[i].elems, b->repeats[i].n))
            return el_fail(err, "grammar: line %d, column %d: the repeated item can match nothing (an empty "
                                "repetition)",
                           b->repeats[i].line, b->repeats[i].col);
    return 0;
}

/* ---- items ------------------------------------------------------------------------------------- */

typedef struct item_builder {
    grammar *g;
    size_t cap_items, cap_seqs;
    uint32_t prefix[MAX_EXPAND_DEPTH + 2];
    size_t n_here; /* items of the position being expanded */
    el_err *err;
    int rc;
} item_builder;

static void add_item(item_builder *ib, uint32_t set, const uint32_t *frames, size_t n)
{
    grammar *g = ib->g;
    if (ib->rc)
        return;
    if (++ib->n_here > MAX_ITEMS_PER_POS || g->n_items >= MAX_ITEMS) {
        ib->rc = el_fail(ib->err, "grammar: too ambiguous (more than %d ways to reach a character from one "
                                  "place)",
                         MAX_ITEMS_PER_POS);
        return;
    }
    if (grow_array((void **)&g->items, &ib->cap_items, g->n_items + 1, sizeof *g->items) < 0 ||
        grow_array((void **)&g->seqs, &ib->cap_seqs, g->n_seqs + n, sizeof *g->seqs) < 0) {
        ib->rc = el_fail(ib->err, "grammar: out of memory");
        return;
    }
    if (n)
        memcpy(g->seqs + g->n_seqs, frames, n * sizeof *frames);
    g->items[g->n_items++] = (gram_item){set, (uint32_t)g->n_seqs, (uint32_t)n};
    g->n_seqs += n;
}

/* Every way to reach a terminal from position q, with ib->prefix[0..depth) the frames
 * pushed so far above the replaced top. Alternatives that can end without a character
 * are not followed out of their rule here: the reference that entered the rule goes on
 * after it when the rule is nullable, and at the top level advance() pops through
 * nullable_rest. */
static void expand(item_builder *ib, uint32_t q, size_t depth, int calls)
{
    grammar *g = ib->g;
    if (ib->rc)
        return;
    if (depth > MAX_EXPAND_DEPTH || calls > MAX_EXPAND_DEPTH) {
        ib->rc = el_fail(ib->err, "grammar: rules nested deeper than %d without a character", MAX_EXPAND_DEPTH);
        return;
    }
    uint32_t e = g->elems[q];
    if (EL_TYPE(e) == EL_BYTES) {
        size_t n = depth;
        if (!EL_IS_BOUNDARY(g->elems[q + 1]))
            ib->prefix[n++] = q + 1;
        add_item(ib, EL_VALUE(e), ib->prefix, n);
        return;
    }
    /* a reference: enter each alternative, returning to q + 1 unless that ends ours */
    uint32_t r = EL_VALUE(e);
    size_t d = depth;
    if (!EL_IS_BOUNDARY(g->elems[q + 1]))
        ib->prefix[d++] = q + 1;
    uint32_t a = g->rule_start[r];
    for (;;) {
        if (!EL_IS_BOUNDARY(g->elems[a]))
            expand(ib, a, d, calls + 1);
        while (!EL_IS_BOUNDARY(g->elems[a]))
            a++;
        if (EL_TYPE(g->elems[a]) == EL_END)
            break;
        a++;
    }
    if (g->rule_nullable[r] && !EL_IS_BOUNDARY(g->elems[q + 1]))
        expand(ib, q + 1, depth, calls + 1);
}

static int build_items(grammar *g, el_err *err)
{
    item_builder ib = {.g = g, .err = err};
    g->item_off = calloc(g->n_elems, sizeof *g->item_off);
    g->item_n = calloc(g->n_elems, sizeof *g->item_n);
    if (!g->item_off || !g->item_n)
        return el_fail(err, "grammar: out of memory");
    for (uint32_t q = 0; q < g->n_elems && !ib.rc; q++) {
        if (EL_IS_BOUNDARY(g->elems[q]))
            continue;
        g->item_off[q] = (uint32_t)g->n_items;
        ib.n_here = 0;
        expand(&ib, q, 0, 0);
        g->item_n[q] = (uint32_t)(g->n_items - g->item_off[q]);
    }
    /* allocated even when empty: g->items + offset stays defined */
    if (!ib.rc && !g->items && !(g->items = malloc(sizeof *g->items)))
        ib.rc = el_fail(err, "grammar: out of memory");
    if (!ib.rc && !g->seqs && !(g->seqs = malloc(sizeof *g->seqs)))
        ib.rc = el_fail(err, "grammar: out of memory");
    return ib.rc;
}

/* ---- return sites --------------------------------------------------------------------------------- */

typedef struct u32_set {
    uint32_t *v;
    size_t n, cap;
} u32_set;

static bool set_add(u32_set *s, uint32_t x, bool *oom)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == x)
            return false;
    if (grow_array((void **)&s->v, &s->cap, s->n + 1, sizeof *s->v) < 0) {
        *oom = true;
        return false;
    }
    s->v[s->n++] = x;
    return true;
}

static int build_conts(grammar *g, el_err *err)
{
    u32_set *sets = calloc(g->n_rules, sizeof *sets);
    g->rule_can_finish = calloc(g->n_rules, sizeof *g->rule_can_finish);
    g->rule_cont_unknown = calloc(g->n_rules, sizeof *g->rule_cont_unknown);
    g->cont_off = calloc(g->n_rules, sizeof *g->cont_off);
    g->cont_n = calloc(g->n_rules, sizeof *g->cont_n);
    bool oom = !sets || !g->rule_can_finish || !g->rule_cont_unknown || !g->cont_off || !g->cont_n;
    if (oom) {
        free(sets);
        return el_fail(err, "grammar: out of memory");
    }
    g->rule_can_finish[g->n_rules - 1] = true;
    /* direct sites */
    for (uint32_t q = 0; q < g->n_elems; q++)
        if (EL_TYPE(g->elems[q]) == EL_REF && !EL_IS_BOUNDARY(g->elems[q + 1])) {
            uint32_t r = EL_VALUE(g->elems[q]);
            if (!g->rule_cont_unknown[r]) {
                set_add(&sets[r], q + 1, &oom);
                if (sets[r].n > MAX_CONTS)
                    g->rule_cont_unknown[r] = true;
            }
        }
    /* tail calls inherit their caller's sites */
    for (bool changed = true; changed && !oom;) {
        changed = false;
        for (uint32_t q = 0; q < g->n_elems; q++) {
            if (EL_TYPE(g->elems[q]) != EL_REF || !EL_IS_BOUNDARY(g->elems[q + 1]))
                continue;
            uint32_t r = EL_VALUE(g->elems[q]), caller = g->rule_of[q];
            if (g->rule_can_finish[caller] && !g->rule_can_finish[r])
                g->rule_can_finish[r] = changed = true;
            if (g->rule_cont_unknown[r])
                continue;
            if (g->rule_cont_unknown[caller]) {
                g->rule_cont_unknown[r] = changed = true;
                continue;
            }
            for (size_t i = 0; i < sets[caller].n; i++)
                if (set_add(&sets[r], sets[caller].v[i], &oom))
                    changed = true;
            if (sets[r].n > MAX_CONTS)
                g->rule_cont_unknown[r] = true;
        }
    }
    size_t total = 0;
    for (uint32_t r = 0; r < g->n_rules; r++)
        total += g->rule_cont_unknown[r] ? 0 : sets[r].n;
    g->conts = malloc((total ? total : 1) * sizeof *g->conts);
    oom = oom || !g->conts;
    size_t k = 0;
    for (uint32_t r = 0; r < g->n_rules; r++) {
        g->cont_off[r] = (uint32_t)k;
        if (!oom && !g->rule_cont_unknown[r] && sets[r].n) {
            memcpy(g->conts + k, sets[r].v, sets[r].n * sizeof *g->conts);
            k += sets[r].n;
        }
        g->cont_n[r] = (uint32_t)(k - g->cont_off[r]);
        free(sets[r].v);
    }
    free(sets);
    return oom ? el_fail(err, "grammar: out of memory") : 0;
}

/* ---- repetition chains ------------------------------------------------------------------------ */

/* x{0,n} is a chain of rules r_k ::= x r_{k-1} | "". Where x cannot be empty, a token
 * of at most L bytes started in r_k with k > L + 1 cannot reach the chain's end, so
 * every such r_k has the same masks as r_{L+2} (see mask.c). */
static int build_chains(grammar *g, const gb_builder *b, el_err *err)
{
    g->rule_chain_k = calloc(g->n_rules, sizeof *g->rule_chain_k);
    if (!g->rule_chain_k)
        return el_fail(err, "grammar: out of memory");
    for (size_t r = 0; r < b->n_rules; r++) {
        uint32_t k = b->rules[r].chain_k;
        if (k < 2)
            continue;
        /* the item: the first alternative less its final reference */
        uint32_t q = g->rule_start[r];
        bool item_nullable = true;
        while (!EL_IS_BOUNDARY(g->elems[q + 1])) {
            item_nullable = item_nullable && elem_nullable(g, g->elems[q]);
            q++;
        }
        if (!item_nullable)
            g->rule_chain_k[r] = k;
    }
    return 0;
}

/* ---- entry --------------------------------------------------------------------------------------- */

grammar *grammar_build(const grammar_vocab *v, const gb_builder *b, el_err *err)
{
    long root = -1;
    for (size_t r = 0; r < b->n_rules; r++)
        if (!strcmp(b->rules[r].name, "root"))
            root = (long)r;
    if (root < 0) {
        el_fail(err, "grammar: no rule named 'root'");
        return NULL;
    }
    grammar *g = calloc(1, sizeof *g);
    if (!g) {
        el_fail(err, "grammar: out of memory");
        return NULL;
    }
    g->vocab = v;
    if (flatten(g, b, (uint32_t)root, err) < 0 || compute_nullable(g, err) < 0 ||
        check_repeats(g, b, err) < 0 || check_left_recursion(g, b, err) < 0)
        goto fail;
    g->n_sets = (uint32_t)b->n_sets + 1;
    g->sets = calloc(g->n_sets, sizeof *g->sets);
    if (!g->sets) {
        el_fail(err, "grammar: out of memory");
        goto fail;
    }
    if (b->n_sets)
        memcpy(g->sets, b->sets, b->n_sets * sizeof *g->sets);
    if (build_items(g, err) < 0 || build_conts(g, err) < 0 || build_chains(g, b, err) < 0)
        goto fail;
    g->masks = calloc(g->n_elems, sizeof *g->masks);
    if (!g->masks) {
        el_fail(err, "grammar: out of memory");
        goto fail;
    }
    pthread_mutex_init(&g->mask_lock, NULL);
    return g;
fail:
    grammar_free(g);
    return NULL;
}
