/* cmd_eval: `budgetformer eval --checkpoint FILE --data FILE [--records FILE] [--json] [--batch N]`. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/checkpoint.h"
#include "budgetformer/cli.h"
#include "budgetformer/dataset.h"
#include "budgetformer/dist.h"
#include "budgetformer/eval_dist.h"
#include "budgetformer/evaluate.h"
#include "budgetformer/h5io.h"

static void usage(FILE *f) {
    fprintf(f, "usage: budgetformer eval --checkpoint FILE --data FILE [--records FILE] [--json] [--batch N]\n");
}

static int same_strings(char *const *a, size_t na, char *const *b, size_t nb) {
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i])) return 0;
    return 1;
}

static void print_json(const bf_eval_counts *e, const char *ckpt, const char *data) {
    size_t L = (size_t)e->n_layers, H = (size_t)e->n_heads;
    double n = e->n ? (double)e->n : 1.0;
    printf("{\"checkpoint\": \"%s\", \"data\": \"%s\", \"n\": %lld, \"accuracy\": %.6f, \"macro_f1\": %.6f, "
           "\"loss\": %.6f, \"n_heads\": %d, \"n_layers\": %d, \"mean_budget\": [",
           ckpt, data, (long long)e->n, bf_eval_accuracy(e), bf_eval_macro_f1(e), e->ce_sum / n, e->n_heads,
           e->n_layers);
    for (size_t l = 0; l < L; l++) printf("%s%.6f", l ? ", " : "", e->budget_sum[l] / n);
    printf("], \"budget_hist\": [");
    for (size_t l = 0; l < L; l++) {
        printf("%s[", l ? ", " : "");
        for (size_t h = 0; h < H; h++) printf("%s%.6f", h ? ", " : "", (double)e->budget_count[l * H + h] / n);
        printf("]");
    }
    printf("], \"attention_flops_ratio\": %.6f, \"flops_ratio\": %.6f, \"flops\": %.6g, \"flops_all_heads\": %.6g, "
           "\"attention_bytes_peak\": %.0f, \"attention_bytes_peak_all_heads\": %.0f, \"samples_per_s\": %.1f}\n",
           e->attn_flops_full > 0 ? e->attn_flops_used / e->attn_flops_full : 1.0,
           e->flops_full > 0 ? e->flops_used / e->flops_full : 1.0, e->flops_used, e->flops_full, e->attn_bytes,
           e->attn_bytes_all_heads, e->seconds > 0 ? (double)e->n / e->seconds : 0.0);
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

int bf_cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *records = NULL;
    int json = 0, batch = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(a, "--checkpoint") || !strcmp(a, "--data") || !strcmp(a, "--records") || !strcmp(a, "--batch")) {
            if (!has_value) {
                fprintf(stderr, "budgetformer eval: error: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--checkpoint")) ckpt = v;
            else if (!strcmp(a, "--data")) data = v;
            else if (!strcmp(a, "--records")) records = v;
            else {
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
    bf_h5_init();
    if (!getenv("OPENBLAS_NUM_THREADS") && !getenv("OMP_NUM_THREADS")) openblas_set_num_threads(1);
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
    } else if (!same_strings(vocab, nv, d.vocab, d.vocab_size)) {
        fprintf(stderr, "budgetformer eval: error: %s was prepared with another vocabulary (%zu words) than the "
                        "checkpoint %s was trained on (%zu words%s): prepare it together with the training file\n",
                data, d.vocab_size, ckpt, nv, d.vocab_size == nv ? ", different words" : "");
        rc = 1;
    } else if (!same_strings(labels, nl, d.label_names, (size_t)d.n_classes)) {
        fprintf(stderr, "budgetformer eval: error: %s has %d classes with other names than the checkpoint %s (%zu "
                        "classes)\n", data, d.n_classes, ckpt, nl);
        rc = 1;
    }
    bf_dist dist;
    if (bf_dist_init(&dist, NULL, NULL)) rc = 1;
    /* Under mpirun every rank evaluates a contiguous shard; counts are summed and records gathered on
     * rank 0 in dataset order. Every rank loaded the same files, so they agree on rc. */
    if (rc == 0) {
        bf_eval_counts e;
        bf_eval_counts_init(&e, &m.cfg);
        bf_eval_records rec;
        if (records) bf_eval_records_alloc(&rec, d.n, m.cfg.n_classes, m.cfg.n_layers);
        size_t lo, hi;
        bf_eval_shard(d.n, dist.rank, dist.world, &lo, &hi);
        bf_evaluate(&m, &d, lo, hi, &e, records ? &rec : NULL);
        bf_eval_counts_reduce(&dist, &e);
        if (records) {
            bf_eval_records_gather(&dist, &rec, d.n, m.cfg.n_classes, m.cfg.n_layers);
            if (dist.rank == 0 &&
                bf_eval_records_write(records, &rec, d.n, m.cfg.n_classes, m.cfg.n_layers, m.cfg.n_heads, &err)) {
                fprintf(stderr, "budgetformer eval: error: %s\n", err.msg);
                rc = 1;
            }
            bf_eval_records_free(&rec);
        }
        if (rc == 0 && dist.rank == 0) {
            if (json) print_json(&e, ckpt, data);
            else print_text(&e, labels);
        }
        bf_eval_counts_free(&e);
    }
    bf_dist_finalize(&dist);
    bf_h5_free_strings(vocab, nv);
    bf_h5_free_strings(labels, nl);
    bf_model_free(&m);
    bf_dataset_free(&d);
    return rc;
}
