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

void bf_coordinator_init(bf_coordinator *co, const bf_config *c) {
    co->shape = c->explore_shape;
    co->eps_start = c->eps_start;
    co->eps_end = c->eps_end;
    co->steps = c->explore_steps;
    co->window = c->explore_window > 0 ? c->explore_window : 1;
    co->anneal_steps = c->explore_anneal_steps > 0 ? c->explore_anneal_steps : 1;
    co->threshold = c->explore_threshold;
    co->anneal_from = c->explore_steps == 0 ? 1 : 0;
    co->window_sum = 0.0;
    co->window_n = 0;
    co->prev_mean = -1.0;
    /* Only a learned budget has a target (the budget cost does not apply to the other models). */
    co->budget_target = c->full_heads || c->fixed_budget ? 0.0f : c->budget_target;
    co->budget_cost = c->budget_cost;
    co->dual_lr = c->budget_dual_lr;
    co->dual_kp = c->budget_dual_kp;
    co->lambda_i = 0.0;
    co->budget_ramp = c->budget_ramp > 0 ? c->budget_ramp : c->explore_steps;
    co->lambda = 0.0;
}

float bf_coordinator_eps(const bf_coordinator *co, long step) {
    if (co->shape != BF_EXPLORE_ADAPTIVE)
        return bf_explore_eps(co->shape, co->eps_start, co->eps_end, co->steps, step);
    if (co->anneal_from == 0 || step < co->anneal_from) return co->eps_start;
    /* linear anneal: eps_start at anneal_from, eps_end at anneal_from + anneal_steps - 1 */
    return bf_explore_eps(BF_EXPLORE_LINEAR, co->eps_start, co->eps_end, co->anneal_steps, step - co->anneal_from + 1);
}

void bf_coordinator_observe(bf_coordinator *co, long step, double loss) {
    if (co->shape != BF_EXPLORE_ADAPTIVE || co->anneal_from != 0) return;
    co->window_sum += loss;
    co->window_n++;
    if (co->window_n == co->window) {
        double mean = co->window_sum / (double)co->window_n;
        if (co->prev_mean > 0.0 && (co->prev_mean - mean) / co->prev_mean < (double)co->threshold)
            co->anneal_from = step + 1; /* the loss stopped falling fast: exploit from here on */
        co->prev_mean = mean;
        co->window_sum = 0.0;
        co->window_n = 0;
    }
    if (co->anneal_from == 0 && step >= co->steps) co->anneal_from = step + 1;
}

double bf_coordinator_budget_target(const bf_coordinator *co, long step) {
    double r = co->budget_target;
    double t = co->budget_ramp <= 0 ? 1.0 : fmin(1.0, (double)step / (double)co->budget_ramp);
    return 1.0 - (1.0 - r) * t;
}

float bf_coordinator_lambda(const bf_coordinator *co) {
    return co->budget_target > 0.0f ? (float)co->lambda : co->budget_cost;
}

void bf_coordinator_observe_budget(bf_coordinator *co, long step, double fraction) {
    if (co->budget_target <= 0.0f) return;
    /* Dual ascent on the equality constraint fraction = target: lambda grows while the model uses more heads
     * than the target and shrinks while it uses fewer; it may turn negative (a reward for heads), since the
     * other terms (distillation, budget supervision) can pull the budget below the target. */
    double e = fraction - bf_coordinator_budget_target(co, step);
    co->lambda_i += (double)co->dual_lr * e;
    co->lambda = co->lambda_i + (double)co->dual_kp * e;
}
