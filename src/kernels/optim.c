/* optim: AdamW, the learning-rate schedule and gradient clipping (see optim.h). */
#include "budgetformer/optim.h"

#include <math.h>

#include "budgetformer/util.h"
#include "vec16.h"

void bf_adamw_update(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, size_t n,
                     long step, float lr, float wd, float grad_scale, const bf_adamw_hparams *hp) {
    BF_CHECK(step >= 1, "AdamW step is 1-based, got %ld", step);
    const float b1 = hp->beta1, b2 = hp->beta2, eps = hp->eps;
    /* Bias corrections in double: 1 - b2^step is tiny in early steps and float pow loses digits there. */
    const float inv_bc1 = (float)(1.0 / (1.0 - pow((double)b1, (double)step)));
    const float inv_bc2 = (float)(1.0 / (1.0 - pow((double)b2, (double)step)));
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi * inv_bc1, vhat = vi * inv_bc2;
        /* Decoupled decay: wd * p is added to the step, not to the gradient, so it bypasses m and v. */
        p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p[i]);
    }
}

float bf_lr_at(long step, long total, long warmup, float lr_max, float lr_min) {
    if (warmup > 0 && step <= warmup) return (float)((double)lr_max * (double)step / (double)warmup);
    if (total <= warmup) return lr_min; /* no decay phase (validation forbids it; stay defined anyway) */
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress >= 1.0) return lr_min;
    if (progress < 0.0) progress = 0.0;
    const double pi = 3.14159265358979323846;
    double lr = (double)lr_min + ((double)lr_max - (double)lr_min) * 0.5 * (1.0 + cos(pi * progress));
    return (float)lr;
}

/* In 8 double lanes (vec16.h): one running double sum is a chain of dependent adds, 4 cycles per value. */
double bf_sum_squares(const float *g, size_t n) {
    v8d acc = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        v8d d = v8d_from_floats(g + i);
        acc += d * d;
    }
    double s = v8d_sum(acc);
    for (; i < n; i++) s += (double)g[i] * (double)g[i];
    return s;
}

double bf_sum_squares_rows(const float *g, size_t n, size_t lo, size_t width, size_t n_rows, const uint8_t *used) {
    const size_t n8 = n - n % 8, hi = lo + n_rows * width;
    if (lo % 8 || width % 8 || width == 0 || hi > n8) return bf_sum_squares(g, n);
    /* The blocks of 8 that bf_sum_squares reads, in its order, leaving out the unused rows' blocks. */
    v8d acc = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    for (size_t i = 0; i < lo; i += 8) {
        v8d d = v8d_from_floats(g + i);
        acc += d * d;
    }
    for (size_t r = 0; r < n_rows; r++) {
        if (!used[r]) continue;
        for (size_t i = lo + r * width, e = i + width; i < e; i += 8) {
            v8d d = v8d_from_floats(g + i);
            acc += d * d;
        }
    }
    for (size_t i = hi; i < n8; i += 8) {
        v8d d = v8d_from_floats(g + i);
        acc += d * d;
    }
    double s = v8d_sum(acc);
    for (size_t i = n8; i < n; i++) s += (double)g[i] * (double)g[i];
    return s;
}

float bf_clip_scale(double global_norm, float max_norm) {
    /* A NaN norm gives 1: the trainer's non-finite check reports it instead of a silent rescale. */
    if (max_norm <= 0.0f || !(global_norm > (double)max_norm)) return 1.0f;
    return (float)((double)max_norm / global_norm);
}
