/* cmd_inspect: `budgetformer inspect FILE [--json] [--force]`: what a checkpoint holds and whether it can be
 * trusted: step, data position, world size, checksum status (valid / missing / corrupt), file size, model
 * shapes with the tensor table, optimiser and coordinator state, provenance and the stored configuration.
 *
 * A corrupt file (its SHA-256 differs from the sidecar's) is not handed to HDF5 unless --force is given.
 * Exit status: 0 a usable checkpoint (checksum valid or missing, every part present and readable), 1 a
 * corrupt, incomplete or non-checkpoint file (the reason on stderr), 2 usage error.
 * --json prints one object: path, file_size, checksum {status, sha256, expected}, format_version, step,
 * world_size, seed, batch_size, n_train, epoch, epoch_position, stream_position, skipped_steps, model {...},
 * n_params, tensors [{name, shape, stored_shape}], optimizer, coordinator {...}, provenance {...}, config,
 * resumable, problem. Values the file does not hold are null. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "budgetformer/checkpoint.h"
#include "budgetformer/cli.h"
#include "budgetformer/config.h"
#include "budgetformer/files.h"
#include "budgetformer/headstats.h"
#include "budgetformer/model.h"

static void usage(FILE *f) {
    fprintf(f, "usage: budgetformer inspect FILE [--json] [--force]\n"
               "Prints a checkpoint's step, configuration, tensor shapes, checksum status, size, world size and\n"
               "provenance (docs/CHECKPOINTS.md).\n"
               "options:\n"
               "  --json   print one JSON object instead of text\n"
               "  --force  also parse a file whose checksum does not match\n");
}

static void json_str(const char *s) { bf_json_str(stdout, s); }

typedef struct {
    bf_ckpt_file cf;
    int have_model, have_state;
    bf_model_config mc;
    bf_model m;
    bf_ckpt_state st;
    long long format_version; /* -1 when absent */
    long long step;           /* from /state, even for format 1; -1 when absent */
    bf_ckpt_attrs prov;
    char problem[BF_ERR_LEN];
    int resumable;
} report;

/* Reads what there is; r->problem says what makes the file unusable ("" when nothing). */
static void examine(report *r) {
    bf_err err = {{0}};
    if (bf_checkpoint_file_model_config(&r->cf, &r->mc, &err)) {
        snprintf(r->problem, sizeof r->problem, "%s", err.msg);
        return;
    }
    r->have_model = 1;
    bf_model_init(&r->m, &r->mc, 1);
    bf_checkpoint_provenance(&r->cf, &r->prov);
    long long v;
    r->format_version = bf_checkpoint_state_int(&r->cf, "format_version", &v, &err) ? -1 : v;
    r->step = bf_checkpoint_state_int(&r->cf, "step", &v, &err) ? -1 : v;
    if (r->format_version >= BF_CHECKPOINT_FORMAT) {
        float *am = bf_xcalloc(r->m.n_params, sizeof(float)), *av = bf_xcalloc(r->m.n_params, sizeof(float));
        if (bf_checkpoint_read_training(&r->cf, &r->m, am, av,
                                        bf_headstats_block_len(r->mc.n_classes, r->mc.n_layers, r->mc.n_heads),
                                        &r->st, &err) == 0) {
            r->have_state = 1;
            r->resumable = 1;
        } else {
            snprintf(r->problem, sizeof r->problem, "%s", err.msg);
            /* Show the state attributes even when another part is missing. */
            if (bf_checkpoint_read_state(&r->cf, &r->st, &err) == 0) r->have_state = 1;
        }
        free(am);
        free(av);
    } else if (bf_checkpoint_read_model(&r->cf, &r->m, &err)) {
        snprintf(r->problem, sizeof r->problem, "%s", err.msg);
    }
}

