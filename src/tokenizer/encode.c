/* Text to token ids, as llama.cpp's SentencePiece ("llama") tokenizer does it:
 *
 * 1. Special tokens are cut out of the text first (user-defined tokens always;
 *    control and unknown tokens only with parse_special), longest tokens first,
 *    each one's occurrences left to right.
 * 2. Each piece of text between them gets a leading space (add_space_prefix,
 *    only at the start and after a special token), spaces become U+2581, and it
 *    is split into UTF-8 characters.
 * 3. Adjacent symbols are merged, always the pair whose joined text is the
 *    highest-scoring vocabulary token (leftmost on ties), until none is left.
 * 4. A symbol that is not a token is written as byte-fallback tokens <0xHH>. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"
#include "base/wipebuf.h"

enum { MAX_ENCODE_BYTES = INT32_MAX / 4 };

/* ---- step 1: special tokens ------------------------------------------------ */

typedef struct special_match {
    size_t pos;
    uint32_t len;
    int32_t id;
} special_match;

typedef struct match_list {
    special_match *items;
    size_t n, cap;
} match_list;

static int match_list_push(match_list *m, special_match item, el_err *err)
{
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 16;
        special_match *items = realloc(m->items, cap * sizeof *items);
        if (!items)
            return el_fail(err, "out of memory for special-token matches");
        m->items = items;
        m->cap = cap;
    }
    m->items[m->n++] = item;
    return 0;
}

/* The special token spelled exactly by text[pos .. pos+len), or -1. */
static int32_t special_token_at(const tokenizer *t, const uint8_t *text, size_t pos, uint32_t len,
                                bool parse_special)
{
    int32_t node = 0;
    for (uint32_t i = 0; i < len; i++) {
        int32_t c = t->trie[node].first_child;
        while (c >= 0 && t->trie[c].byte != text[pos + i])
            c = t->trie[c].next_sibling;
        if (c < 0)
            return -1;
        node = c;
    }
    int32_t id = t->trie[node].token;
    return id >= 0 && tokenizer_matches_whole(t, id, parse_special) ? id : -1;
}

/* A position where at least one special token starts. */
typedef struct special_candidate {
    size_t pos;
    uint32_t max_len; /* of the longest token starting here */
} special_candidate;

typedef struct candidate_scan {
    special_candidate *items;
    size_t n, cap;
    bool length_seen[TOKENIZER_MAX_PIECE + 1];
} candidate_scan;

/* Walks the trie from pos, noting every special token that starts there. */
static int scan_position(const tokenizer *t, const uint8_t *text, size_t len, size_t pos, bool parse_special,
                         candidate_scan *scan, el_err *err)
{
    int32_t node = 0;
    uint32_t max_len = 0;
    for (size_t i = pos; i < len; i++) {
        int32_t c = t->trie[node].first_child;
        while (c >= 0 && t->trie[c].byte != text[i])
            c = t->trie[c].next_sibling;
        if (c < 0)
            break;
        node = c;
        int32_t id = t->trie[node].token;
        if (id >= 0 && tokenizer_matches_whole(t, id, parse_special)) {
            max_len = (uint32_t)(i + 1 - pos);
            scan->length_seen[max_len] = true;
        }
    }
    if (max_len == 0)
        return 0;
    if (scan->n == scan->cap) {
        size_t cap = scan->cap ? scan->cap * 2 : 16;
        special_candidate *items = realloc(scan->items, cap * sizeof *items);
        if (!items)
            return el_fail(err, "out of memory for special-token matches");
        scan->items = items;
        scan->cap = cap;
    }
    scan->items[scan->n++] = (special_candidate){pos, max_len};
    return 0;
}

static bool range_free(const uint8_t *taken, size_t pos, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++)
        if (taken[pos + i])
            return false;
    return true;
}

/* One llama.cpp partition step: every free occurrence of tokens of one length,
 * left to right. */
static int take_length(const tokenizer *t, const uint8_t *text, const candidate_scan *scan, uint32_t tok_len,
                       bool parse_special, uint8_t *taken, match_list *out, el_err *err)
{
    size_t next_free = 0;
    for (size_t k = 0; k < scan->n; k++) {
        const special_candidate *c = &scan->items[k];
        if (c->pos < next_free || c->max_len < tok_len || !range_free(taken, c->pos, tok_len))
            continue;
        int32_t id = special_token_at(t, text, c->pos, tok_len, parse_special);
        if (id < 0)
            continue;
        memset(taken + c->pos, 1, tok_len);
        if (match_list_push(out, (special_match){c->pos, tok_len, id}, err) < 0)
            return -1;
        next_free = c->pos + tok_len;
    }
    return 0;
}

