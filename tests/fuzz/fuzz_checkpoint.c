/* fuzz_checkpoint: libFuzzer target for the checkpoint reader (checkpoint.h) on arbitrary HDF5 file images.
 * The bytes go to an in-memory file (memfd) without a digest file, so bf_checkpoint_open takes the path eval
 * takes for a file from another tool: the whole file is read into memory and HDF5 parses that image
 * (H5Pset_file_image). Then, as `--resume` does: the model attributes, the /state and /coordinator
 * attributes, and (for models small enough for the fuzzer's memory) every tensor, the AdamW moments, the head
 * counts and the names.
 *
 * Input: a list of edits (fuzz_h5edit.h) of a valid checkpoint of a tiny model (built once by
 * bf_checkpoint_image: weights, AdamW moments, coordinator, head counts, names): elements of any tensor or
 * moment, any attribute of /model, /state, /optim, /coordinator, /headstats, deletions, repeated vocabulary
 * or class names, NaN and negative values. The edits go through HDF5's writer, so the image stays well formed
 * and budgetformer's checks (structure, shapes, meaning) are what is fuzzed. Besides "no crash, leak, hang or
 * undefined behaviour", it checks:
 *   - a refusal has a message that names the file;
 *   - an accepted training state means what training relies on: weights and first moments finite, second
 *     moments finite and >= 0, vocabulary and class names of the model's sizes and without repeats, head counts
 *     >= 0, skipped_steps <= step, nonfinite_run <= skipped_steps, exploration rates in [0, 1];
 *   - the model-only reader (eval) accepts every file the training reader accepts. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/checkpoint.h"
#include "h5io.h" /* src/files: internal to the files layer */
#include "fuzz_common.h"
#include "fuzz_h5edit.h"

static unsigned char *g_base;
static size_t g_base_len;

/* The base: a valid training checkpoint of a tiny model, every part present. */
static void build_base(void) {
    static const bf_model_config c = {.vocab_size = 7, .max_len = 5, .d_model = 8, .n_heads = 2, .n_layers = 1,
                                      .d_ff = 8, .n_classes = 3};
    bf_model m;
    bf_model_init(&m, &c, 1);
    bf_model_init_weights(&m, 3);
    float *am = calloc(m.n_params, sizeof(float)), *av = calloc(m.n_params, sizeof(float));
    for (size_t i = 0; i < m.n_params; i++) {
        am[i] = (float)i * 1e-3f - 0.1f;
        av[i] = (float)i * 1e-6f;
    }
    bf_coordinator co = {.shape = BF_EXPLORE_LINEAR, .eps_start = 1.0f, .eps_end = 0.0f, .steps = 40, .window = 5,
                         .anneal_steps = 10, .threshold = 0.02f, .window_n = 2, .window_sum = 1.5, .prev_mean = 0.7};
    int64_t hs[1 + 3 + 2 * 2 + 3 * 2] = {0};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++) hs[i] = (int64_t)i;
    const char *vocab[] = {"<pad>", "<unk>", "a", "b", "c", "d", "e"}, *labels[] = {"x", "y", "z"};
    bf_ckpt_meta meta = {.step = 12, .seed = 1, .world_size = 1, .batch_size = 4, .n_train = 10,
                         .skipped_steps = 1, .nonfinite_run = 0, .lr = 1e-3f, .adam_m = am, .adam_v = av,
                         .coord = &co, .headstats = hs, .headstats_len = sizeof hs / sizeof *hs,
                         .config_text = "[train]\nsteps = 40\n", .vocab = vocab, .vocab_size = 7,
                         .label_names = labels, .n_classes = 3};
    bf_err err = {{0}};
    BF_FUZZ_REQUIRE(bf_checkpoint_image(&m, &meta, &g_base, &g_base_len, &err) == 0, "base: %s", err.msg);
    free(am);
    free(av);
    bf_model_free(&m);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    bf_h5_init();
    bf_h5_set_trust_limit((size_t)16 << 20);
    H5set_free_list_limits(1 << 20, 1 << 18, 1 << 20, 1 << 18, 1 << 20, 1 << 18); /* HDF5's caches stay small */
    build_base();
    return 0;
}

