/* cmd_eval: `budgetformer eval --checkpoint FILE --data FILE [--records FILE] [--json] [--batch N]
 * [--budget-control shuffle|constant|oracle [--control-seed N]]`.
 *
 * A budget control evaluates twice: a first pass with the model's own budgets gives every input's k per
 * layer; the overrides are computed from all of them (identically on every rank); a second pass evaluates the
 * same weights with those budgets (bf_batch.k_override). Both results are printed; --records holds the
 * control pass. */
#include <cblas.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/checkpoint.h"
#include "budgetformer/cli.h"
#include "budgetformer/dataset.h"
#include "budgetformer/dist.h"
#include "budgetformer/eval_dist.h"
#include "budgetformer/evaluate.h"
#include "budgetformer/files.h"
#include "budgetformer/textread.h"
#include "jsonout.h"

static void usage(FILE *f) {
    fprintf(f, "usage: budgetformer eval --checkpoint FILE --data FILE [--records FILE] [--json] [--batch N]\n"
               "                         [--budget-control shuffle|constant|oracle [--control-seed N]]\n"
               "Evaluates a checkpoint on a prepared dataset (.h5 from budgetformer prepare): accuracy, macro-F1,\n"
               "mean budget per layer, budget histogram, FLOPs against full heads, samples/s. Under mpirun the\n"
               "inputs are shared among the ranks.\n"
               "options:\n"
               "  --checkpoint FILE    the checkpoint (run.dir/checkpoints/step-XXXXXXXX.h5) (required)\n"
               "  --data FILE          the prepared dataset .h5 to evaluate (required)\n"
               "  --records FILE       also write one record per input (docs/LOGS.md, 'Evaluation records'); with a\n"
               "                       control, of the control pass\n"
               "  --json               print one JSON object instead of tables\n"
               "  --batch N            inputs per forward pass (default 64)\n"
               "  --precision P        fp32 (default) or bf16: the matrix products in bf16 with fp32 accumulation\n"
               "                       (any checkpoint; needs a CPU with avx512_bf16 or amx_bf16)\n"
               "  --budget-control C   also evaluate the same weights with the model's own budgets moved between\n"
               "                       inputs: shuffle = each input gets the budgets (all layers) of another input\n"
               "                       by a fixed permutation (the histogram of k per layer is kept); constant =\n"
               "                       every input gets per layer the rounded mean of that layer's budgets on\n"
               "                       this data; oracle = a diagnostic that reads the labels: the same number\n"
               "                       of heads shared among the inputs where they lower the loss most (same k\n"
               "                       in every layer), an optimistic ceiling: it also counts lucky answers\n"
               "                       (one rank);\n"
               "                       prints the control's accuracy beside the model's own\n"
               "  --control-seed N     seed of the shuffle's permutation (integer >= 0, default 1)\n");
}

static void json_budgets(const bf_eval_counts *e) {
    size_t L = (size_t)e->n_layers, H = (size_t)e->n_heads;
    double n = e->n ? (double)e->n : 1.0;
    printf("\"mean_budget\": [");
    for (size_t l = 0; l < L; l++) printf("%s%.6f", l ? ", " : "", e->budget_sum[l] / n);
    printf("], \"budget_hist\": [");
    for (size_t l = 0; l < L; l++) {
        printf("%s[", l ? ", " : "");
        for (size_t h = 0; h < H; h++) printf("%s%.6f", h ? ", " : "", (double)e->budget_count[l * H + h] / n);
        printf("]");
    }
    printf("]");
}

static double attn_ratio(const bf_eval_counts *e) {
    return e->attn_flops_full > 0 ? e->attn_flops_used / e->attn_flops_full : 1.0;
}

typedef struct {
    bf_budget_control kind;
    unsigned long long seed;
    const bf_eval_counts *e; /* counts of the control pass */
} control_result;

