/* config: the run configuration (see config.h).
 *
 * Every key is one row of kKeys (section, name, type, field, range, default, help). Defaults, parsing of a
 * file or a --set, writing and the help text are loops over that table, so a key is added in one place.
 *
 * INI files are read with Debian's libinih through ini_parse_stream and our own line reader: the library
 * is built without INI_HANDLER_LINENO, so the reader counts lines for the messages, and it also catches
 * lines longer than the parser's buffer, which inih would otherwise split silently into two lines.
 */
#include "budgetformer/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { KT_INT, KT_LONG, KT_FLOAT, KT_U64, KT_STRING, KT_ENUM, KT_BOOL, KT_CHOICE } key_type;

/* How [lo, hi] is read. Integer keys use closed bounds; R_NO_MAX leaves only the lower bound. */
enum { R_CLOSED = 0, R_LO_OPEN = 1, R_HI_OPEN = 2, R_NO_MAX = 4, R_ANY = 8 };

typedef struct {
    const char *section, *name;
    key_type type;
    size_t offset; /* of the field in bf_config */
    double lo, hi;
    unsigned range;
    const char *def; /* the default, as text: it goes through the same parser as a file value */
    const char *help;
    const char *const *names; /* KT_CHOICE: the allowed words; the int field holds the index */
    int n_names;
} key_spec;

static const char *const kShapeNames[] = {"linear", "cosine", "exponential", "adaptive"};
#define N_SHAPES ((int)(sizeof kShapeNames / sizeof kShapeNames[0]))

/* The field's offset; the _Generic fails to compile unless the field has the C type the key's parser
 * stores (so a table row cannot write a float into a long). */
#define FIELD(f, T) _Generic(((bf_config *)0)->f, T: offsetof(bf_config, f))
#define KEY(sec, nm, kt, off, l, h, r, d, hp)                                                          \
    { .section = sec, .name = nm, .type = kt, .offset = off, .lo = l, .hi = h, .range = r, .def = d, .help = hp }
#define K_INT(s, n, f, l, h, d, hp) KEY(s, n, KT_INT, FIELD(f, int), l, h, R_CLOSED, d, hp)
#define K_LONG(s, n, f, l, h, r, d, hp) KEY(s, n, KT_LONG, FIELD(f, long), l, h, r, d, hp)
#define K_FLOAT(s, n, f, l, h, r, d, hp) KEY(s, n, KT_FLOAT, FIELD(f, float), l, h, r, d, hp)
#define K_STR(s, n, f, d, hp) KEY(s, n, KT_STRING, FIELD(f, char *), 0, 0, R_ANY, d, hp)
#define K_CHOICE(s, nm, f, words, d, hp)                                                                   \
    { .section = s, .name = nm, .type = KT_CHOICE, .offset = FIELD(f, int), .range = R_ANY, .def = d,       \
      .help = hp, .names = words, .n_names = (int)(sizeof words / sizeof words[0]) }

static const char *const kOnErrorNames[] = {"stop", "continue"}; /* BF_ON_ERROR_STOP, BF_ON_ERROR_CONTINUE */
static const char *const kPrecisionNames[] = {"fp32", "bf16"};   /* BF_PREC_FP32, BF_PREC_BF16 (bf16.h) */
static const char *const kGradPrecisionNames[] = {"fp32", "bf16"}; /* 0: fp32 exchange, 1: bf16 (dist.h) */

