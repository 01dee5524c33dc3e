/* cmd_predict: `budgetformer predict --checkpoint FILE [--input FILE|-] [--json] [--top-k N] [--batch N]`.
 *
 * Classifies raw text, one input per line, with the head-skipping inference path (bf_model_infer). Lines are
 * tokenised exactly as `prepare` tokenises a dataset row (docs/DATA.md) with the checkpoint's vocabulary
 * (unknown words -> <unk>, longer inputs cut to max_len, a line without tokens becomes one <unk>), read and
 * classified in batches of N, and answered in input order, one output line per input line, so the output can
 * be pasted next to the input. A line that is not valid UTF-8 gets an error naming the file, line and byte,
 * on stderr and in its output line; the others are still classified, and the exit status is then 1. */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "budgetformer/checkpoint.h"
#include "budgetformer/cli.h"
#include "budgetformer/files.h"
#include "jsonout.h"
#include "budgetformer/model.h"
#include "budgetformer/tokenize.h"

static void usage(FILE *f) {
    fprintf(f, "usage: budgetformer predict --checkpoint FILE [--input FILE|-] [--json] [--top-k N] [--batch N]\n"
               "Classifies each line of the input and prints, per line, the label, its probability and the heads\n"
               "used in each layer (text: LABEL<TAB>PROBABILITY<TAB>HEADS with HEADS like 'L0=1,3 L1=0').\n"
               "options:\n"
               "  --checkpoint FILE  the checkpoint (required)\n"
               "  --input FILE|-     one input per line (default -: standard input)\n"
               "  --json             one JSON object per line instead of text\n"
               "  --top-k N          the N most probable labels (default 1): text LABEL<TAB>PROB for each, then\n"
               "                     the heads; JSON adds \"top\": [{\"label\", \"class\", \"probability\"}, ...]\n"
               "  --batch N          lines per forward pass (default 64)\n"
               "  --precision P      fp32 (default) or bf16: the matrix products in bf16 with fp32 accumulation\n"
               "                     (any checkpoint; needs a CPU with avx512_bf16 or amx_bf16)\n");
}

typedef struct {
    long long line;   /* 1-based line of the input */
    int bad;          /* not valid UTF-8 */
    size_t bad_at;    /* offset of the first bad byte */
    int empty;        /* no tokens: classified as one <unk>, as prepare does */
} line_info;

typedef struct {
    const bf_model *m;
    char **labels;
    const char *input_name;
    int json;
    int top_k;      /* labels printed per line, 1..C */
    size_t *order;  /* [C] scratch: classes by decreasing logit */
} printer;

static void print_heads_text(const bf_model *m, int b) {
    size_t L = (size_t)m->cfg.n_layers, H = (size_t)m->cfg.n_heads;
    for (size_t l = 0; l < L; l++) {
        uint32_t mask = m->head_mask[(size_t)b * L + l];
        printf("%sL%zu=", l ? " " : "", l);
        int first = 1;
        for (size_t h = 0; h < H; h++)
            if (mask >> h & 1u) {
                printf("%s%zu", first ? "" : ",", h);
                first = 0;
            }
    }
}

static void print_heads_json(const bf_model *m, int b) {
    size_t L = (size_t)m->cfg.n_layers, H = (size_t)m->cfg.n_heads;
    printf("\"budget\": [");
    for (size_t l = 0; l < L; l++) printf("%s%d", l ? ", " : "", m->budget[(size_t)b * L + l]);
    printf("], \"heads\": [");
    for (size_t l = 0; l < L; l++) {
        uint32_t mask = m->head_mask[(size_t)b * L + l];
        printf("%s[", l ? ", " : "");
        int first = 1;
        for (size_t h = 0; h < H; h++)
            if (mask >> h & 1u) {
                printf("%s%zu", first ? "" : ", ", h);
                first = 0;
            }
        printf("]");
    }
    printf("]");
}

