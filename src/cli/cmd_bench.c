/* cmd_bench: `budgetformer bench`: times this implementation on a synthetic model and batch (training step,
 * inference computing every head, inference skipping unselected heads) and measures the machine's sgemm
 * peak, printing one JSON object. launch/bench-vs-pytorch.sh runs it side by side with the PyTorch
 * reference and prints the ratios. Under mpirun each rank takes its part of the batch and the gradients are
 * allreduced as in training, for the scaling line. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "budgetformer/cli.h"
#include "budgetformer/dist.h"
#include "budgetformer/model.h"
#include "budgetformer/optim.h"
#include "budgetformer/rng.h"
#include "budgetformer/util.h"

typedef struct {
    int d_model, heads, layers, d_ff, max_len, batch, vocab, classes, repeats, warmup, budget;
    int only; /* 0 everything, 1 training only, 2 inference only, 3 head-skipping inference only */
    int model; /* 0 both models, 1 full heads only, 2 BudgetFormer only */
    int seconds; /* > 0: each timed phase repeats until this many seconds have passed (at least `repeats`) */
    double start_at; /* > 0: the first timed phase waits for this wall-clock time (seconds since the epoch) */
    bf_precision precision; /* of the matrix products (--precision) */
} bench_opts;

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == '\0' || *end || x < lo || x > hi) {
        fprintf(stderr, "budgetformer bench: error: %s expects an integer in %d..%d, got '%s'\n", flag, lo, hi, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* JSON has no NaN: a measurement not taken prints as null. */
static void json_num(const char *key, double v) {
    if (isfinite(v)) printf(", \"%s\": %.4f", key, v);
    else printf(", \"%s\": null", key);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Best-of sgemm rate on square 1024 matrices: the single-thread peak that MFU is quoted against. */
static double sgemm_peak_flops(void) {
    const int n = 1024;
    float *a = bf_xcalloc((size_t)n * n, sizeof(float)), *b = bf_xcalloc((size_t)n * n, sizeof(float));
    float *c = bf_xcalloc((size_t)n * n, sizeof(float));
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = (float)(i % 7) * 0.01f;
        b[i] = (float)(i % 5) * 0.01f;
    }
    double best = 0.0;
    for (int r = 0; r < 5; r++) {
        double t = bf_wall_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double f = 2.0 * n * n * (double)n / (bf_wall_seconds() - t);
        best = f > best ? f : best;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

static void random_init(bf_model *m, const bench_opts *o) {
    bf_model_init_weights(m, 7);
    /* Spread the relevance so inputs pick different head sets, and put the learned budget at o->budget:
     * k^ = 1 + (H-1) sigmoid(b_bud) = budget. */
    double target = ((double)o->budget - 1.0) / (double)(o->heads - 1);
    float bbud = (float)log(target / (1.0 - target));
    for (int l = 0; l < m->cfg.n_layers; l++) {
        bf_layer_params *p = &m->p.layers[l];
        for (size_t i = 0; i < (size_t)m->cfg.d_model * (size_t)m->cfg.n_heads; i++)
            p->w_rel[i] = (float)(0.5 * bf_rng_normal(bf_rng_key(3, 0, i, (uint32_t)l, 7, 0)));
        for (size_t i = 0; i < (size_t)m->cfg.d_model; i++) p->w_bud[i] = 0.0f;
        p->b_bud[0] = bbud;
    }
}

/* Most timed repetitions a phase records (--seconds stops there too). */
#define MAX_TIMED 4096

/* Does timed repetition r (0-based) run? `repeats` of them, or with --seconds until that long has passed. */
static int keep_timing(const bench_opts *o, int r, double phase_start) {
    if (r < 0 || r < o->repeats) return 1;
    return o->seconds > 0 && r < MAX_TIMED && bf_wall_seconds() - phase_start < o->seconds;
}

/* --start-at: two benchmarks started together (launch/bench-vs-pytorch.sh) begin timing at the same moment,
 * whatever their start-up costs, so the machine's swings hit both alike. */
static void wait_for_start(const bench_opts *o) {
    if (o->start_at <= 0) return;
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        double left = o->start_at - ((double)now.tv_sec + 1e-9 * (double)now.tv_nsec);
        if (left <= 0) return;
        struct timespec ts = {.tv_sec = (time_t)left, .tv_nsec = (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* Times one training step (forward, backward, gradient allreduce, AdamW) and returns the median. */
static double time_train(bf_model *m, bf_dist *d, const bf_batch *b, const bench_opts *o, float *am, float *av) {
    int L = m->cfg.n_layers, H = m->cfg.n_heads, n = b->n;
    float *gumbel = bf_xcalloc((size_t)n * (size_t)L * (size_t)H, sizeof(float));
    int32_t *kr = bf_xcalloc((size_t)n * (size_t)L, sizeof(int32_t));
    int64_t *idx = bf_xcalloc((size_t)n, sizeof(int64_t)), *ep = bf_xcalloc((size_t)n, sizeof(int64_t));
    for (int i = 0; i < n; i++) idx[i] = i;
    float eps = m->cfg.full_heads ? 0.0f : 0.3f; /* training explores: include the draws */
    bf_explore ex = {.eps = eps, .tau = 1.0f, .gumbel = gumbel, .k_random = kr};
    bf_grad_range *rg = bf_xcalloc((size_t)m->n_tensors, sizeof *rg);
    for (int i = 0; i < m->n_tensors; i++) {
        rg[i].offset = m->tensors[m->n_tensors - 1 - i].offset;
        rg[i].count = m->tensors[m->n_tensors - 1 - i].numel;
        rg[i].new_bucket = m->n_tensors - 1 - i == 1; /* embeddings apart, as the trainer does */
    }
    bf_grad_sync *gs = bf_grad_sync_create(d, m->grads, rg, m->n_tensors, 1024 * 1024);
    bf_adamw_hparams hp = {.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    double *t = bf_xcalloc(MAX_TIMED > o->repeats ? MAX_TIMED : (size_t)o->repeats, sizeof(double));
    double phase_start = 0.0;
    int r = -o->warmup;
    for (; keep_timing(o, r, phase_start); r++) {
        if (r == 0) {
            wait_for_start(o); /* after the warm-up: the timed repetitions of both sides start together */
            phase_start = bf_wall_seconds();
        }
        bf_dist_barrier(d);
        double t0 = bf_wall_seconds();
        bf_explore_draw(&m->cfg, 1, ep, idx, n, eps, gumbel, kr);
        bf_model_zero_grad(m);
        bf_model_forward(m, b, &ex);
        m->grad_ready = NULL;
        bf_model_backward(m, b, &ex, 1.0f / (float)o->batch, 0.01f / (float)(o->batch * L));
        for (int i = m->n_tensors - 1; i >= 0; i--) bf_grad_sync_ready(gs, m->n_tensors - 1 - i);
        bf_grad_sync_wait(gs);
        double norm = sqrt(bf_sum_squares(m->grads, m->n_params));
        bf_adamw_update(m->params, m->grads, am, av, m->n_params, r + o->warmup + 1, 1e-4f, 0.01f,
                        bf_clip_scale(norm, 1.0f), &hp);
        bf_model_params_updated(m); /* bf16: new weight copies before the next forward */
        double dt = bf_wall_seconds() - t0;
        bf_dist_allreduce_max_f64(d, &dt, 1);
        if (r >= 0) t[r] = dt;
        /* every rank must agree to go on: rank 0's clock decides */
        if (o->seconds > 0 && r >= 0) {
            double go = keep_timing(o, r + 1, phase_start);
            bf_dist_bcast_f64(d, &go, 1, 0);
            if (go == 0.0) {
                r++;
                break;
            }
        }
    }
    double med = median(t, r);
    free(t);
    free(gumbel);
    free(kr);
    free(idx);
    free(ep);
    free(rg);
    bf_grad_sync_free(gs);
    return med;
}

static double time_infer(bf_model *m, const bf_batch *b, const bench_opts *o, int skip, double *heads) {
    double *t = bf_xcalloc(MAX_TIMED > o->repeats ? MAX_TIMED : (size_t)o->repeats, sizeof(double));
    bf_explore ex = {.eps = 0.0f, .tau = 1.0f};
    double phase_start = 0.0;
    int r = -o->warmup;
    for (; keep_timing(o, r, phase_start); r++) {
        if (r == 0) {
            wait_for_start(o); /* after the warm-up: the timed repetitions of both sides start together */
            phase_start = bf_wall_seconds();
        }
        double t0 = bf_wall_seconds();
        if (skip) bf_model_infer(m, b, NULL);
        else bf_model_forward(m, b, &ex);
        if (r >= 0) t[r] = bf_wall_seconds() - t0;
    }
    double s = 0.0;
    for (int i = 0; i < b->n * m->cfg.n_layers; i++) s += m->budget[i];
    *heads = s / (b->n * m->cfg.n_layers);
    double med = median(t, r);
    free(t);
    return med;
}

/* A flag whose value is one of the words in names (NULL-terminated): *out = first + the word's index.
 * The error lists the words, so it cannot drift from what is accepted. */
static int parse_choice(const char *flag, const char *v, const char *const names[], int first, int *out) {
    for (int j = 0; names[j]; j++)
        if (!strcmp(v, names[j])) {
            *out = first + j;
            return 0;
        }
    fprintf(stderr, "budgetformer bench: error: %s expects", flag);
    for (int j = 0; names[j]; j++) fprintf(stderr, "%s %s", j == 0 ? "" : names[j + 1] ? "," : " or", names[j]);
    fprintf(stderr, ", got '%s'\n", v);
    return 1;
}

/* Over 80 lines on purpose: argument parsing, then one straight sequence of timed phases whose order is the
 * JSON output's order; cutting it would only pass the options and timings around. */
int bf_cmd_bench(int argc, char **argv) {
    bench_opts o = {.d_model = 256, .heads = 8, .layers = 4, .d_ff = 1024, .max_len = 128, .batch = 32,
                    .vocab = 16384, .classes = 4, .repeats = 10, .warmup = 2, .budget = 4};
    struct { const char *flag; int *v; int lo, hi; } flags[] = {
        {"--d-model", &o.d_model, 8, 4096}, {"--heads", &o.heads, 2, 32}, {"--layers", &o.layers, 1, 64},
        {"--d-ff", &o.d_ff, 1, 65536}, {"--max-len", &o.max_len, 1, 4096}, {"--batch", &o.batch, 1, 65536},
        {"--vocab", &o.vocab, 2, 1 << 24}, {"--classes", &o.classes, 2, 100000}, {"--repeats", &o.repeats, 1, 10000},
        {"--warmup", &o.warmup, 0, 1000}, {"--budget", &o.budget, 1, 32}, {"--seconds", &o.seconds, 0, 3600}};
    for (int i = 1; i < argc; i++) {
        int found = 0;
        for (size_t f = 0; f < sizeof flags / sizeof *flags; f++)
            if (!strcmp(argv[i], flags[f].flag)) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "budgetformer bench: error: %s needs a value\n", argv[i]);
                    return 2;
                }
                if (parse_int(argv[i], argv[i + 1], flags[f].lo, flags[f].hi, flags[f].v)) return 2;
                i++;
                found = 1;
            }
        if (!found && !strcmp(argv[i], "--model") && i + 1 < argc) {
            static const char *const models[] = {"both", "full", "budgetformer", NULL};
            if (parse_choice("--model", argv[++i], models, 0, &o.model)) return 2;
            found = 1;
        }
        if (!found && !strcmp(argv[i], "--start-at") && i + 1 < argc) {
            char *end;
            o.start_at = strtod(argv[++i], &end);
            if (*end || !(o.start_at > 0)) {
                fprintf(stderr, "budgetformer bench: error: --start-at expects seconds since the epoch\n");
                return 2;
            }
            found = 1;
        }
        if (!found && !strcmp(argv[i], "--precision") && i + 1 < argc) {
            bf_err perr = {0};
            if (bf_precision_parse(argv[++i], &o.precision, &perr)) {
                fprintf(stderr, "budgetformer bench: error: --precision: %s\n", perr.msg);
                return 2;
            }
            found = 1;
        }
        if (!found && !strcmp(argv[i], "--only") && i + 1 < argc) {
            static const char *const phases[] = {"train", "infer", "infer-skip", NULL}; /* 0 = every phase */
            if (parse_choice("--only", argv[++i], phases, 1, &o.only)) return 2;
            found = 1;
        }
        if (!found) {
            if (!strcmp(argv[i], "--help")) {
                printf("usage: budgetformer bench [options]\n"
                       "Times training and inference of a random model on random inputs (every input max-len tokens)\n"
                       "and prints one JSON object.\n"
                       "options:\n"
                       "  --d-model D     model width (default 256)\n"
                       "  --heads H       heads per layer (default 8)\n"
                       "  --layers L      layers (default 4)\n"
                       "  --d-ff F        feed-forward width (default 1024)\n"
                       "  --max-len T     tokens per input (default 128)\n"
                       "  --batch B       inputs per batch (default 32)\n"
                       "  --vocab V       vocabulary size (default 16384)\n"
                       "  --classes C     classes (default 4)\n"
                       "  --budget K      heads per input of the BudgetFormer model, 2..H-1 (default 4)\n"
                       "  --repeats N     timed repetitions; the median is reported (default 10)\n"
                       "  --warmup N      untimed repetitions first (default 2)\n"
                       "  --only train|infer|infer-skip  time only training, only inference, or only the\n"
                       "                  head-skipping inference\n"
                       "  --model both|full|budgetformer  the models timed (default both)\n"
                       "  --seconds S     each timed phase repeats until S seconds have passed (at least\n"
                       "                  --repeats times; default 0: exactly --repeats)\n"
                       "  --start-at T    the first timed phase waits for wall-clock time T (seconds since the\n"
                       "                  epoch): two benchmarks started together time the same moments\n"
                       "  --precision fp32|bf16  of the matrix products (default fp32; bf16: oneDNN, its threads\n"
                       "                  OMP_NUM_THREADS or else OpenBLAS's count; docs/PERFORMANCE.md)\n");
                return 0;
            }
            fprintf(stderr, "budgetformer bench: error: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (o.d_model % o.heads || o.budget > o.heads || o.budget < 2) {
        fprintf(stderr, "budgetformer bench: error: --d-model must be a multiple of --heads and 2 <= --budget <= --heads - 1\n");
        return 2;
    }
    if (!getenv("OPENBLAS_NUM_THREADS") && !getenv("OMP_NUM_THREADS")) openblas_set_num_threads(1);
    bf_dist d;
    if (bf_dist_init(&d, NULL, NULL)) return 1;
    /* The synthetic batch: every input a full max_len tokens. Each rank takes its part of it. */
    int lo = o.batch * d.rank / d.world, hi = o.batch * (d.rank + 1) / d.world, n = hi - lo;
    size_t T = (size_t)o.max_len;
    int32_t *tok = bf_xcalloc((size_t)o.batch * T, sizeof(int32_t)), *len = bf_xcalloc((size_t)o.batch, sizeof(int32_t));
    int32_t *lab = bf_xcalloc((size_t)o.batch, sizeof(int32_t));
    for (int b = 0; b < o.batch; b++) {
        len[b] = o.max_len;
        lab[b] = b % o.classes;
        for (size_t t = 0; t < T; t++)
            tok[(size_t)b * T + t] = 2 + (int32_t)(bf_rng_key(9, 0, (uint64_t)b * T + t, 0, 9, 0) % (uint64_t)(o.vocab - 2));
    }
    bf_batch part = {.n = n, .tokens = tok + (size_t)lo * T, .lengths = len + lo, .labels = lab + lo};
    bf_batch whole = {.n = o.batch, .tokens = tok, .lengths = len, .labels = lab};
    double peak = d.rank == 0 ? sgemm_peak_flops() : 0.0;
    bf_dist_bcast_f64(&d, &peak, 1, 0);

    const char *names[2] = {"full_heads", "budgetformer"};
    double mem_expected = 0.0;
    double train_s[2], infer_all_s[2], infer_skip_s[2], heads[2], f_all = 0, f_skip = 0, f_train = 0;
    for (int v = 0; v < 2; v++) {
        train_s[v] = infer_all_s[v] = infer_skip_s[v] = heads[v] = NAN;
        if (o.model && o.model != v + 1) continue; /* --model: this one is not timed */
        bf_model_config c = {.vocab_size = o.vocab, .max_len = o.max_len, .d_model = o.d_model, .n_heads = o.heads,
                             .n_layers = o.layers, .d_ff = o.d_ff, .n_classes = o.classes, .full_heads = v == 0};
        bf_model m;
        bf_model_init(&m, &c, o.batch);
        random_init(&m, &o);
        bf_err perr = {0};
        if (bf_model_set_precision(&m, o.precision, &perr)) {
            fprintf(stderr, "budgetformer bench: error: %s\n", perr.msg);
            bf_model_free(&m);
            bf_dist_finalize(&d);
            return 1;
        }
        float *am = bf_xcalloc(m.n_params, sizeof(float)), *av = bf_xcalloc(m.n_params, sizeof(float));
        /* parameters, gradients, two AdamW moments, and the activation arena */
        if (v == 1) {
            mem_expected = 4.0 * (double)m.n_params * sizeof(float) + (double)bf_model_activation_bytes(&m);
            f_all = o.batch * bf_model_forward_flops(&c, o.max_len, o.heads);
            f_train = 3.0 * f_all; /* backward about twice the forward; training computes every head */
        }
        if (o.only == 0 || o.only == 1) train_s[v] = time_train(&m, &d, &part, &o, am, av);
        free(am);
        free(av);
        if (d.rank == 0 && o.only != 1) {
            double h = 0.0;
            if (o.only != 3) infer_all_s[v] = time_infer(&m, &whole, &o, 0, &h);
            infer_skip_s[v] = time_infer(&m, &whole, &o, 1, &heads[v]);
            if (v == 1) {
                double fs = 0.0;
                for (int b = 0; b < o.batch; b++)
                    for (int l = 0; l < o.layers; l++) {
                        const bf_model_config *cc = &c;
                        fs += bf_model_attention_flops(cc, o.max_len, m.budget[b * o.layers + l]);
                    }
                f_skip = f_all - o.batch * o.layers * bf_model_attention_flops(&c, o.max_len, o.heads) + fs;
            }
        }
        bf_model_free(&m);
    }
    if (d.rank == 0) {
        printf("{\"impl\": \"budgetformer-c\", \"precision\": \"%s\", \"ranks\": %d, \"batch\": %d, "
               "\"sgemm_peak_gflops\": %.2f", bf_precision_name(o.precision), d.world, o.batch, peak / 1e9);
        for (int v = 0; v < 2; v++) {
            printf(", \"%s\": {\"model\": \"%s\"", names[v], names[v]);
            json_num("train_samples_per_s", o.batch / train_s[v]);
            json_num("infer_all_samples_per_s", o.batch / infer_all_s[v]);
            json_num("infer_skip_samples_per_s", o.batch / infer_skip_s[v]);
            json_num("mean_heads", heads[v]);
            printf("}");
        }
        printf(", \"flops_forward_all_heads\": %.6g, \"flops_forward_skip\": %.6g, \"flops_train_step\": %.6g",
               f_all, f_skip, f_train);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        json_num("train_mfu", f_train / train_s[1] / peak);
        json_num("infer_skip_mfu", f_skip / infer_skip_s[1] / peak);
        printf(", \"peak_rss_bytes\": %.0f, \"train_state_bytes\": %.0f}\n", (double)ru.ru_maxrss * 1024.0,
               mem_expected);
    }
    free(tok);
    free(len);
    free(lab);
    bf_dist_finalize(&d);
    return 0;
}