static const key_spec kKeys[] = {
    K_STR("data", "train", data_train, "",
          "Prepared training set (train.h5 written by `budgetformer prepare`). Required."),
    K_STR("data", "valid", data_valid, "",
          "Prepared validation set; when set, validation accuracy is reported as training goes "
          "(see train.eval_every). Empty = none."),
    K_STR("data", "test", data_test, "", "Prepared test set, evaluated once at the end. Empty = none."),

    K_INT("model", "d_model", d_model, 8, 4096, "64", "Model width D; must be divisible by model.n_heads."),
    K_INT("model", "n_heads", n_heads, 2, 32, "4", "Attention heads H per layer."),
    K_INT("model", "n_layers", n_layers, 1, 64, "2", "Transformer layers L."),
    K_INT("model", "d_ff", d_ff, 1, 65536, "128", "Hidden width F of the feed-forward block."),
    KEY("model", "full_heads", KT_BOOL, FIELD(full_heads, int), 0, 1, R_CLOSED, "0",
        "1 = the full multi-head baseline (every head, no router or budget); 0 = BudgetFormer. "
        "Cannot be combined with model.fixed_budget."),
    K_INT("model", "fixed_budget", fixed_budget, 0, 32, "0",
          "0 = the budget k is learned; k > 0 = every input uses exactly k heads per layer "
          "(at most model.n_heads)."),
    KEY("model", "gate_norm", KT_BOOL, FIELD(gate_norm, int), 0, 1, R_CLOSED, "0",
        "Added option (docs/MODEL.md): 1 = the gates of the selected heads are H p_h / (sum over S of p_j), "
        "so they sum to H whatever k is; 0 = MODEL.md's gates H p_h. Stored in the checkpoint."),
    K_STR("model", "layer_budgets", layer_budgets, "",
          "Added option (docs/MODEL.md): a fixed budget per layer, model.n_layers integers in 1..model.n_heads "
          "separated by commas (e.g. 3,1): layer l uses exactly k_l heads for every input, chosen by the learned "
          "relevance, with no learned budget (model.fixed_budget with one k per layer). Empty = none. Cannot be "
          "combined with model.fixed_budget or model.full_heads. Stored in the checkpoint."),
    K_INT("model", "budget_hidden", budget_hidden, 0, 4096, "0",
          "Added option (docs/MODEL.md): N > 0 = the budget logit gets a GELU hidden layer of width N on the "
          "summary, a = s w_bud + b_bud + w_bud_o . gelu(s W_bud_h + b_bud_h); 0 = MODEL.md's linear budget "
          "logit. Applies to a learned budget only (a full-heads or fixed-budget model has no budget predictor, "
          "so the shipped configurations serve those baselines too). Stored in the checkpoint."),

    K_INT("train", "batch_size", batch_size, 1, 1e6, "32",
          "Global batch: inputs per optimiser update, split across the MPI ranks. Need not divide the "
          "dataset: batches run on across epoch boundaries."),
    K_INT("train", "micro_batch", micro_batch, 0, 1e6, "0",
          "Inputs per forward/backward pass on each rank, gradients accumulated; 0 = the rank's whole part "
          "of the batch at once. Changes memory use, not the result."),
    K_LONG("train", "steps", steps, 1, 1e9, R_CLOSED, "1000",
           "Optimiser updates; the length of the learning-rate schedule."),
    K_LONG("train", "stop_at", stop_at, 0, 1e9, R_CLOSED, "0",
           "Stop after this update as if interrupted (at most train.steps); 0 = run to train.steps."),
    K_LONG("train", "warmup", warmup, 0, 1e9, R_CLOSED, "50",
           "Updates of linear learning-rate warm-up (less than train.steps); cosine decay follows."),
    K_FLOAT("train", "lr", lr, 0, 1, R_LO_OPEN, "0.001", "Peak learning rate, reached at the end of warm-up."),
    K_FLOAT("train", "lr_min", lr_min, 0, 1, R_CLOSED, "1e-05",
            "Learning rate at the end of the cosine decay (update train.steps)."),
    K_FLOAT("train", "weight_decay", weight_decay, 0, 1, R_CLOSED, "0.01", "AdamW decoupled weight decay."),
    K_FLOAT("train", "beta1", beta1, 0, 1, R_HI_OPEN, "0.9", "AdamW decay rate of the first moment."),
    K_FLOAT("train", "beta2", beta2, 0, 1, R_HI_OPEN, "0.999", "AdamW decay rate of the second moment."),
    K_FLOAT("train", "adam_eps", adam_eps, 0, 1, R_LO_OPEN, "1e-08", "AdamW epsilon in the denominator."),
    K_FLOAT("train", "grad_clip", grad_clip, 0, 1e6, R_CLOSED, "1",
            "Clip the global gradient norm to this; 0 = no clipping."),
    K_LONG("train", "max_nonfinite", max_nonfinite, 1, 1e9, R_CLOSED, "10",
           "Updates in a row whose loss or gradient norm is not finite (each is skipped and counted) after "
           "which the run stops with exit status 1; the last checkpoint written stays as it was "
           "(docs/FAILURES.md)."),
    K_FLOAT("train", "budget_cost", budget_cost, 0, 100, R_CLOSED, "0.01",
            "lambda: weight of the budget penalty, the mean of (k^ - 1)/(H - 1), in the loss (when "
            "train.budget_target is 0)."),
    K_FLOAT("train", "budget_target", budget_target, 0, 1, R_CLOSED, "0",
            "> 0: the mean fraction of heads k/H to reach (e.g. 0.25). The rank-0 coordinator replaces "
            "train.budget_cost by a multiplier lambda (either sign) updated by dual ascent on the global batch's mean "
            "k/H (k = the budget inference would use) minus the target, which ramps from 1 to this value over "
            "train.budget_ramp updates. 0 = fixed lambda (train.budget_cost). Does not apply to model.full_heads or "
            "model.fixed_budget models."),
    K_FLOAT("train", "budget_dual_lr", budget_dual_lr, 0, 100, R_LO_OPEN, "0.02",
            "Dual ascent step (integral gain): lambda_i += budget_dual_lr * (mean k/H - target) after each "
            "update."),
    K_FLOAT("train", "budget_dual_kp", budget_dual_kp, 0, 1000, R_CLOSED, "3",
            "Proportional gain: lambda = lambda_i + budget_dual_kp * (mean k/H - target); damps the overshoot "
            "of plain dual ascent (0 = plain dual ascent)."),
    K_LONG("train", "budget_ramp", budget_ramp, 0, 1e9, R_CLOSED, "0",
           "Updates over which the budget target falls linearly from 1 to train.budget_target; "
           "0 = explore.steps."),
    KEY("train", "sandwich", KT_BOOL, FIELD(sandwich, int), 0, 1, R_CLOSED, "0",
        "1 = the sandwich rule (US-Nets): each update also trains the same weights at k = H (every head, "
        "against the labels) and at a random k in 1..H-1; the learned-budget and random passes learn from "
        "the k = H pass's probabilities (train.distill). About 3x the work per update."),
    K_FLOAT("train", "distill", distill, 0, 1, R_CLOSED, "1",
            "With train.sandwich: the other passes' target is distill * (k = H probabilities) + "
            "(1 - distill) * the label (in-place distillation)."),
    K_FLOAT("train", "budget_supervise", budget_supervise, 0, 100, R_CLOSED, "0",
            "delta > 0: budget supervision. Each update evaluates every input with k = 1..H heads in every "
            "layer (no gradient); the smallest k whose cross-entropy is within delta of k = H's is a target "
            "for k^ in every layer, with weight train.supervise_weight. 0 = off."),
    K_FLOAT("train", "supervise_weight", supervise_weight, 0, 100, R_CLOSED, "0.1",
            "Weight of the budget-supervision term, the mean of (k^ - k*)^2 / (H - 1)^2."),
    K_FLOAT("train", "supervise_rel", supervise_rel, 0, 1, R_CLOSED, "0",
            "rho: with budget supervision, k* is the smallest k whose cross-entropy is within "
            "max(train.budget_supervise, rho (CE_1 - CE_H)) of k = H's: the share of an input's gain from "
            "more heads that may be given up."),
    KEY("train", "supervise_rank", KT_BOOL, FIELD(supervise_rank, int), 0, 1, R_CLOSED, "0",
        "1 = budget supervision with batch-ranked targets: each update evaluates every input with k = 1..H "
        "heads in every layer (no gradient) and shares the budget target's heads among the micro-batch's "
        "inputs where they lower the cross-entropy most; each input's share is k^'s target (weight "
        "train.supervise_weight). Needs train.budget_target."),
    KEY("train", "supervise_center", KT_BOOL, FIELD(supervise_center, int), 0, 1, R_CLOSED, "0",
        "1 = budget supervision on deviations only: per layer and micro-batch, k^ minus its batch mean is "
        "fitted to k* minus its batch mean, so the supervision says which inputs need more heads than the "
        "others and leaves each layer's mean to the task loss and the budget controller. Needs budget "
        "supervision (train.supervise_rank, train.budget_supervise or train.supervise_rel)."),
    K_FLOAT("train", "budget_spread", budget_spread, 0, 64, R_CLOSED, "0",
            "sigma > 0: a floor on how much the learned budget varies between inputs. Per layer and "
            "micro-batch, train.spread_weight * max(0, 1 - var(k^)/sigma^2)^2 joins the loss (var over the "
            "micro-batch's inputs, sigma in heads), so the budgets cannot collapse to one value per layer and "
            "the task loss decides which inputs get more heads; it does not move a layer's mean. 0 = off."),
    K_FLOAT("train", "spread_weight", spread_weight, 0, 100, R_CLOSED, "1",
            "Weight of the spread term of train.budget_spread."),
    K_LONG("train", "full_warmup", full_warmup, 0, 1e9, R_CLOSED, "0",
           "The first this many updates use every head (k = H, gates of the router) before the learned "
           "budget takes over; 0 = none."),
    K_CHOICE("train", "precision", precision, kPrecisionNames, "fp32",
             "Precision of the matrix products: fp32 (OpenBLAS), or bf16: the products of forward and backward "
             "take bf16 inputs and accumulate in fp32 (oneDNN; needs a CPU with avx512_bf16 or amx_bf16, refused "
             "otherwise); weights, AdamW, the allreduce, LayerNorm, softmax, GELU, loss and router stay fp32. "
             "A checkpoint holds fp32 weights either way (docs/PERFORMANCE.md, docs/CHECKPOINTS.md)."),
    KEY("train", "seed", KT_U64, FIELD(seed, uint64_t), 0, 0, R_ANY, "1",
        "Seed of every random draw: initialisation, data order and exploration."),
    K_LONG("train", "log_every", log_every, 1, 0, R_NO_MAX, "10",
           "A progress line, and log.h5 written to disk and synced (durable across a machine crash), every this "
           "many updates (/metrics has a row for every update)."),
    K_LONG("train", "log_write_every", log_write_every, 0, 0, R_NO_MAX, "1",
           "Between the synced writes of train.log_every, log.h5 is also rewritten (without fsync: it survives a "
           "kill of the process, not a crash of the machine) every this many updates, so that a killed run's "
           "log.h5 holds every update completed before the kill; 0 = only the synced writes."),
    K_LONG("train", "eval_every", eval_every, 0, 0, R_NO_MAX, "0",
           "Validation every this many updates; 0 = only at the end."),

    K_FLOAT("explore", "eps_start", eps_start, 0, 1, R_CLOSED, "1", "Exploration rate eps at update 1."),
    K_FLOAT("explore", "eps_end", eps_end, 0, 1, R_CLOSED, "0",
            "Exploration rate from update explore.steps on (need not be below explore.eps_start)."),
    K_LONG("explore", "steps", explore_steps, 0, 1e9, R_CLOSED, "500",
           "Length of the exploration schedule in updates; 0 = explore.eps_end throughout."),
    KEY("explore", "shape", KT_ENUM, FIELD(explore_shape, bf_explore_shape), 0, 0, R_ANY, "linear",
        "Shape of the exploration schedule from explore.eps_start to explore.eps_end (formulas above); "
        "adaptive: the rank-0 coordinator holds eps_start while the training loss still falls, then anneals."),
    K_LONG("explore", "window", explore_window, 1, 1e9, R_CLOSED, "50",
           "adaptive: updates per loss window; the coordinator compares the mean loss (over all ranks) of "
           "each window with the previous one."),
    K_FLOAT("explore", "threshold", explore_threshold, 0, 1, R_CLOSED, "0.02",
            "adaptive: exploration ends when the mean loss of a window fell by less than this fraction of "
            "the previous window's (or at update explore.steps, whichever comes first)."),
    K_LONG("explore", "anneal_steps", explore_anneal_steps, 1, 1e9, R_CLOSED, "200",
           "adaptive: updates over which eps falls linearly from explore.eps_start to explore.eps_end once "
           "exploration ends."),
    K_FLOAT("explore", "tau", tau, 0, 100, R_LO_OPEN, "1",
            "Temperature of the straight-through surrogate sigmoid((k^ - rank - 0.5)/tau)."),

    K_STR("run", "dir", run_dir, "runs/default",
          "Run directory: checkpoints, metrics and the resolved configuration."),

    K_LONG("checkpoint", "every", checkpoint_every, 0, 0, R_NO_MAX, "0",
           "Checkpoint every this many updates; 0 = only at the end."),
    K_INT("checkpoint", "keep", checkpoint_keep, 1, 1000, "3", "Number of most recent checkpoints kept."),
    K_CHOICE("checkpoint", "on_error", checkpoint_on_error, kOnErrorNames, "stop",
             "A periodic checkpoint or log.h5 write that fails (disk full, I/O error; the previous checkpoint "
             "stays valid): stop = the run stops with exit status 1; continue = a warning, and training goes "
             "on to the next save. The save at the end or on a signal always stops the run when it fails."),

    K_LONG("heads", "every", heads_every, 1, 0, R_NO_MAX, "50",
           "Head statistics record every this many updates."),

    K_INT("dist", "bucket_kb", bucket_kb, 1, 1048576, "1024",
          "Gradient allreduce bucket size in KiB: buckets are sent (non-blocking) as soon as backward "
          "completes them, overlapping communication with the rest of backward."),
    K_INT("dist", "balance_shards", balance_shards, 0, 1, "1",
          "1: the inputs of each global batch are dealt to the ranks so that their parts cost about the same "
          "(by length, with attention's quadratic term), since the slowest rank sets the pace of every "
          "update; 0: contiguous parts of the batch. The same global batch either way: only the summation "
          "order of the gradients differs. No effect on 1 rank (docs/SCALING.md)."),
    K_INT("dist", "spin_us", spin_us, 0, 10000000, "10000",
          "A collective that waits for the other ranks polls MPI without pause for this many microseconds, then "
          "sleeps about 20 us between polls: spinning answers fastest when every rank has a core of its own; "
          "a small value leaves the core to other processes while waiting (a shared node, more ranks than "
          "cores) and costs at most a poll interval of latency. Results are the same either way "
          "(docs/SCALING.md). Used with the watchdog (dist.timeout > 0); with dist.timeout = 0 MPI_Wait waits."),
    K_FLOAT("dist", "timeout", dist_timeout, 0, 1e6, R_CLOSED, "600",
            "Watchdog: a collective (gradient allreduce, loss reduction, broadcast, the wait while rank 0 writes "
            "a checkpoint) that waits longer than this many seconds for the other ranks ends the job, naming the "
            "step and the ranks that did not arrive (a stopped rank, a frozen node, a stuck file system) instead "
            "of hanging for ever; 0 = wait for ever. Keep it above the longest checkpoint and log write "
            "(docs/FAILURES.md)."),
    KEY("dist", "shard_optimizer", KT_BOOL, FIELD(shard_optimizer, int), 0, 1, R_CLOSED, "0",
        "1 = the sharded optimiser (ZeRO stage 1): gradients are reduce-scattered instead of allreduced, each of "
        "the P ranks keeps the AdamW moments of and updates a contiguous 1/P of the parameters, and the "
        "updated parameters are allgathered (of the token embedding only the rows the next update reads); "
        "optimiser memory and AdamW work per rank fall to 1/P. Checkpoints are the same files either way "
        "(docs/SCALING.md); 0 = every rank keeps the whole state."),
    K_CHOICE("dist", "grad_precision", grad_precision, kGradPrecisionNames, "fp32",
             "Precision of the gradient exchange between ranks: fp32, or bf16: every rank's gradients are rounded "
             "to bf16 (round to nearest even) and summed in bf16 (each pair added in fp32, then rounded), half "
             "the bytes on the network, as PyTorch DDP's bf16_compress_hook; the sums are widened back to fp32 "
             "before clipping and AdamW. Every rank gets the same bits, and runs repeat bit for bit, but the "
             "updates differ from fp32's by the rounding (its effect on accuracy is measured in "
             "docs/SCALING.md). No effect on 1 rank."),
    KEY("dist", "shared_dataset", KT_BOOL, FIELD(shared_dataset, int), 0, 1, R_CLOSED, "1",
        "1 = the ranks of a node share one copy of the datasets' token, length and label arrays (an MPI-3 "
        "shared-memory window that the node's first rank fills); 0 = every rank holds its own copy. The "
        "results are the same bit for bit (docs/SCALING.md)."),
};
#define N_KEYS (sizeof kKeys / sizeof kKeys[0])