static void print_json(const bf_eval_counts *e, const char *ckpt, const char *data, const control_result *ctl) {
    double n = e->n ? (double)e->n : 1.0;
    /* Paths as JSON strings: a quote or backslash in a file name must not break the object. */
    printf("{\"checkpoint\": ");
    bf_json_str(stdout, ckpt);
    printf(", \"data\": ");
    bf_json_str(stdout, data);
    printf(", \"n\": %lld, \"accuracy\": %.6f, \"macro_f1\": %.6f, "
           "\"loss\": %.6f, \"n_heads\": %d, \"n_layers\": %d, ",
           (long long)e->n, bf_eval_accuracy(e), bf_eval_macro_f1(e), e->ce_sum / n, e->n_heads,
           e->n_layers);
    json_budgets(e);
    printf(", \"attention_flops_ratio\": %.6f, \"flops_ratio\": %.6f, \"flops\": %.6g, \"flops_all_heads\": %.6g, "
           "\"attention_bytes_peak\": %.0f, \"attention_bytes_peak_all_heads\": %.0f, \"samples_per_s\": %.1f",
           attn_ratio(e), e->flops_full > 0 ? e->flops_used / e->flops_full : 1.0, e->flops_used, e->flops_full,
           e->attn_bytes, e->attn_bytes_all_heads, e->seconds > 0 ? (double)e->n / e->seconds : 0.0);
    if (ctl) {
        const bf_eval_counts *c = ctl->e;
        double nc = c->n ? (double)c->n : 1.0;
        printf(", \"budget_control\": {\"kind\": \"%s\", ", bf_budget_control_name(ctl->kind));
        if (ctl->kind == BF_CONTROL_SHUFFLE) printf("\"seed\": %llu, ", ctl->seed);
        else printf("\"seed\": null, ");
        printf("\"accuracy\": %.6f, \"macro_f1\": %.6f, \"loss\": %.6f, \"accuracy_difference\": %.6f, "
               "\"macro_f1_difference\": %.6f, ",
               bf_eval_accuracy(c), bf_eval_macro_f1(c), c->ce_sum / nc, bf_eval_accuracy(c) - bf_eval_accuracy(e),
               bf_eval_macro_f1(c) - bf_eval_macro_f1(e));
        json_budgets(c);
        printf(", \"attention_flops_ratio\": %.6f}", attn_ratio(c));
    }
    printf("}\n");
}

static void print_control_text(const bf_eval_counts *e, const control_result *ctl) {
    const bf_eval_counts *c = ctl->e;
    size_t L = (size_t)c->n_layers, H = (size_t)c->n_heads;
    double n = c->n ? (double)c->n : 1.0;
    if (ctl->kind == BF_CONTROL_SHUFFLE)
        printf("\nbudget control: shuffle (--control-seed %llu): each input gets the budgets of another input, "
               "same weights\n", ctl->seed);
    else if (ctl->kind == BF_CONTROL_ORACLE)
        printf("\nbudget control: oracle (reads the labels; an upper bound, not a model): the same number of heads "
               "shared among the inputs where they lower the cross-entropy most, same k in every layer, same "
               "weights\n");
    else
        printf("\nbudget control: constant: every input gets per layer the rounded mean budget, same weights\n");
    printf("            own budgets  control  difference\n");
    printf("accuracy    %11.4f  %7.4f  %+10.4f\n", bf_eval_accuracy(e), bf_eval_accuracy(c),
           bf_eval_accuracy(c) - bf_eval_accuracy(e));
    printf("macro-F1    %11.4f  %7.4f  %+10.4f\n", bf_eval_macro_f1(e), bf_eval_macro_f1(c),
           bf_eval_macro_f1(c) - bf_eval_macro_f1(e));
    printf("loss        %11.4f  %7.4f  %+10.4f\n", e->ce_sum / (e->n ? (double)e->n : 1.0), c->ce_sum / n,
           c->ce_sum / n - e->ce_sum / (e->n ? (double)e->n : 1.0));
    printf("attn FLOPs  %11.3f  %7.3f  %+10.3f\n", attn_ratio(e), attn_ratio(c), attn_ratio(c) - attn_ratio(e));
    printf("layer  control budget  histogram (k = 1..%zu)\n", H);
    for (size_t l = 0; l < L; l++) {
        printf("%5zu  %6.3f / %-3zu ", l, c->budget_sum[l] / n, H);
        for (size_t h = 0; h < H; h++) printf(" %6.3f", (double)c->budget_count[l * H + h] / n);
        printf("\n");
    }
}

