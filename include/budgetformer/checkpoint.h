/* checkpoint: HDF5 checkpoints that survive crashes and resume training exactly (docs/CHECKPOINTS.md).
 *
 * A save: bf_checkpoint_save with a bf_ckpt_meta (src/training/save.c). A load: bf_checkpoint_open (the
 * digest is checked before HDF5 parses a byte), bf_checkpoint_file_model_config (compare with the expected
 * model), bf_checkpoint_read_training or bf_checkpoint_read_model, bf_checkpoint_close (src/training/resume.c,
 * tests/test_checkpoint_unit.c). No code example here: the callers named are the compiled examples.
 *
 * Layout (format 2): /model, /vocab, /label_names as MODEL.md names them; /optim/m, /optim/v (AdamW moments,
 * flat in the parameter table's order); attributes of /state (step, seed, data position, world size, the
 * resolved configuration as INI text, ...); attributes of /coordinator (every field of bf_coordinator);
 * /headstats/block (head-usage counts since the last /heads record, summed over ranks); attributes of
 * /provenance (versions, including the MPI library's).
 *
 * Integrity: a whole-file SHA-256 digest (OpenSSL libcrypto) in a hidden sidecar ".<file>.sha256" beside it,
 * in sha256sum's format. A checkpoint is read into memory, its digest checked, and only then handed to HDF5 (from that
 * memory image, so the bytes parsed are the bytes checked). Saving builds the file in memory, writes it and
 * the sidecar under temporary names ("." prefix, ".tmp" suffix), fsyncs, renames the sidecar and then the
 * file into place and fsyncs the directory: a name matching step-XXXXXXXX.h5 only ever holds a complete file
 * that has its digest beside it. */
#ifndef BUDGETFORMER_CHECKPOINT_H
#define BUDGETFORMER_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/durable.h"
#include "budgetformer/model.h"
#include "budgetformer/schedule.h"
#include "budgetformer/util.h"

/* 1: model, optimiser moments and a few /state attributes (not resumable); 2: the full training state. */
#define BF_CHECKPOINT_FORMAT 2
#define BF_CKPT_PATH_LEN BF_PATH_BUF /* util.h: the one path-length rule */

/* What a checkpoint carries besides the model. Pointers may be NULL where noted (a model-only file). */
typedef struct {
    long step;                    /* optimiser updates done */
    uint64_t seed;
    int world_size;               /* ranks that wrote it (informative: resuming on any number is fine) */
    int batch_size;               /* global batch */
    int64_t n_train;              /* inputs per epoch (training set size) */
    long skipped_steps;           /* updates skipped for non-finite numbers so far */
    long nonfinite_run;           /* of which consecutive, up to this step */
    float lr;                     /* learning rate of the last update (informative) */
    const float *adam_m, *adam_v; /* [n_params] each, or NULL (model only) */
    const bf_coordinator *coord;  /* or NULL */
    const int64_t *headstats;     /* headstats block summed over ranks, or NULL */
    size_t headstats_len;
    const char *config_text;      /* resolved configuration, INI */
    const char *const *vocab;
    size_t vocab_size;
    const char *const *label_names;
    size_t n_classes;
    /* Provenance from the layers the files folder does not link (NULL: written as ""): the BLAS build
     * (openblas_get_config()) and the MPI library (bf_dist_library_version()). */
    const char *blas_config;
    const char *mpi_library_version;
} bf_ckpt_meta;

/* Saves atomically with a digest (see above). Returns 0 or -1 with err set; nothing is left under the
 * final names on failure. */
int bf_checkpoint_save(const char *path, const bf_model *m, const bf_ckpt_meta *meta, bf_err *err);

/* The bytes bf_checkpoint_save would write (same checks), malloc'd into *image (the fuzz targets). */
int bf_checkpoint_image(const bf_model *m, const bf_ckpt_meta *meta, unsigned char **image, size_t *len,
                        bf_err *err);

/* Fault injection for tests (BF_FAULT, docs/FAILURES.md): arms one fault for the next bf_checkpoint_save of
 * this process only. The crashes send SIGKILL to the process itself at that point of the save. */