/* Longest INI line we accept: a full-length path plus its key. inih's buffer is raised to this while we
 * parse (ini_max_line is a runtime option of Debian's build, sizing a stack array in ini_parse_stream). */
#define BF_INI_LINE (BF_PATH_LEN + 256)

/* ---- the table ---------------------------------------------------------------------------------- */

static void *field_ptr(bf_config *c, const key_spec *k) { return (char *)c + k->offset; }
static const void *field_cptr(const bf_config *c, const key_spec *k) { return (const char *)c + k->offset; }

static const key_spec *find_key(const char *section, const char *name) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(kKeys[i].section, section) && !strcmp(kKeys[i].name, name)) return &kKeys[i];
    return NULL;
}

static int section_known(const char *section) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (!strcmp(kKeys[i].section, section)) return 1;
    return 0;
}

/* Appends s to buf (size n), truncating; keeps buf terminated. */
static void append(char *buf, size_t n, const char *s) {
    size_t len = strlen(buf);
    if (len + 1 >= n) return;
    snprintf(buf + len, n - len, "%s", s);
}

/* "a, b, c": the key names of one section, or (section NULL) the sections in table order. */
static void list_names(const char *section, char *buf, size_t n) {
    buf[0] = '\0';
    const char *prev = NULL;
    for (size_t i = 0; i < N_KEYS; i++) {
        const char *item;
        if (section) {
            if (strcmp(kKeys[i].section, section)) continue;
            item = kKeys[i].name;
        } else {
            if (prev && !strcmp(prev, kKeys[i].section)) continue;
            item = prev = kKeys[i].section;
        }
        if (buf[0]) append(buf, n, ", ");
        append(buf, n, item);
    }
}