static int cmp_match_pos(const void *a, const void *b)
{
    const special_match *x = a, *y = b;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

/* Finds where special tokens cut the text, in the order llama.cpp's
 * tokenizer_st_partition takes them (longest tokens first), and returns them
 * sorted by position. */
static int find_special_tokens(const tokenizer *t, const uint8_t *text, size_t len, bool parse_special,
                               match_list *out, el_err *err)
{
    candidate_scan scan;
    scan.items = NULL;
    scan.n = scan.cap = 0;
    memset(scan.length_seen, 0, sizeof scan.length_seen);
    int rc = 0;
    for (size_t pos = 0; pos < len && rc == 0; pos++)
        if (t->special_first_byte[text[pos]])
            rc = scan_position(t, text, len, pos, parse_special, &scan, err);
    uint8_t *taken = NULL;
    if (rc == 0 && scan.n > 0) {
        taken = calloc(len, 1);
        if (!taken)
            rc = el_fail(err, "out of memory tokenizing %zu bytes", len);
        for (int li = 0; li < t->n_special_lengths && rc == 0; li++)
            if (scan.length_seen[t->special_lengths[li]])
                rc = take_length(t, text, &scan, t->special_lengths[li], parse_special, taken, out, err);
    }
    free(taken);
    free(scan.items);
    if (rc == 0 && out->n > 1)
        qsort(out->items, out->n, sizeof *out->items, cmp_match_pos);
    return rc;
}

/* ---- steps 2 to 4: BPE over one piece of text ----------------------------- */

typedef struct spm_symbol {
    uint32_t off, n; /* bytes in the escaped text; n == 0 once merged away */
    int32_t prev, next;
} spm_symbol;

typedef struct spm_bigram {
    int32_t left, right;
    float score;
    uint32_t size;
} spm_bigram;

typedef struct spm_work {
    char *text; /* the escaped piece */
    size_t text_cap;
    spm_symbol *symbols;
    size_t symbols_cap;
    spm_bigram *heap;
    size_t heap_n, heap_cap;
} spm_work;

static void spm_work_free(spm_work *w)
{
    wipe_free(w->text, w->text_cap);
    wipe_free(w->symbols, w->symbols_cap * sizeof *w->symbols);
    wipe_free(w->heap, w->heap_cap * sizeof *w->heap);
}

/* Every buffer here may hold message text (escaped, or split into symbols). used
 * items are kept. */
static int grow(void **buf, size_t *cap, size_t used, size_t need, size_t elem, el_err *err)
{
    if (wipe_grow_array(buf, cap, used, need, elem) < 0)
        return el_fail(err, "out of memory tokenizing (%zu items)", need);
    return 0;
}

/* Heap order: higher score first, then the leftmost pair. */
static bool bigram_before(const spm_bigram *a, const spm_bigram *b)
{
    if (a->score != b->score)
        return a->score > b->score;
    return a->left < b->left;
}

static int heap_push(spm_work *w, spm_bigram b, el_err *err)
{
    if (grow((void **)&w->heap, &w->heap_cap, w->heap_n, w->heap_n + 1, sizeof *w->heap, err) < 0)
        return -1;
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &w->heap[parent]))
            break;
        w->heap[i] = w->heap[parent];
        i = parent;
    }
    w->heap[i] = b;
    return 0;
}

static spm_bigram heap_pop(spm_work *w)
{
    spm_bigram top = w->heap[0];
    spm_bigram last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && bigram_before(&w->heap[child + 1], &w->heap[child]))
            child++;
        if (!bigram_before(&w->heap[child], &last))
            break;
        w->heap[i] = w->heap[child];
        i = child;
    }
    if (n)
        w->heap[i] = last;
    return top;
}

static int try_add_bigram(const tokenizer *t, spm_work *w, int32_t left, int32_t right, el_err *err)
{
    if (left < 0 || right < 0)
        return 0;
    const spm_symbol *l = &w->symbols[left], *r = &w->symbols[right];
    uint32_t size = l->n + r->n;
    int32_t id = tokenizer_lookup(t, w->text + l->off, size);
    if (id < 0)
        return 0;
    return heap_push(w, (spm_bigram){left, right, t->scores[id], size}, err);
}

/* Bytes in the UTF-8 sequence a lead byte announces (1 for anything invalid),
 * as llama.cpp's unicode_len_utf8: continuation bytes are not checked. */
static uint32_t utf8_sequence_len(uint8_t lead)
{
    static const uint8_t by_high_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return by_high_nibble[lead >> 4];
}

static int escape_piece(spm_work *w, const char *text, size_t len, bool space_prefix, size_t *out_len,
                        el_err *err)
{
    if (grow((void **)&w->text, &w->text_cap, 0, 3 * (len + 1), 1, err) < 0)
        return -1;
    size_t n = 0;
    if (space_prefix) {
        memcpy(w->text, "\xe2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(w->text + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            w->text[n++] = text[i];
        }
    }
    *out_len = n;
    return 0;
}

