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

#endif