typedef enum {
    BF_CKPT_FAULT_NONE = 0,
    BF_CKPT_CRASH_BEFORE_DATA,   /* temporary file created, no byte written */
    BF_CKPT_CRASH_MID_DATA,      /* half of the bytes written to the temporary file, not synced */
    BF_CKPT_CRASH_BEFORE_RENAME, /* temporary file complete and synced, digest file in place; not renamed */
    BF_CKPT_CRASH_AFTER_RENAME,  /* checkpoint renamed into place, directory synced; rotation not run */
    BF_CKPT_ENOSPC,              /* the data write fails with ENOSPC after half of the bytes */
    BF_CKPT_DELAY,               /* the data write pauses delay_ms half way (tests signal a save in progress) */
} bf_ckpt_fault;
void bf_checkpoint_arm_fault(bf_ckpt_fault fault, int delay_ms);

/* ---- reading ----------------------------------------------------------------------------------- */

typedef enum {
    BF_DIGEST_VALID = 0,   /* sidecar present and the file's SHA-256 matches */
    BF_DIGEST_MISSING = 1, /* no sidecar: the contents cannot be verified */
    BF_DIGEST_CORRUPT = 2, /* sidecar present and the digest differs (damaged, truncated or changed) */
} bf_digest_status;

typedef enum {
    BF_DIGEST_REQUIRED = 0,  /* missing or corrupt: error (resume) */
    BF_DIGEST_IF_PRESENT = 1, /* missing: accepted (a file written by another tool); corrupt: error */
    BF_DIGEST_REPORT = 2      /* never an error: only reported in cf->digest (inspect --force) */
} bf_digest_policy;

typedef struct {
    char path[BF_CKPT_PATH_LEN];
    int64_t file;              /* the HDF5 handle (hid_t) of the verified memory image; < 0 when not opened.
                                * Only src/files uses it: everything else goes through the functions here. */
    long long size;            /* bytes */
    bf_digest_status digest;
    char sha256[65];           /* of the file, hex */
    char sidecar_sha256[65];   /* from the sidecar, hex ("" when missing) */
} bf_ckpt_file;

/* Name of the sidecar of path ("<dir>/.<name>.sha256"). */
void bf_checkpoint_sidecar_name(char *buf, size_t len, const char *path);
/* "valid", "missing", "corrupt". */
const char *bf_digest_status_name(bf_digest_status s);
/* 1 when the file name is one of the temporary names a writer uses (".<name>.tmp"). */
int bf_checkpoint_is_temp_name(const char *path);

/* Reads the file, computes its SHA-256 and compares it with the sidecar; then opens the verified bytes with
 * HDF5. With BF_DIGEST_IF_PRESENT a missing sidecar is accepted. On error, cf->digest and cf->size still
 * tell what was found (bf_checkpoint_close is safe to call). With open_hdf5 = 0 only the digest is checked. */
int bf_checkpoint_open_ex(const char *path, bf_digest_policy policy, int open_hdf5, bf_ckpt_file *cf,
                          bf_err *err);
int bf_checkpoint_open(const char *path, bf_digest_policy policy, bf_ckpt_file *cf, bf_err *err);
void bf_checkpoint_close(bf_ckpt_file *cf);

/* The model hyperparameters from /model's attributes, checked for a valid model. */
int bf_checkpoint_file_model_config(const bf_ckpt_file *cf, bf_model_config *mc, bf_err *err);

/* The training state read back (owns its memory; free with bf_ckpt_state_free). */
typedef struct {
    int format_version;
    long step;
    uint64_t seed;
    int world_size, batch_size;
    int64_t n_train, stream_position, epoch, epoch_position;
    long skipped_steps, nonfinite_run;
    bf_coordinator coord;
    int64_t *headstats;
    size_t headstats_len;
    char *config_text;
} bf_ckpt_state;

void bf_ckpt_state_free(bf_ckpt_state *st);

/* Reads everything needed to continue training into an initialised model whose configuration equals the
 * file's (compare with bf_checkpoint_file_model_config first), the AdamW moments ([n_params] each) and st.
 * Checks every group, dataset, shape and attribute a resume needs and that the weights are finite; a missing
 * one is an error naming it. headstats_len is the expected block length (0 = do not check). */