/* The answer for input b of the last forward pass (line li). */
static void print_prediction(printer *p, const line_info *li, int b) {
    const bf_model *m = p->m;
    size_t C = (size_t)m->cfg.n_classes;
    const float *z = m->logits + (size_t)b * C;
    size_t best = 0;
    for (size_t c = 1; c < C; c++)
        if (z[c] > z[best]) best = c;
    double sum = 0.0; /* softmax in double: the probability printed is that of the logits, to print precision */
    for (size_t c = 0; c < C; c++) sum += exp((double)z[c] - (double)z[best]);
    double prob = 1.0 / sum;
    /* The top_k classes by decreasing logit (ties: the lower class first; the first is best). */
    size_t K = (size_t)p->top_k;
    for (size_t k = 0; k < K; k++) {
        size_t pick = C;
        for (size_t c = 0; c < C; c++) {
            int taken = 0;
            for (size_t j = 0; j < k; j++) taken |= p->order[j] == c;
            if (!taken && (pick == C || z[c] > z[pick])) pick = c;
        }
        p->order[k] = pick;
    }
    if (p->json) {
        printf("{\"line\": %lld, \"label\": ", li->line);
        bf_json_str(stdout, p->labels[best]);
        printf(", \"class\": %zu, \"probability\": %.6f, ", best, prob);
        if (K > 1) {
            printf("\"top\": [");
            for (size_t k = 0; k < K; k++) {
                size_t c = p->order[k];
                printf("%s{\"label\": ", k ? ", " : "");
                bf_json_str(stdout, p->labels[c]);
                printf(", \"class\": %zu, \"probability\": %.6f}", c, exp((double)z[c] - (double)z[best]) / sum);
            }
            printf("], ");
        }
        print_heads_json(m, b);
        if (li->empty) printf(", \"warning\": \"no tokens: classified as one <unk>\"");
        printf("}\n");
    } else {
        for (size_t k = 0; k < K; k++) {
            size_t c = p->order[k];
            printf("%s\t%.6f\t", p->labels[c], exp((double)z[c] - (double)z[best]) / sum);
        }
        print_heads_text(m, b);
        printf("\n");
    }
}

static void print_bad_line(printer *p, const line_info *li) {
    fprintf(stderr, "budgetformer predict: error: %s:%lld: not valid UTF-8 (byte %zu of the line); no prediction\n",
            p->input_name, li->line, li->bad_at + 1);
    if (p->json)
        printf("{\"line\": %lld, \"error\": \"not valid UTF-8 (byte %zu of the line)\"}\n", li->line, li->bad_at + 1);
    else
        printf("!error\t\tnot valid UTF-8 (byte %zu of the line)\n", li->bad_at + 1);
}

/* Runs the model on the n_ok good lines packed in tokens/lengths and prints every line of the block in order. */
static void flush_block(printer *p, bf_model *m, const line_info *info, int n_lines, const int32_t *tokens,
                        const int32_t *lengths, int n_ok) {
    if (n_ok > 0) {
        bf_batch batch = {.n = n_ok, .tokens = tokens, .lengths = lengths, .labels = NULL};
        bf_model_infer(m, &batch, NULL);
    }
    int b = 0;
    for (int i = 0; i < n_lines; i++) {
        if (info[i].bad) print_bad_line(p, &info[i]);
        else print_prediction(p, &info[i], b++);
    }
    fflush(stdout);
}