static void print_text(const report *r) {
    const bf_ckpt_file *cf = &r->cf;
    printf("checkpoint    %s\n", cf->path);
    printf("file size     %lld bytes\n", cf->size);
    char side[BF_CKPT_PATH_LEN + 80]; /* the digest file, "<dir>/.<name>.sha256" */
    bf_checkpoint_sidecar_name(side, sizeof side, cf->path);
    printf("checksum      %s", bf_digest_status_name(cf->digest));
    if (cf->digest == BF_DIGEST_VALID) printf(" (SHA-256 %s, matches %s)\n", cf->sha256, side);
    else if (cf->digest == BF_DIGEST_MISSING) printf(" (no %s beside it: contents unverified; SHA-256 %s)\n", side, cf->sha256);
    else printf(" (SHA-256 %s, sidecar says %s)\n", cf->sha256, cf->sidecar_sha256[0] ? cf->sidecar_sha256 : "nothing readable");
    if (r->format_version >= 0) printf("format        %lld%s\n", r->format_version, r->resumable ? " (resumable)" : "");
    if (r->have_state) {
        const bf_ckpt_state *s = &r->st;
        printf("step          %ld\n", s->step);
        printf("data position epoch %" PRId64 ", input %" PRId64 " of %" PRId64 " in its order (stream position %" PRId64
               " = step x batch %d)\n", s->epoch, s->epoch_position, s->n_train, s->stream_position, s->batch_size);
        printf("world size    %d rank%s\n", s->world_size, s->world_size > 1 ? "s" : "");
        printf("seed          %" PRIu64 "\n", s->seed);
        printf("skipped steps %ld (non-finite)\n", s->skipped_steps);
        const bf_coordinator *co = &s->coord;
        printf("exploration   %s, eps %g -> %g over %ld steps; adaptive state: anneal_from %ld, window %ld/%ld, "
               "window_sum %.17g, prev_mean %.17g; eps of the next step %g\n",
               bf_explore_shape_name(co->shape), (double)co->eps_start, (double)co->eps_end, co->steps, co->anneal_from,
               co->window_n, co->window, co->window_sum, co->prev_mean, (double)bf_coordinator_eps(co, s->step + 1));
    } else if (r->step >= 0) {
        printf("step          %lld\n", r->step);
    }
    if (r->have_model) {
        printf("model        ");
        for (int i = 0; i < BF_MODEL_N_FIELDS; i++)
            printf(" %s %d%s", bf_model_fields[i].name, bf_model_field_get(&r->mc, i), i < BF_MODEL_N_FIELDS - 1 ? "," : "");
        char budgets[4 * BF_MAX_LAYERS];
        bf_model_layer_budgets_text(&r->mc, budgets, sizeof budgets);
        if (budgets[0]) printf(", layer_budgets %s", budgets);
        printf("\n              %zu parameters in %d tensors\n", r->m.n_params, r->m.n_tensors);
        printf("tensors\n");
        for (int i = 0; i < r->m.n_tensors; i++) {
            const bf_tensor_info *t = &r->m.tensors[i];
            char path[128], have[96], want[64];
            snprintf(path, sizeof path, "/model/%s", t->name);
            bf_checkpoint_stored_shape(cf, path, have, sizeof have, 0);
            if (t->ndim == 1) snprintf(want, sizeof want, "[%d]", t->shape[0]);
            else snprintf(want, sizeof want, "[%d, %d]", t->shape[0], t->shape[1]);
            if (strcmp(have, want)) printf("  %-28s %-14s expected %s\n", t->name, have, want);
            else printf("  %-28s %s\n", t->name, have);
        }
        char m[96], v[96];
        bf_checkpoint_stored_shape(cf, "/optim/m", m, sizeof m, 0);
        bf_checkpoint_stored_shape(cf, "/optim/v", v, sizeof v, 0);
        printf("optimizer     AdamW moments /optim/m %s, /optim/v %s\n", m, v);
    }
    if (r->prov.n) {
        printf("provenance\n");
        for (size_t i = 0; i < r->prov.n; i++) printf("  %-22s %s\n", r->prov.name[i], r->prov.value[i]);
    }
    if (r->have_state && r->st.config_text) {
        printf("configuration\n");
        const char *p = r->st.config_text;
        while (*p) {
            const char *e = strchr(p, '\n');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            printf("  %.*s\n", (int)n, p);
            p += n + (e ? 1 : 0);
        }
    }
}

