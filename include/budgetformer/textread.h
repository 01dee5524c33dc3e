/* textread: labelled text rows from CSV (RFC 4180, via libcsv), TSV or JSON Lines (via jansson) files, with
 * their source lines.
 *
 * Use: bf_text_read fills a bf_text_rows (each row's label, text of text_len bytes and the 1-based line where
 * it starts; an error names file and line, "train.csv:7: ..."), bf_text_rows_free releases it;
 * src/cli/cmd_prepare.c and tests/test_prepare.c are the compiled examples.
 *
 * CSV: quoted fields, doubled quotes, commas and newlines inside quotes; spaces around unquoted fields are
 * trimmed; blank lines are skipped. The first column is the label, the other columns are joined by one space
 * into the text; every row must have the column count of the file's first row (at least 2).
 * TSV: `label<TAB>text`; the text is the rest of the line after the first tab (a trailing CR is dropped);
 * blank lines are skipped.
 * Columns (bf_text_read_spec): label_col and text_cols pick the label column and the text columns of a CSV or
 * TSV file by 1-based number or, with a header row, by name (the texts of several columns are joined by one
 * space); TSV lines are then split at every tab. JSON Lines: one JSON object per line; the label is the field
 * label_col ("label" by default; a string or an integer), the text the fields text_cols ("text"; strings)
 * joined by one space; blank lines are skipped.
 * Every field must be valid UTF-8 and the label must be non-empty. A row breaking these rules is a bad row:
 * an error naming file:line and what was expected, or, with skip_bad, skipped and counted in n_bad.
 */
#ifndef BUDGETFORMER_TEXTREAD_H
#define BUDGETFORMER_TEXTREAD_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/util.h"

typedef enum { BF_TEXT_UNKNOWN = 0, BF_TEXT_CSV = 1, BF_TEXT_TSV = 2, BF_TEXT_JSONL = 3 } bf_text_format;

typedef struct {
    char *label;     /* NUL-terminated, non-empty, valid UTF-8 */
    char *text;      /* text_len bytes (NUL-terminated too; may contain NUL bytes) */
    size_t text_len;
    int64_t line;    /* 1-based line of the source file where the row starts */
} bf_text_row;

typedef struct {
    bf_text_row *rows;
    size_t n, cap;
    size_t n_bad;                 /* rows skipped as bad (skip_bad only) */
    char first_bad[BF_ERR_LEN];   /* the message of the first skipped row */
} bf_text_rows;

/* .csv -> CSV; .tsv and .txt -> TSV; .jsonl and .ndjson -> JSON Lines (case-insensitive); else
 * BF_TEXT_UNKNOWN. */
bf_text_format bf_text_format_from_path(const char *path);
/* "csv" / "tsv" / "jsonl" -> the format; else BF_TEXT_UNKNOWN. */
bf_text_format bf_text_format_from_name(const char *name);

/* Reads every row of path, appending to out. header: skip the file's first row. Returns 0, or -1 with err
 * set ("FILE:LINE: ... expected ..."). */
int bf_text_read(const char *path, bf_text_format fmt, int header, int skip_bad, bf_text_rows *out, bf_err *err);

/* What to read and how. label_col / text_cols NULL: the defaults above (CSV: column 1 and the other columns;
 * TSV: label<TAB>text; JSON Lines: fields "label" and "text"). A column given as digits only is a 1-based
 * number, else a name (CSV/TSV: needs header). */
typedef struct {
    bf_text_format fmt;
    int header, skip_bad;
    const char *label_col;
    const char *const *text_cols;
    size_t n_text_cols;
} bf_text_spec;
/* As bf_text_read; a column that does not exist (a number beyond the first row's columns, a name missing
 * from the header, a name without a header row) is an error naming the file and the option. */
int bf_text_read_spec(const char *path, const bf_text_spec *spec, bf_text_rows *out, bf_err *err);
void bf_text_rows_free(bf_text_rows *r);

/* The common mistakes where a prepared dataset is expected (key: the configuration key or option that named
 * path, e.g. "data.train" or "--data"): a missing file, a directory, or a file that is not HDF5 (text, a
 * CSV/TSV/JSON Lines file: prepare it first). Returns 0 when path is a file starting like HDF5, else -1 with
 * err naming the key and path and suggesting the fix. */
int bf_text_check_dataset_path(const char *key, const char *path, bf_err *err);

#endif
