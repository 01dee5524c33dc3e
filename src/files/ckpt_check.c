/* ckpt_check: the meaning checks of a checkpoint's contents, before a save and after a load (ckpt_internal.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/checkpoint.h"
#include "budgetformer/headstats.h"
#include "ckpt_internal.h"

/* ---- meaning: a checkpoint that parses can still be wrong ------------------------------------------ */

/* Finite is not enough: a state that loads must also be one that training could have produced, else it puts
 * NaN into the weights a few updates later (a negative second moment under a square root) or maps two tokens
 * to one id. The same checks run before a save (such a state is never written) and after a load (never
 * used); `where` names the file. Each message names the field and what was expected. */

static int first_nonfinite(const float *x, size_t n, size_t *at) {
    for (size_t i = 0; i < n; i++)
        if (!(x[i] - x[i] == 0.0f)) {
            *at = i;
            return 1;
        }
    return 0;
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* -1 with err naming the first repeated string of names[0..n), else 0. */
static int check_unique(const char *where, const char *what, const char *const *names, size_t n, bf_err *err) {
    if (n < 2) return 0;
    const char **sorted = bf_xmalloc(n * sizeof *sorted);
    memcpy(sorted, names, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str_ptr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (!strcmp(sorted[i - 1], sorted[i])) dup = sorted[i];
    int rc = 0;
    if (dup) {
        size_t a = 0, b = 0;
        for (a = 0; a < n && strcmp(names[a], dup); a++) {}
        for (b = a + 1; b < n && strcmp(names[b], dup); b++) {}
        rc = bf_fail(err, "%s: %s holds \"%.200s\" twice (entries %zu and %zu): every entry must be unique", where,
                     what, dup, a, b);
    }
    free(sorted);
    return rc;
}

int bf_ckpt_check_names(const char *where, const bf_model_config *c, const char *const *vocab, size_t nv,
                       const char *const *labels, size_t nl, bf_err *err) {
    if (vocab && nv != (size_t)c->vocab_size)
        return bf_fail(err, "%s: /vocab has %zu entries but /model says vocab_size %d", where, nv, c->vocab_size);
    if (labels && nl != (size_t)c->n_classes)
        return bf_fail(err, "%s: /label_names has %zu entries but /model says n_classes %d", where, nl, c->n_classes);
    if (vocab && check_unique(where, "/vocab (the vocabulary)", vocab, nv, err)) return -1;
    if (labels && check_unique(where, "/label_names", labels, nl, err)) return -1;
    return 0;
}

int bf_ckpt_check_weights(const char *where, const bf_model *m, bf_err *err) {
    size_t at;
    if (!first_nonfinite(m->params, m->n_params, &at)) return 0;
    const char *name = "?";
    for (int i = 0; i < m->n_tensors; i++)
        if (at >= m->tensors[i].offset && at < m->tensors[i].offset + m->tensors[i].numel) name = m->tensors[i].name;
    return bf_fail(err, "%s: the model holds a non-finite weight (/model/%s, element %zu of the parameter table)",
                   where, name, at);
}

/* The training state beyond the model: AdamW moments, counters, coordinator, head counts. */
int bf_ckpt_check_training(const char *where, const bf_model *m, const float *am, const float *av, long step,
                          long skipped, long nonfinite, const bf_coordinator *co, const int64_t *hs, size_t hs_len,
                          bf_err *err) {
    size_t n = m->n_params, at;
    if (first_nonfinite(am, n, &at))
        return bf_fail(err, "%s: /optim/m[%zu] (AdamW first moment) = %g is not finite", where, at, (double)am[at]);
    if (first_nonfinite(av, n, &at))
        return bf_fail(err, "%s: /optim/v[%zu] (AdamW second moment) = %g is not finite", where, at, (double)av[at]);
    for (size_t i = 0; i < n; i++)
        if (av[i] < 0.0f)
            return bf_fail(err, "%s: /optim/v[%zu] (AdamW second moment) = %g is negative: it is a running mean of "
                                "squared gradients, so it must be >= 0 (a negative one puts NaN into the weights)",
                           where, i, (double)av[i]);
    if (skipped > step)
        return bf_fail(err, "%s: /state skipped_steps = %ld exceeds step %ld: more updates skipped than made", where,
                       skipped, step);
    if (nonfinite > skipped)
        return bf_fail(err, "%s: /state nonfinite_run = %ld exceeds skipped_steps = %ld", where, nonfinite, skipped);
    if (co) {
        if (!(co->eps_start >= 0.0f && co->eps_start <= 1.0f && co->eps_end >= 0.0f && co->eps_end <= 1.0f))
            return bf_fail(err, "%s: /coordinator eps_start = %g, eps_end = %g: exploration rates must be in [0, 1]",
                           where, (double)co->eps_start, (double)co->eps_end);
        if (co->window_n > co->window)
            return bf_fail(err, "%s: /coordinator window_n = %ld exceeds window = %ld", where, co->window_n, co->window);
        if (!isfinite(co->window_sum) || !isfinite(co->prev_mean))
            return bf_fail(err, "%s: /coordinator window_sum or prev_mean is not finite", where);
    }
    for (size_t i = 0; hs && i < hs_len; i++)
        if (hs[i] < 0)
            return bf_fail(err, "%s: /headstats/block[%zu] = %lld: a head-usage count must be >= 0", where, i,
                           (long long)hs[i]);
    return 0;
}

/* Before writing: the state must pass the checks a load makes, so no checkpoint is written that a resume
 * would refuse. */
int bf_ckpt_check_before_save(const char *path, const bf_model *m, const bf_ckpt_meta *meta, bf_err *err) {
    if (bf_ckpt_check_weights(path, m, err) ||
        bf_ckpt_check_names(path, &m->cfg, meta->vocab, meta->vocab_size, meta->label_names, meta->n_classes, err))
        return -1;
    if (meta->adam_m && meta->adam_v &&
        bf_ckpt_check_training(path, m, meta->adam_m, meta->adam_v, meta->step, meta->skipped_steps, meta->nonfinite_run,
                       meta->coord, meta->headstats, meta->headstats_len, err))
        return -1;
    return 0;
}
