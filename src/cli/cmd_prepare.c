/* cmd_prepare: `budgetformer prepare`, labelled text (CSV/TSV/JSON Lines) -> the dataset files of FILES.md.
 *
 * Steps: read the training and test files (textread.c); warn about the common column mistakes (a header row
 * read as data, the text column read as the label: a first row that looks like a header, many classes for
 * the rows, labels that occur once); hold out the validation rows of the training file
 * by a hash of their source line; build the label mapping from the training file and the vocabulary from
 * the training rows (tokenize.c); encode every split; write each file under a staged name and rename them
 * all into place only when every one was written. docs/DATA.md describes the rules.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "budgetformer/cli.h"
#include "budgetformer/dataset.h"
#include "budgetformer/files.h"
#include "budgetformer/rng.h"
#include "budgetformer/textread.h"
#include "budgetformer/tokenize.h"

#define MAX_LEN_LIMIT 65536

typedef struct {
    const char *train, *test, *out;
    long max_len, vocab_size, min_count;
    double valid_fraction;
    bf_text_format format; /* BF_TEXT_UNKNOWN: from the file extension */
    int header, skip_bad;
    const char *label_col;   /* --label-column, or NULL */
    char *text_cols_buf;     /* --text-columns, split at commas into text_cols */
    const char *text_cols[64];
    size_t n_text_cols;
} prep_opts;

static void print_usage(FILE *f) {
    fprintf(f,
            "usage: budgetformer prepare --train FILE --test FILE --out DIR [options]\n"
            "Turns labelled text (CSV: label,text[,text...]; TSV: label<TAB>text; JSON Lines: {\"text\": ..., \"label\": ...}\n"
            "per line) into DIR/train.h5, DIR/test.h5 and, with --valid-fraction, DIR/valid.h5 (docs/DATA.md).\n"
            "options:\n"
            "  --train FILE          training file: the vocabulary and the labels come from it (required)\n"
            "  --test FILE           test file, encoded with the training vocabulary and labels (required)\n"
            "  --out DIR             output directory, created with its parents (required)\n"
            "  --max-len T           tokens kept per text (default 64)\n"
            "  --vocab-size V        vocabulary size including <pad> and <unk> (default 16384)\n"
            "  --min-count N         keep words seen at least N times in the training rows (default 1)\n"
            "  --valid-fraction X    hold out this fraction of the training file as valid.h5 (default 0)\n"
            "  --format csv|tsv|jsonl  input format (default: from the extension, .csv / .tsv .txt / .jsonl .ndjson)\n"
            "  --header              the first row of each CSV/TSV file is a header: skipped, and it names the columns\n"
            "  --label-column C      the label's column: a 1-based number or a header name (default 1; JSON Lines:\n"
            "                        the field name, default label)\n"
            "  --text-columns C,...  the text columns, joined by one space (default: every other column; JSON Lines:\n"
            "                        field names, default text)\n"
            "  --skip-bad-rows       skip malformed rows with a warning instead of failing\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "budgetformer prepare: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nrun 'budgetformer prepare --help' for the options\n");
    va_end(ap);
    return 2;
}

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno == ERANGE || v < lo || v > hi)
        return usage_error("%s: expected an integer in [%ld, %ld], got '%s'", flag, lo, hi, s);
    *out = v;
    return 0;
}

