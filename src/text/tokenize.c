/* tokenize: normalisation, word splitting, vocabulary and label mapping (see tokenize.h). */
#include "budgetformer/tokenize.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int bf_utf8_valid(const char *s, size_t n, size_t *bad_offset) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) need = 2, lo = 0xA0;
        else if (c >= 0xE1 && c <= 0xEC) need = 2;
        else if (c == 0xED) need = 2, hi = 0x9F; /* no UTF-16 surrogates */
        else if (c >= 0xEE && c <= 0xEF) need = 2;
        else if (c == 0xF0) need = 3, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) need = 3, hi = 0x8F; /* <= U+10FFFF */
        else goto bad;
        if (n - i <= need) goto bad;
        if (p[i + 1] < lo || p[i + 1] > hi) goto bad;
        for (size_t k = 2; k <= need; k++)
            if (p[i + k] < 0x80 || p[i + k] > 0xBF) goto bad;
        i += need + 1;
    }
    return 1;
bad:
    if (bad_offset) *bad_offset = i;
    return 0;
}

/* ---- tokenizer ---- */

enum { CH_SEP, CH_WORD, CH_PUNCT };

static int char_class(unsigned char c) {
    if (c >= 0x80) return CH_WORD;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return CH_WORD;
    if (c > 0x20 && c < 0x7F) return CH_PUNCT;
    return CH_SEP;
}

static void tl_push(bf_token_list *tl, size_t start, size_t len) {
    if (tl->n == tl->cap) {
        tl->cap = tl->cap ? 2 * tl->cap : 64;
        tl->start = bf_xrealloc(tl->start, tl->cap * sizeof *tl->start);
        tl->len = bf_xrealloc(tl->len, tl->cap * sizeof *tl->len);
    }
    tl->start[tl->n] = start;
    tl->len[tl->n] = len;
    tl->n++;
}

size_t bf_tokenize(const char *text, size_t n, bf_token_list *tl) {
    /* Each token is followed by a NUL, so the buffer needs at most 2n bytes (one-byte tokens). */
    if (tl->buf_cap < 2 * n + 1) {
        tl->buf_cap = 2 * n + 1;
        tl->buf = bf_xrealloc(tl->buf, tl->buf_cap);
    }
    tl->n = 0;
    size_t out = 0, i = 0;
    const unsigned char *p = (const unsigned char *)text;
    while (i < n) {
        int cls = char_class(p[i]);
        if (cls == CH_SEP) {
            i++;
        } else if (cls == CH_PUNCT) {
            tl_push(tl, out, 1);
            tl->buf[out++] = (char)p[i++];
            tl->buf[out++] = '\0';
        } else {
            size_t start = out;
            while (i < n && char_class(p[i]) == CH_WORD) {
                unsigned char c = p[i++];
                if (c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
                tl->buf[out++] = (char)c;
            }
            tl_push(tl, start, out - start);
            tl->buf[out++] = '\0';
        }
    }
    return tl->n;
}

const char *bf_token_str(const bf_token_list *tl, size_t i) { return tl->buf + tl->start[i]; }

void bf_token_list_free(bf_token_list *tl) {
    free(tl->buf);
    free(tl->start);
    free(tl->len);
    memset(tl, 0, sizeof *tl);
}

/* ---- word hash table ---- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a, then a finaliser for the low bits */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

void bf_wordtab_init(bf_wordtab *t) {
    t->cap = 1024;
    t->n = 0;
    t->slots = bf_xcalloc(t->cap, sizeof *t->slots);
}

static bf_wordtab_entry *probe(bf_wordtab_entry *slots, size_t cap, const char *word, size_t len, uint64_t h) {
    size_t mask = cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        bf_wordtab_entry *e = &slots[i];
        if (!e->word) return e;
        if (e->hash == h && e->len == len && memcmp(e->word, word, len) == 0) return e;
    }
}

static void grow(bf_wordtab *t) {
    size_t cap = 2 * t->cap;
    bf_wordtab_entry *slots = bf_xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i < t->cap; i++) {
        bf_wordtab_entry *e = &t->slots[i];
        if (e->word) *probe(slots, cap, e->word, e->len, e->hash) = *e;
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
}

bf_wordtab_entry *bf_wordtab_add(bf_wordtab *t, const char *word, size_t len, int64_t count) {
    if (2 * (t->n + 1) > t->cap) grow(t); /* load factor <= 1/2 */
    uint64_t h = hash_bytes(word, len);
    bf_wordtab_entry *e = probe(t->slots, t->cap, word, len, h);
    if (!e->word) {
        e->word = bf_xmalloc(len + 1);
        memcpy(e->word, word, len);
        e->word[len] = '\0';
        e->len = len;
        e->hash = h;
        e->count = 0;
        e->id = -1;
        t->n++;
    }
    e->count += count;
    return e;
}

