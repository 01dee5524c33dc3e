/* heads_print: the JSON and table helpers of `budgetformer heads` (internal to src/cli). */
#ifndef BUDGETFORMER_CLI_HEADS_PRINT_H
#define BUDGETFORMER_CLI_HEADS_PRINT_H

#include <stddef.h>

#define MAX_HEADS BF_MAX_HEADS
#define MAX_LABEL_WIDTH 24

void bf_heads_json_str(const char *s);
void bf_heads_json_num(double v);
void bf_heads_json_vec(const double *v, size_t n);
void bf_heads_json_matrix_f32(const float *m, size_t L, size_t H);
void bf_heads_json_head_lists(const unsigned char *flags, size_t L, size_t H);
void bf_heads_json_class_names(char *const *names, size_t C);
const char *bf_heads_class_label(char *const *names, size_t c, char *buf, size_t len);
int bf_heads_label_width(char *const *names, size_t C, int min);
void bf_heads_print_layer_columns(size_t L);
void bf_heads_print_budget_header(const char *first, int w, size_t L);
void bf_heads_print_budget_row(const char *label, int w, long long n, const double *v, size_t L);
void bf_heads_print_head_header(const char *first, size_t H);
void bf_heads_print_head_list(const unsigned char *flags, size_t H, int width);
void bf_heads_print_never_always(const unsigned char *never, const unsigned char *always, size_t L, size_t H);

#endif
