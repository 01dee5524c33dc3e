/* schedule: the exploration rate over training (see schedule.h, whose formulas are used verbatim). */
#include "budgetformer/schedule.h"

#include <math.h>

static double eps_between(bf_explore_shape shape, double start, double end, double t) {
    const double pi = 3.14159265358979323846;
    switch (shape) {
    case BF_EXPLORE_COSINE: return end + (start - end) * (1.0 + cos(pi * t)) / 2.0;
    case BF_EXPLORE_EXPONENTIAL: {
        const double a = log(100.0);
        return end + (start - end) * (exp(-a * t) - exp(-a)) / (1.0 - exp(-a));
    }
    case BF_EXPLORE_LINEAR:
    default: return start + (end - start) * t;
    }
}

float bf_explore_eps(bf_explore_shape shape, float eps_start, float eps_end, long steps, long step) {
    double t = steps <= 1 ? 1.0 : (double)(step - 1) / (double)(steps - 1);
    /* The endpoints are returned as given rather than computed: a + (b - a) need not round to b, and
     * eps_end = 0 must give exactly 0 (pure exploitation, no noise drawn). */
    if (t >= 1.0) return eps_end;
    if (t <= 0.0) return eps_start;
    double eps = eps_between(shape, eps_start, eps_end, t);
    /* Keep rounding from stepping outside the endpoints, so the schedule stays monotone. */
    double lo = fmin(eps_start, eps_end), hi = fmax(eps_start, eps_end);
    return (float)fmin(fmax(eps, lo), hi);
}
