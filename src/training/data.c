/* data: the datasets of a run (data.train, data.valid, data.test). With dist.shared_dataset = 1 and more than
 * one rank, each set's row arrays (tokens, lengths, labels: nearly all of its bytes) are held once per node in
 * a shared window (node_shared.h) that the node's first rank fills from the file; otherwise every rank loads
 * its own copy. Either way every rank validates the rows it trains on, and the valid and test files must come
 * from the prepare run of the training file. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "budgetformer/node_shared.h"
#include "trainer.h"

/* Valid and test files must come from the same prepare run as the training file. */
static int check_compatible(const bf_dataset *tr, const bf_dataset *d, const char *key, const char *path,
                            bf_err *err) {
    if (d->max_len != tr->max_len || !bf_same_strings(d->vocab, d->vocab_size, tr->vocab, tr->vocab_size) ||
        !bf_same_strings(d->label_names, (size_t)d->n_classes, tr->label_names, (size_t)tr->n_classes))
        return bf_fail(err, "%s = %s: prepared with another vocabulary, max_len or label set than data.train; "
                            "prepare train, valid and test files together", key, path);
    return 0;
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

/* One set with its rows in the node's window *win: tokens, lengths, labels one after the other. A rank whose
 * path names another file than the node's first rank's (another copy, a per-rank working directory) reads its
 * own rows instead, so the digest comparison of train.c still sees what its file holds. Collective; every
 * rank returns the same status. */
static int load_shared(trainer *t, bf_dataset *d, bf_node_shared **win, const char *key, const char *path,
                       bf_err *err) {
    /* Every rank needs the shape before the collective allocation. */
    if (bf_trainer_agree(t, bf_dataset_load_header(d, path, err), err)) return -1;
    size_t b[3];
    bf_dataset_rows_bytes(d, b);
    size_t at_lengths = align8(b[0]), at_labels = at_lengths + align8(b[1]), total = at_labels + b[2];
    *win = bf_node_shared_alloc(t->dist, total);
    char *base = bf_node_shared_ptr(*win);
    int writer = bf_node_shared_writer(*win), rc = 0;
    int64_t mine[4], first[4];
    bf_file_identity(path, mine);
    memcpy(first, mine, sizeof first);
    bf_node_shared_bcast(*win, first, sizeof first);
    int own = memcmp(mine, first, sizeof mine) != 0 || bf_node_shared_bytes(*win) != total;
    if (own) {
        bf_warn("%s = %s on rank %d: not the file the first rank of this node read; this rank reads its own copy",
                key, path, t->rank);
        d->tokens = bf_xmalloc(b[0]);
        d->lengths = bf_xmalloc(b[1]);
        d->labels = bf_xmalloc(b[2]);
    } else {
        d->tokens = base;
        d->lengths = (int32_t *)(void *)(base + at_lengths);
        d->labels = (int32_t *)(void *)(base + at_labels);
        d->rows_borrowed = 1; /* the window owns them: freed with it */
    }
    if (writer || own) rc = bf_dataset_read_rows(d, path, err); /* validates every row as it reads */
    if (bf_node_shared_publish(*win, writer ? rc : 0) && rc == 0 && !own)
        rc = bf_fail(err, "%s: the first rank of this node could not read it (its message is above)", path);
    /* The readers validate what the writer stored: the rows they will train on. */
    if (rc == 0 && !writer && !own) rc = bf_dataset_check(d, path, err);
    if (rc) bf_dataset_free(d);
    return bf_trainer_agree(t, rc, err);
}

/* Loads one set; the message starts with the key that named the file (data.train: ...). Collective; every
 * rank returns the same status. */
static int load_set(trainer *t, bf_dataset *d, bf_node_shared **win, const char *key, const char *path,
                    bf_err *err) {
    static char what[BF_PATH_LEN + 64];
    snprintf(what, sizeof what, "%s = %s", key, path);
    bf_alloc_context(what); /* an allocation that fails names the file */
    int shared = t->cfg->shared_dataset && t->world > 1;
    int rc = shared ? load_shared(t, d, win, key, path, err) : bf_trainer_agree(t, bf_dataset_load(d, path, err), err);
    bf_alloc_context(NULL);
    if (rc == 0) return 0;
    char msg[BF_ERR_LEN];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return bf_fail(err, "%s: %s", key, msg);
}

int bf_trainer_load_data(trainer *t, bf_err *err) {
    const bf_config *c = t->cfg;
    if (load_set(t, &t->train, &t->shared[0], "data.train", c->data_train, err)) return -1;
    if (c->data_valid[0]) {
        if (load_set(t, &t->valid, &t->shared[1], "data.valid", c->data_valid, err)) return -1;
        t->have_valid = 1;
        if (bf_trainer_agree(t, check_compatible(&t->train, &t->valid, "data.valid", c->data_valid, err), err))
            return -1;
    }
    if (c->data_test[0]) {
        if (load_set(t, &t->test, &t->shared[2], "data.test", c->data_test, err)) return -1;
        t->have_test = 1;
        if (bf_trainer_agree(t, check_compatible(&t->train, &t->test, "data.test", c->data_test, err), err))
            return -1;
    }
    if (t->rank == 0 && t->shared[0])
        bf_info("datasets: one copy per node, shared by its %d rank%s (dist.shared_dataset = 1); tokens as %s",
                bf_node_shared_ranks(t->shared[0]), bf_node_shared_ranks(t->shared[0]) > 1 ? "s" : "",
                t->train.token_bytes == 2 ? "uint16" : "int32");
    return 0;
}

size_t bf_trainer_data_bytes(const trainer *t) {
    const bf_dataset *sets[3] = {&t->train, t->have_valid ? &t->valid : NULL, t->have_test ? &t->test : NULL};
    size_t total = 0;
    for (int k = 0; k < 3; k++) {
        if (!sets[k]) continue;
        size_t b[3];
        bf_dataset_rows_bytes(sets[k], b);
        total += b[0] + b[1] + b[2];
    }
    return total;
}

void bf_trainer_free_data(trainer *t) {
    bf_dataset_free(&t->train);
    bf_dataset_free(&t->valid);
    bf_dataset_free(&t->test);
    for (int k = 0; k < 3; k++) { /* collective, as every rank ends the run together */
        bf_node_shared_free(t->shared[k]);
        t->shared[k] = NULL;
    }
}
