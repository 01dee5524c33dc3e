/* textread: CSV (libcsv), TSV and JSON Lines (jansson) rows with their source lines (see textread.h). */
#include "budgetformer/textread.h"

#include <csv.h>
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "budgetformer/tokenize.h"

bf_text_format bf_text_format_from_path(const char *path) {
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return BF_TEXT_UNKNOWN;
    if (!strcasecmp(dot, ".csv")) return BF_TEXT_CSV;
    if (!strcasecmp(dot, ".tsv") || !strcasecmp(dot, ".txt")) return BF_TEXT_TSV;
    if (!strcasecmp(dot, ".jsonl") || !strcasecmp(dot, ".ndjson")) return BF_TEXT_JSONL;
    return BF_TEXT_UNKNOWN;
}

bf_text_format bf_text_format_from_name(const char *name) {
    if (!strcmp(name, "csv")) return BF_TEXT_CSV;
    if (!strcmp(name, "tsv")) return BF_TEXT_TSV;
    if (!strcmp(name, "jsonl")) return BF_TEXT_JSONL;
    return BF_TEXT_UNKNOWN;
}

void bf_text_rows_free(bf_text_rows *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->rows[i].label);
        free(r->rows[i].text);
    }
    free(r->rows);
    memset(r, 0, sizeof *r);
}

static void push_row(bf_text_rows *out, char *label, char *text, size_t text_len, int64_t line) {
    if (out->n == out->cap) {
        out->cap = out->cap ? 2 * out->cap : 1024;
        out->rows = bf_xrealloc(out->rows, out->cap * sizeof *out->rows);
    }
    out->rows[out->n++] = (bf_text_row){.label = label, .text = text, .text_len = text_len, .line = line};
}

/* The state shared by both readers for reporting bad rows. */
typedef struct {
    const char *path;
    int skip_bad;
    bf_text_rows *out;
    bf_err *err;
    int failed; /* an error was reported (not skip_bad): stop reading */
    const bf_text_spec *spec;
    /* CSV/TSV columns, resolved at the header or the first row: label and text column indices (0-based) */
    int resolved;
    size_t label_idx, *text_idx, n_text;
} reader;

