/* schedule: the exploration rate eps over training (MODEL.md "Exploration").
 * eps goes from eps_start at step 1 to eps_end at step `steps` and stays at eps_end after it.
 *   linear:      eps_start + (eps_end - eps_start) * t
 *   cosine:      eps_end + (eps_start - eps_end) * (1 + cos(pi t)) / 2
 *   exponential: eps_end + (eps_start - eps_end) * (exp(-a t) - exp(-a)) / (1 - exp(-a)), a = ln(100)
 *                (a shifted exponential: it reaches eps_end exactly, so eps_end = 0 works)
 * with t = (step - 1) / (steps - 1) clamped to [0, 1] (t = 1 when steps <= 1). */
#ifndef BUDGETFORMER_SCHEDULE_H
#define BUDGETFORMER_SCHEDULE_H

#include "budgetformer/config.h"

float bf_explore_eps(bf_explore_shape shape, float eps_start, float eps_end, long steps, long step);

/* The exploration coordinator. In a distributed run only rank 0 runs it; it sees the global training loss
 * (reduced over all ranks) of every step and broadcasts eps, so every rank applies the same value.
 *   fixed shapes (linear, cosine, exponential): eps = bf_explore_eps(...), the loss is ignored;
 *   adaptive: eps = eps_start while exploring. The loss is averaged over windows of explore.window steps;
 *     when a window's mean fell by less than explore.threshold (relative) against the previous window's, or
 *     when update explore.steps is done, exploring ends and eps falls linearly to eps_end over
 *     explore.anneal_steps updates, then stays there.
 * The whole state is plain numbers, saved in checkpoints so a resumed run continues the same decisions. */
typedef struct {
    bf_explore_shape shape;
    float eps_start, eps_end;
    long steps, window, anneal_steps;
    float threshold;
    /* adaptive state */
    long anneal_from;   /* first update of the anneal; 0 while still exploring */
    double window_sum;  /* loss summed over the current window */
    long window_n;
    double prev_mean;   /* mean loss of the previous window; < 0 when none yet */
    /* The budget multiplier (train.budget_target > 0), by dual ascent on mean k/H = target (any sign). */
    float budget_target; /* r, the mean fraction of heads k/H to reach; 0 = off (fixed train.budget_cost) */
    float budget_cost;   /* the fixed lambda when off */
    float dual_lr;       /* integral gain: lambda_i += dual_lr * error after each update */
    float dual_kp;       /* proportional gain: lambda = lambda_i + dual_kp * the last error */
    long budget_ramp;    /* the target goes linearly from 1 at update 1 to r at update budget_ramp */
    double lambda_i;     /* the integral part (the dual variable of plain dual ascent) */
    double lambda;       /* the multiplier used by the next update */
} bf_coordinator;

void bf_coordinator_init(bf_coordinator *co, const bf_config *c);
/* eps for update `step` (1-based). */
float bf_coordinator_eps(const bf_coordinator *co, long step);
/* The global mean training loss of update `step`. */
void bf_coordinator_observe(bf_coordinator *co, long step, double loss);

/* The budget target (mean fraction of heads) of update `step`: 1 - (1 - r) min(1, step / budget_ramp). */
double bf_coordinator_budget_target(const bf_coordinator *co, long step);
/* lambda, the weight of the budget cost, for the next update. */
float bf_coordinator_lambda(const bf_coordinator *co);
/* The global batch's mean fraction of heads k/H of update `step` (k = clamp(round(k^), 1, H), the budget
 * inference would use). With e = fraction - target(step): lambda_i += dual_lr e, lambda = lambda_i + dual_kp e
 * (dual ascent with a proportional term, a PI controller on the constraint, which damps the overshoot that
 * the optimiser's lag gives plain dual ascent). A no-op when off. */
void bf_coordinator_observe_budget(bf_coordinator *co, long step, double fraction);

#endif
