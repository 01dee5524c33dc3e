/* heads_print: the JSON and table helpers of `budgetformer heads` (heads_print.h). */
#include "heads_print.h"

#include <stdio.h>
#include <string.h>

#include "budgetformer/model.h"
#include "jsonout.h"

void bf_heads_json_str(const char *s) { bf_json_str(stdout, s); }

void bf_heads_json_num(double v) { printf("%.9g", v); }

void bf_heads_json_vec(const double *v, size_t n) {
    if (!v) {
        printf("null");
        return;
    }
    putchar('[');
    for (size_t i = 0; i < n; i++) {
        if (i) printf(", ");
        bf_heads_json_num(v[i]);
    }
    putchar(']');
}

/* usage[L][H] as nested arrays */
void bf_heads_json_matrix_f32(const float *m, size_t L, size_t H) {
    putchar('[');
    for (size_t l = 0; l < L; l++) {
        printf("%s[", l ? ", " : "");
        for (size_t h = 0; h < H; h++) {
            if (h) printf(", ");
            bf_heads_json_num((double)m[l * H + h]);
        }
        putchar(']');
    }
    putchar(']');
}

/* For each layer, the list of heads whose flag is set: flags [L][H]. */
void bf_heads_json_head_lists(const unsigned char *flags, size_t L, size_t H) {
    putchar('[');
    for (size_t l = 0; l < L; l++) {
        printf("%s[", l ? ", " : "");
        int first = 1;
        for (size_t h = 0; h < H; h++)
            if (flags[l * H + h]) {
                printf("%s%zu", first ? "" : ", ", h);
                first = 0;
            }
        putchar(']');
    }
    putchar(']');
}

void bf_heads_json_class_names(char *const *names, size_t C) {
    if (!names) {
        printf("null");
        return;
    }
    putchar('[');
    for (size_t c = 0; c < C; c++) {
        if (c) printf(", ");
        bf_heads_json_str(names[c]);
    }
    putchar(']');
}

const char *bf_heads_class_label(char *const *names, size_t c, char *buf, size_t len) {
    if (names) return names[c];
    snprintf(buf, len, "%zu", c);
    return buf;
}

/* Width of the first column of a budget table: the longest label, within [min, MAX_LABEL_WIDTH]. */
int bf_heads_label_width(char *const *names, size_t C, int min) {
    int w = min;
    for (size_t c = 0; names && c < C; c++) {
        int n = (int)strlen(names[c]);
        if (n > w) w = n;
    }
    return w > MAX_LABEL_WIDTH ? MAX_LABEL_WIDTH : w;
}

/* Right-aligned "layer l" column titles, 8 wide like the values below them, and the end of the line. */
void bf_heads_print_layer_columns(size_t L) {
    char t[32];
    for (size_t l = 0; l < L; l++) {
        snprintf(t, sizeof t, "layer %zu", l);
        printf("  %8s", t);
    }
    printf("\n");
}

void bf_heads_print_budget_header(const char *first, int w, size_t L) {
    printf("%-*s  %7s", w, first, "inputs");
    bf_heads_print_layer_columns(L);
}

/* One table row: label, inputs, the mean budget of each layer ("-" when v is NULL). */
void bf_heads_print_budget_row(const char *label, int w, long long n, const double *v, size_t L) {
    printf("%-*.*s  %7lld", w, w, label, n);
    for (size_t l = 0; l < L; l++) {
        if (v) printf("  %8.3f", v[l]);
        else printf("  %8s", "-");
    }
    printf("\n");
}

void bf_heads_print_head_header(const char *first, size_t H) {
    char t[32];
    printf("%s", first);
    for (size_t h = 0; h < H; h++) {
        snprintf(t, sizeof t, "h%zu", h);
        printf("  %7s", t);
    }
    printf("\n");
}

/* The heads whose flag is set, as "0,3", or "-" for none; width pads to a column (0: no padding). */
void bf_heads_print_head_list(const unsigned char *flags, size_t H, int width) {
    char buf[4 * MAX_HEADS + 2] = "";
    size_t k = 0;
    for (size_t h = 0; h < H; h++)
        if (flags[h]) k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%zu", k ? "," : "", h);
    printf("%-*s", width, k ? buf : "-");
}

void bf_heads_print_never_always(const unsigned char *never, const unsigned char *always, size_t L, size_t H) {
    int w = H < 3 ? 5 : 3 * (int)H - 1; /* room for every head of a layer, "0,1,...,H-1" up to H = 10 */
    printf("layer  %-*s  always\n", w, "never");
    for (size_t l = 0; l < L; l++) {
        printf("%5zu  ", l);
        bf_heads_print_head_list(never + l * H, H, w);
        printf("  ");
        bf_heads_print_head_list(always + l * H, H, 0);
        printf("\n");
    }
}
