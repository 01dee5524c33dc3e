/* fuzz_csv: libFuzzer target for the text side of `prepare`: the CSV/TSV row reader (textread.h) and the
 * normaliser, tokeniser, vocabulary and label mapping (tokenize.h), on arbitrary bytes.
 *
 * Input: byte 0 picks the options, the rest is the file.
 *   bit 0: TSV (else CSV)    bit 1: header    bit 2: skip bad rows    bits 3..7: vocabulary size 2 + n
 *   bit 7 also: min_count 2 (else 1); bits 0, 1 and 6 all set: JSON Lines instead (no header)
 *
 * Besides "no crash, leak, hang or undefined behaviour" (ASan, UBSan, -timeout), it checks:
 *   - bf_utf8_valid agrees with an independent decoder (RFC 3629), offset of the first bad byte included;
 *   - tokens are non-empty, lowercase, free of separators, punctuation tokens are one byte, word tokens are
 *     word bytes only, and tokenising the tokens joined by spaces gives the same tokens;
 *   - bf_text_read (JSON Lines: bf_text_read_spec) returns 0 or -1; -1 only without skip_bad, with a message "PATH:..."; rows have a
 *     non-empty NUL-free UTF-8 label, UTF-8 text terminated at text_len, lines in [1, lines of the file]
 *     and non-decreasing; a TSV label has no tab and a TSV text no newline;
 *   - the label mapping sends every training label into [0, C) and back to its name (name labels sorted);
 *   - the vocabulary has <pad>, <unk>, at most V entries, every word maps to its id, ids in count-then-bytes
 *     order, and every word left out ranks after the last word kept.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/textread.h"
#include "budgetformer/tokenize.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

/* ---- an independent UTF-8 check ---- */

static int ref_utf8_valid(const unsigned char *s, size_t n, size_t *bad) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            goto bad;
        }
        if (n - i < len) goto bad;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) goto bad;
            cp = (cp << 6) | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto bad;
        i += len;
    }
    return 1;
bad:
    *bad = i;
    return 0;
}

static void check_utf8(const char *s, size_t n) {
    size_t off = (size_t)-1, ref_off = (size_t)-1;
    int ok = bf_utf8_valid(s, n, &off), ref = ref_utf8_valid((const unsigned char *)s, n, &ref_off);
    BF_FUZZ_REQUIRE(ok == ref, "bf_utf8_valid says %d, the reference decoder %d (%zu bytes)", ok, ref, n);
    if (!ok) BF_FUZZ_REQUIRE(off == ref_off, "bad UTF-8 offset %zu, the reference decoder says %zu", off, ref_off);
}

/* ---- tokens ---- */