/* Returns 0, 1 for --help, or 2 for a usage error (already printed). */
static int parse_args(int argc, char **argv, prep_opts *o) {
    *o = (prep_opts){.max_len = 64, .vocab_size = 16384, .min_count = 1};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) return 1;
        if (strncmp(arg, "--", 2) != 0) return usage_error("unexpected argument '%s'", arg);
        /* --flag value or --flag=value */
        char flag[64];
        const char *eq = strchr(arg, '='), *val = NULL;
        size_t fl = eq ? (size_t)(eq - arg) : strlen(arg);
        if (fl >= sizeof flag) return usage_error("unknown option '%s'", arg);
        memcpy(flag, arg, fl);
        flag[fl] = '\0';
        if (!strcmp(flag, "--header") || !strcmp(flag, "--skip-bad-rows")) {
            if (eq) return usage_error("%s takes no value", flag);
            if (!strcmp(flag, "--header")) o->header = 1;
            else o->skip_bad = 1;
            continue;
        }
        static const char *const with_value[] = {"--train",        "--test",        "--out",            "--max-len",
                                                 "--vocab-size",   "--min-count",   "--valid-fraction", "--format",
                                                 "--label-column", "--text-columns"};
        int known = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) known |= !strcmp(flag, with_value[k]);
        if (!known) return usage_error("unknown option '%s'", flag);
        if (eq) val = eq + 1;
        else if (i + 1 < argc) val = argv[++i];
        else return usage_error("%s: missing value", flag);
        if (!*val) return usage_error("%s: empty value", flag);
        if (!strcmp(flag, "--train")) o->train = val;
        else if (!strcmp(flag, "--test")) o->test = val;
        else if (!strcmp(flag, "--out")) o->out = val;
        else if (!strcmp(flag, "--label-column")) o->label_col = val;
        else if (!strcmp(flag, "--text-columns")) {
            free(o->text_cols_buf);
            o->text_cols_buf = bf_xstrdup(val);
            o->n_text_cols = 0;
            for (char *p = o->text_cols_buf, *next; p; p = next) {
                next = strchr(p, ',');
                if (next) *next++ = '\0';
                if (!*p) return usage_error("--text-columns: empty column in '%s': expected C[,C...]", val);
                if (o->n_text_cols == sizeof o->text_cols / sizeof *o->text_cols)
                    return usage_error("--text-columns: more than %zu columns", sizeof o->text_cols / sizeof *o->text_cols);
                o->text_cols[o->n_text_cols++] = p;
            }
        } else if (!strcmp(flag, "--max-len")) {
            if (parse_long(flag, val, 1, MAX_LEN_LIMIT, &o->max_len)) return 2;
        } else if (!strcmp(flag, "--vocab-size")) {
            if (parse_long(flag, val, 2, INT32_MAX, &o->vocab_size)) return 2;
        } else if (!strcmp(flag, "--min-count")) {
            if (parse_long(flag, val, 1, INT32_MAX, &o->min_count)) return 2;
        } else if (!strcmp(flag, "--valid-fraction")) {
            char *end;
            errno = 0;
            double x = strtod(val, &end);
            if (*end || errno == ERANGE || !isfinite(x) || x < 0 || x >= 1)
                return usage_error("%s: expected a number in [0, 1), got '%s'", flag, val);
            o->valid_fraction = x;
        } else {
            o->format = bf_text_format_from_name(val);
            if (o->format == BF_TEXT_UNKNOWN)
                return usage_error("%s: expected csv, tsv or jsonl, got '%s'", flag, val);
        }
    }
    if (!o->train) return usage_error("missing --train FILE");
    if (!o->test) return usage_error("missing --test FILE");
    if (!o->out) return usage_error("missing --out DIR");
    if (o->format == BF_TEXT_UNKNOWN) {
        const char *paths[2] = {o->train, o->test};
        for (int k = 0; k < 2; k++)
            if (bf_text_format_from_path(paths[k]) == BF_TEXT_UNKNOWN)
                return usage_error("--format: cannot tell the format of '%s' from its extension "
                                   "(expected .csv, .tsv, .txt, .jsonl or .ndjson): give --format csv|tsv|jsonl",
                                   paths[k]);
    }
    return 0;
}

/* ---- the pipeline ---- */

enum { SPLIT_TRAIN, SPLIT_VALID, SPLIT_TEST, N_SPLITS };
static const char *const split_name[N_SPLITS] = {"train", "valid", "test"};

typedef struct {
    size_t *rows; /* indices into the rows of the split's source file */
    size_t n;
    const bf_text_rows *src;
    const char *path;
    int32_t *labels; /* [n] */
} split;

static int read_file(const prep_opts *o, const char *path, bf_text_rows *rows, bf_err *err) {
    bf_text_spec spec = {.fmt = o->format ? o->format : bf_text_format_from_path(path),
                         .header = o->header,
                         .skip_bad = o->skip_bad,
                         .label_col = o->label_col,
                         .text_cols = o->n_text_cols ? o->text_cols : NULL,
                         .n_text_cols = o->n_text_cols};
    if (bf_text_read_spec(path, &spec, rows, err) < 0) return -1;
    if (rows->n == 0)
        return bf_fail(err, "%s: no rows: expected at least one labelled row%s", path,
                       rows->n_bad ? " (every row was bad and skipped)" : "");
    return 0;
}