bf_wordtab_entry *bf_wordtab_find(const bf_wordtab *t, const char *word, size_t len) {
    if (!t->slots) return NULL;
    bf_wordtab_entry *e = probe(t->slots, t->cap, word, len, hash_bytes(word, len));
    return e->word ? e : NULL;
}

void bf_wordtab_free(bf_wordtab *t) {
    if (t->slots)
        for (size_t i = 0; i < t->cap; i++) free(t->slots[i].word);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* ---- vocabulary ---- */

static int bytes_cmp(const char *a, size_t la, const char *b, size_t lb) {
    int c = memcmp(a, b, la < lb ? la : lb);
    if (c) return c;
    return la < lb ? -1 : la > lb;
}

static int by_count_then_bytes(const void *pa, const void *pb) {
    const bf_wordtab_entry *a = *(const bf_wordtab_entry *const *)pa, *b = *(const bf_wordtab_entry *const *)pb;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    return bytes_cmp(a->word, a->len, b->word, b->len);
}

void bf_vocab_build(bf_vocab *v, const bf_wordtab *counts, size_t max_size, int64_t min_count) {
    BF_CHECK(max_size >= 2, "vocabulary size %zu < 2", max_size);
    const bf_wordtab_entry **keep = bf_xmalloc((counts->n + 1) * sizeof *keep);
    size_t nk = 0;
    for (size_t i = 0; i < counts->cap; i++) {
        const bf_wordtab_entry *e = &counts->slots[i];
        if (e->word && e->count >= min_count) keep[nk++] = e;
    }
    qsort(keep, nk, sizeof *keep, by_count_then_bytes);
    if (nk > max_size - 2) nk = max_size - 2;
    v->size = nk + 2;
    v->words = bf_xmalloc(v->size * sizeof *v->words);
    v->words[BF_PAD_ID] = bf_xstrdup(BF_PAD_STR);
    v->words[BF_UNK_ID] = bf_xstrdup(BF_UNK_STR);
    bf_wordtab_init(&v->lookup);
    for (size_t i = 0; i < nk; i++) {
        v->words[i + 2] = bf_xstrdup(keep[i]->word);
        bf_wordtab_add(&v->lookup, keep[i]->word, keep[i]->len, 0)->id = (int32_t)(i + 2);
    }
    free(keep);
}

int bf_vocab_from_words(bf_vocab *v, char *const *words, size_t n, bf_err *err) {
    memset(v, 0, sizeof *v);
    if (n < 2 || strcmp(words[BF_PAD_ID], BF_PAD_STR) || strcmp(words[BF_UNK_ID], BF_UNK_STR))
        return bf_fail(err, "the vocabulary must start with \"%s\", \"%s\" (got %zu words%s)", BF_PAD_STR,
                       BF_UNK_STR, n, n >= 2 ? " starting otherwise" : "");
    v->size = n;
    v->words = bf_xmalloc(n * sizeof *v->words);
    bf_wordtab_init(&v->lookup);
    for (size_t i = 0; i < n; i++) {
        v->words[i] = bf_xstrdup(words[i]);
        if (i < 2) continue;
        bf_wordtab_entry *e = bf_wordtab_add(&v->lookup, words[i], strlen(words[i]), 0);
        if (e->id >= 0) {
            bf_vocab_free(v);
            return bf_fail(err, "the vocabulary lists \"%s\" twice (ids %d and %zu)", words[i], e->id, i);
        }
        e->id = (int32_t)i;
    }
    return 0;
}

int32_t bf_vocab_id(const bf_vocab *v, const char *word, size_t len) {
    const bf_wordtab_entry *e = bf_wordtab_find(&v->lookup, word, len);
    return e ? e->id : BF_UNK_ID;
}

void bf_vocab_free(bf_vocab *v) {
    if (v->words)
        for (size_t i = 0; i < v->size; i++) free(v->words[i]);
    free(v->words);
    bf_wordtab_free(&v->lookup);
    memset(v, 0, sizeof *v);
}

/* ---- labels ---- */

/* 1 and *value if s is -?[0-9]+ (0 if not; 1 with errno-style overflow flagged by *overflow). */
static int parse_int_label(const char *s, long long *value, int *overflow) {
    const char *p = s;
    if (*p == '-') p++;
    if (!*p) return 0;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return 0;
    errno = 0;
    *value = strtoll(s, NULL, 10);
    *overflow = errno == ERANGE;
    return 1;
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int bf_labelmap_build(bf_labelmap *m, const char *const *labels, size_t n, size_t *bad_index, bf_err *err) {
    memset(m, 0, sizeof *m);
    bf_wordtab_init(&m->lookup);
    int all_int = n > 0;
    long long lo = 0, hi = 0;
    size_t lo_i = 0, hi_i = 0;
    for (size_t i = 0; i < n && all_int; i++) {
        long long v;
        int overflow = 0;
        if (!parse_int_label(labels[i], &v, &overflow)) {
            all_int = 0;
            break;
        }
        if (overflow) {
            *bad_index = i;
            bf_labelmap_free(m);
            return bf_fail(err, "integer label '%s' is out of range (expected at most %d classes)", labels[i],
                           BF_MAX_CLASSES);
        }
        if (i == 0 || v < lo) lo = v, lo_i = i;
        if (i == 0 || v > hi) hi = v, hi_i = i;
    }
    if (all_int) {
        m->is_integer = 1;
        if (lo < 0) {
            *bad_index = lo_i;
            bf_labelmap_free(m);
            return bf_fail(err, "integer label '%s' is negative (expected 0-based or 1-based class numbers)",
                           labels[lo_i]);
        }
        if (lo > 1) {
            *bad_index = lo_i;
            bf_labelmap_free(m);
            return bf_fail(err,
                           "the smallest integer label is '%s' (expected 0 for 0-based or 1 for 1-based labels)",
                           labels[lo_i]);
        }
        m->base = lo;
        if (hi - lo + 1 > BF_MAX_CLASSES) {
            *bad_index = hi_i;
            bf_labelmap_free(m);
            return bf_fail(err, "integer label '%s' is too large (expected at most %d classes)", labels[hi_i],
                           BF_MAX_CLASSES);
        }
        m->n_classes = (size_t)(hi - lo + 1);
        m->names = bf_xmalloc(m->n_classes * sizeof *m->names);
        for (size_t c = 0; c < m->n_classes; c++) {
            char buf[32];
            snprintf(buf, sizeof buf, "%lld", (long long)c + lo);
            m->names[c] = bf_xstrdup(buf);
        }
        return 0;
    }
    for (size_t i = 0; i < n; i++) bf_wordtab_add(&m->lookup, labels[i], strlen(labels[i]), 1);
    if (m->lookup.n > BF_MAX_CLASSES) {
        *bad_index = 0;
        size_t nc = m->lookup.n;
        bf_labelmap_free(m);
        return bf_fail(err, "%zu distinct labels (expected at most %d classes)", nc, BF_MAX_CLASSES);
    }
    m->n_classes = m->lookup.n;
    m->names = bf_xmalloc((m->n_classes + 1) * sizeof *m->names);
    size_t k = 0;
    for (size_t i = 0; i < m->lookup.cap; i++)
        if (m->lookup.slots[i].word) m->names[k++] = bf_xstrdup(m->lookup.slots[i].word);
    qsort(m->names, k, sizeof *m->names, str_cmp);
    for (size_t c = 0; c < k; c++) bf_wordtab_find(&m->lookup, m->names[c], strlen(m->names[c]))->id = (int32_t)c;
    return 0;
}

int32_t bf_labelmap_class(const bf_labelmap *m, const char *label) {
    if (m->is_integer) {
        long long v;
        int overflow = 0;
        if (!parse_int_label(label, &v, &overflow) || overflow) return -1;
        if (v < m->base || v - m->base >= (long long)m->n_classes) return -1;
        return (int32_t)(v - m->base);
    }
    const bf_wordtab_entry *e = bf_wordtab_find(&m->lookup, label, strlen(label));
    return e ? e->id : -1;
}

void bf_labelmap_free(bf_labelmap *m) {
    if (m->names)
        for (size_t c = 0; c < m->n_classes; c++) free(m->names[c]);
    free(m->names);
    bf_wordtab_free(&m->lookup);
    memset(m, 0, sizeof *m);
}

int32_t bf_encode_text(int32_t *row, size_t T, const char *text, size_t n, const bf_vocab *v, bf_token_list *tl,
                       bf_encode_info *info) {
    bf_encode_info local;
    if (!info) info = &local;
    memset(info, 0, sizeof *info);
    memset(row, 0, T * sizeof *row);
    size_t nt = bf_tokenize(text, n, tl);
    if (nt == 0) {
        row[0] = BF_UNK_ID;
        info->empty = 1;
        info->unk = 1;
        return 1;
    }
    if (nt > T) {
        nt = T;
        info->truncated = 1;
    }
    for (size_t t = 0; t < nt; t++) {
        row[t] = bf_vocab_id(v, bf_token_str(tl, t), tl->len[t]);
        info->unk += row[t] == BF_UNK_ID;
    }
    return (int32_t)nt;
}