/* A file-level error (always fatal, also with skip_bad). */
static int file_error(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int file_error(reader *r, const char *fmt, ...) {
    char what[BF_ERR_LEN / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    r->failed = 1;
    return bf_fail(r->err, "%s: %s", r->path, what);
}

static int is_number(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

/* The 0-based index of column spec col among nf columns (names: the header's fields, or NULL without a
 * header row). Returns -1 after a file error. */
static long find_column(reader *r, const char *option, const char *col, char *const *names, const size_t *name_len,
                        size_t nf) {
    if (is_number(col)) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(col, &end, 10);
        if (errno || v < 1 || v > nf)
            return file_error(r, "%s %s: expected a column number in 1..%zu (the file's first row has %zu columns)",
                              option, col, nf, nf);
        return (long)v - 1;
    }
    if (!names)
        return file_error(r, "%s '%s' is a column name: expected --header (the first row then names the columns) "
                             "or a column number",
                          option, col);
    size_t cl = strlen(col);
    for (size_t i = 0; i < nf; i++)
        if (name_len[i] == cl && !memcmp(names[i], col, cl)) return (long)i;
    char list[BF_ERR_LEN / 4];
    size_t pos = 0;
    list[0] = '\0';
    for (size_t i = 0; i < nf && pos + 8 < sizeof list; i++)
        pos += (size_t)snprintf(list + pos, sizeof list - pos, "%s'%.*s'", i ? ", " : "",
                                (int)(name_len[i] < 40 ? name_len[i] : 40), names[i]);
    return file_error(r, "%s '%s': no such column in the header row: expected one of %s", option, col, list);
}

/* Resolves the label and text columns (names from the header row when names != NULL). Returns 0 or -1. */
static int resolve_columns(reader *r, char *const *names, const size_t *name_len, size_t nf) {
    const bf_text_spec *sp = r->spec;
    r->resolved = 1;
    long lab = 0;
    if (sp->label_col && (lab = find_column(r, "--label-column", sp->label_col, names, name_len, nf)) < 0) return -1;
    r->label_idx = (size_t)lab;
    r->text_idx = bf_xmalloc((nf + sp->n_text_cols + 1) * sizeof *r->text_idx);
    r->n_text = 0;
    if (sp->n_text_cols) {
        for (size_t k = 0; k < sp->n_text_cols; k++) {
            long c = find_column(r, "--text-columns", sp->text_cols[k], names, name_len, nf);
            if (c < 0) return -1;
            if ((size_t)c == r->label_idx)
                return file_error(r, "--text-columns %s is the label column (%zu): expected other columns",
                                  sp->text_cols[k], r->label_idx + 1);
            r->text_idx[r->n_text++] = (size_t)c;
        }
    } else {
        for (size_t i = 0; i < nf; i++)
            if (i != r->label_idx) r->text_idx[r->n_text++] = i;
    }
    return 0;
}

/* Pushes the row made of the label field and the text fields (already checked). Takes the label. */
static void push_fields(reader *r, char **fields, const size_t *flen, int64_t line) {
    size_t total = 1;
    for (size_t k = 0; k < r->n_text; k++) total += flen[r->text_idx[k]] + 1;
    char *text = bf_xmalloc(total);
    size_t pos = 0;
    for (size_t k = 0; k < r->n_text; k++) {
        size_t i = r->text_idx[k];
        if (k) text[pos++] = ' ';
        memcpy(text + pos, fields[i], flen[i]);
        pos += flen[i];
    }
    text[pos] = '\0';
    char *label = fields[r->label_idx];
    fields[r->label_idx] = NULL;
    push_row(r->out, label, text, pos, line);
}

/* A bad row: an error (returns -1) or, with skip_bad, counted (returns 0). */
static int bad_row(reader *r, int64_t line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad_row(reader *r, int64_t line, const char *fmt, ...) {
    char what[BF_ERR_LEN / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (r->skip_bad) {
        if (r->out->n_bad++ == 0)
            snprintf(r->out->first_bad, sizeof r->out->first_bad, "%s:%lld: %s", r->path, (long long)line, what);
        return 0;
    }
    r->failed = 1;
    return bf_fail(r->err, "%s:%lld: %s", r->path, (long long)line, what);
}

/* Checks the label and a text piece; returns 0 if fine, else reports a bad row and returns 1. */
static int check_field(reader *r, int64_t line, const char *s, size_t n, const char *what) {
    size_t off = 0;
    if (!bf_utf8_valid(s, n, &off)) {
        bad_row(r, line, "invalid UTF-8 in the %s (byte 0x%02X at offset %zu): expected UTF-8 encoded text", what,
                (unsigned)(unsigned char)s[off], off);
        return 1;
    }
    return 0;
}

static int check_label(reader *r, int64_t line, const char *s, size_t n) {
    if (n == 0) {
        bad_row(r, line, "empty label: expected a label in the label column");
        return 1;
    }
    if (memchr(s, '\0', n)) {
        bad_row(r, line, "the label contains a NUL byte: expected text");
        return 1;
    }
    return check_field(r, line, s, n, "label");
}

/* ---- CSV ---- */

typedef struct {
    reader rd;
    char **fields;
    size_t *flen;
    size_t nf, capf;
    int64_t row_line;
    size_t ncols;       /* columns of the first row, 0 before it */
    int header_pending; /* the next row is the header */
} csv_reader;

static void csv_clear_fields(csv_reader *c) {
    for (size_t i = 0; i < c->nf; i++) free(c->fields[i]);
    c->nf = 0;
}

static void on_field(void *s, size_t len, void *data) {
    csv_reader *c = data;
    if (c->rd.failed) return;
    if (c->nf == c->capf) {
        c->capf = c->capf ? 2 * c->capf : 8;
        c->fields = bf_xrealloc(c->fields, c->capf * sizeof *c->fields);
        c->flen = bf_xrealloc(c->flen, c->capf * sizeof *c->flen);
    }
    char *f = bf_xmalloc(len + 1);
    if (len) memcpy(f, s, len);
    f[len] = '\0';
    c->fields[c->nf] = f;
    c->flen[c->nf] = len;
    c->nf++;
}

static void on_row(int term, void *data) {
    (void)term;
    csv_reader *c = data;
    if (c->rd.failed) {
        csv_clear_fields(c);
        return;
    }
    int64_t line = c->row_line;
    if (c->header_pending) {
        c->header_pending = 0;
        if (c->nf >= 2) c->ncols = c->nf;
        if (c->rd.spec->label_col || c->rd.spec->n_text_cols) resolve_columns(&c->rd, c->fields, c->flen, c->nf);
        csv_clear_fields(c);
        return;
    }
    if (c->ncols == 0) {
        if (c->nf < 2) {
            bad_row(&c->rd, line, "expected at least 2 columns (label, text), found %zu", c->nf);
            csv_clear_fields(c);
            return;
        }
        c->ncols = c->nf;
    }
    if (!c->rd.resolved && resolve_columns(&c->rd, NULL, NULL, c->ncols) < 0) {
        csv_clear_fields(c);
        return;
    }
    if (c->nf != c->ncols) {
        bad_row(&c->rd, line, "expected %zu columns, found %zu", c->ncols, c->nf);
        csv_clear_fields(c);
        return;
    }
    size_t li = c->rd.label_idx;
    if (check_label(&c->rd, line, c->fields[li], c->flen[li])) {
        csv_clear_fields(c);
        return;
    }
    for (size_t k = 0; k < c->rd.n_text; k++) {
        size_t i = c->rd.text_idx[k];
        if (check_field(&c->rd, line, c->fields[i], c->flen[i], "text")) {
            csv_clear_fields(c);
            return;
        }
    }
    push_fields(&c->rd, c->fields, c->flen, line);
    csv_clear_fields(c);
}

/* A UTF-8 byte-order mark at the start of a file (as spreadsheet exports write) is not part of the first
 * label: its length, 3, or 0. */
static size_t bom_length(const char *buf, size_t len) {
    return len >= 3 && (unsigned char)buf[0] == 0xEF && (unsigned char)buf[1] == 0xBB && (unsigned char)buf[2] == 0xBF
               ? 3
               : 0;
}

static int read_csv(FILE *f, csv_reader *c) {
    struct csv_parser p;
    const unsigned char opts = CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL;
    if (csv_init(&p, opts) != 0) BF_DIE("csv_init failed (out of memory)");
    /* libcsv grows a field 128 bytes at a time by default: quadratic on an enormous field. */
    csv_set_blk_size(&p, 1 << 16);
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t line = 0;
    while (!c->rd.failed && (len = getline(&buf, &cap, f)) >= 0) {
        line++;
        /* pstate 0 (ROW_NOT_BEGUN): no row is open, so a row that starts now starts on this line. */
        if (p.pstate == 0) c->row_line = line;
        size_t skip = line == 1 ? bom_length(buf, (size_t)len) : 0;
        size_t done = skip + csv_parse(&p, buf + skip, (size_t)len - skip, on_field, on_row, c);
        if (done != (size_t)len && !c->rd.failed) {
            int e = csv_error(&p);
            /* Named by the line where the row starts (DATA.md); a quote left open runs on into later lines,
             * so the line where the parser gave up is said too: lines row_line..line are dropped. */
            char where[160] = "";
            if (line > c->row_line)
                snprintf(where, sizeof where, " (the row that starts here breaks on line %lld: a quote left open "
                         "ran on; lines %lld-%lld are dropped)", (long long)line, (long long)c->row_line,
                         (long long)line);
            if (e == CSV_EPARSE)
                bad_row(&c->rd, c->row_line,
                        "malformed CSV quoting%s: expected quotes only around a whole field, with \"\" for a quote "
                        "inside it", where);
            else
                bad_row(&c->rd, c->row_line, "CSV parser failed%s: %s", where, csv_strerror(e));
            /* Drop the broken row and restart the parser on the next line. */
            csv_clear_fields(c);
            csv_free(&p);
            if (csv_init(&p, opts) != 0) BF_DIE("csv_init failed (out of memory)");
            csv_set_blk_size(&p, 1 << 16);
        }
    }
    if (!c->rd.failed && ferror(f)) {
        c->rd.failed = 1;
        bf_fail(c->rd.err, "%s:%lld: read error: %s", c->rd.path, (long long)line + 1, strerror(errno));
    }
    if (!c->rd.failed && csv_fini(&p, on_field, on_row, c) != 0) {
        bad_row(&c->rd, c->row_line, "unterminated quoted field: expected a closing quote before the end of the file");
        csv_clear_fields(c);
    }
    csv_free(&p);
    free(buf);
    csv_clear_fields(c);
    free(c->fields);
    free(c->flen);
    return c->rd.failed ? -1 : 0;
}

/* ---- TSV ---- */

/* A TSV line split at every tab (column options given): fields point into buf. */
static void tsv_columns(reader *r, char *buf, size_t n, int64_t line, int is_header, size_t *ncols) {
    size_t nf = 1;
    for (size_t i = 0; i < n; i++) nf += buf[i] == '\t';
    char **fields = bf_xmalloc(nf * sizeof *fields);
    size_t *flen = bf_xmalloc(nf * sizeof *flen);
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= n; i++)
        if (i == n || buf[i] == '\t') {
            fields[k] = bf_xmalloc(i - start + 1);
            memcpy(fields[k], buf + start, i - start);
            fields[k][i - start] = '\0';
            flen[k++] = i - start;
            start = i + 1;
        }
    if (is_header) {
        *ncols = nf;
        resolve_columns(r, fields, flen, nf);
    } else if (*ncols == 0 && nf < 2) {
        bad_row(r, line, "expected at least 2 tab-separated columns (label, text), found %zu", nf);
    } else {
        if (*ncols == 0) *ncols = nf;
        if (!r->resolved && resolve_columns(r, NULL, NULL, *ncols) < 0) {
            /* file error reported */
        } else if (nf != *ncols) {
            bad_row(r, line, "expected %zu tab-separated columns, found %zu", *ncols, nf);
        } else if (!check_label(r, line, fields[r->label_idx], flen[r->label_idx])) {
            int ok = 1;
            for (size_t j = 0; ok && j < r->n_text; j++)
                ok = !check_field(r, line, fields[r->text_idx[j]], flen[r->text_idx[j]], "text");
            if (ok) push_fields(r, fields, flen, line);
        }
    }
    for (size_t j = 0; j < nf; j++) free(fields[j]);
    free(fields);
    free(flen);
}

static int read_tsv(FILE *f, reader *r, int header) {
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t line = 0;
    size_t ncols = 0;
    const int by_columns = r->spec->label_col || r->spec->n_text_cols;
    while (!r->failed && (len = getline(&buf, &cap, f)) >= 0) {
        line++;
        size_t n = (size_t)len;
        if (line == 1) {
            size_t skip = bom_length(buf, n);
            memmove(buf, buf + skip, n - skip);
            n -= skip;
        }
        if (n && buf[n - 1] == '\n') n--;
        if (n && buf[n - 1] == '\r') n--;
        if (n == 0) continue;
        if (by_columns) {
            tsv_columns(r, buf, n, line, header, &ncols);
            header = 0;
            continue;
        }
        if (header) {
            header = 0;
            continue;
        }
        char *tab = memchr(buf, '\t', n);
        if (!tab) {
            bad_row(r, line, "expected label<TAB>text, found no tab");
            continue;
        }
        size_t nl = (size_t)(tab - buf), nt = n - nl - 1;
        if (check_label(r, line, buf, nl) || check_field(r, line, tab + 1, nt, "text")) continue;
        char *label = bf_xmalloc(nl + 1), *text = bf_xmalloc(nt + 1);
        memcpy(label, buf, nl);
        label[nl] = '\0';
        memcpy(text, tab + 1, nt);
        text[nt] = '\0';
        push_row(r->out, label, text, nt, line);
    }
    if (!r->failed && ferror(f)) {
        r->failed = 1;
        bf_fail(r->err, "%s:%lld: read error: %s", r->path, (long long)line + 1, strerror(errno));
    }
    free(buf);
    return r->failed ? -1 : 0;
}

/* ---- JSON Lines ---- */

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction or exponent";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* One JSON Lines row: the object on buf[0..n). */
static void jsonl_row(reader *r, const char *buf, size_t n, int64_t line, const char *label_key,
                      const char *const *text_keys, size_t n_text) {
    json_error_t je;
    json_t *o = json_loadb(buf, n, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        bad_row(r, line, "invalid JSON at column %d (%s): expected one JSON object per line", je.column, je.text);
        return;
    }
    if (!json_is_object(o)) {
        bad_row(r, line, "found %s: expected one JSON object per line, like {\"text\": \"...\", \"label\": \"...\"}",
                json_type_name(o));
        json_decref(o);
        return;
    }
    json_t *lv = json_object_get(o, label_key);
    char num[32];
    const char *ls = NULL;
    size_t ln = 0;
    if (!lv) {
        bad_row(r, line, "no field \"%s\": expected the label field (--label-column names it)", label_key);
    } else if (json_is_string(lv)) {
        ls = json_string_value(lv);
        ln = json_string_length(lv);
    } else if (json_is_integer(lv)) {
        ln = (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(lv));
        ls = num;
    } else {
        bad_row(r, line, "field \"%s\" is %s: expected the label as a string or an integer", label_key,
                json_type_name(lv));
    }
    if (!ls || check_label(r, line, ls, ln)) {
        json_decref(o);
        return;
    }
    size_t total = 1;
    for (size_t k = 0; k < n_text; k++) {
        json_t *tv = json_object_get(o, text_keys[k]);
        if (!tv) {
            bad_row(r, line, "no field \"%s\": expected the text field (--text-columns names it)", text_keys[k]);
            json_decref(o);
            return;
        }
        if (!json_is_string(tv)) {
            bad_row(r, line, "field \"%s\" is %s: expected the text as a string", text_keys[k], json_type_name(tv));
            json_decref(o);
            return;
        }
        total += json_string_length(tv) + 1;
    }
    char *text = bf_xmalloc(total);
    size_t pos = 0;
    for (size_t k = 0; k < n_text; k++) {
        json_t *tv = json_object_get(o, text_keys[k]);
        if (k) text[pos++] = ' ';
        memcpy(text + pos, json_string_value(tv), json_string_length(tv));
        pos += json_string_length(tv);
    }
    text[pos] = '\0';
    char *label = bf_xmalloc(ln + 1);
    memcpy(label, ls, ln);
    label[ln] = '\0';
    push_row(r->out, label, text, pos, line);
    json_decref(o);
}

static int read_jsonl(FILE *f, reader *r) {
    static const char *const default_text[] = {"text"};
    const char *label_key = r->spec->label_col ? r->spec->label_col : "label";
    const char *const *text_keys = r->spec->n_text_cols ? r->spec->text_cols : default_text;
    size_t n_text = r->spec->n_text_cols ? r->spec->n_text_cols : 1;
    for (size_t k = 0; k < n_text; k++)
        if (!strcmp(text_keys[k], label_key))
            return file_error(r, "--text-columns %s is the label field: expected other fields", text_keys[k]);
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t line = 0;
    while (!r->failed && (len = getline(&buf, &cap, f)) >= 0) {
        line++;
        size_t n = (size_t)len, skip = line == 1 ? bom_length(buf, n) : 0;
        size_t b = skip;
        while (b < n && (buf[b] == ' ' || buf[b] == '\t' || buf[b] == '\r' || buf[b] == '\n')) b++;
        if (b == n) continue; /* blank line */
        size_t off = 0;
        if (!bf_utf8_valid(buf + skip, n - skip, &off)) {
            bad_row(r, line, "invalid UTF-8 (byte 0x%02X at offset %zu): expected UTF-8 encoded JSON",
                    (unsigned)(unsigned char)buf[skip + off], off);
            continue;
        }
        jsonl_row(r, buf + skip, n - skip, line, label_key, text_keys, n_text);
    }
    if (!r->failed && ferror(f)) {
        r->failed = 1;
        bf_fail(r->err, "%s:%lld: read error: %s", r->path, (long long)line + 1, strerror(errno));
    }
    free(buf);
    return r->failed ? -1 : 0;
}

int bf_text_read(const char *path, bf_text_format fmt, int header, int skip_bad, bf_text_rows *out, bf_err *err) {
    bf_text_spec spec = {.fmt = fmt, .header = header, .skip_bad = skip_bad};
    return bf_text_read_spec(path, &spec, out, err);
}

int bf_text_read_spec(const char *path, const bf_text_spec *spec, bf_text_rows *out, bf_err *err) {
    bf_text_format fmt = spec->fmt;
    if (fmt != BF_TEXT_CSV && fmt != BF_TEXT_TSV && fmt != BF_TEXT_JSONL)
        return bf_fail(err, "%s: unknown text format: expected csv, tsv or jsonl", path);
    if (fmt == BF_TEXT_JSONL && spec->header)
        return bf_fail(err, "%s: --header: a JSON Lines file has no header row (its fields have names): expected no "
                            "--header, or a CSV/TSV file",
                       path);
    if (bf_check_input_file(path, err)) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return bf_fail(err, "%s: cannot open: %s", path, strerror(errno));
    reader rd = {.path = path, .skip_bad = spec->skip_bad, .out = out, .err = err, .failed = 0, .spec = spec};
    int rc;
    if (fmt == BF_TEXT_CSV) {
        csv_reader c = {.rd = rd, .header_pending = spec->header};
        rc = read_csv(f, &c);
        free(c.rd.text_idx);
    } else if (fmt == BF_TEXT_TSV) {
        rc = read_tsv(f, &rd, spec->header);
        free(rd.text_idx);
    } else {
        rc = read_jsonl(f, &rd);
    }
    fclose(f);
    return rc;
}

/* ---- a prepared dataset expected ---- */

int bf_text_check_dataset_path(const char *key, const char *path, bf_err *err) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    char named[BF_ERR_LEN / 4]; /* "data.train = PATH" or "--data PATH" */
    snprintf(named, sizeof named, key[0] == '-' ? "%s %.200s" : "%s = %.200s", key, path);
    const char *split = strstr(key, "test") || key[0] == '-' ? "test" : strstr(key, "valid") ? "valid" : "train";
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT)
            return bf_fail(err, "%s: no such file: expected a prepared dataset (budgetformer prepare --train FILE "
                                "--test FILE --out DIR writes DIR/train.h5 and DIR/test.h5)",
                           named);
        return bf_fail(err, "%s: cannot read: %s", named, strerror(errno));
    }
    if (S_ISDIR(st.st_mode))
        return bf_fail(err, "%s is a directory: expected a prepared dataset file in it, such as %s/%s.h5 "
                            "(budgetformer prepare --out %s writes them)",
                       named, path, split, path);
    FILE *f = fopen(path, "rb");
    if (!f) return bf_fail(err, "%s: cannot open: %s", named, strerror(errno));
    /* The HDF5 signature is at offset 0, 512, 1024, 2048, ... (after a user block). */
    unsigned char head[512];
    size_t got0 = 0;
    int found = 0;
    for (long off = 0; !found && off < (long)st.st_size; off = off ? 2 * off : 512) {
        unsigned char b[8];
        if (fseek(f, off, SEEK_SET) != 0 || fread(b, 1, 8, f) != 8) break;
        found = !memcmp(b, sig, 8);
    }
    if (!found && fseek(f, 0, SEEK_SET) == 0) got0 = fread(head, 1, sizeof head, f);
    fclose(f);
    if (found) return 0;
    size_t printable = 0;
    for (size_t i = 0; i < got0; i++) printable += head[i] >= 0x20 || head[i] == '\n' || head[i] == '\r' || head[i] == '\t';
    bf_text_format fmt = bf_text_format_from_path(path);
    if (got0 > 0 && (fmt != BF_TEXT_UNKNOWN || printable == got0))
        return bf_fail(err, "%s: not a readable HDF5 file but %s: expected a prepared dataset; prepare the text "
                            "first: budgetformer prepare --train FILE --test FILE --out DIR, then %s%sDIR/%s.h5 "
                            "(docs/DATA.md)",
                       named, fmt == BF_TEXT_CSV ? "a CSV file" : fmt == BF_TEXT_TSV ? "a TSV file" :
                                  fmt == BF_TEXT_JSONL ? "a JSON Lines file" : "text",
                       key, key[0] == '-' ? " " : " = ", split);
    return bf_fail(err, "%s: not a readable HDF5 file (%s): expected a prepared dataset .h5 (budgetformer "
                        "prepare writes them)",
                   named, st.st_size == 0 ? "empty" : "truncated or another format?");
}