static void print_text(const bf_eval_counts *e, char *const *label_names) {
    size_t L = (size_t)e->n_layers, H = (size_t)e->n_heads, C = (size_t)e->n_classes;
    double n = e->n ? (double)e->n : 1.0;
    printf("inputs      %lld\naccuracy    %.4f\nmacro-F1    %.4f\nloss        %.4f\n", (long long)e->n,
           bf_eval_accuracy(e), bf_eval_macro_f1(e), e->ce_sum / n);
    printf("FLOPs relative to full heads: attention %.3f, whole model %.3f\n",
           e->attn_flops_full > 0 ? e->attn_flops_used / e->attn_flops_full : 1.0,
           e->flops_full > 0 ? e->flops_used / e->flops_full : 1.0);
    printf("attention memory peak per batch: %.1f KiB (%.1f KiB computing every head)\n", e->attn_bytes / 1024.0,
           e->attn_bytes_all_heads / 1024.0);
    printf("samples/s   %.0f (one thread, head-skipping inference)\n\n", e->seconds > 0 ? (double)e->n / e->seconds : 0.0);
    printf("layer  mean budget  budget histogram (k = 1..%zu)\n", H);
    for (size_t l = 0; l < L; l++) {
        printf("%5zu  %6.3f / %-3zu ", l, e->budget_sum[l] / n, H);
        for (size_t h = 0; h < H; h++) printf(" %6.3f", (double)e->budget_count[l * H + h] / n);
        printf("\n");
    }
    printf("\nper class      support  recall\n");
    for (size_t k = 0; k < C; k++) {
        int64_t row = 0;
        for (size_t j = 0; j < C; j++) row += e->confusion[k * C + j];
        printf("%-14.14s %7lld  %.4f\n", label_names[k], (long long)row,
               row ? (double)e->confusion[k * C + k] / (double)row : 0.0);
    }
}

/* Over 80 lines on purpose: mostly argument parsing and the checks of the inputs against each other (each
 * with its own message), then one evaluation; the steps share the opened checkpoint, data and counts. */
