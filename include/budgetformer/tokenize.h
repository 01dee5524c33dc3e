/* tokenize: text normalisation and word splitting, the vocabulary and the label mapping of `prepare`.
 *
 * Use: bf_tokenize splits a text into lowercased tokens (a bf_token_list); bf_wordtab_add counts them;
 * bf_vocab_build makes the vocabulary ("<pad>" = 0, "<unk>" = 1, words 2..); bf_encode_text turns a text into
 * ids (prepare and predict). src/cli/cmd_prepare.c and tests/test_prepare.c are the compiled examples.
 *
 * Normalisation (docs/DATA.md): the text must be valid UTF-8; ASCII letters are lowercased; a word is a
 * maximal run of ASCII letters, digits and non-ASCII characters; every other printable ASCII character
 * (punctuation) is a token by itself; space and control characters only separate tokens.
 */
#ifndef BUDGETFORMER_TOKENIZE_H
#define BUDGETFORMER_TOKENIZE_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/util.h"

#define BF_PAD_ID 0
#define BF_UNK_ID 1
#define BF_PAD_STR "<pad>"
#define BF_UNK_STR "<unk>"

/* Returns 1 if s[0..n) is valid UTF-8 (shortest forms, no surrogates, <= U+10FFFF); else 0 and, if
 * bad_offset is not NULL, the offset of the first byte of the offending sequence. */
int bf_utf8_valid(const char *s, size_t n, size_t *bad_offset);

/* Tokens of one text: token i is the NUL-terminated string buf + start[i] of length len[i]. */
typedef struct {
    char *buf;     /* the tokens, each followed by NUL */
    size_t *start; /* [n] */
    size_t *len;   /* [n] */
    size_t n, cap, buf_cap;
} bf_token_list;

/* Splits text (assumed valid UTF-8; invalid bytes are treated as word characters) into the normalised
 * tokens, replacing the previous contents of tl. Returns the number of tokens. */
size_t bf_tokenize(const char *text, size_t n, bf_token_list *tl);
const char *bf_token_str(const bf_token_list *tl, size_t i);
void bf_token_list_free(bf_token_list *tl);

/* A hash table from words to (count, id); open addressing, grows as needed. */
typedef struct {
    char *word;
    size_t len;
    uint64_t hash;
    int64_t count;
    int32_t id;
} bf_wordtab_entry;
typedef struct {
    bf_wordtab_entry *slots; /* [cap], word == NULL when empty */
    size_t cap, n;
} bf_wordtab;

void bf_wordtab_init(bf_wordtab *t);
/* Adds count to the word's count (inserting it with count 0 and id -1 first); returns its entry. The
 * pointer is valid until the next insertion. */
bf_wordtab_entry *bf_wordtab_add(bf_wordtab *t, const char *word, size_t len, int64_t count);
bf_wordtab_entry *bf_wordtab_find(const bf_wordtab *t, const char *word, size_t len);
void bf_wordtab_free(bf_wordtab *t);

/* The vocabulary: words in id order and a table for lookup. */
typedef struct {
    char **words; /* [size]: "<pad>", "<unk>", then words by count descending, ties bytewise ascending */
    size_t size;  /* V, PAD and UNK included */
    bf_wordtab lookup;
} bf_vocab;

/* Keeps the words of counts with count >= min_count, the max_size - 2 most frequent of them.
 * max_size >= 2. */
void bf_vocab_build(bf_vocab *v, const bf_wordtab *counts, size_t max_size, int64_t min_count);
/* The vocabulary stored in a dataset or checkpoint (/vocab, words in id order). Returns -1 with err set when
 * it does not start with "<pad>", "<unk>" or lists a word twice. */
int bf_vocab_from_words(bf_vocab *v, char *const *words, size_t n, bf_err *err);
int32_t bf_vocab_id(const bf_vocab *v, const char *word, size_t len);
void bf_vocab_free(bf_vocab *v);

/* What bf_encode_text saw in one text. */
typedef struct {
    int empty;     /* no tokens: the row is one BF_UNK_ID */
    int truncated; /* more than T tokens: cut to T */
    size_t unk;    /* ids in the row that are BF_UNK_ID (1 for an empty text) */
} bf_encode_info;
/* The one text encoder (prepare and predict): tokenises text[0..n) and writes the ids of v into row (T ids,
 * zero-padded; unknown words -> BF_UNK_ID, cut to T; a text without tokens becomes one BF_UNK_ID). Returns
 * the length (>= 1). tl is scratch space; info may be NULL. */
int32_t bf_encode_text(int32_t *row, size_t T, const char *text, size_t n, const bf_vocab *v, bf_token_list *tl,
                       bf_encode_info *info);

/* The label mapping. Integer labels (every label of the training file matches -?[0-9]+): 1-based when the
 * smallest is 1, else 0-based (the smallest must then be 0); C = largest index + 1 and the names are the
 * integers as text in the original numbering. Otherwise the distinct labels sorted bytewise. */
#define BF_MAX_CLASSES 100000
typedef struct {
    int is_integer;
    long long base;  /* integer labels: the value of class 0 (0 or 1) */
    size_t n_classes;
    char **names;    /* [n_classes] */
    bf_wordtab lookup; /* name labels: name -> class */
} bf_labelmap;

/* Builds the mapping from the labels of the training rows. Returns -1 with err set when an integer label is
 * negative, the smallest is neither 0 nor 1, or there are too many classes (err names the label; the caller
 * adds file:line from *bad_index, the index of the offending label). */
int bf_labelmap_build(bf_labelmap *m, const char *const *labels, size_t n, size_t *bad_index, bf_err *err);
/* The class of a label, or -1 when the training rows had no such label (or the integer is out of range). */
int32_t bf_labelmap_class(const bf_labelmap *m, const char *label);
void bf_labelmap_free(bf_labelmap *m);

#endif