static int split_symbols(spm_work *w, size_t len, int32_t *n_symbols, el_err *err)
{
    if (grow((void **)&w->symbols, &w->symbols_cap, 0, len, sizeof *w->symbols, err) < 0)
        return -1;
    int32_t n = 0;
    for (size_t off = 0; off < len;) {
        uint32_t sym_len = utf8_sequence_len((uint8_t)w->text[off]);
        if (sym_len > len - off)
            sym_len = (uint32_t)(len - off);
        w->symbols[n] = (spm_symbol){(uint32_t)off, sym_len, n - 1, -1};
        if (n > 0)
            w->symbols[n - 1].next = n;
        n++;
        off += sym_len;
    }
    *n_symbols = n;
    return 0;
}

static int merge_symbols(const tokenizer *t, spm_work *w, int32_t n_symbols, el_err *err)
{
    w->heap_n = 0;
    for (int32_t i = 1; i < n_symbols; i++)
        if (try_add_bigram(t, w, i - 1, i, err) < 0)
            return -1;
    while (w->heap_n > 0) {
        spm_bigram b = heap_pop(w);
        spm_symbol *l = &w->symbols[b.left], *r = &w->symbols[b.right];
        /* A pair whose symbols changed since it was queued is stale. */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            w->symbols[r->next].prev = b.left;
        if (try_add_bigram(t, w, l->prev, b.left, err) < 0 ||
            try_add_bigram(t, w, b.left, w->symbols[b.left].next, err) < 0)
            return -1;
    }
    return 0;
}

static int push_byte_fallback(const tokenizer *t, uint8_t byte, token_vec *out, el_err *err)
{
    int32_t id = t->byte_token[byte] >= 0 ? t->byte_token[byte] : t->unk;
    if (id < 0)
        return el_fail(err, "the vocabulary has no token for byte 0x%02X and no unknown token", byte);
    return token_vec_push(out, id, err);
}

static int emit_symbols(const tokenizer *t, const spm_work *w, int32_t n_symbols, token_vec *out, el_err *err)
{
    for (int32_t i = n_symbols > 0 ? 0 : -1; i >= 0; i = w->symbols[i].next) {
        const spm_symbol *s = &w->symbols[i];
        int32_t id = tokenizer_lookup(t, w->text + s->off, s->n);
        if (id >= 0) {
            if (token_vec_push(out, id, err) < 0)
                return -1;
            continue;
        }
        /* Only unmerged single characters can miss: merges always make tokens. */
        for (uint32_t k = 0; k < s->n; k++)
            if (push_byte_fallback(t, (uint8_t)w->text[s->off + k], out, err) < 0)
                return -1;
    }
    return 0;
}

static int encode_piece(const tokenizer *t, spm_work *w, const char *text, size_t len, bool space_prefix,
                        token_vec *out, el_err *err)
{
    size_t escaped_len;
    int32_t n_symbols;
    if (escape_piece(w, text, len, space_prefix, &escaped_len, err) < 0 ||
        split_symbols(w, escaped_len, &n_symbols, err) < 0 || merge_symbols(t, w, n_symbols, err) < 0)
        return -1;
    return emit_symbols(t, w, n_symbols, out, err);
}

/* ---- the whole text ------------------------------------------------------- */

static int encode_all(const tokenizer *t, const char *text, size_t len, bool parse_special, token_vec *out,
                      match_list *matches, spm_work *w, el_err *err)
{
    if (find_special_tokens(t, (const uint8_t *)text, len, parse_special, matches, err) < 0)
        return -1;
    bool after_special = true; /* the start counts, for the dummy-prefix space */
    size_t pos = 0;
    for (size_t m = 0; m <= matches->n; m++) {
        size_t end = m < matches->n ? matches->items[m].pos : len;
        if (end > pos) {
            if (encode_piece(t, w, text + pos, end - pos, t->add_space_prefix && after_special, out, err) < 0)
                return -1;
            after_special = false;
        }
        if (m == matches->n)
            break;
        if (token_vec_push(out, matches->items[m].id, err) < 0)
            return -1;
        after_special = true;
        pos = matches->items[m].pos + matches->items[m].len;
    }
    return 0;
}

int tokenizer_encode(const tokenizer *t, const char *text, size_t len, bool parse_special, token_vec *out,
                     el_err *err)
{
    if (len == 0)
        return 0;
    if (!text)
        return el_fail(err, "tokenizer: no text");
    /* Symbols index the escaped text (up to 3 bytes per input byte) with 32-bit
     * offsets and counts. */
    if (len > MAX_ENCODE_BYTES)
        return el_fail(err, "tokenizer: a text of %zu bytes is too long (at most %d)", len, MAX_ENCODE_BYTES);
    match_list matches = {0};
    spm_work work = {0};
    size_t n_before = out->n;
    int rc = encode_all(t, text, len, parse_special, out, &matches, &work, err);
    free(matches.items);
    spm_work_free(&work);
    if (rc < 0)
        out->n = n_before;
    return rc;
}
