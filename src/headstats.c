/* headstats: head-usage counts (see headstats.h). */
#include "budgetformer/headstats.h"

#include <stdlib.h>
#include <string.h>

#include "budgetformer/util.h"

void bf_headstats_init(bf_headstats *s, int n_classes, int n_layers, int n_heads) {
    size_t C = (size_t)n_classes, LH = (size_t)n_layers * (size_t)n_heads;
    s->n_classes = n_classes;
    s->n_layers = n_layers;
    s->n_heads = n_heads;
    s->block_len = 1 + C + 2 * LH + C * LH;
    s->block = bf_xcalloc(s->block_len, sizeof(int64_t));
    s->count = s->block;
    s->class_count = s->count + 1;
    s->usage = s->class_count + C;
    s->budget = s->usage + LH;
    s->class_usage = s->budget + LH;
}

void bf_headstats_free(bf_headstats *s) {
    free(s->block);
    memset(s, 0, sizeof *s);
}

void bf_headstats_reset(bf_headstats *s) { memset(s->block, 0, s->block_len * sizeof(int64_t)); }

void bf_headstats_add(bf_headstats *s, const int32_t *labels, const int32_t *budget, const uint32_t *head_mask,
                      int n) {
    size_t L = (size_t)s->n_layers, H = (size_t)s->n_heads, LH = L * H;
    for (int i = 0; i < n; i++) {
        int y = labels[i];
        BF_CHECK(y >= 0 && y < s->n_classes, "label %d outside 0..%d", y, s->n_classes - 1);
        s->count[0]++;
        s->class_count[y]++;
        for (size_t l = 0; l < L; l++) {
            int k = budget[(size_t)i * L + l];
            BF_CHECK(k >= 1 && (size_t)k <= H, "budget %d outside 1..%zu", k, H);
            s->budget[l * H + (size_t)(k - 1)]++;
            uint32_t bits = head_mask[(size_t)i * L + l];
            for (size_t h = 0; h < H; h++)
                if (bits >> h & 1u) {
                    s->usage[l * H + h]++;
                    s->class_usage[(size_t)y * LH + l * H + h]++;
                }
        }
    }
}
