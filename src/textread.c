/* textread: CSV (libcsv) and TSV rows with their source lines (see textread.h). */
#include "budgetformer/textread.h"

#include <csv.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "budgetformer/tokenize.h"

bf_text_format bf_text_format_from_path(const char *path) {
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash)) return BF_TEXT_UNKNOWN;
    if (!strcasecmp(dot, ".csv")) return BF_TEXT_CSV;
    if (!strcasecmp(dot, ".tsv") || !strcasecmp(dot, ".txt")) return BF_TEXT_TSV;
    return BF_TEXT_UNKNOWN;
}

bf_text_format bf_text_format_from_name(const char *name) {
    if (!strcmp(name, "csv")) return BF_TEXT_CSV;
    if (!strcmp(name, "tsv")) return BF_TEXT_TSV;
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
} reader;

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
        bad_row(r, line, "empty label: expected a label in the first column");
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
    if (c->nf != c->ncols) {
        bad_row(&c->rd, line, "expected %zu columns, found %zu", c->ncols, c->nf);
        csv_clear_fields(c);
        return;
    }
    if (check_label(&c->rd, line, c->fields[0], c->flen[0])) {
        csv_clear_fields(c);
        return;
    }
    size_t total = 0;
    for (size_t i = 1; i < c->nf; i++) {
        if (check_field(&c->rd, line, c->fields[i], c->flen[i], "text")) {
            csv_clear_fields(c);
            return;
        }
        total += c->flen[i] + 1;
    }
    char *text = bf_xmalloc(total);
    size_t pos = 0;
    for (size_t i = 1; i < c->nf; i++) {
        if (i > 1) text[pos++] = ' ';
        memcpy(text + pos, c->fields[i], c->flen[i]);
        pos += c->flen[i];
    }
    text[pos] = '\0';
    char *label = c->fields[0];
    c->fields[0] = NULL;
    push_row(c->rd.out, label, text, pos, line);
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
            if (e == CSV_EPARSE)
                bad_row(&c->rd, line,
                        "malformed CSV quoting: expected quotes only around a whole field, with \"\" for a quote "
                        "inside it");
            else
                bad_row(&c->rd, line, "CSV parser failed: %s", csv_strerror(e));
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

static int read_tsv(FILE *f, reader *r, int header) {
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    int64_t line = 0;
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

int bf_text_read(const char *path, bf_text_format fmt, int header, int skip_bad, bf_text_rows *out, bf_err *err) {
    if (fmt != BF_TEXT_CSV && fmt != BF_TEXT_TSV)
        return bf_fail(err, "%s: unknown text format: expected csv or tsv", path);
    if (bf_check_input_file(path, err)) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return bf_fail(err, "%s: cannot open: %s", path, strerror(errno));
    reader rd = {.path = path, .skip_bad = skip_bad, .out = out, .err = err, .failed = 0};
    int rc;
    if (fmt == BF_TEXT_CSV) {
        csv_reader c = {.rd = rd, .header_pending = header};
        rc = read_csv(f, &c);
    } else {
        rc = read_tsv(f, &rd, header);
    }
    fclose(f);
    return rc;
}