static void print_json(const report *r) {
    const bf_ckpt_file *cf = &r->cf;
    printf("{\"path\": ");
    json_str(cf->path);
    printf(", \"file_size\": %lld, \"checksum\": {\"status\": \"%s\", \"sha256\": \"%s\", \"expected\": ", cf->size,
           bf_digest_status_name(cf->digest), cf->sha256);
    json_str(cf->sidecar_sha256[0] ? cf->sidecar_sha256 : NULL);
    printf("}, \"format_version\": ");
    if (r->format_version >= 0) printf("%lld", r->format_version);
    else printf("null");
    const bf_ckpt_state *s = r->have_state ? &r->st : NULL;
    if (s)
        printf(", \"step\": %ld, \"world_size\": %d, \"seed\": %" PRIu64 ", \"batch_size\": %d, \"n_train\": %" PRId64
               ", \"epoch\": %" PRId64 ", \"epoch_position\": %" PRId64 ", \"stream_position\": %" PRId64
               ", \"skipped_steps\": %ld",
               s->step, s->world_size, s->seed, s->batch_size, s->n_train, s->epoch, s->epoch_position,
               s->stream_position, s->skipped_steps);
    else if (r->step >= 0)
        printf(", \"step\": %lld, \"world_size\": null, \"seed\": null, \"batch_size\": null, \"n_train\": null, "
               "\"epoch\": null, \"epoch_position\": null, \"stream_position\": null, \"skipped_steps\": null", r->step);
    else
        printf(", \"step\": null, \"world_size\": null, \"seed\": null, \"batch_size\": null, \"n_train\": null, "
               "\"epoch\": null, \"epoch_position\": null, \"stream_position\": null, \"skipped_steps\": null");
    printf(", \"model\": ");
    if (r->have_model) {
        printf("{");
        for (int i = 0; i < BF_MODEL_N_FIELDS; i++)
            printf("%s\"%s\": %d", i ? ", " : "", bf_model_fields[i].name, bf_model_field_get(&r->mc, i));
        char budgets[4 * BF_MAX_LAYERS];
        bf_model_layer_budgets_text(&r->mc, budgets, sizeof budgets);
        printf(", \"layer_budgets\": %s%s%s", budgets[0] ? "[" : "null", budgets, budgets[0] ? "]" : "");
        printf("}, \"n_params\": %zu, \"tensors\": [", r->m.n_params);
        for (int i = 0; i < r->m.n_tensors; i++) {
            const bf_tensor_info *t = &r->m.tensors[i];
            char path[128], have[96];
            snprintf(path, sizeof path, "/model/%s", t->name);
            bf_checkpoint_stored_shape(cf, path, have, sizeof have, 1);
            printf("%s{\"name\": ", i ? ", " : "");
            json_str(t->name);
            if (t->ndim == 1) printf(", \"shape\": [%d]", t->shape[0]);
            else printf(", \"shape\": [%d, %d]", t->shape[0], t->shape[1]);
            printf(", \"stored_shape\": %s}", have);
        }
        char m[96], v[96];
        bf_checkpoint_stored_shape(cf, "/optim/m", m, sizeof m, 1);
        bf_checkpoint_stored_shape(cf, "/optim/v", v, sizeof v, 1);
        printf("], \"optimizer\": {\"algorithm\": \"adamw\", \"m\": %s, \"v\": %s}", m, v);
    } else {
        printf("null, \"n_params\": null, \"tensors\": null, \"optimizer\": null");
    }
    printf(", \"coordinator\": ");
    if (s) {
        const bf_coordinator *co = &s->coord;
        printf("{\"shape\": \"%s\", \"eps_start\": %.9g, \"eps_end\": %.9g, \"steps\": %ld, \"window\": %ld, "
               "\"anneal_steps\": %ld, \"threshold\": %.9g, \"anneal_from\": %ld, \"window_sum\": %.17g, "
               "\"window_n\": %ld, \"prev_mean\": %.17g, \"eps_next\": %.9g}",
               bf_explore_shape_name(co->shape), (double)co->eps_start, (double)co->eps_end, co->steps, co->window,
               co->anneal_steps, (double)co->threshold, co->anneal_from, co->window_sum, co->window_n, co->prev_mean,
               (double)bf_coordinator_eps(co, s->step + 1));
    } else {
        printf("null");
    }
    printf(", \"provenance\": {");
    for (size_t i = 0; i < r->prov.n; i++) {
        printf("%s", i ? ", " : "");
        json_str(r->prov.name[i]);
        printf(": ");
        json_str(r->prov.value[i]);
    }
    printf("}, \"config\": ");
    json_str(s ? s->config_text : NULL);
    printf(", \"resumable\": %s, \"problem\": ", r->resumable ? "true" : "false");
    json_str(r->problem[0] ? r->problem : NULL);
    printf("}\n");
}

