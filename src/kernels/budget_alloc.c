/* The batch-ranked budget allocation of budget supervision (train.supervise_rank, docs/MODEL.md "Training
 * options"): given each input's cross-entropy at every forced budget k = 1..H, share a total of heads among
 * the inputs so that the sum of cross-entropies is smallest, greedily: every input starts at one head and
 * the remaining heads go, a jump at a time, to the input whose next jump buys the largest fall of
 * cross-entropy per head. A jump may skip budgets (k -> k + 2) because an input's loss need not fall at
 * every step of k; that is the greedy rule on the lower convex hull of each input's curve. */
#include "budgetformer/router.h"

int bf_budget_allocate(const float *ce, int n, int H, long total, float *k_out) {
    size_t nn = (size_t)n;
    long left = total - n;
    for (int i = 0; i < n; i++) k_out[i] = 1.0f;
    int given = n;
    while (left > 0) {
        float best = 0.0f;
        int bi = -1, bk = 0;
        for (int i = 0; i < n; i++) {
            int k = (int)k_out[i];
            float at = ce[(size_t)(k - 1) * nn + (size_t)i];
            for (int k2 = k + 1; k2 <= H && k2 - k <= left; k2++) {
                float per_head = (at - ce[(size_t)(k2 - 1) * nn + (size_t)i]) / (float)(k2 - k);
                if (per_head > best) { /* strict: ties go to the earlier input and the smaller jump */
                    best = per_head;
                    bi = i;
                    bk = k2;
                }
            }
        }
        if (bi < 0) break; /* no input's loss falls with more heads: the rest stays unspent */
        left -= bk - (int)k_out[bi];
        given += bk - (int)k_out[bi];
        k_out[bi] = (float)bk;
    }
    return given;
}