static int unknown_key(const char *where, const char *section, const char *name, bf_err *err) {
    char list[512];
    if (section[0] && section_known(section)) {
        list_names(section, list, sizeof list);
        return bf_fail(err, "%s: unknown key '%s.%s' (known keys in [%s]: %s)", where, section, name, section,
                       list);
    }
    list_names(NULL, list, sizeof list);
    if (!section[0])
        return bf_fail(err, "%s: unknown key '%s' (every key belongs to a section, written [section] in a file "
                       "or section.key with --set; sections: %s)", where, name, list);
    return bf_fail(err, "%s: unknown key '%s.%s' (unknown section [%s]; sections: %s)", where, section, name,
                   section, list);
}

/* "[8, 4096]", "(0, 1]", "at least 1", ... for messages and the help. */
static void format_range(const key_spec *k, char *buf, size_t n) {
    switch (k->type) {
    case KT_STRING: snprintf(buf, n, "at most %d bytes", BF_PATH_LEN - 1); return;
    case KT_U64: snprintf(buf, n, "0 to %" PRIu64, UINT64_MAX); return;
    case KT_BOOL: snprintf(buf, n, "0 or 1 (also false/true, no/yes, off/on)"); return;
    case KT_ENUM:
        buf[0] = '\0';
        for (int i = 0; i < N_SHAPES; i++) {
            if (i) append(buf, n, ", ");
            append(buf, n, kShapeNames[i]);
        }
        return;
    case KT_CHOICE:
        buf[0] = '\0';
        for (int i = 0; i < k->n_names; i++) {
            if (i) append(buf, n, ", ");
            append(buf, n, k->names[i]);
        }
        return;
    default: break;
    }
    if (k->range & R_NO_MAX)
        snprintf(buf, n, "%s %.15g", (k->range & R_LO_OPEN) ? "greater than" : "at least", k->lo);
    else
        snprintf(buf, n, "%c%.15g, %.15g%c", (k->range & R_LO_OPEN) ? '(' : '[', k->lo, k->hi,
                 (k->range & R_HI_OPEN) ? ')' : ']');
}