/* Over 80 lines on purpose: argument parsing, then the report of each part in the order of the output. */
int bf_cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0, force = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--force")) force = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "budgetformer inspect: error: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (path) {
            fprintf(stderr, "budgetformer inspect: error: one FILE only ('%s' and '%s')\n", path, argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "budgetformer inspect: error: FILE is required\n");
        usage(stderr);
        return 2;
    }
    bf_files_init();
    report r;
    memset(&r, 0, sizeof r);
    r.format_version = r.step = -1;
    bf_err err = {{0}};
    int opened = bf_checkpoint_open(path, force ? BF_DIGEST_REPORT : BF_DIGEST_IF_PRESENT, &r.cf, &err) == 0;
    if (!opened) {
        /* Nothing parsed: a corrupt file (unless --force), a temporary file, an unreadable or non-HDF5 file. */
        if (r.cf.digest == BF_DIGEST_CORRUPT) {
            if (json) {
                printf("{\"path\": ");
                json_str(path);
                printf(", \"file_size\": %lld, \"checksum\": {\"status\": \"%s\", \"sha256\": \"%s\", \"expected\": ",
                       r.cf.size, bf_digest_status_name(r.cf.digest), r.cf.sha256);
                json_str(r.cf.sidecar_sha256[0] ? r.cf.sidecar_sha256 : NULL);
                printf("}, \"resumable\": false, \"problem\": ");
                json_str(err.msg);
                printf("}\n");
            } else {
                printf("checkpoint    %s\nfile size     %lld bytes\nchecksum      %s\n", path, r.cf.size,
                       bf_digest_status_name(r.cf.digest));
            }
        }
        if (r.cf.digest == BF_DIGEST_CORRUPT && !force)
            fprintf(stderr, "budgetformer inspect: error: %s\n  not parsed: --force parses it anyway\n", err.msg);
        else if (r.cf.digest == BF_DIGEST_CORRUPT)
            fprintf(stderr, "budgetformer inspect: error: %s: corrupt (SHA-256 mismatch) and %s\n", path, err.msg);
        else
            fprintf(stderr, "budgetformer inspect: error: %s\n", err.msg);
        bf_checkpoint_close(&r.cf);
        return 1;
    }
    examine(&r);
    if (!r.have_model) {
        fprintf(stderr, "budgetformer inspect: error: %s\n", r.problem);
        bf_checkpoint_close(&r.cf);
        return 1;
    }
    if (json) print_json(&r);
    else print_text(&r);
    int rc = 0;
    if (r.cf.digest == BF_DIGEST_CORRUPT) {
        fprintf(stderr, "budgetformer inspect: error: %s: corrupt: the SHA-256 does not match its digest file\n", path);
        rc = 1;
    }
    if (r.problem[0]) {
        fprintf(stderr, "budgetformer inspect: error: %s\n", r.problem);
        rc = 1;
    } else if (r.format_version < BF_CHECKPOINT_FORMAT && !json) {
        printf("note          format %lld holds the model only: it can be evaluated, not resumed\n", r.format_version);
    }
    if (r.cf.digest == BF_DIGEST_MISSING)
        fprintf(stderr, "budgetformer inspect: warning: %s has no digest file: its contents are unverified\n", path);
    bf_checkpoint_attrs_free(&r.prov);
    bf_ckpt_state_free(&r.st);
    if (r.have_model) bf_model_free(&r.m);
    bf_checkpoint_close(&r.cf);
    return rc;
}