static int is_word_byte(unsigned char c) {
    return c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static void check_tokens(const char *text, size_t n, bf_token_list *tl, bf_token_list *again) {
    size_t nt = bf_tokenize(text, n, tl);
    BF_FUZZ_REQUIRE(nt == tl->n, "bf_tokenize returned %zu, tl.n is %zu", nt, tl->n);
    BF_FUZZ_REQUIRE(nt <= n, "%zu tokens from %zu bytes", nt, n);
    size_t joined_len = 0;
    for (size_t i = 0; i < nt; i++) {
        const char *t = bf_token_str(tl, i);
        size_t len = tl->len[i];
        BF_FUZZ_REQUIRE(len >= 1, "token %zu is empty", i);
        BF_FUZZ_REQUIRE(t[len] == '\0' && strlen(t) == len, "token %zu is not NUL-terminated at its length", i);
        int word = is_word_byte((unsigned char)t[0]);
        if (!word) BF_FUZZ_REQUIRE(len == 1, "punctuation token %zu has %zu bytes", i, len);
        for (size_t k = 0; k < len; k++) {
            unsigned char c = (unsigned char)t[k];
            BF_FUZZ_REQUIRE(c > 0x20 && c != 0x7F, "token %zu contains the separator byte 0x%02X", i, c);
            BF_FUZZ_REQUIRE(!(c >= 'A' && c <= 'Z'), "token %zu is not lowercased", i);
            if (word) BF_FUZZ_REQUIRE(is_word_byte(c), "word token %zu contains 0x%02X", i, c);
        }
        joined_len += len + 1;
    }
    /* Tokenising the tokens joined by single spaces gives them back. */
    char *joined = malloc(joined_len + 1);
    BF_FUZZ_REQUIRE(joined != NULL, "out of memory");
    size_t pos = 0;
    for (size_t i = 0; i < nt; i++) {
        memcpy(joined + pos, bf_token_str(tl, i), tl->len[i]);
        pos += tl->len[i];
        joined[pos++] = ' ';
    }
    joined[pos] = '\0';
    size_t n2 = bf_tokenize(joined, pos, again);
    BF_FUZZ_REQUIRE(n2 == nt, "re-tokenising gave %zu tokens instead of %zu", n2, nt);
    for (size_t i = 0; i < nt; i++)
        BF_FUZZ_REQUIRE(again->len[i] == tl->len[i] && !memcmp(bf_token_str(again, i), bf_token_str(tl, i), tl->len[i]),
                        "re-tokenising changed token %zu", i);
    free(joined);
}

/* ---- labels ---- */

static void check_labels(const bf_text_rows *rows) {
    const char **labels = malloc((rows->n + 1) * sizeof *labels);
    BF_FUZZ_REQUIRE(labels != NULL, "out of memory");
    for (size_t i = 0; i < rows->n; i++) labels[i] = rows->rows[i].label;
    bf_labelmap m;
    bf_err err = {{0}};
    size_t bad = (size_t)-1;
    if (bf_labelmap_build(&m, labels, rows->n, &bad, &err) < 0) {
        BF_FUZZ_REQUIRE(err.msg[0] != '\0', "bf_labelmap_build failed without a message");
        BF_FUZZ_REQUIRE(bad < rows->n, "bf_labelmap_build failed with bad_index %zu of %zu", bad, rows->n);
        free(labels);
        return;
    }
    BF_FUZZ_REQUIRE(rows->n == 0 || (m.n_classes >= 1 && m.n_classes <= BF_MAX_CLASSES), "%zu classes",
                    m.n_classes);
    for (size_t i = 0; i < rows->n; i++) {
        int32_t c = bf_labelmap_class(&m, labels[i]);
        BF_FUZZ_REQUIRE(c >= 0 && (size_t)c < m.n_classes, "training label '%s' maps to class %d of %zu", labels[i],
                        c, m.n_classes);
        if (m.is_integer) {
            long long a = strtoll(labels[i], NULL, 10), b = strtoll(m.names[c], NULL, 10);
            BF_FUZZ_REQUIRE(a == b, "integer label '%s' maps to class %d named '%s'", labels[i], c, m.names[c]);
        } else {
            BF_FUZZ_REQUIRE(!strcmp(m.names[c], labels[i]), "label '%s' maps to class %d named '%s'", labels[i], c,
                            m.names[c]);
        }
    }
    if (!m.is_integer)
        for (size_t c = 1; c < m.n_classes; c++)
            BF_FUZZ_REQUIRE(strcmp(m.names[c - 1], m.names[c]) < 0, "label names %zu and %zu are not sorted", c - 1,
                            c);
    bf_labelmap_free(&m);
    free(labels);
}

/* ---- vocabulary ---- */

static int rank_before(int64_t ca, const char *a, int64_t cb, const char *b) {
    if (ca != cb) return ca > cb;
    return strcmp(a, b) < 0;
}

static void check_vocab(const bf_wordtab *counts, size_t max_size, int64_t min_count) {
    bf_vocab v;
    bf_vocab_build(&v, counts, max_size, min_count);
    BF_FUZZ_REQUIRE(v.size >= 2 && v.size <= max_size && v.size <= counts->n + 2, "vocabulary of %zu (V %zu, %zu words)",
                    v.size, max_size, counts->n);
    BF_FUZZ_REQUIRE(!strcmp(v.words[0], BF_PAD_STR) && !strcmp(v.words[1], BF_UNK_STR), "vocabulary starts wrong");
    for (size_t i = 2; i < v.size; i++) {
        const bf_wordtab_entry *e = bf_wordtab_find(counts, v.words[i], strlen(v.words[i]));
        BF_FUZZ_REQUIRE(e != NULL && e->count >= min_count, "vocabulary word %zu was not counted", i);
        BF_FUZZ_REQUIRE(bf_vocab_id(&v, v.words[i], strlen(v.words[i])) == (int32_t)i, "word %zu maps elsewhere", i);
        if (i > 2) {
            const bf_wordtab_entry *p = bf_wordtab_find(counts, v.words[i - 1], strlen(v.words[i - 1]));
            BF_FUZZ_REQUIRE(rank_before(p->count, p->word, e->count, e->word), "vocabulary ids %zu, %zu out of order",
                            i - 1, i);
        }
    }
    /* A counted word outside the vocabulary is rarer than min_count or ranks after the last word kept. */
    const bf_wordtab_entry *last =
        v.size > 2 ? bf_wordtab_find(counts, v.words[v.size - 1], strlen(v.words[v.size - 1])) : NULL;
    for (size_t s = 0; s < counts->cap; s++) {
        const bf_wordtab_entry *e = &counts->slots[s];
        if (!e->word || bf_vocab_id(&v, e->word, e->len) != BF_UNK_ID) continue;
        BF_FUZZ_REQUIRE(e->count < min_count || (v.size == max_size && last &&
                                                 rank_before(last->count, last->word, e->count, e->word)) ||
                            (v.size == max_size && max_size == 2),
                        "word '%s' (count %lld) was left out of a vocabulary of %zu", e->word, (long long)e->count,
                        v.size);
    }
    bf_vocab_free(&v);
}

/* ---- the target ---- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const unsigned opts = data[0];
    const char *body = (const char *)data + 1;
    const size_t n = size - 1;
    const int jsonl = (opts & 0x43) == 0x43;
    const bf_text_format fmt = jsonl ? BF_TEXT_JSONL : (opts & 1) ? BF_TEXT_TSV : BF_TEXT_CSV;
    const int header = jsonl ? 0 : (opts >> 1) & 1, skip_bad = (opts >> 2) & 1;
    const size_t max_size = 2 + (opts >> 3);
    const int64_t min_count = 1 + (opts >> 7);

    bf_token_list tl = {0}, again = {0};
    check_utf8(body, n);
    check_tokens(body, n, &tl, &again);

    const char *path = bf_fuzz_memfile(body, n);
    size_t n_lines = 1;
    for (size_t i = 0; i < n; i++) n_lines += body[i] == '\n';
    bf_text_rows rows = {0};
    bf_err err = {{0}};
    int rc = bf_text_read(path, fmt, header, skip_bad, &rows, &err); /* the JSON Lines defaults: label, text */
    BF_FUZZ_REQUIRE(rc == 0 || rc == -1, "bf_text_read returned %d", rc);
    if (rc < 0) {
        BF_FUZZ_REQUIRE(!skip_bad, "bf_text_read failed with skip_bad: %s", err.msg);
        BF_FUZZ_REQUIRE(!strncmp(err.msg, path, strlen(path)) && err.msg[strlen(path)] == ':',
                        "the message does not start with the file name: %s", err.msg);
    } else {
        if (rows.n_bad) BF_FUZZ_REQUIRE(!strncmp(rows.first_bad, path, strlen(path)), "first_bad: %s", rows.first_bad);
        bf_wordtab counts;
        bf_wordtab_init(&counts);
        int64_t prev_line = 1;
        for (size_t i = 0; i < rows.n; i++) {
            const bf_text_row *r = &rows.rows[i];
            size_t ll = strlen(r->label);
            BF_FUZZ_REQUIRE(ll > 0, "row %zu has an empty label", i);
            BF_FUZZ_REQUIRE(bf_utf8_valid(r->label, ll, NULL), "row %zu: label is not UTF-8", i);
            BF_FUZZ_REQUIRE(r->text[r->text_len] == '\0', "row %zu: text not terminated at text_len", i);
            BF_FUZZ_REQUIRE(bf_utf8_valid(r->text, r->text_len, NULL), "row %zu: text is not UTF-8", i);
            BF_FUZZ_REQUIRE(r->line >= prev_line && (size_t)r->line <= n_lines,
                            "row %zu: line %lld (previous %lld, %zu lines)", i, (long long)r->line,
                            (long long)prev_line, n_lines);
            prev_line = r->line;
            if (fmt == BF_TEXT_TSV) {
                BF_FUZZ_REQUIRE(!strchr(r->label, '\t'), "row %zu: TSV label contains a tab", i);
                BF_FUZZ_REQUIRE(!memchr(r->text, '\n', r->text_len), "row %zu: TSV text contains a newline", i);
            }
            check_tokens(r->text, r->text_len, &tl, &again);
            for (size_t t = 0; t < tl.n; t++) bf_wordtab_add(&counts, bf_token_str(&tl, t), tl.len[t], 1);
        }
        check_labels(&rows);
        check_vocab(&counts, max_size, min_count);
        bf_wordtab_free(&counts);
    }
    bf_text_rows_free(&rows);
    bf_token_list_free(&tl);
    bf_token_list_free(&again);
    return 0;
}
