/* router: head budget, relevance, selection and the straight-through backward (see router.h). */
#include "budgetformer/router.h"

#include <math.h>
#include <string.h>

#include "budgetformer/ops.h"
#include "budgetformer/util.h"

size_t bf_router_state_floats(size_t B, size_t D, size_t H, size_t N) {
    /* s, ds: B*D; r, p, gate, dgate, dr, rank: B*H; abud, khat, da, k, mask_bits, sel_mass: B;
     * hb, ab, dab, dhb: B*N (budget_hidden = N, nothing at N = 0, so the default arena is unchanged) */
    return 2 * B * D + 6 * B * H + 6 * B + 4 * B * N;
}

float *bf_router_state_bind(bf_router_state *st, float *block, size_t B, size_t D, size_t H, size_t N) {
    float *p = block;
    st->s = p, p += B * D;
    st->ds = p, p += B * D;
    st->r = p, p += B * H;
    st->p = p, p += B * H;
    st->gate = p, p += B * H;
    st->dgate = p, p += B * H;
    st->dr = p, p += B * H;
    /* Integer arrays share the arena: the block comes from calloc, so it has no declared type and each
     * slot takes the type it is written with (4-byte floats and 4-byte integers alike). */
    st->rank = (int32_t *)(void *)p, p += B * H;
    st->abud = p, p += B;
    st->khat = p, p += B;
    st->da = p, p += B;
    st->k = (int32_t *)(void *)p, p += B;
    st->mask_bits = (uint32_t *)(void *)p, p += B;
    st->sel_mass = p, p += B;
    st->hb = p, p += B * N;
    st->ab = p, p += B * N;
    st->dab = p, p += B * N;
    st->dhb = p, p += B * N;
    return p;
}