int bf_cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *records = NULL;
    int json = 0, batch = 64;
    bf_budget_control control = BF_CONTROL_NONE;
    unsigned long long control_seed = 1;
    int seed_given = 0;
    bf_precision precision = BF_PREC_FP32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--checkpoint") || !strcmp(a, "--data") || !strcmp(a, "--records") || !strcmp(a, "--batch") ||
            !strcmp(a, "--budget-control") || !strcmp(a, "--control-seed") || !strcmp(a, "--precision")) {
            if (!has_value) {
                fprintf(stderr, "budgetformer eval: error: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--checkpoint")) ckpt = v;
            else if (!strcmp(a, "--data")) data = v;
            else if (!strcmp(a, "--records")) records = v;
            else if (!strcmp(a, "--precision")) {
                bf_err perr = {{0}};
                if (bf_precision_parse(v, &precision, &perr)) {
                    fprintf(stderr, "budgetformer eval: error: --precision: %s\n", perr.msg);
                    return 2;
                }
            }
            else if (!strcmp(a, "--budget-control")) {
                if (bf_budget_control_parse(v, &control)) {
                    fprintf(stderr, "budgetformer eval: error: --budget-control expects shuffle, constant or oracle, got "
                                    "'%s'\n",
                            v);
                    return 2;
                }
            } else if (!strcmp(a, "--control-seed")) {
                char *end;
                errno = 0;
                unsigned long long sd = strtoull(v, &end, 10);
                if (!*v || *v == '-' || *v == '+' || *end || errno == ERANGE || sd > (unsigned long long)INT64_MAX) {
                    fprintf(stderr, "budgetformer eval: error: --control-seed expects an integer in 0..%lld, got "
                                    "'%s'\n", (long long)INT64_MAX, v);
                    return 2;
                }
                control_seed = sd;
                seed_given = 1;
            } else {
                char *end;
                long b = strtol(v, &end, 10);
                if (*end || b < 1 || b > 65536) {
                    fprintf(stderr, "budgetformer eval: error: --batch expects an integer in 1..65536, got '%s'\n", v);
                    return 2;
                }
                batch = (int)b;
            }
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "budgetformer eval: error: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!ckpt || !data) {
        fprintf(stderr, "budgetformer eval: error: --checkpoint and --data are required\n");
        usage(stderr);
        return 2;
    }
    if (seed_given && control != BF_CONTROL_SHUFFLE) {
        fprintf(stderr, "budgetformer eval: error: --control-seed applies to --budget-control shuffle only\n");
        return 2;
    }
    bf_err err = {{0}};
    if (records) {
        /* --records (and its temporary name) must not be, or link to, the checkpoint, its digest or the data. */
        char side[2 * BF_CKPT_PATH_LEN + 160], tmp[BF_CKPT_PATH_LEN + 8];
        bf_checkpoint_sidecar_name(side, sizeof side, ckpt);
        snprintf(tmp, sizeof tmp, "%s.tmp", records);
        const bf_named_path out[] = {{"--records", records}, {"--records (its temporary file)", tmp}};
        const bf_named_path in[] = {{"--checkpoint", ckpt}, {"--checkpoint's digest file", side}, {"--data", data}};
        if (bf_check_outputs(out, 2, in, 3, &err)) {
            fprintf(stderr, "budgetformer eval: error: %s\n", err.msg);
            return 2;
        }
    }
    bf_files_init();
    if (!getenv("OPENBLAS_NUM_THREADS") && !getenv("OMP_NUM_THREADS")) openblas_set_num_threads(1);
    if (bf_text_check_dataset_path("--data", data, &err)) {
        fprintf(stderr, "budgetformer eval: error: %s\n", err.msg);
        return 1;
    }
    bf_dataset d;
    memset(&d, 0, sizeof d);
    bf_model m;
    char **vocab = NULL, **labels = NULL;
    size_t nv = 0, nl = 0;
    int rc = 0;
    if (bf_checkpoint_open_model(ckpt, batch, &m, &vocab, &nv, &labels, &nl, &err) || bf_dataset_load(&d, data, &err)) {
        fprintf(stderr, "budgetformer eval: error: %s\n", err.msg);
        rc = 1;
    } else if (d.max_len != m.cfg.max_len) {
        fprintf(stderr, "budgetformer eval: error: %s has max_len %d but the checkpoint %s was trained with max_len %d\n",
                data, d.max_len, ckpt, m.cfg.max_len);
        rc = 1;
    } else if (!bf_same_strings(vocab, nv, d.vocab, d.vocab_size)) {
        fprintf(stderr, "budgetformer eval: error: %s was prepared with another vocabulary (%zu words) than the "
                        "checkpoint %s was trained on (%zu words%s): prepare it together with the training file\n",
                data, d.vocab_size, ckpt, nv, d.vocab_size == nv ? ", different words" : "");
        rc = 1;
    } else if (!bf_same_strings(labels, nl, d.label_names, (size_t)d.n_classes)) {
        fprintf(stderr, "budgetformer eval: error: %s has %d classes with other names than the checkpoint %s (%zu "
                        "classes)\n", data, d.n_classes, ckpt, nl);
        rc = 1;
    } else if (bf_model_set_precision(&m, precision, &err)) {
        fprintf(stderr, "budgetformer eval: error: %s\n", err.msg);
        rc = 1;
    }
    bf_dist dist;
    if (bf_dist_init(&dist, NULL, NULL)) rc = 1;
    if (rc == 0 && control == BF_CONTROL_ORACLE && dist.world > 1) {
        if (dist.rank == 0)
            fprintf(stderr, "budgetformer eval: error: --budget-control oracle runs on one rank (it shares heads "
                            "among all inputs at once); run it without mpirun\n");
        rc = 2; /* a usage error: the command line asks for what one job of ranks cannot do */
    }
    /* Under mpirun every rank evaluates a contiguous shard; counts are summed and records gathered on
     * rank 0 in dataset order. Every rank loaded the same files, so they agree on rc. */
    if (rc == 0) {
        bf_eval_counts e;
        bf_eval_counts_init(&e, &m.cfg);
        bf_eval_records rec;
        if (records) bf_eval_records_alloc(&rec, d.n, m.cfg.n_classes, m.cfg.n_layers);
        size_t lo, hi;
        bf_eval_shard(d.n, dist.rank, dist.world, &lo, &hi);
        bf_eval_counts ec;
        bf_eval_counts_init(&ec, &m.cfg);
        if (control == BF_CONTROL_NONE) {
            bf_evaluate(&m, &d, lo, hi, &e, records ? &rec : NULL);
        } else {
            /* First pass: the model's own budgets of this rank's shard; then the overrides of every input,
             * the same on every rank; then the control pass over the shard. */
            size_t L = (size_t)m.cfg.n_layers;
            bf_eval_records own;
            bf_eval_records_alloc(&own, d.n, m.cfg.n_classes, m.cfg.n_layers);
            bf_evaluate(&m, &d, lo, hi, &e, &own);
            int32_t *ko = bf_xcalloc(d.n * L + 1, sizeof(int32_t));
            if (control == BF_CONTROL_ORACLE)
                bf_eval_oracle_budgets(&m, &d, own.budget, ko);
            else
                bf_eval_budget_control(&dist, control, control_seed, own.budget, d.n, m.cfg.n_layers,
                                       m.cfg.n_heads, ko);
            bf_eval_records_free(&own);
            bf_evaluate_override(&m, &d, lo, hi, ko, &ec, records ? &rec : NULL);
            free(ko);
            bf_eval_counts_reduce(&dist, &ec);
        }
        bf_eval_counts_reduce(&dist, &e);
        if (records) {
            bf_eval_records_gather(&dist, &rec, d.n, m.cfg.n_classes, m.cfg.n_layers);
            if (dist.rank == 0 &&
                bf_eval_records_write_control(records, &rec, d.n, m.cfg.n_classes, m.cfg.n_layers, m.cfg.n_heads,
                                              control ? bf_budget_control_name(control) : NULL,
                                              control == BF_CONTROL_SHUFFLE ? (long long)control_seed : -1, &err)) {
                fprintf(stderr, "budgetformer eval: error: %s\n", err.msg);
                rc = 1;
            }
            bf_eval_records_free(&rec);
        }
        control_result ctl = {.kind = control, .seed = control_seed, .e = &ec};
        if (rc == 0 && dist.rank == 0) {
            if (json) print_json(&e, ckpt, data, control ? &ctl : NULL);
            else {
                print_text(&e, labels);
                if (control) print_control_text(&e, &ctl);
            }
        }
        bf_eval_counts_free(&ec);
        bf_eval_counts_free(&e);
    }
    bf_dist_finalize(&dist);
    bf_free_strings(vocab, nv);
    bf_free_strings(labels, nl);
    bf_model_free(&m);
    bf_dataset_free(&d);
    return rc;
}