static int in_range(const key_spec *k, double x) {
    if (k->range & R_ANY) return 1;
    if ((k->range & R_LO_OPEN) ? !(x > k->lo) : !(x >= k->lo)) return 0;
    if (k->range & R_NO_MAX) return 1;
    return (k->range & R_HI_OPEN) ? x < k->hi : x <= k->hi;
}

static int out_of_range(const char *where, const key_spec *k, const char *text, bf_err *err) {
    char range[128];
    format_range(k, range, sizeof range);
    return bf_fail(err, "%s: %s.%s: %s is out of range; allowed: %s", where, k->section, k->name, text, range);
}

/* ---- parsing one value -------------------------------------------------------------------------- */

/* Strict decimal integer: optional sign, digits, nothing else. 0 ok, -1 not an integer, -2 overflow. */
static int parse_long(const char *s, long *out) {
    if (!*s || isspace((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end) return -1;
    if (errno == ERANGE) return -2;
    *out = v;
    return 0;
}

/* As parse_long for unsigned 64-bit; a sign is rejected because strtoull would wrap "-1" around. */
static int parse_u64(const char *s, uint64_t *out) {
    if (!isdigit((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end) return -1;
    if (errno == ERANGE) return -2;
    *out = (uint64_t)v;
    return 0;
}

static int parse_bool(const char *s, int *out) {
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) return *out = 1, 0;
        if (!strcasecmp(s, no[i])) return *out = 0, 0;
    }
    return -1;
}

static int set_integer(bf_config *c, const key_spec *k, const char *text, const char *where, bf_err *err) {
    long v;
    int rc = parse_long(text, &v);
    if (rc == -1)
        return bf_fail(err, "%s: %s.%s: expected an integer, got '%s'", where, k->section, k->name, text);
    /* Bounds are at most 1e9 (or absent for long keys), so the double comparison is exact. */
    if (rc == -2 || !in_range(k, (double)v) || (k->type == KT_INT && (v < INT_MIN || v > INT_MAX)))
        return out_of_range(where, k, text, err);
    if (k->type == KT_INT)
        *(int *)field_ptr(c, k) = (int)v;
    else
        *(long *)field_ptr(c, k) = v;
    return 0;
}

static int set_float(bf_config *c, const key_spec *k, const char *text, const char *where, bf_err *err) {
    char *end = NULL;
    double d = 0;
    if (*text && !isspace((unsigned char)*text)) d = strtod(text, &end);
    if (!end || end == text || *end || isnan(d))
        return bf_fail(err, "%s: %s.%s: expected a number, got '%s'", where, k->section, k->name, text);
    /* Range-check the stored float, not the double: 0.99999999999 rounds to 1.0f, which beta1 excludes. */
    float f = (float)d;
    if (!isfinite(f) || !in_range(k, (double)f)) return out_of_range(where, k, text, err);
    *(float *)field_ptr(c, k) = f;
    return 0;
}

static int set_value(bf_config *c, const key_spec *k, const char *text, const char *where, bf_err *err) {
    switch (k->type) {
    case KT_INT:
    case KT_LONG: return set_integer(c, k, text, where, err);
    case KT_FLOAT: return set_float(c, k, text, where, err);
    case KT_U64: {
        uint64_t v;
        int rc = parse_u64(text, &v);
        if (rc == -1)
            return bf_fail(err, "%s: %s.%s: expected a non-negative integer, got '%s'", where, k->section,
                           k->name, text);
        if (rc == -2) return out_of_range(where, k, text, err);
        *(uint64_t *)field_ptr(c, k) = v;
        return 0;
    }
    case KT_BOOL: {
        int v;
        if (parse_bool(text, &v))
            return bf_fail(err, "%s: %s.%s: expected 0 or 1 (or false/true, no/yes, off/on), got '%s'", where,
                           k->section, k->name, text);
        *(int *)field_ptr(c, k) = v;
        return 0;
    }
    case KT_ENUM: {
        for (int i = 0; i < N_SHAPES; i++)
            if (!strcmp(text, kShapeNames[i])) {
                *(bf_explore_shape *)field_ptr(c, k) = (bf_explore_shape)i;
                return 0;
            }
        char allowed[128];
        format_range(k, allowed, sizeof allowed);
        return bf_fail(err, "%s: %s.%s: expected one of %s, got '%s'", where, k->section, k->name, allowed,
                       text);
    }
    case KT_CHOICE: {
        for (int i = 0; i < k->n_names; i++)
            if (!strcmp(text, k->names[i])) {
                *(int *)field_ptr(c, k) = i;
                return 0;
            }
        char allowed[128];
        format_range(k, allowed, sizeof allowed);
        return bf_fail(err, "%s: %s.%s: expected one of %s, got '%s'", where, k->section, k->name, allowed,
                       text);
    }
    case KT_STRING: {
        size_t len = strlen(text);
        if (len >= BF_PATH_LEN)
            return bf_fail(err, "%s: %s.%s: value is %zu bytes long, the limit is %d", where, k->section,
                           k->name, len, BF_PATH_LEN - 1);
        char *dst = field_ptr(c, k);
        memset(dst, 0, BF_PATH_LEN); /* whole buffer, so equal configurations are equal bytes */
        memcpy(dst, text, len);
        return 0;
    }
    }
    return bf_fail(err, "%s: %s.%s: internal error: unknown key type", where, k->section, k->name);
}

/* ---- defaults ----------------------------------------------------------------------------------- */

void bf_config_defaults(bf_config *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_KEYS; i++) {
        bf_err err;
        if (set_value(c, &kKeys[i], kKeys[i].def, "default", &err)) BF_DIE("bad key table: %s", err.msg);
    }
}

const char *bf_explore_shape_name(bf_explore_shape s) {
    return (int)s >= 0 && (int)s < N_SHAPES ? kShapeNames[s] : "unknown";
}

/* ---- INI files ---------------------------------------------------------------------------------- */

typedef struct {
    bf_config *c;
    const char *name; /* the file name in messages */
    FILE *f;          /* read from f, or else from text */
    const char *text;
    int line;     /* physical lines handed to inih so far = the line being parsed */
    int too_long; /* a line did not fit BF_INI_LINE */
    int failed;   /* a value was rejected; err holds the message */
    bf_err *err;
} ini_ctx;

/* Copies one line of ctx->text (at most num - 1 bytes) into buf; NULL at the end. */
static char *read_text_line(ini_ctx *ctx, char *buf, int num) {
    if (!*ctx->text || num < 2) return NULL;
    int i = 0;
    while (i < num - 1 && ctx->text[0]) {
        char ch = *ctx->text++;
        buf[i++] = ch;
        if (ch == '\n') break;
    }
    buf[i] = '\0';
    return buf;
}

/* Next byte of the source, or EOF. */
static int next_byte(ini_ctx *ctx) {
    if (ctx->f) return getc(ctx->f);
    return *ctx->text ? (unsigned char)*ctx->text++ : EOF;
}

/* Called when a line filled the whole buffer: consumes its line end ("\n", "\r\n" or the end of the
 * source) and returns 0, or returns 1 if more text follows, i.e. the line is too long. */
static int line_continues(ini_ctx *ctx) {
    int ch = next_byte(ctx);
    if (ch == '\r') ch = next_byte(ctx);
    return ch != '\n' && ch != EOF;
}

/* The ini_reader: fgets semantics, counting lines, stopping the parse after the first error. */
static char *ini_read_line(char *buf, int num, void *stream) {
    ini_ctx *ctx = stream;
    if (ctx->failed || ctx->too_long) return NULL;
    char *got = ctx->f ? fgets(buf, num, ctx->f) : read_text_line(ctx, buf, num);
    if (!got) return NULL;
    ctx->line++;
    size_t len = strlen(buf);
    if (len == (size_t)num - 1 && buf[len - 1] != '\n' && line_continues(ctx)) {
        ctx->too_long = 1;
        return NULL;
    }
    return buf;
}

static int ini_on_value(void *user, const char *section, const char *name, const char *value) {
    ini_ctx *ctx = user;
    if (ctx->failed) return 0;
    char where[BF_PATH_LEN + 32];
    snprintf(where, sizeof where, "%s:%d", ctx->name, ctx->line);
    const key_spec *k = find_key(section, name);
    if (!k) {
        unknown_key(where, section, name, ctx->err);
        ctx->failed = 1;
        return 0;
    }
    if (set_value(ctx->c, k, value ? value : "", where, ctx->err)) {
        ctx->failed = 1;
        return 0;
    }
    return 1;
}

/* Parses into a copy of the configuration and commits only on success. */
static int parse_ini(bf_config *c, ini_ctx *ctx, bf_err *err) {
    bf_config tmp = *c;
    ctx->c = &tmp;
    ctx->err = err;
    /* Library-wide options, set for this call and restored: a longer line buffer (paths); no
     * continuation lines, so an indented "key = value" is a key rather than a silent replacement of the
     * previous key's value; and a stop at the first syntax error, so the error reported is the first. */
    int saved_max = ini_max_line;
    bool saved_multi = ini_allow_multiline, saved_stop = ini_stop_on_first_error;
    if (ini_max_line < BF_INI_LINE) ini_max_line = BF_INI_LINE;
    ini_allow_multiline = false;
    ini_stop_on_first_error = true;
    int rc = ini_parse_stream(ini_read_line, ctx, ini_on_value, ctx);
    ini_max_line = saved_max;
    ini_allow_multiline = saved_multi;
    ini_stop_on_first_error = saved_stop;

    if (ctx->failed) return -1;
    if (ctx->too_long)
        return bf_fail(err, "%s:%d: line is longer than %d characters", ctx->name, ctx->line, BF_INI_LINE - 3);
    if (rc > 0)
        return bf_fail(err, "%s:%d: syntax error: expected '[section]', 'key = value' or a ';' comment",
                       ctx->name, rc);
    if (rc < 0) return bf_fail(err, "%s: the INI parser failed (code %d)", ctx->name, rc);
    *c = tmp;
    return 0;
}

int bf_config_load(bf_config *c, const char *path, bf_err *err) {
    bf_err why;
    if (bf_check_input_file(path, &why)) return bf_fail(err, "config file %s", why.msg);
    FILE *f = fopen(path, "r");
    if (!f) return bf_fail(err, "cannot open config file '%s': %s", path, strerror(errno));
    ini_ctx ctx = {.name = path, .f = f};
    int rc = parse_ini(c, &ctx, err);
    if (rc == 0 && ferror(f)) rc = bf_fail(err, "error reading config file '%s'", path);
    fclose(f);
    return rc;
}

int bf_config_load_string(bf_config *c, const char *text, const char *name, bf_err *err) {
    ini_ctx ctx = {.name = name, .text = text};
    return parse_ini(c, &ctx, err);
}

/* ---- --set ------------------------------------------------------------------------------------- */

/* Strips blanks at both ends in place (as inih does for file values). */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

int bf_config_set(bf_config *c, const char *assignment, bf_err *err) {
    const char *eq = strchr(assignment, '=');
    if (!eq) return bf_fail(err, "--set %s: expected section.key=value", assignment);
    char where[BF_PATH_LEN + 32];
    snprintf(where, sizeof where, "--set %s", assignment);

    char *copy = bf_xstrdup(assignment);
    copy[eq - assignment] = '\0';
    char *key = trim(copy), *value = trim(copy + (eq - assignment) + 1);
    char *dot = strchr(key, '.');
    const char *section = "", *name = key;
    if (dot) {
        *dot = '\0';
        section = key;
        name = dot + 1;
    }
    const key_spec *k = find_key(section, name);
    int rc = k ? set_value(c, k, value, where, err) : unknown_key(where, section, name, err);
    free(copy);
    return rc;
}

/* ---- validation -------------------------------------------------------------------------------- */

int bf_config_layer_budgets(const bf_config *c, int *k, bf_err *err) {
    const char *s = c->layer_budgets;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return 0;
    int n = 0;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 1 || v > c->n_heads || n >= c->n_layers) break;
        k[n++] = (int)v;
        s = end;
        while (isspace((unsigned char)*s)) s++;
        if (!*s) {
            if (n == c->n_layers) return 1;
            break;
        }
        if (*s != ',') break;
        s++;
    }
    return bf_fail(err, "model.layer_budgets = '%s': expected model.n_layers = %d integers in 1..model.n_heads = %d, "
                   "separated by commas (e.g. %s)", c->layer_budgets, c->n_layers, c->n_heads,
                   c->n_layers == 1 ? "1" : c->n_layers == 2 ? "3,1" : "2,2,1");
}