void bf_rank_heads(int32_t *rank, const float *z, int H) {
    for (int h = 0; h < H; h++) {
        int r = 0;
        for (int j = 0; j < H; j++)
            if (z[j] > z[h] || (z[j] == z[h] && j < h)) r++;
        rank[h] = r;
    }
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

void bf_router_forward(bf_router_state *st, const bf_router_params_mode *mode, const float *u,
                       const int32_t *lengths, const float *w_rel, const float *b_rel, const bf_budget_weights *bud,
                       const bf_explore *ex, const int32_t *k_override, size_t l, size_t L, size_t n, size_t D) {
    size_t H = (size_t)mode->n_heads;
    if (mode->mode == BF_ROUTER_FULL) {
        for (size_t b = 0; b < n; b++) {
            for (size_t h = 0; h < H; h++) {
                st->gate[b * H + h] = 1.0f;
                st->rank[b * H + h] = (int32_t)h;
            }
            st->k[b] = (int32_t)H;
            st->khat[b] = (float)H;
            st->mask_bits[b] = H == 32 ? 0xFFFFFFFFu : ((1u << H) - 1u);
            st->sel_mass[b] = 1.0f;
        }
        return;
    }
    bf_masked_mean_forward(st->s, u, lengths, n, D);
    bf_matmul_forward(st->r, st->s, w_rel, b_rel, n, D, H);
    for (size_t b = 0; b < n; b++) bf_softmax_forward(st->p + b * H, st->r + b * H, H);
    int learned = mode->mode == BF_ROUTER_LEARNED;
    if (learned) {
        bf_matmul_forward(st->abud, st->s, bud->w, bud->b, n, D, 1);
        size_t N = (size_t)mode->budget_hidden;
        if (N) {
            /* budget_hidden: a += w_bud_o . gelu(s W_bud_h + b_bud_h), a residual hidden layer on the linear logit
             * (docs/MODEL.md), so w_bud_o = 0 is exactly the linear predictor. */
            bf_matmul_forward(st->hb, st->s, bud->w_h, bud->b_h, n, D, N);
            bf_gelu_forward(st->ab, st->hb, n * N);
            for (size_t b = 0; b < n; b++) {
                float acc = 0.0f;
                for (size_t j = 0; j < N; j++) acc += st->ab[b * N + j] * bud->w_o[j];
                st->abud[b] += acc;
            }
        }
    }
    float eps = ex ? ex->eps : 0.0f;
    for (size_t b = 0; b < n; b++) {
        float z[BF_MAX_HEADS];
        const float *r = st->r + b * H;
        /* Exploration of which heads: rank by r + eps * Gumbel noise; no noise at eps = 0. */
        if (eps > 0.0f) {
            const float *g = ex->gumbel + (b * L + l) * H;
            for (size_t h = 0; h < H; h++) z[h] = r[h] + eps * g[h];
        } else {
            memcpy(z, r, H * sizeof(float));
        }
        bf_rank_heads(st->rank + b * H, z, (int)H);
        int k;
        if (ex && ex->k_force > 0) {
            /* A forced budget (sandwich and budget-supervision passes): k^ is still computed for the record,
             * but k is the forced one and k^ gets no gradient from this pass. */
            k = ex->k_force > (int)H ? (int)H : ex->k_force;
            st->khat[b] = learned ? 1.0f + (float)(H - 1) * sigmoidf(st->abud[b]) : (float)k;
        } else if (learned) {
            float khat = 1.0f + (float)(H - 1) * sigmoidf(st->abud[b]);
            st->khat[b] = khat;
            int kr = eps > 0.0f ? ex->k_random[b * L + l] : 0;
            if (kr > 0) {
                k = kr; /* exploration of how many: a random budget */
            } else {
                k = (int)floorf(khat + 0.5f);
                k = k < 1 ? 1 : (k > (int)H ? (int)H : k);
            }
        } else {
            k = mode->layer_budgets ? mode->layer_budgets[l] : mode->fixed_budget;
            st->khat[b] = (float)k;
        }
        int ko = k_override ? k_override[b * L + l] : 0;
        if (ko > 0) k = ko > (int)H ? (int)H : ko; /* a budget control: this input's k is set from outside */
        st->k[b] = k;
        uint32_t bits = 0;
        float mass = 0.0f;
        for (size_t h = 0; h < H; h++)
            if (st->rank[b * H + h] < k) {
                mass += st->p[b * H + h];
                bits |= 1u << h;
            }
        /* gate_norm = 1 divides by the selected mass, so the gates sum to H whatever k is. */
        if (mass < 1e-30f) mass = 1e-30f; /* every selected p underflowed: gates 0, not 0/0 */
        float scale = mode->gate_norm ? (float)H / mass : (float)H;
        for (size_t h = 0; h < H; h++) st->gate[b * H + h] = (bits >> h) & 1u ? scale * st->p[b * H + h] : 0.0f;
        st->mask_bits[b] = bits;
        st->sel_mass[b] = mass;
    }
}

void bf_router_backward(bf_router_state *st, const bf_router_params_mode *mode, float *du, const int32_t *lengths,
                        const float *w_rel, const bf_budget_weights *bud, float *dw_rel, float *db_rel,
                        const bf_budget_weights *dbud, const bf_explore *ex, float cost_scale, size_t n, size_t D) {
    if (mode->mode == BF_ROUTER_FULL) return;
    size_t H = (size_t)mode->n_heads;
    float tau = ex && ex->tau > 0.0f ? ex->tau : 1.0f;
    /* A forced budget passes no gradient to k^ (and pays no budget cost): the pass did not use k^. */
    int learned = mode->mode == BF_ROUTER_LEARNED && !(ex && ex->k_force > 0);
    const float *k_target = ex && !(ex->k_force > 0) ? ex->k_target : NULL;
    float Hf = (float)H;
    /* Centred supervision (sup_center): the term is sum_b ((k^_b - mean k^) - (k*_b - mean k*))^2; its
     * residuals sum to 0 over b, so the gradient of the mean through k^ vanishes and d/dk^_b is 2 r_b. */
    double mean_khat = 0.0, mean_target = 0.0;
    if (k_target && ex->sup_center && n > 0) {
        for (size_t b = 0; b < n; b++) {
            mean_khat += st->khat[b];
            mean_target += k_target[b];
        }
        mean_khat /= (double)n;
        mean_target /= (double)n;
    }
    float shift = (float)(mean_khat - mean_target); /* 0 without centring: the target is k* itself */
    /* Budget spread (train.budget_spread): T = spread_scale n max(0, 1 - V/sigma^2)^2 with V the variance of k^
     * over the n inputs. dV/dk^_b = 2 (k^_b - m) / n (the mean's own term cancels), so
     * dT/dk^_b = -4 spread_scale max(0, 1 - V/sigma^2) (k^_b - m) / sigma^2, which sums to 0 over b: the
     * term spreads the budgets without moving their mean. */
    double spread_mean = 0.0, spread_coef = 0.0;
    if (learned && ex && ex->spread_sd > 0.0f && ex->spread_scale > 0.0f && n > 1) {
        double m = 0.0, v = 0.0, s2 = (double)ex->spread_sd * (double)ex->spread_sd;
        for (size_t b = 0; b < n; b++) m += st->khat[b];
        m /= (double)n;
        for (size_t b = 0; b < n; b++) v += ((double)st->khat[b] - m) * ((double)st->khat[b] - m);
        v /= (double)n;
        double gap = 1.0 - v / s2;
        spread_mean = m;
        spread_coef = gap > 0.0 ? -4.0 * (double)ex->spread_scale * gap / s2 : 0.0;
    }
    memset(st->dr, 0, n * H * sizeof(float));
    for (size_t b = 0; b < n; b++) {
        const float *dg = st->dgate + b * H, *p = st->p + b * H;
        const int32_t *rank = st->rank + b * H;
        float dp[BF_MAX_HEADS];
        /* g_h = c p_h m_h / P with P = sum_j p_j m_j (P = 1, c = H by default; c = H, P the selected mass with
         * gate_norm). Then dL/dp_j = m_j (c/P) (dg_j - A) and dL/dm_j = (c/P) p_j (dg_j - A), where
         * A = sum_h dg_h p_h m_h / P (A = 0 by default). */
        float P = mode->gate_norm ? st->sel_mass[b] : 1.0f, c = Hf / P, A = 0.0f;
        if (mode->gate_norm)
            for (size_t h = 0; h < H; h++)
                if (rank[h] < st->k[b]) A += dg[h] * p[h];
        A /= P;
        for (size_t h = 0; h < H; h++) dp[h] = rank[h] < st->k[b] ? c * (dg[h] - A) : 0.0f;
        bf_softmax_backward(st->dr + b * H, p, dp, H);
        if (learned) {
            /* Straight-through: d m_h / d k^ is taken from m~_h = sigmoid((k^ - rank_h - 0.5) / tau); plus the
             * budget cost and, with budget supervision, sup_scale (k^ - k*)^2 / (H-1)^2. */
            float dkhat = cost_scale / (Hf - 1.0f);
            for (size_t h = 0; h < H; h++) {
                float ms = sigmoidf((st->khat[b] - (float)rank[h] - 0.5f) / tau);
                dkhat += c * p[h] * (dg[h] - A) * ms * (1.0f - ms) / tau;
            }
            if (k_target)
                dkhat += ex->sup_scale * 2.0f * (st->khat[b] - k_target[b] - shift) / ((Hf - 1.0f) * (Hf - 1.0f));
            if (spread_coef != 0.0) dkhat += (float)(spread_coef * ((double)st->khat[b] - spread_mean));
            float sg = sigmoidf(st->abud[b]);
            st->da[b] = dkhat * (Hf - 1.0f) * sg * (1.0f - sg);
        } else {
            st->da[b] = 0.0f;
        }
    }
    memset(st->ds, 0, n * D * sizeof(float));
    bf_matmul_backward(st->ds, dw_rel, db_rel, st->dr, st->s, w_rel, n, D, H);
    if (mode->mode == BF_ROUTER_LEARNED) {
        bf_matmul_backward(st->ds, dbud->w, dbud->b, st->da, st->s, bud->w, n, D, 1);
        size_t N = (size_t)mode->budget_hidden;
        if (N) {
            /* a = ... + w_o . gelu(hb): d w_o += da ab, d ab = da w_o, d hb = gelu'(hb) d ab, then through W_h. */
            for (size_t b = 0; b < n; b++)
                for (size_t j = 0; j < N; j++) {
                    dbud->w_o[j] += st->da[b] * st->ab[b * N + j];
                    st->dab[b * N + j] = st->da[b] * bud->w_o[j];
                }
            memset(st->dhb, 0, n * N * sizeof(float));
            bf_gelu_backward(st->dhb, st->hb, st->dab, n * N);
            bf_matmul_backward(st->ds, dbud->w_h, dbud->b_h, st->dhb, st->s, bud->w_h, n, D, N);
        }
    }
    bf_masked_mean_backward(du, st->ds, lengths, n, D);
}
