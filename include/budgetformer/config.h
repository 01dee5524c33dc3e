/* config: the run configuration: defaults, an INI file (parsed with Debian's libinih), command-line
 * overrides "section.key=value", validation, and writing the resolved configuration back out.
 *
 * Use: bf_config_defaults, then bf_config_load (the file) and bf_config_set (each --set), then
 * bf_config_validate; src/cli/cmd_train.c and tests/test_config.c are the compiled examples.
 *
 * An unknown section or key, a value of the wrong type or out of range is an error whose message names the
 * file and line (or the --set argument), the key, and what is allowed.
 */
#ifndef BUDGETFORMER_CONFIG_H
#define BUDGETFORMER_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "budgetformer/util.h"

typedef enum {
    BF_EXPLORE_LINEAR = 0,
    BF_EXPLORE_COSINE = 1,
    BF_EXPLORE_EXPONENTIAL = 2,
    BF_EXPLORE_ADAPTIVE = 3, /* the coordinator decides from the loss (schedule.h) */
} bf_explore_shape;

/* checkpoint.on_error: what a failed periodic checkpoint (or log.h5) write does. */
enum { BF_ON_ERROR_STOP = 0, BF_ON_ERROR_CONTINUE = 1 };

typedef struct {
    /* [data] */
    char data_train[BF_PATH_LEN]; /* prepared train.h5 (required) */
    char data_valid[BF_PATH_LEN]; /* optional; validation accuracy is reported as training goes */
    char data_test[BF_PATH_LEN];  /* optional; evaluated at the end */
    /* [model] */
    int d_model, n_heads, n_layers, d_ff;
    int full_heads;   /* 0/1 */
    int fixed_budget; /* 0 = learned budget, else 1..n_heads */
    int gate_norm;    /* added option: 1 = gates renormalised over the selected heads */
    int budget_hidden;/* added option: N > 0 = a GELU hidden layer of width N in the budget predictor */
    char layer_budgets[BF_PATH_LEN]; /* added option: "k_1,...,k_L", a fixed budget per layer; "" = none */
    /* [train] */
    int batch_size;   /* global batch */
    int micro_batch;  /* per-rank inputs per forward pass; 0 = all of the rank's part at once */
    long steps;       /* optimiser updates; the length of every schedule */
    long stop_at;     /* stop after this update as if interrupted (0 = run to steps) */
    long warmup;      /* linear warm-up steps of the learning rate */
    float lr;         /* peak learning rate */
    float lr_min;     /* final learning rate of the cosine decay */
    float weight_decay, beta1, beta2, adam_eps;
    float grad_clip;  /* global-norm clip; 0 = off */
    long max_nonfinite; /* non-finite updates in a row (each skipped) after which the run stops */
    float budget_cost;/* lambda (fixed), when budget_target is 0 */
    float budget_target;  /* > 0: mean fraction of heads k/H enforced by dual ascent on lambda */
    float budget_dual_lr; /* dual ascent step of lambda per update (integral gain) */
    float budget_dual_kp; /* proportional gain of the budget controller */
    long budget_ramp;     /* updates over which the target falls from 1 (every head) to budget_target */
    int sandwich;         /* 1: each update also trains at k = H and at a random k (US-Nets sandwich rule) */
    float distill;        /* weight of the k = H pass's probabilities in the other passes' targets */
    float budget_supervise; /* delta > 0: k* = smallest k whose loss is within delta of k = H's is k^'s target */
    float supervise_weight; /* weight of (k^ - k*)^2 / (H-1)^2 */
    float supervise_rel;    /* rho: the excess allowed is max(delta, rho (CE_1 - CE_H)) */
    int supervise_rank;     /* 1: k* from sharing the budget target's heads among the inputs (bf_budget_allocate) */
    int supervise_center;   /* 1: supervision on k^ - mean(k^) against k* - mean(k*) per layer and micro-batch */
    float budget_spread;    /* sigma > 0: k^'s sd over a micro-batch is held at >= sigma heads per layer (0 = off) */
    float spread_weight;    /* weight of max(0, 1 - var(k^)/sigma^2)^2 */
    long full_warmup;     /* the first this many updates use every head (k = H) */
    int precision;        /* of the matrix products: 0 fp32, 1 bf16 (bf_precision of bf16.h) */
    uint64_t seed;
    long log_every;   /* progress line and a synced write of log.h5 every this many steps */
    long log_write_every; /* log.h5 rewritten without fsync every this many steps (0 = only at log_every) */
    long eval_every;  /* validation every this many steps (0 = only at the end) */
    /* [explore] */
    float eps_start, eps_end;
    long explore_steps;
    bf_explore_shape explore_shape;
    float tau;
    long explore_window;       /* adaptive: loss window */
    float explore_threshold;   /* adaptive: relative loss drop per window below which exploring ends */
    long explore_anneal_steps; /* adaptive: length of the anneal once exploring ends */
    /* [run] */
    char run_dir[BF_PATH_LEN];
    /* [checkpoint] */
    long checkpoint_every; /* 0 = only at the end */
    int checkpoint_keep;
    int checkpoint_on_error; /* BF_ON_ERROR_STOP or BF_ON_ERROR_CONTINUE: a failed periodic save */
    /* [heads] */
    long heads_every;      /* head statistics record every this many steps */
    /* [dist] */
    int bucket_kb;         /* gradient allreduce bucket size */
    int balance_shards;    /* deal each batch to the ranks by cost (sampler.h) */
    int spin_us;           /* a waiting collective spins this long before sleeping between polls */
    float dist_timeout;    /* watchdog: seconds a collective may wait for the other ranks (0 = off) */
    int shard_optimizer;   /* 1: ZeRO stage 1, each rank keeps and updates 1/P of the AdamW state (shard.h) */
    int shared_dataset;    /* 1: one copy of the datasets' rows per node (shared memory), 0: one per rank */
    int grad_precision;    /* gradient exchange: 0 fp32, 1 bf16 (bf_grad_sync_bf16) */
} bf_config;