int bf_config_validate(const bf_config *c, bf_err *err) {
    if (!c->data_train[0])
        return bf_fail(err, "data.train is not set: give the prepared training set in the config file "
                       "([data] train = PATH) or with --set data.train=PATH");
    if (!c->run_dir[0])
        return bf_fail(err, "run.dir is empty: give the run directory ([run] dir = PATH or --set run.dir=PATH); "
                       "an empty run.dir would put config.ini, log.h5 and checkpoints/ into the root directory /");
    if (c->d_model % c->n_heads)
        return bf_fail(err, "model.d_model (%d) must be divisible by model.n_heads (%d)", c->d_model, c->n_heads);
    if (c->fixed_budget > c->n_heads)
        return bf_fail(err, "model.fixed_budget (%d) must be at most model.n_heads (%d)", c->fixed_budget,
                       c->n_heads);
    if (c->full_heads && c->fixed_budget)
        return bf_fail(err, "model.full_heads = 1 and model.fixed_budget = %d exclude each other: the full "
                       "baseline uses every head", c->fixed_budget);
    int per_layer[64]; /* model.n_layers is at most 64 */
    int has_layers = bf_config_layer_budgets(c, per_layer, err);
    if (has_layers < 0) return -1;
    if (has_layers && (c->full_heads || c->fixed_budget))
        return bf_fail(err, "model.layer_budgets = %s and model.%s = %d exclude each other: set one of them",
                       c->layer_budgets, c->full_heads ? "full_heads" : "fixed_budget",
                       c->full_heads ? 1 : c->fixed_budget);
    int learned = !c->full_heads && !c->fixed_budget && !has_layers;
    /* budget_target, budget supervision and model.budget_hidden do not apply to full-heads and fixed-budget models
     * (they have no learned budget, as the budget cost does not apply to them), so a shipped configuration serves
     * every variant. */
    if (learned && c->budget_target > 0.0f && c->budget_target * (float)c->n_heads < 1.0f)
        return bf_fail(err, "train.budget_target = %g is below 1/model.n_heads = %g: every input uses at least one "
                       "head", (double)c->budget_target, 1.0 / c->n_heads);
    if (learned && c->supervise_center && !c->supervise_rank && c->budget_supervise <= 0.0f &&
        c->supervise_rel <= 0.0f)
        return bf_fail(err, "train.supervise_center = 1 centres the targets of budget supervision, which is off: set "
                       "train.supervise_rank = 1 (or train.budget_supervise)");
    if (learned && c->supervise_rank && c->budget_target <= 0.0f)
        return bf_fail(err, "train.supervise_rank = 1 shares the heads of train.budget_target among the inputs: set "
                       "train.budget_target (a fraction of the heads, e.g. 0.5)");
    if (c->sandwich && c->full_heads)
        return bf_fail(err, "train.sandwich = 1 needs a router: the full-heads baseline (model.full_heads = 1) always "
                       "uses every head");
    if (c->gate_norm && c->full_heads)
        return bf_fail(err, "model.gate_norm = 1 has no effect with model.full_heads = 1 (gates are 1): set one");
    if (c->stop_at > c->steps)
        return bf_fail(err, "train.stop_at (%ld) must be at most train.steps (%ld)", c->stop_at, c->steps);
    if (c->warmup >= c->steps)
        return bf_fail(err, "train.warmup (%ld) must be less than train.steps (%ld)", c->warmup, c->steps);
    return 0;
}