static int parse_args(int argc, char **argv, const char **ckpt, const char **input, int *json, int *batch,
                      int *top_k, bf_precision *precision) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--checkpoint") || !strcmp(a, "--input") || !strcmp(a, "--batch") || !strcmp(a, "--top-k") ||
            !strcmp(a, "--precision")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "budgetformer predict: error: %s needs a value\n", a);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--checkpoint")) *ckpt = v;
            else if (!strcmp(a, "--input")) *input = v;
            else if (!strcmp(a, "--precision")) {
                bf_err perr = {{0}};
                if (bf_precision_parse(v, precision, &perr)) {
                    fprintf(stderr, "budgetformer predict: error: --precision: %s\n", perr.msg);
                    return 2;
                }
            }
            else if (!strcmp(a, "--top-k")) {
                char *end;
                long k = strtol(v, &end, 10);
                if (*v == '\0' || *end || k < 1 || k > 100000) {
                    fprintf(stderr, "budgetformer predict: error: --top-k expects an integer in 1..100000, got '%s'\n", v);
                    return 2;
                }
                *top_k = (int)k;
            } else {
                char *end;
                long b = strtol(v, &end, 10);
                if (*v == '\0' || *end || b < 1 || b > 65536) {
                    fprintf(stderr, "budgetformer predict: error: --batch expects an integer in 1..65536, got '%s'\n", v);
                    return 2;
                }
                *batch = (int)b;
            }
        } else if (!strcmp(a, "--json")) {
            *json = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return -1;
        } else {
            fprintf(stderr, "budgetformer predict: error: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!*ckpt) {
        fprintf(stderr, "budgetformer predict: error: --checkpoint is required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* Over 80 lines on purpose: argument parsing, then the read-encode-classify loop over blocks of lines. */
int bf_cmd_predict(int argc, char **argv) {
    const char *ckpt = NULL, *input = "-";
    int json = 0, batch = 64, top_k = 1;
    bf_precision precision = BF_PREC_FP32;
    int prc = parse_args(argc, argv, &ckpt, &input, &json, &batch, &top_k, &precision);
    if (prc) return prc < 0 ? 0 : prc;
    int from_stdin = !strcmp(input, "-");
    const char *input_name = from_stdin ? "<stdin>" : input;

    bf_files_init();
    if (!getenv("OPENBLAS_NUM_THREADS") && !getenv("OMP_NUM_THREADS")) openblas_set_num_threads(1);
    bf_err err = {{0}};
    bf_model m;
    char **vocab_words = NULL, **labels = NULL;
    size_t nv = 0, nl = 0;
    bf_vocab vocab;
    memset(&vocab, 0, sizeof vocab);
    FILE *in = NULL;
    int rc = 0;
    const bf_model_config *mc = &m.cfg;
    if (bf_checkpoint_open_model(ckpt, batch, &m, &vocab_words, &nv, &labels, &nl, &err)) {
        fprintf(stderr, "budgetformer predict: error: %s\n", err.msg);
        rc = 1;
    } else if (bf_model_set_precision(&m, precision, &err)) {
        fprintf(stderr, "budgetformer predict: error: %s\n", err.msg);
        rc = 1;
    } else if (bf_vocab_from_words(&vocab, vocab_words, nv, &err)) {
        fprintf(stderr, "budgetformer predict: error: %s: /vocab: %s\n", ckpt, err.msg);
        rc = 1;
    } else if (!(in = from_stdin ? stdin : fopen(input, "rb"))) {
        fprintf(stderr, "budgetformer predict: error: cannot open %s: %s\n", input, strerror(errno));
        rc = 1;
    }
    if (rc) goto done;

    size_t T = (size_t)mc->max_len;
    int32_t *tokens = bf_xcalloc((size_t)batch * T, sizeof *tokens);
    int32_t *lengths = bf_xcalloc((size_t)batch, sizeof *lengths);
    line_info *info = bf_xcalloc((size_t)batch, sizeof *info);
    if ((size_t)top_k > (size_t)mc->n_classes) {
        bf_warn("--top-k %d: the model has %d classes: printing all of them", top_k, mc->n_classes);
        top_k = mc->n_classes;
    }
    printer pr = {.m = &m, .labels = labels, .input_name = input_name, .json = json, .top_k = top_k,
                  .order = bf_xcalloc((size_t)mc->n_classes, sizeof(size_t))};
    bf_token_list tl = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long long lineno = 0, n_bad = 0, n_empty = 0;
    int n_lines = 0, n_ok = 0;
    while ((got = getline(&line, &cap, in)) >= 0) {
        size_t n = (size_t)got;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        line_info *li = &info[n_lines++];
        *li = (line_info){.line = ++lineno};
        if (!bf_utf8_valid(line, n, &li->bad_at)) {
            li->bad = 1;
            n_bad++;
        } else {
            bf_encode_info ei;
            lengths[n_ok] = bf_encode_text(tokens + (size_t)n_ok * T, T, line, n, &vocab, &tl, &ei);
            li->empty = ei.empty;
            n_empty += li->empty;
            n_ok++;
        }
        if (n_lines == batch) {
            flush_block(&pr, &m, info, n_lines, tokens, lengths, n_ok);
            n_lines = n_ok = 0;
        }
    }
    if (ferror(in)) {
        fprintf(stderr, "budgetformer predict: error: reading %s after line %lld: %s\n", input_name, lineno,
                strerror(errno));
        rc = 1;
    }
    if (n_lines > 0) flush_block(&pr, &m, info, n_lines, tokens, lengths, n_ok);
    if (n_empty)
        fprintf(stderr, "budgetformer predict: warning: %lld line%s had no tokens; each was classified as one %s\n",
                n_empty, n_empty == 1 ? "" : "s", BF_UNK_STR);
    if (n_bad) {
        fprintf(stderr, "budgetformer predict: error: %lld of %lld lines of %s were not valid UTF-8 (no prediction)\n",
                n_bad, lineno, input_name);
        rc = 1;
    }
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "budgetformer predict: error: writing the predictions: %s\n", strerror(errno));
        rc = 1;
    }
    free(line);
    bf_token_list_free(&tl);
    free(tokens);
    free(lengths);
    free(info);
    free(pr.order);
done:
    if (in && !from_stdin) fclose(in);
    bf_vocab_free(&vocab);
    bf_free_strings(vocab_words, nv);
    bf_free_strings(labels, nl);
    bf_model_free(&m);
    return rc;
}