void bf_config_defaults(bf_config *c);
/* Reads an INI file over the current values. */
int bf_config_load(bf_config *c, const char *path, bf_err *err);
/* Applies one "section.key=value" override. */
int bf_config_set(bf_config *c, const char *assignment, bf_err *err);
/* model.layer_budgets read into k[0..n_layers-1] (each 1..model.n_heads). Returns 1 when the key is set, 0 when
 * it is empty (k untouched) and -1 with a message naming the key and what was expected. */
int bf_config_layer_budgets(const bf_config *c, int *k, bf_err *err);

/* Cross-field checks (e.g. fixed_budget <= n_heads, d_model divisible by n_heads, data.train set). */
int bf_config_validate(const bf_config *c, bf_err *err);
/* Writes the resolved configuration as INI (readable again by bf_config_load). */
int bf_config_write(const bf_config *c, const char *path, bf_err *err);
const char *bf_explore_shape_name(bf_explore_shape s);

/* Additions (same rules as above). On any error the configuration is left unchanged. */
/* Reads INI text held in memory (e.g. the configuration saved in a checkpoint); `name` stands in for the
 * file name in messages. */
int bf_config_load_string(bf_config *c, const char *text, const char *name, bf_err *err);
/* Writes the configuration as INI to an open stream (bf_config_write without the file handling). A string
 * value that INI cannot carry (a newline, surrounding blanks, " ;") is an error and nothing is written. */
int bf_config_write_file(const bf_config *c, FILE *f, bf_err *err);
/* Prints every key with type, default, allowed values and meaning as Markdown (for --help-config);
 * docs/CONFIG.md contains the same text and tests/test_config.c checks that it does. */
void bf_config_print_help(FILE *f);

/* The one key table, key by key, in the order bf_config_write_file writes it: how many keys there are, the
 * name of key i ("section.key"), and its value in c as written to a configuration file. */
size_t bf_config_key_count(void);
const char *bf_config_key_name(size_t i, char *buf, size_t n);
const char *bf_config_key_value(const bf_config *c, size_t i, char *buf, size_t n);

#endif
