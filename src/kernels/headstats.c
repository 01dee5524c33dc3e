/* headstats: head-usage counts (see headstats.h). */
#include "budgetformer/headstats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/util.h"

size_t bf_headstats_legacy_len(int n_classes, int n_layers, int n_heads) {
    size_t C = (size_t)n_classes, LH = (size_t)n_layers * (size_t)n_heads;
    return 1 + C + 2 * LH + C * LH;
}

size_t bf_headstats_block_len(int n_classes, int n_layers, int n_heads) {
    size_t kb = (size_t)BF_KHAT_PER_UNIT * (size_t)(n_heads > 1 ? n_heads - 1 : 1);
    return bf_headstats_legacy_len(n_classes, n_layers, n_heads) +
           (size_t)n_layers * ((size_t)BF_LOGIT_BINS + kb + (size_t)BF_MASS_BINS);
}

void bf_headstats_init(bf_headstats *s, int n_classes, int n_layers, int n_heads) {
    size_t C = (size_t)n_classes, L = (size_t)n_layers, LH = L * (size_t)n_heads;
    s->n_classes = n_classes;
    s->n_layers = n_layers;
    s->n_heads = n_heads;
    s->khat_bins = BF_KHAT_PER_UNIT * (n_heads > 1 ? n_heads - 1 : 1);
    s->block_len = bf_headstats_block_len(n_classes, n_layers, n_heads);
    s->block = bf_xcalloc(s->block_len, sizeof(int64_t));
    s->count = s->block;
    s->class_count = s->count + 1;
    s->usage = s->class_count + C;
    s->budget = s->usage + LH;
    s->class_usage = s->budget + LH;
    s->logit_hist = s->class_usage + C * LH;
    s->khat_hist = s->logit_hist + L * BF_LOGIT_BINS;
    s->mass_hist = s->khat_hist + L * (size_t)s->khat_bins;
}

void bf_headstats_free(bf_headstats *s) {
    free(s->block);
    memset(s, 0, sizeof *s);
}

void bf_headstats_reset(bf_headstats *s) { memset(s->block, 0, s->block_len * sizeof(int64_t)); }

/* floor(x * per) clamped to 0..bins-1; NaN goes to bin 0. */
static int clamp_bin(double x, int bins) {
    if (!(x > 0.0)) return 0;
    if (x >= (double)bins) return bins - 1;
    return (int)x;
}

int bf_headstats_logit_bin(float khat, int n_heads) {
    double q = ((double)khat - 1.0) / (double)(n_heads > 1 ? n_heads - 1 : 1);
    if (q <= 0.0) return 0;
    if (q >= 1.0) return BF_LOGIT_BINS - 1;
    double a = log(q / (1.0 - q));
    return clamp_bin((a - BF_LOGIT_MIN) * (double)BF_LOGIT_BINS / (BF_LOGIT_MAX - BF_LOGIT_MIN), BF_LOGIT_BINS);
}

int bf_headstats_khat_bin(float khat, int n_heads) {
    /* (k^ - 1) * 4 is exact in float for k^ in [1, 32], so the bins of width 1/4 split exactly at the
     * rounding points k + 1/2 of round(k^): bins 4k-6 .. 4k-3 are exactly the inputs whose k^ rounds to k
     * (k = 1: bins 0 and 1), the router's k unless exploration, a forced budget or an override replaced it. */
    int bins = BF_KHAT_PER_UNIT * (n_heads > 1 ? n_heads - 1 : 1);
    return clamp_bin(((double)khat - 1.0) * BF_KHAT_PER_UNIT, bins);
}

int bf_headstats_mass_bin(float mass) { return clamp_bin((double)mass * BF_MASS_BINS, BF_MASS_BINS); }

void bf_headstats_add(bf_headstats *s, const int32_t *labels, const int32_t *budget, const uint32_t *head_mask,
                      const float *khat, const float *sel_mass, int n) {
    size_t L = (size_t)s->n_layers, H = (size_t)s->n_heads, LH = L * H, KB = (size_t)s->khat_bins;
    for (int i = 0; i < n; i++) {
        int y = labels[i];
        BF_CHECK(y >= 0 && y < s->n_classes, "label %d outside 0..%d", y, s->n_classes - 1);
        s->count[0]++;
        s->class_count[y]++;
        for (size_t l = 0; l < L; l++) {
            size_t il = (size_t)i * L + l;
            int k = budget[il];
            BF_CHECK(k >= 1 && (size_t)k <= H, "budget %d outside 1..%zu", k, H);
            s->budget[l * H + (size_t)(k - 1)]++;
            uint32_t bits = head_mask[il];
            for (size_t h = 0; h < H; h++)
                if (bits >> h & 1u) {
                    s->usage[l * H + h]++;
                    s->class_usage[(size_t)y * LH + l * H + h]++;
                }
            s->logit_hist[l * BF_LOGIT_BINS + (size_t)bf_headstats_logit_bin(khat[il], s->n_heads)]++;
            s->khat_hist[l * KB + (size_t)bf_headstats_khat_bin(khat[il], s->n_heads)]++;
            s->mass_hist[l * BF_MASS_BINS + (size_t)bf_headstats_mass_bin(sel_mass[il])]++;
        }
    }
}