/* Models the fuzzer can afford to build (the attributes come from the input). */
static int small(const bf_model_config *c) {
    return c->vocab_size <= 4096 && c->max_len <= 512 && c->d_model <= 128 && c->n_layers <= 4 && c->d_ff <= 512 &&
           c->n_classes <= 256;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void require_unique(char **names, size_t n, const char *what) {
    char **s = malloc((n ? n : 1) * sizeof *s);
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str);
    for (size_t i = 1; i < n; i++) BF_FUZZ_REQUIRE(strcmp(s[i - 1], s[i]), "%s repeats \"%s\"", what, s[i]);
    free(s);
}

static void check_state(const bf_model *m, const float *am, const float *av, const bf_ckpt_state *st) {
    for (size_t i = 0; i < m->n_params; i++) {
        BF_FUZZ_REQUIRE(isfinite(m->params[i]) && isfinite(am[i]), "non-finite weight or m at %zu", i);
        BF_FUZZ_REQUIRE(isfinite(av[i]) && av[i] >= 0.0f, "second moment %g at %zu accepted", (double)av[i], i);
    }
    for (size_t i = 0; i < st->headstats_len; i++) BF_FUZZ_REQUIRE(st->headstats[i] >= 0, "head count < 0 at %zu", i);
    BF_FUZZ_REQUIRE(st->skipped_steps <= st->step && st->nonfinite_run <= st->skipped_steps, "counters %ld %ld %ld",
                    st->step, st->skipped_steps, st->nonfinite_run);
    BF_FUZZ_REQUIRE(st->coord.eps_start >= 0.0f && st->coord.eps_start <= 1.0f && st->coord.eps_end >= 0.0f &&
                        st->coord.eps_end <= 1.0f, "eps out of range");
}

static void resume_like(const bf_ckpt_file *cf, const bf_model_config *mc) {
    bf_model m;
    bf_model_init(&m, mc, 1);
    float *am = calloc(m.n_params, sizeof(float)), *av = calloc(m.n_params, sizeof(float));
    bf_ckpt_state st;
    bf_err err = {{0}};
    if (bf_checkpoint_read_training(cf, &m, am, av, 0, &st, &err) == 0) {
        check_state(&m, am, av, &st);
        bf_ckpt_state_free(&st);
        /* what resume accepts, eval accepts too (it reads a subset) */
        char **v = NULL, **l = NULL;
        size_t nv = 0, nl = 0;
        int rc = bf_h5_read_strings(cf->file, "/vocab", &v, &nv, &err);
        if (rc == 0) rc = bf_h5_read_strings(cf->file, "/label_names", &l, &nl, &err);
        BF_FUZZ_REQUIRE(rc == 0 && nv == (size_t)mc->vocab_size && nl == (size_t)mc->n_classes, "names: %s", err.msg);
        require_unique(v, nv, "/vocab");
        require_unique(l, nl, "/label_names");
        bf_h5_free_strings(v, nv);
        bf_h5_free_strings(l, nl);
        BF_FUZZ_REQUIRE(bf_checkpoint_read_model(cf, &m, &err) == 0, "the model reader refuses: %s", err.msg);
    } else {
        BF_FUZZ_REQUIRE(strstr(err.msg, cf->path) != NULL, "message does not name the file: %s", err.msg);
    }
    free(am);
    free(av);
    bf_model_free(&m);
}

static void load(const unsigned char *img, size_t len) {
    const char *path = bf_fuzz_memfile(img, len);
    bf_ckpt_file cf;
    bf_err err = {{0}};
    if (bf_checkpoint_open(path, BF_DIGEST_IF_PRESENT, &cf, &err) == 0) {
        bf_model_config mc;
        if (bf_checkpoint_file_model_config(&cf, &mc, &err) == 0) {
            if (small(&mc)) resume_like(&cf, &mc);
        } else {
            BF_FUZZ_REQUIRE(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
        }
        bf_ckpt_state st;
        if (bf_checkpoint_read_state(&cf, &st, &err) == 0) bf_ckpt_state_free(&st);
    } else {
        BF_FUZZ_REQUIRE(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    }
    bf_checkpoint_close(&cf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char *img;
    size_t len;
    if (bf_fuzz_h5_edit(g_base, g_base_len, data, size, &img, &len) == 0) {
        load(img, len);
        free(img);
    }
    return 0;
}