int bf_checkpoint_read_training(const bf_ckpt_file *cf, bf_model *m, float *adam_m, float *adam_v,
                                size_t headstats_len, bf_ckpt_state *st, bf_err *err);

/* 0 when path is a checkpoint that a resume accepts: digest valid, every part present, and the state
 * meaningful (weights and moments finite, second moments >= 0, unique vocabulary and class names, attributes
 * consistent with /state and /model, counters in range). Otherwise -1 with err saying why. Loads the whole
 * state once (a model of the file's shape is built for it). */
int bf_checkpoint_validate(const char *path, bf_err *err);

/* Reads every /model tensor into an initialised model of the file's configuration; checks they are finite. */
int bf_checkpoint_read_model(const bf_ckpt_file *cf, bf_model *m, bf_err *err);

/* Reads the /state and /coordinator attributes only (format 2 files; for inspect). */
int bf_checkpoint_read_state(const bf_ckpt_file *cf, bf_ckpt_state *st, bf_err *err);

/* Model-only reading for eval and other tools; the digest is checked when a sidecar exists (a missing one
 * is accepted with a warning, since files written by other tools have none). load_model fills a model
 * already initialised with the file's configuration. */
int bf_checkpoint_load_model(const char *path, bf_model *m, char ***vocab, size_t *vocab_size, char ***label_names,
                             size_t *n_classes, bf_err *err);
/* Both in one: a model of the file's configuration for batches of up to max_batch inputs, with its weights,
 * vocabulary and class names (for eval, predict). On failure m is left empty (bf_model_free is harmless). */
int bf_checkpoint_open_model(const char *path, int max_batch, bf_model *m, char ***vocab, size_t *vocab_size,
                             char ***label_names, size_t *n_classes, bf_err *err);

/* ---- a directory of checkpoints ------------------------------------------------------------------ */

typedef struct {
    long step;
    char path[BF_CKPT_PATH_LEN];
} bf_ckpt_entry;

/* The files in dir named step-NNNNNNNN.h5 (the step as "%08ld" prints it: 8 digits, or more without a leading
 * zero past step 99,999,999), newest (numerically largest step) first. Temporary files
 * and sidecars are not listed. A missing directory gives 0 entries. */
int bf_checkpoint_list(const char *dir, bf_ckpt_entry **entries, size_t *n, bf_err *err);

/* Keeps the `keep` newest VALID checkpoints of dir (valid = bf_checkpoint_validate: what a resume accepts); deletes older valid ones with
 * their sidecars. Never deletes an invalid file, the newest valid file, or anything that is not a
 * checkpoint; also removes temporary files and orphan sidecars of steps <= up_to_step (left by a killed
 * writer). Returns the number deleted, or -1. */
int bf_checkpoint_rotate(const char *dir, int keep, long up_to_step, bf_err *err);


/* ---- for inspect: what a checkpoint holds beyond what a load reads ---- */

/* String attributes (name, value), in name order. */
typedef struct {
    size_t n;
    char *name[32];
    char *value[32];
} bf_ckpt_attrs;

/* The string attributes of /provenance (none when it is absent); free with bf_checkpoint_attrs_free. */
void bf_checkpoint_provenance(const bf_ckpt_file *cf, bf_ckpt_attrs *a);
void bf_checkpoint_attrs_free(bf_ckpt_attrs *a);
/* The stored shape of dataset `path` as "[a, b]"; "missing" / "unreadable" (json: "null"). */
void bf_checkpoint_stored_shape(const bf_ckpt_file *cf, const char *path, char *buf, size_t len, int json);
/* An integer attribute of /state. Returns 0 or -1 with err. */
int bf_checkpoint_state_int(const bf_ckpt_file *cf, const char *name, long long *v, bf_err *err);
/* The vocabulary (/vocab) and class names (/label_names) of an open checkpoint; free with bf_free_strings.
 * Returns 0 or -1 with err. */
int bf_checkpoint_file_names(const bf_ckpt_file *cf, char ***vocab, size_t *nv, char ***labels, size_t *nl,
                             bf_err *err);

#endif
