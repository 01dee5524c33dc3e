/* evaluate: model over a dataset at eps = 0 (see evaluate.h). */
#include "budgetformer/evaluate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budgetformer/checkpoint.h"
#include "budgetformer/rng.h"
#include "budgetformer/router.h"

void bf_eval_counts_init(bf_eval_counts *e, const bf_model_config *c) {
    memset(e, 0, sizeof *e);
    e->n_classes = c->n_classes;
    e->n_layers = c->n_layers;
    e->n_heads = c->n_heads;
    e->confusion = bf_xcalloc((size_t)c->n_classes * (size_t)c->n_classes, sizeof(int64_t));
    e->budget_count = bf_xcalloc((size_t)c->n_layers * (size_t)c->n_heads, sizeof(int64_t));
    e->budget_sum = bf_xcalloc((size_t)c->n_layers, sizeof(double));
}

void bf_eval_counts_free(bf_eval_counts *e) {
    free(e->confusion);
    free(e->budget_count);
    free(e->budget_sum);
    memset(e, 0, sizeof *e);
}

static int evaluate_core(bf_model *m, const bf_dataset *d, size_t lo, size_t hi, const int32_t *k_override,
                         bf_eval_counts *e, bf_eval_records *rec, int (*stop)(void *), void *stop_ctx);

void bf_evaluate(bf_model *m, const bf_dataset *d, size_t lo, size_t hi, bf_eval_counts *e, bf_eval_records *rec) {
    evaluate_core(m, d, lo, hi, NULL, e, rec, NULL, NULL);
}

void bf_evaluate_override(bf_model *m, const bf_dataset *d, size_t lo, size_t hi, const int32_t *k_override,
                          bf_eval_counts *e, bf_eval_records *rec) {
    evaluate_core(m, d, lo, hi, k_override, e, rec, NULL, NULL);
}

int bf_evaluate_until(bf_model *m, const bf_dataset *d, size_t lo, size_t hi, bf_eval_counts *e,
                      bf_eval_records *rec, int (*stop)(void *), void *stop_ctx) {
    return evaluate_core(m, d, lo, hi, NULL, e, rec, stop, stop_ctx);
}

/* The one evaluation loop: budgets from outside (k_override, NULL = none) and a stop check before every batch
 * (stop may be NULL). */
static int evaluate_core(bf_model *m, const bf_dataset *d, size_t lo, size_t hi, const int32_t *k_override,
                         bf_eval_counts *e, bf_eval_records *rec, int (*stop)(void *), void *stop_ctx) {
    const bf_model_config *c = &m->cfg;
    size_t T = (size_t)d->max_len, C = (size_t)c->n_classes, L = (size_t)c->n_layers, H = (size_t)c->n_heads;
    BF_CHECK(d->max_len == c->max_len, "dataset max_len %d differs from the model's %d", d->max_len, c->max_len);
    double t0 = bf_wall_seconds();
    /* The batch's token ids widened to the model's int32 (the dataset may hold them as uint16). */
    int32_t *tokens = bf_xmalloc((size_t)m->max_batch * T * sizeof(int32_t));
    for (size_t start = lo; start < hi; start += (size_t)m->max_batch) {
        if (stop && stop(stop_ctx)) { /* a batch boundary: the counts so far are whole batches */
            e->n += (int64_t)(start - lo);
            e->seconds += bf_wall_seconds() - t0;
            free(tokens);
            return 1;
        }
        size_t n = hi - start < (size_t)m->max_batch ? hi - start : (size_t)m->max_batch;
        bf_dataset_rows(d, start, n, tokens);
        bf_batch b = {.n = (int)n, .tokens = tokens, .lengths = d->lengths + start,
                      .labels = d->labels + start, .k_override = k_override ? k_override + start * L : NULL};
        bf_infer_stats st;
        e->ce_sum += bf_model_infer(m, &b, &st);
        e->attn_bytes = st.attn_bytes > e->attn_bytes ? st.attn_bytes : e->attn_bytes;
        e->attn_bytes_all_heads = st.attn_bytes_all_heads > e->attn_bytes_all_heads ? st.attn_bytes_all_heads
                                                                                    : e->attn_bytes_all_heads;
        for (size_t i = 0; i < n; i++) {
            const float *z = m->logits + i * C;
            int pred = 0;
            for (size_t k = 1; k < C; k++)
                if (z[k] > z[pred]) pred = (int)k;
            int y = b.labels[i], len = b.lengths[i];
            e->confusion[(size_t)y * C + (size_t)pred]++;
            double attn_used = 0.0, attn_full = 0.0;
            for (size_t l = 0; l < L; l++) {
                int k = m->budget[i * L + l];
                e->budget_sum[l] += k;
                e->budget_count[l * H + (size_t)(k - 1)]++;
                attn_used += bf_model_attention_flops(c, len, k);
                attn_full += bf_model_attention_flops(c, len, (int)H);
            }
            /* The rest of the network costs the same either way: forward_flops with 0 heads is that rest. */
            double rest = bf_model_forward_flops(c, len, 0);
            e->attn_flops_used += attn_used;
            e->attn_flops_full += attn_full;
            e->flops_used += rest + attn_used;
            e->flops_full += rest + attn_full;
            if (rec) {
                size_t r = start + i;
                rec->label[r] = y;
                rec->pred[r] = pred;
                rec->length[r] = len;
                memcpy(rec->logits + r * C, z, C * sizeof(float));
                memcpy(rec->budget + r * L, m->budget + i * L, L * sizeof(int32_t));
                memcpy(rec->head_mask + r * L, m->head_mask + i * L, L * sizeof(uint32_t));
                memcpy(rec->khat + r * L, m->khat + i * L, L * sizeof(float));
                memcpy(rec->sel_mass + r * L, m->sel_mass + i * L, L * sizeof(float));
            }
        }
    }
    free(tokens);
    e->n += (int64_t)(hi - lo);
    e->seconds += bf_wall_seconds() - t0;
    return 0;
}