/* ---- writing ----------------------------------------------------------------------------------- */

/* 1 if the string reads back unchanged: inih strips surrounding blanks, ends a value at an inline comment
 * (';' after a blank; the written "key = " puts a blank before the first character) and at a newline. */
static int ini_can_carry(const char *s) {
    size_t n = strlen(s);
    if (n && (isspace((unsigned char)s[0]) || isspace((unsigned char)s[n - 1]))) return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n' || s[i] == '\r') return 0;
        if (s[i] == ';' && (i == 0 || isspace((unsigned char)s[i - 1]))) return 0;
    }
    return 1;
}

/* The shortest %g text that reads back (through set_float's strtod and cast) as the same float; 9
 * significant digits always do, shorter ones keep "0.9" from printing as 0.899999976. */
static void format_float(float x, char *buf, size_t n) {
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, n, "%.*g", digits, (double)x);
        if ((float)strtod(buf, NULL) == x) return;
    }
}

static void format_value(const bf_config *c, const key_spec *k, char *buf, size_t n) {
    const void *p = field_cptr(c, k);
    switch (k->type) {
    case KT_INT:
    case KT_BOOL: snprintf(buf, n, "%d", *(const int *)p); break;
    case KT_LONG: snprintf(buf, n, "%ld", *(const long *)p); break;
    case KT_FLOAT: format_float(*(const float *)p, buf, n); break;
    case KT_U64: snprintf(buf, n, "%" PRIu64, *(const uint64_t *)p); break;
    case KT_ENUM: snprintf(buf, n, "%s", bf_explore_shape_name(*(const bf_explore_shape *)p)); break;
    case KT_CHOICE: {
        int v = *(const int *)p;
        snprintf(buf, n, "%s", v >= 0 && v < k->n_names ? k->names[v] : "?");
        break;
    }
    case KT_STRING: snprintf(buf, n, "%s", (const char *)p); break;
    }
}