/* A first row whose label or text is one of these words (case-insensitive) looks like a header row. */
static int header_word(const char *s) {
    static const char *const words[] = {"label",   "labels", "class", "classes",  "category", "categories",
                                        "target",  "y",      "tag",   "topic",    "sentiment", "text",
                                        "sentence", "review", "title", "content", "body",      "document",
                                        "input",   "id",     "name",  "question", "answer",   "description"};
    while (*s == ' ') s++;
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ') n--;
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strlen(words[i]) == n && !strncasecmp(s, words[i], n)) return 1;
    return 0;
}

static int integer_text(const char *s) {
    if (*s == '-') s++;
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* Warnings for the column mistakes that prepare cannot tell from a real dataset: a header row read as data
 * (no --header), the text read as the label (a `text,label` file read label-first: as many classes as rows),
 * labels that occur once. */
static void warn_column_mistakes(const prep_opts *o, const bf_text_rows *rows, const bf_labelmap *m) {
    size_t n = rows->n, C = m->n_classes;
    size_t *count = bf_xcalloc(C + 1, sizeof *count), *first = bf_xcalloc(C + 1, sizeof *first);
    for (size_t i = 0; i < n; i++) {
        int32_t c = bf_labelmap_class(m, rows->rows[i].label);
        if (c < 0) continue;
        if (count[c]++ == 0) first[c] = i;
    }
    bf_text_format fmt = o->format ? o->format : bf_text_format_from_path(o->train);
    if (!o->header && fmt != BF_TEXT_JSONL && n >= 3) {
        const bf_text_row *r0 = &rows->rows[0];
        int32_t c0 = bf_labelmap_class(m, r0->label);
        int others_integer = 1;
        for (size_t i = 1; i < n && others_integer; i++) others_integer = integer_text(rows->rows[i].label);
        if (c0 >= 0 && count[c0] == 1 &&
            (header_word(r0->label) || (strlen(r0->text) == r0->text_len && header_word(r0->text)) ||
             (others_integer && !integer_text(r0->label))))
            bf_warn("%s:%lld: the first row ('%.40s', '%.40s') looks like a header row, and its label occurs "
                    "nowhere else: give --header to skip it (and to name columns with --label-column and "
                    "--text-columns)",
                    o->train, (long long)r0->line, r0->label, r0->text);
    }
    if (C > 2 && 2 * C > n)
        bf_warn("%s: %zu classes for %zu rows (%.1f rows per class): is the label column right? The label is "
                "column 1 by default (a `text,label` file needs --label-column 2 or --label-column label "
                "--header)",
                o->train, C, n, (double)n / (double)C);
    size_t once = 0;
    char ex[256] = "";
    size_t pos = 0;
    for (size_t c = 0; c < C; c++)
        if (count[c] == 1) {
            if (once++ < 3 && pos < sizeof ex)
                pos += (size_t)snprintf(ex + pos, sizeof ex - pos, "%s'%.40s' (line %lld)", once > 1 ? ", " : "",
                                        m->names[c], (long long)rows->rows[first[c]].line);
        }
    if (once)
        bf_warn("%s: %zu of %zu labels occur only once in the training file (%s%s): a class with one example can "
                "hardly be learned; check the label column (--label-column)",
                o->train, once, C, ex, once > 3 ? ", ..." : "");
    free(count);
    free(first);
}

/* Maps the labels of a split; a label unknown to the training file is a bad row (error, or skipped). */
static int map_labels(const prep_opts *o, split *s, const bf_labelmap *m, bf_text_rows *src_for_count, bf_err *err) {
    s->labels = bf_xmalloc((s->n + 1) * sizeof *s->labels);
    size_t kept = 0;
    for (size_t i = 0; i < s->n; i++) {
        const bf_text_row *r = &s->src->rows[s->rows[i]];
        int32_t c = bf_labelmap_class(m, r->label);
        if (c < 0) {
            char msg[BF_ERR_LEN];
            if (m->is_integer)
                snprintf(msg, sizeof msg,
                         "%s:%lld: label '%s' is not a class of the training file: expected an integer label in "
                         "[%lld, %lld]",
                         s->path, (long long)r->line, r->label, m->base, m->base + (long long)m->n_classes - 1);
            else
                snprintf(msg, sizeof msg,
                         "%s:%lld: label '%s' never occurs in the training file: expected one of its %zu labels%s",
                         s->path, (long long)r->line, r->label, m->n_classes,
                         i == 0 && !o->header && header_word(r->label) ? " (a header row? give --header)" : "");
            if (!o->skip_bad) return bf_fail(err, "%s", msg);
            if (src_for_count->n_bad++ == 0) snprintf(src_for_count->first_bad, sizeof src_for_count->first_bad, "%s", msg);
            continue;
        }
        s->rows[kept] = s->rows[i];
        s->labels[kept++] = c;
    }
    s->n = kept;
    if (kept == 0) return bf_fail(err, "%s: no row with a known label: expected at least one", s->path);
    return 0;
}

typedef struct {
    size_t tokens, unk, truncated, empty;
} encode_stats;

static void encode(bf_dataset *d, const split *s, const bf_vocab *v, const bf_labelmap *m, int T, const char *source,
                   bf_token_list *tl, encode_stats *st) {
    memset(d, 0, sizeof *d);
    memset(st, 0, sizeof *st);
    d->n = s->n;
    d->max_len = T;
    d->n_classes = (int)m->n_classes;
    /* Encoded as int32 (the file's type; bf_dataset_write writes it as is). */
    int32_t *tokens = bf_xcalloc(s->n * (size_t)T + 1, sizeof *tokens);
    d->token_bytes = 4;
    d->tokens = tokens;
    d->lengths = bf_xmalloc((s->n + 1) * sizeof *d->lengths);
    d->labels = bf_xmalloc((s->n + 1) * sizeof *d->labels);
    d->source_line = bf_xmalloc((s->n + 1) * sizeof *d->source_line);
    for (size_t i = 0; i < s->n; i++) {
        const bf_text_row *r = &s->src->rows[s->rows[i]];
        bf_encode_info ei;
        d->lengths[i] = bf_encode_text(tokens + i * (size_t)T, (size_t)T, r->text, r->text_len, v, tl, &ei);
        st->empty += (size_t)ei.empty;
        st->truncated += (size_t)ei.truncated;
        st->unk += ei.unk;
        st->tokens += (size_t)d->lengths[i];
        d->labels[i] = s->labels[i];
        d->source_line[i] = r->line;
    }
    /* The vocabulary and label names are borrowed (free_encoded does not free them). */
    d->vocab = v->words;
    d->vocab_size = v->size;
    d->label_names = m->names;
    d->source = bf_xstrdup(source);
}

static void free_encoded(bf_dataset *d) {
    free(d->tokens);
    free(d->lengths);
    free(d->labels);
    free(d->source_line);
    free(d->source);
    memset(d, 0, sizeof *d);
}

static void warn_bad_rows(const char *path, const bf_text_rows *rows) {
    if (rows->n_bad)
        bf_warn("%s: skipped %zu bad row%s (first: %s)", path, rows->n_bad, rows->n_bad == 1 ? "" : "s",
                rows->first_bad);
}

/* Over 80 lines on purpose: the all-or-nothing sequence of prepare (read, split, vocabulary, encode each
 * split to a staged file, rename all into place) with one cleanup path (`done`) for every failure. */
static int run(const prep_opts *o, bf_err *err) {
    double t0 = bf_wall_seconds();
    bf_text_rows train_rows = {0}, test_rows = {0};
    split sp[N_SPLITS];
    memset(sp, 0, sizeof sp);
    bf_labelmap labels = {0};
    bf_vocab vocab = {0};
    bf_wordtab counts = {0};
    bf_token_list tl = {0};
    const char **label_strs = NULL;
    char staged[N_SPLITS][4096], final_path[N_SPLITS][4096];
    int written[N_SPLITS] = {0};
    int rc = -1;
    const int T = (int)o->max_len;

    if (read_file(o, o->train, &train_rows, err) < 0) goto done;
    if (read_file(o, o->test, &test_rows, err) < 0) goto done;

    /* Hold out the validation rows: a pure function of the source line. */
    for (int k = 0; k < N_SPLITS; k++) {
        const bf_text_rows *src = k == SPLIT_TEST ? &test_rows : &train_rows;
        sp[k].src = src;
        sp[k].path = k == SPLIT_TEST ? o->test : o->train;
        sp[k].rows = bf_xmalloc((src->n + 1) * sizeof *sp[k].rows);
    }
    for (size_t i = 0; i < train_rows.n; i++) {
        uint64_t h = bf_rng_key(0, 0, (uint64_t)train_rows.rows[i].line, 0, BF_STREAM_SPLIT, 0);
        int k = o->valid_fraction > 0 && bf_rng_uniform(h) < o->valid_fraction ? SPLIT_VALID : SPLIT_TRAIN;
        sp[k].rows[sp[k].n++] = i;
    }
    for (size_t i = 0; i < test_rows.n; i++) sp[SPLIT_TEST].rows[sp[SPLIT_TEST].n++] = i;
    if (sp[SPLIT_TRAIN].n == 0) {
        bf_fail(err, "%s: all %zu rows fell into the validation split: expected a smaller --valid-fraction", o->train,
                train_rows.n);
        goto done;
    }
    if (o->valid_fraction > 0 && sp[SPLIT_VALID].n == 0) {
        bf_fail(err, "%s: no row of %zu fell into the validation split: expected a larger --valid-fraction than %g",
                o->train, train_rows.n, o->valid_fraction);
        goto done;
    }

    /* Labels: from every row of the training file (validation rows included). */
    label_strs = bf_xmalloc((train_rows.n + 1) * sizeof *label_strs);
    for (size_t i = 0; i < train_rows.n; i++) label_strs[i] = train_rows.rows[i].label;
    size_t bad_index = 0;
    bf_err lerr;
    if (bf_labelmap_build(&labels, label_strs, train_rows.n, &bad_index, &lerr) < 0) {
        bf_fail(err, "%s:%lld: %s", o->train, (long long)train_rows.rows[bad_index].line, lerr.msg);
        goto done;
    }
    warn_column_mistakes(o, &train_rows, &labels);
    for (int k = 0; k < N_SPLITS; k++) {
        if (k == SPLIT_VALID && o->valid_fraction <= 0) continue;
        if (map_labels(o, &sp[k], &labels, k == SPLIT_TEST ? &test_rows : &train_rows, err) < 0) goto done;
    }
    warn_bad_rows(o->train, &train_rows);
    warn_bad_rows(o->test, &test_rows);

    /* Vocabulary: the tokens the model sees (after truncation) of the training rows only. */
    bf_wordtab_init(&counts);
    for (size_t i = 0; i < sp[SPLIT_TRAIN].n; i++) {
        const bf_text_row *r = &train_rows.rows[sp[SPLIT_TRAIN].rows[i]];
        size_t nt = bf_tokenize(r->text, r->text_len, &tl);
        if (nt > (size_t)T) nt = (size_t)T;
        for (size_t t = 0; t < nt; t++) bf_wordtab_add(&counts, bf_token_str(&tl, t), tl.len[t], 1);
    }
    bf_vocab_build(&vocab, &counts, (size_t)o->vocab_size, o->min_count);
    bf_info("vocabulary: %zu entries (<pad>, <unk> and %zu of the %zu distinct words of %zu training rows; "
            "--vocab-size %ld, --min-count %ld)",
            vocab.size, vocab.size - 2, counts.n, sp[SPLIT_TRAIN].n, o->vocab_size, o->min_count);

    /* Encode and write every split under a staged name. */
    if (bf_mkdir_p(o->out, err) < 0) goto done;
    for (int k = 0; k < N_SPLITS; k++) {
        if (k == SPLIT_VALID && o->valid_fraction <= 0) continue;
        snprintf(final_path[k], sizeof final_path[k], "%s/%s.h5", o->out, split_name[k]);
        if ((size_t)snprintf(staged[k], sizeof staged[k], "%s/%s.h5.staged.%ld", o->out, split_name[k],
                             (long)getpid()) >= sizeof staged[k]) {
            bf_fail(err, "%s: output path too long", o->out);
            goto done;
        }
        bf_dataset d;
        encode_stats st;
        encode(&d, &sp[k], &vocab, &labels, T, sp[k].path, &tl, &st);
        int wrc = bf_dataset_write(&d, staged[k], err);
        free_encoded(&d);
        if (wrc < 0) goto done;
        written[k] = 1;
        if (st.empty)
            bf_warn("%s: %zu %s row%s had no tokens; each became one %s", sp[k].path, st.empty, split_name[k],
                    st.empty == 1 ? "" : "s", BF_UNK_STR);
        bf_info("%s: %zu rows, %zu classes, vocabulary %zu, UNK rate %.2f%% of %zu tokens, %zu truncated to %d "
                "tokens (from %s)",
                final_path[k], sp[k].n, labels.n_classes, vocab.size,
                st.tokens ? 100.0 * (double)st.unk / (double)st.tokens : 0.0, st.tokens, st.truncated, T, sp[k].path);
    }
    /* Every file is complete: rename them into place, all or nothing. A target that is a directory (or
     * otherwise not replaceable by a file) is found before anything is renamed. */
    for (int k = 0; k < N_SPLITS; k++) {
        struct stat stt;
        if (written[k] && stat(final_path[k], &stt) == 0 && !S_ISREG(stt.st_mode)) {
            bf_fail(err, "%s exists and is not a regular file: expected a path prepare may replace", final_path[k]);
            goto done;
        }
    }
    int renamed[N_SPLITS] = {0};
    for (int k = 0; k < N_SPLITS; k++) {
        if (!written[k]) continue;
        if (rename(staged[k], final_path[k]) != 0) {
            bf_fail(err, "%s: cannot rename %s into place: %s", final_path[k], staged[k], strerror(errno));
            /* Undo: a set of files from two different runs would share no vocabulary. */
            for (int j = 0; j < k; j++)
                if (renamed[j]) unlink(final_path[j]);
            goto done;
        }
        renamed[k] = 1;
        written[k] = 0;
    }
    if (o->valid_fraction <= 0) {
        char stale[4096];
        snprintf(stale, sizeof stale, "%s/valid.h5", o->out);
        if (bf_path_exists(stale) && unlink(stale) == 0)
            bf_warn("removed %s from an earlier run (its vocabulary would not match; --valid-fraction is 0)", stale);
    }
    bf_info("prepared %s in %.1f s", o->out, bf_wall_seconds() - t0);
    rc = 0;
done:
    for (int k = 0; k < N_SPLITS; k++) {
        if (written[k]) unlink(staged[k]);
        free(sp[k].rows);
        free(sp[k].labels);
    }
    free(label_strs);
    bf_token_list_free(&tl);
    bf_wordtab_free(&counts);
    bf_vocab_free(&vocab);
    bf_labelmap_free(&labels);
    bf_text_rows_free(&train_rows);
    bf_text_rows_free(&test_rows);
    return rc;
}

int bf_cmd_prepare(int argc, char **argv) {
    prep_opts o;
    int p = parse_args(argc, argv, &o);
    if (p == 1) {
        print_usage(stdout);
        free(o.text_cols_buf);
        return 0;
    }
    if (p != 0) {
        free(o.text_cols_buf);
        return p;
    }
    bf_err err = {{0}};
    /* The files written (valid.h5 also when a stale one is removed) must not be, or link to, an input. */
    char outs[3][4096 + 16];
    const char *const split_files[] = {"train.h5", "valid.h5", "test.h5"};
    bf_named_path out[3], in[] = {{"--train", o.train}, {"--test", o.test}};
    for (int k = 0; k < 3; k++) {
        snprintf(outs[k], sizeof outs[k], "%.4096s/%s", o.out, split_files[k]);
        out[k] = (bf_named_path){"--out", outs[k]};
    }
    if (bf_check_outputs(out, 3, in, 2, &err)) {
        fprintf(stderr, "budgetformer prepare: error: %s\n", err.msg);
        free(o.text_cols_buf);
        return 2;
    }
    bf_files_init();
    int rc = 0;
    if (run(&o, &err) < 0) {
        fprintf(stderr, "budgetformer prepare: error: %s\n", err.msg);
        rc = 1;
    }
    free(o.text_cols_buf);
    return rc;
}