double bf_eval_accuracy(const bf_eval_counts *e) {
    int64_t right = 0, all = 0;
    for (int i = 0; i < e->n_classes; i++)
        for (int j = 0; j < e->n_classes; j++) {
            all += e->confusion[(size_t)i * (size_t)e->n_classes + (size_t)j];
            if (i == j) right += e->confusion[(size_t)i * (size_t)e->n_classes + (size_t)j];
        }
    return all ? (double)right / (double)all : 0.0;
}

double bf_eval_macro_f1(const bf_eval_counts *e) {
    size_t C = (size_t)e->n_classes;
    double sum = 0.0;
    int present = 0;
    for (size_t k = 0; k < C; k++) {
        int64_t tp = e->confusion[k * C + k], row = 0, col = 0;
        for (size_t j = 0; j < C; j++) {
            row += e->confusion[k * C + j];
            col += e->confusion[j * C + k];
        }
        if (row == 0 && col == 0) continue; /* class absent from labels and predictions */
        present++;
        sum += 2.0 * (double)tp / (double)(row + col);
    }
    return present ? sum / present : 0.0;
}

/* ---- budget controls ---------------------------------------------------------------------------- */

int bf_budget_control_parse(const char *s, bf_budget_control *out) {
    if (!strcmp(s, "shuffle")) *out = BF_CONTROL_SHUFFLE;
    else if (!strcmp(s, "constant")) *out = BF_CONTROL_CONSTANT;
    else if (!strcmp(s, "oracle")) *out = BF_CONTROL_ORACLE;
    else return -1;
    return 0;
}

const char *bf_budget_control_name(bf_budget_control c) {
    return c == BF_CONTROL_SHUFFLE    ? "shuffle"
           : c == BF_CONTROL_CONSTANT ? "constant"
           : c == BF_CONTROL_ORACLE   ? "oracle"
                                      : "none";
}

void bf_budget_control_perm(size_t n, uint64_t seed, size_t *perm) {
    for (size_t i = 0; i < n; i++) perm[i] = i;
    for (size_t i = n; i-- > 1;) {
        size_t j = (size_t)(bf_rng_key(seed, 0, (uint64_t)i, 0, BF_STREAM_CONTROL, 0) % (uint64_t)(i + 1));
        size_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void bf_budget_control_make(bf_budget_control c, uint64_t seed, const int32_t *budget, size_t n, int n_layers,
                            int n_heads, int32_t *k_override) {
    size_t L = (size_t)n_layers;
    if (c == BF_CONTROL_SHUFFLE) {
        size_t *perm = bf_xmalloc((n ? n : 1) * sizeof(size_t));
        bf_budget_control_perm(n, seed, perm);
        for (size_t i = 0; i < n; i++) memcpy(k_override + i * L, budget + perm[i] * L, L * sizeof(int32_t));
        free(perm);
    } else if (c == BF_CONTROL_CONSTANT) {
        for (size_t l = 0; l < L; l++) {
            int64_t sum = 0;
            for (size_t i = 0; i < n; i++) sum += budget[i * L + l];
            /* floor(sum / n + 1/2) in integers: exact, no float rounding at the half-way points */
            int64_t k = n ? (2 * sum + (int64_t)n) / (2 * (int64_t)n) : 1;
            k = k < 1 ? 1 : k > n_heads ? n_heads : k;
            for (size_t i = 0; i < n; i++) k_override[i * L + l] = (int32_t)k;
        }
    } else {
        memset(k_override, 0, n * L * sizeof(int32_t));
    }
}

void bf_eval_oracle_budgets(bf_model *m, const bf_dataset *d, const int32_t *budget, int32_t *k_override) {
    size_t n = d->n, L = (size_t)m->cfg.n_layers, C = (size_t)m->cfg.n_classes;
    int H = m->cfg.n_heads;
    int64_t heads = 0;
    for (size_t i = 0; i < n * L; i++) heads += budget[i];
    float *ce = bf_xcalloc((size_t)H * n + 1, sizeof(float));
    bf_eval_records rec;
    bf_eval_records_alloc(&rec, n, m->cfg.n_classes, m->cfg.n_layers);
    for (int k = 1; k <= H; k++) {
        for (size_t i = 0; i < n * L; i++) k_override[i] = k;
        bf_eval_counts e;
        bf_eval_counts_init(&e, &m->cfg);
        bf_evaluate_override(m, d, 0, n, k_override, &e, &rec);
        bf_eval_counts_free(&e);
        for (size_t i = 0; i < n; i++) { /* the cross-entropy from the logits, as the loss computes it */
            const float *z = rec.logits + i * C;
            float mx = z[0];
            for (size_t j = 1; j < C; j++) mx = z[j] > mx ? z[j] : mx;
            double s = 0.0;
            for (size_t j = 0; j < C; j++) s += exp((double)(z[j] - mx));
            ce[(size_t)(k - 1) * n + i] = (float)(log(s) + (double)mx - (double)z[rec.label[i]]);
        }
    }
    bf_eval_records_free(&rec);
    long total = (long)((heads + (int64_t)L / 2) / (int64_t)L);
    total = total < (long)n ? (long)n : total > (long)n * H ? (long)n * H : total;
    float *kf = bf_xcalloc(n + 1, sizeof(float));
    bf_budget_allocate(ce, (int)n, H, total, kf);
    for (size_t i = 0; i < n; i++)
        for (size_t l = 0; l < L; l++) k_override[i * L + l] = (int32_t)kf[i];
    free(kf);
    free(ce);
}