int bf_config_write_file(const bf_config *c, FILE *f, bf_err *err) {
    for (size_t i = 0; i < N_KEYS; i++)
        if (kKeys[i].type == KT_STRING && !ini_can_carry(field_cptr(c, &kKeys[i])))
            return bf_fail(err, "%s.%s: '%s' cannot be written to an INI file (newline, leading or trailing "
                           "blank, or ';' after a blank)", kKeys[i].section, kKeys[i].name,
                           (const char *)field_cptr(c, &kKeys[i]));
    fprintf(f, "; budgetformer %s configuration (every key; see docs/CONFIG.md)\n", BF_VERSION);
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_spec *k = &kKeys[i];
        if (i == 0 || strcmp(k->section, kKeys[i - 1].section)) fprintf(f, "\n[%s]\n", k->section);
        char value[BF_PATH_LEN];
        format_value(c, k, value, sizeof value);
        if (value[0])
            fprintf(f, "%s = %s\n", k->name, value);
        else
            fprintf(f, "%s =\n", k->name);
    }
    if (fflush(f) || ferror(f)) return bf_fail(err, "error writing the configuration: %s", strerror(errno));
    return 0;
}

size_t bf_config_key_count(void) { return N_KEYS; }

const char *bf_config_key_name(size_t i, char *buf, size_t n) {
    snprintf(buf, n, "%s.%s", kKeys[i].section, kKeys[i].name);
    return buf;
}

const char *bf_config_key_value(const bf_config *c, size_t i, char *buf, size_t n) {
    format_value(c, &kKeys[i], buf, n);
    return buf;
}

int bf_config_write(const bf_config *c, const char *path, bf_err *err) {
    FILE *f = fopen(path, "w");
    if (!f) return bf_fail(err, "cannot create config file '%s': %s", path, strerror(errno));
    int rc = bf_config_write_file(c, f, err);
    if (fclose(f) && rc == 0) rc = bf_fail(err, "error writing config file '%s': %s", path, strerror(errno));
    if (rc) remove(path); /* no half-written configuration that would load with defaults for the rest */
    return rc;
}

/* ---- help --------------------------------------------------------------------------------------- */

static const char *type_name(key_type t) {
    switch (t) {
    case KT_INT:
    case KT_LONG: return "integer";
    case KT_FLOAT: return "number";
    case KT_U64: return "unsigned 64-bit integer";
    case KT_STRING: return "string";
    case KT_ENUM:
    case KT_CHOICE: return "choice";
    case KT_BOOL: return "boolean";
    }
    return "?";
}

void bf_config_print_help(FILE *f) {
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_spec *k = &kKeys[i];
        if (i == 0 || strcmp(k->section, kKeys[i - 1].section))
            fprintf(f, "%s### [%s]\n\n| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n",
                    i ? "\n" : "", k->section);
        char range[128];
        format_range(k, range, sizeof range);
        fprintf(f, "| `%s.%s` | %s | %s%s%s | %s | %s |\n", k->section, k->name, type_name(k->type),
                k->def[0] ? "`" : "", k->def[0] ? k->def : "(empty)", k->def[0] ? "`" : "", range, k->help);
    }
}
