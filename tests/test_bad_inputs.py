#!/usr/bin/python3
"""Bad inputs: every row runs the budgetformer binary on one bad dataset, configuration, command line or
checkpoint and checks what a user sees.

For each case:
  - the exit status (2: usage or configuration error; 1: bad data or a runtime failure; 0: handled);
  - stderr contains the expected words (the file, file:line or key, and what was expected);
  - nothing crashed: no signal, no sanitizer report, no internal check ("... (at src/x.c:N)") reached by
    user input;
  - nothing that looks valid was left behind (prepare's DIR/*.h5 and staged files, a run directory, an
    eval --records file).

One line per case; exits 1 if any case fails. A case marked known_bug is a defect reported to the lead and
not fixed yet: it prints KNOWN-BUG and does not fail the test (set BF_STRICT_BAD_INPUTS=1 to make it fail);
when it starts passing it prints FIXED so the marker can be removed.

Environment (tests/CMakeLists.txt): BF_EXE, BF_SOURCE_DIR, BF_WORK.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

EXE = os.environ.get("BF_EXE", "build/budgetformer")
SRC = os.environ.get("BF_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.path.join(os.environ.get("BF_WORK", "/tmp"), "bad_inputs")
TINY = os.path.join(SRC, "tests", "data", "tiny")
STRICT = os.environ.get("BF_STRICT_BAD_INPUTS") == "1"
# An AddressSanitizer build (its allocator makes some slow paths visible).
SANITIZED = False
if os.path.exists(EXE):
    with open(EXE, "rb") as _f:
        SANITIZED = b"__asan_init" in _f.read()

ENV = dict(os.environ)
ENV.setdefault("OPENBLAS_NUM_THREADS", "1")
ENV.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
ENV.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
# Sanitizer builds: report, do not hang in a debugger; leaks of MPI/OpenBLAS are not ours (run-tests.sh).
ENV.setdefault("ASAN_OPTIONS", "detect_leaks=0")
ENV.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")

CRASH_PATTERNS = [
    (re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:"), "a sanitizer report"),
    (re.compile(r"Segmentation fault|core dumped|stack smashing|double free|munmap_chunk|malloc\(\)"), "a crash"),
    (re.compile(r"\(at \S*src/\S+\.c:\d+\)"), "an internal check (BF_CHECK/BF_DIE) reached by bad input"),
]


def run(args, cwd, timeout=60):
    t0 = time.time()
    p = subprocess.run([EXE] + args, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"), time.time() - t0


def must(args, cwd):
    rc, out, err, _ = run(args, cwd)
    if rc != 0:
        sys.exit("bad_inputs: setup failed: budgetformer %s -> %d\n%s" % (" ".join(args), rc, err))
    return out


# ---- shared fixtures: prepared datasets and two trained models ----------------------------------------------

def write(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


FIX = {}


def setup_fixtures():
    shutil.rmtree(WORK, ignore_errors=True)
    fx = os.path.join(WORK, "fixtures")
    os.makedirs(fx)
    train, test = os.path.join(TINY, "train.csv"), os.path.join(TINY, "test.csv")
    must(["prepare", "--train", train, "--test", test, "--out", "good", "--max-len", "24"], fx)
    must(["prepare", "--train", train, "--test", test, "--out", "smallvocab", "--max-len", "24", "--vocab-size", "10"],
         fx)
    must(["prepare", "--train", train, "--test", test, "--out", "len16", "--max-len", "16"], fx)
    write(os.path.join(fx, "other.csv"), '"x","alpha beta gamma"\n"y","delta"\n"x","beta"\n"y","gamma delta"\n')
    must(["prepare", "--train", "other.csv", "--test", "other.csv", "--out", "other", "--max-len", "24"], fx)
    quick = ["--set", "train.steps=3", "--set", "train.warmup=1", "--set", "explore.steps=2", "--set",
             "train.log_every=1", "--set", "data.test=", "--quiet"]
    cfg = os.path.join(SRC, "configs", "tiny.ini")
    must(["train", "--config", cfg, "--set", "data.train=good/train.h5", "--set", "run.dir=runA"] + quick, fx)
    must(["train", "--config", cfg, "--set", "data.train=other/train.h5", "--set", "run.dir=runB"] + quick, fx)
    for name, run_dir in (("ckpt", "runA"), ("ckpt_other", "runB")):
        found = sorted(glob.glob(os.path.join(fx, run_dir, "checkpoints", "step-*.h5")))
        if not found:
            sys.exit("bad_inputs: setup failed: no checkpoint in %s" % run_dir)
        FIX[name] = found[-1]
    FIX.update(fx=fx, good=os.path.join(fx, "good"), smallvocab=os.path.join(fx, "smallvocab"),
               len16=os.path.join(fx, "len16"), other=os.path.join(fx, "other"), tiny_ini=cfg,
               tiny_train=train, tiny_test=test)


def h5_variant(dst, src, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)


def replace(f, name, data):
    del f[name]
    f[name] = data


def h5_files(kind):
    """A prepared test.h5 copy damaged one way; returns a setup function writing it as bad.h5."""
    def edit(f):
        if kind == "float_tokens":
            replace(f, "tokens", f["tokens"][...].astype("float32"))
        elif kind == "wide_tokens":
            t = f["tokens"][...]
            replace(f, "tokens", np.concatenate([t, np.zeros((t.shape[0], 1), "int32")], 1))
        elif kind == "rank3_tokens":
            t = f["tokens"][...]
            replace(f, "tokens", t.reshape(t.shape[0], 4, 6))
        elif kind == "short_labels":
            replace(f, "labels", f["labels"][...][:-1])
        elif kind == "label_range":
            f["labels"][0] = 7
        elif kind == "token_range":
            f["tokens"][0, 0] = 999999
        elif kind == "int_vocab":
            replace(f, "vocab", np.arange(len(f["vocab"]), dtype="int32"))
        elif kind == "no_vocab":
            del f["vocab"]
        elif kind == "string_n_classes":
            del f.attrs["n_classes"]
            f.attrs["n_classes"] = "three"
        elif kind == "huge_tokens":  # a few KB on disk, 2^40 rows claimed (chunks never written)
            del f["tokens"]
            f.create_dataset("tokens", shape=(2 ** 40, f.attrs["max_len"]), dtype="int32", chunks=(1, 24))
        elif kind == "zero_rows":
            for k in ("tokens", "lengths", "labels", "source_line"):
                replace(f, k, f[k][...][:0])
        else:
            raise ValueError(kind)
    return lambda d: h5_variant(os.path.join(d, "bad.h5"), os.path.join(FIX["good"], "test.h5"), edit)


def files(**named):
    """Setup writing the given files (name with '__' for '.', e.g. train__csv) into the case directory."""
    def setup(d):
        for name, data in named.items():
            write(os.path.join(d, name.replace("__", ".")), data)
    return setup


def config(text, name="c.ini"):
    return lambda d: write(os.path.join(d, name), text)


def links(d):
    """loop.h5 -> loop2.h5 -> loop.h5 (a symbolic link loop), gone.h5 -> missing.h5 (dangling), adir.h5/ (a
    directory)."""
    os.symlink("loop2.h5", os.path.join(d, "loop.h5"))
    os.symlink("loop.h5", os.path.join(d, "loop2.h5"))
    os.symlink("missing.h5", os.path.join(d, "gone.h5"))
    os.mkdir(os.path.join(d, "adir.h5"))


def copy_ckpt_truncated(with_digest):
    """The model's checkpoint cut to 3000 bytes: alone (bad.h5), or in a copy of its directory with the
    digest file beside it (ck/<name>), whatever the digest file is called."""
    def setup(d):
        if with_digest:
            shutil.copytree(os.path.dirname(FIX["ckpt"]), os.path.join(d, "ck"))
            path = os.path.join(d, "ck", os.path.basename(FIX["ckpt"]))
        else:
            path = os.path.join(d, "bad.h5")
            shutil.copy(FIX["ckpt"], path)
        with open(path, "r+b") as f:
            f.truncate(3000)
    return setup


PREP_OUT = ["out/train.h5", "out/test.h5", "out/valid.h5", "out/*.staged.*", "out/*.tmp*"]
TINY_CFG = "{tiny_ini}"
TRAIN_OK = ["--set", "data.train={good}/train.h5", "--set", "data.test=", "--set", "train.steps=3", "--set",
            "train.warmup=1", "--set", "run.dir=run", "--quiet"]


def check_bom(rc, err, d):
    """A UTF-8 byte-order mark: stripped (labels 1, 2 read as integers) or refused naming it."""
    if rc == 1 and re.search(r"byte.order mark|BOM", err):
        return None
    if rc != 0:
        return "exit %d without naming the byte-order mark: %s" % (rc, err.strip())
    with h5py.File(os.path.join(d, "out", "train.h5"), "r") as f:
        names = [s.decode() if isinstance(s, bytes) else s for s in f["label_names"][...]]
    if names != ["1", "2"]:
        return "the byte-order mark became part of a label: label_names %r" % names
    return None


def check_prepared(rc, err, d):
    return None if os.path.exists(os.path.join(d, "out", "train.h5")) else "out/train.h5 was not written"


BIG_WORD = "x" * (5 << 20)
BIG_LINE = "word " * (1 << 20)

# ---- the table ----------------------------------------------------------------------------------------------
# name, setup(dir), argv, exit status, words that stderr must contain, paths (globs) that must not exist,
# optional: check(rc, stderr, dir) -> error or None; known_bug: the report's description.
CASES = [
    # -- text datasets (prepare) --
    dict(name="csv_wrong_column_count", setup=files(a__csv='"a","x y"\n"b","one","two"\n'),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["a.csv:2", "expected 2 columns, found 3"], absent=PREP_OUT),
    dict(name="csv_one_column", setup=files(a__csv='"a"\n"b"\n'),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["a.csv:1", "at least 2 columns"], absent=PREP_OUT),
    dict(name="csv_bad_quoting", setup=files(a__csv='"a","x"\n"b",c"d"\n'),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["a.csv:2", "malformed CSV quoting"], absent=PREP_OUT),
    dict(name="csv_quote_left_open", setup=files(a__csv='"a","x"\n"b","left open\n"c","y"\n"a","z"\n'),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["a.csv:2: malformed CSV quoting", "breaks on line 3", "lines 2-3"], absent=PREP_OUT),
    dict(name="csv_unterminated_quote", setup=files(a__csv='"a","ok"\n"b","never closed\nmore\n'),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["a.csv:2", "unterminated quoted field"], absent=PREP_OUT),
    dict(name="tsv_without_tab", setup=files(a__tsv="food\tsoup\ntech phone\n"),
         argv=["prepare", "--train", "a.tsv", "--test", "a.tsv", "--out", "out"], rc=1,
         words=["a.tsv:2", "no tab"], absent=PREP_OUT),
    dict(name="csv_empty_label", setup=files(a__csv='"a","x"\n"","y"\n'),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["a.csv:2", "empty label"], absent=PREP_OUT),
    dict(name="label_unseen_in_training", setup=files(tr__csv='"food","soup"\n"tech","phone"\n',
                                                      te__csv='"food","soup"\n"eggs","bacon"\n'),
         argv=["prepare", "--train", "tr.csv", "--test", "te.csv", "--out", "out"], rc=1,
         words=["te.csv:2", "'eggs'", "never occurs in the training file"], absent=PREP_OUT),
    dict(name="integer_label_out_of_range", setup=files(tr__csv="1,a\n2,b\n", te__csv="1,a\n3,b\n"),
         argv=["prepare", "--train", "tr.csv", "--test", "te.csv", "--out", "out"], rc=1,
         words=["te.csv:2", "'3'", "[1, 2]"], absent=PREP_OUT),
    dict(name="negative_label", setup=files(a__csv="1,x\n-1,y\n"),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["a.csv:2", "'-1'", "negative"], absent=PREP_OUT),
    dict(name="integer_labels_start_at_5", setup=files(a__csv="5,x\n6,y\n"),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["a.csv:1", "smallest integer label", "'5'"], absent=PREP_OUT),
    dict(name="too_many_classes", setup=files(a__csv="1,x\n9999999,y\n"),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["a.csv:2", "'9999999'", "at most 100000 classes"], absent=PREP_OUT),
    dict(name="invalid_utf8_text", setup=files(a__csv=b'"a","ok"\n"b","bad \xff x"\n'),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["a.csv:2", "invalid UTF-8 in the text", "0xFF", "offset 4"], absent=PREP_OUT),
    dict(name="overlong_utf8_label", setup=files(a__csv=b'"a","ok"\n"\xc0\x80","x"\n'),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["a.csv:2", "invalid UTF-8 in the label", "0xC0"], absent=PREP_OUT),
    dict(name="utf16_surrogate_in_test_file", setup=files(tr__csv='"a","x"\n', te__csv=b'"a","x \xed\xa0\x80"\n'),
         argv=["prepare", "--train", "tr.csv", "--test", "te.csv", "--out", "out"], rc=1,
         words=["te.csv:1", "invalid UTF-8", "0xED"], absent=PREP_OUT),
    dict(name="nul_byte_in_label", setup=files(a__tsv=b"a\tx\n\x00b\ty\n"),
         argv=["prepare", "--train", "a.tsv", "--test", "a.tsv", "--out", "out"], rc=1,
         words=["a.tsv:2", "NUL"], absent=PREP_OUT),
    dict(name="empty_file", setup=files(e__csv="", a__csv='"a","x"\n'),
         argv=["prepare", "--train", "e.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["e.csv", "no rows"], absent=PREP_OUT),
    dict(name="header_only", setup=files(a__csv="label,text\n"),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out", "--header"], rc=1,
         words=["a.csv", "no rows"], absent=PREP_OUT),
    dict(name="every_row_bad_skipped", setup=files(a__csv=b'"a"\n"b"\n', ok__csv='"a","x"\n'),
         argv=["prepare", "--train", "a.csv", "--test", "ok.csv", "--out", "out", "--skip-bad-rows"], rc=1,
         words=["a.csv", "no rows", "every row was bad"], absent=PREP_OUT),
    dict(name="enormous_single_field_5MB", setup=files(a__csv='"food","%s"\n"tech","phone"\n' % BIG_WORD),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=0, words=["prepared out"],
         absent=["out/*.staged.*"], check=check_prepared, timeout=15,
         known_bug="(sanitizer builds) libcsv grows its field buffer 128 bytes at a time: quadratic copying "
                   "where realloc cannot grow in place (1 MB: 5 s, 2 MB: 28 s under ASan)" if SANITIZED else None),
    dict(name="enormous_tsv_line_5MB", setup=files(a__tsv="food\t%s\ntech\tphone\n" % BIG_LINE),
         argv=["prepare", "--train", "a.tsv", "--test", "a.tsv", "--out", "out"], rc=0,
         words=["1 truncated to 64 tokens"], absent=["out/*.staged.*"], check=check_prepared),
    dict(name="directory_as_text_file", setup=lambda d: os.makedirs(os.path.join(d, "dir.csv")),
         argv=["prepare", "--train", "dir.csv", "--test", "dir.csv", "--out", "out"], rc=1,
         words=["dir.csv", "directory"], absent=PREP_OUT),
    dict(name="out_is_a_file", setup=files(a__csv='"a","x"\n', out="not a directory\n"),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=1,
         words=["'out'", "not a directory"]),
    dict(name="valid_fraction_leaves_no_valid_rows", setup=files(a__csv='"a","x"\n"b","y"\n'),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out", "--valid-fraction", "0.01"], rc=1,
         words=["a.csv", "validation split", "--valid-fraction"], absent=PREP_OUT),
    dict(name="rename_fails_midway", setup=lambda d: os.makedirs(os.path.join(d, "out", "test.h5")),
         argv=["prepare", "--train", "{tiny_train}", "--test", "{tiny_test}", "--out", "out"], rc=1,
         words=["out/test.h5", "not a regular file"], absent=["out/train.h5", "out/*.staged.*"]),
    dict(name="utf8_byte_order_mark", setup=files(a__csv=b"\xef\xbb\xbf1,soup\n2,bread\n"),
         argv=["prepare", "--train", "a.csv", "--test", "a.csv", "--out", "out"], rc=(0, 1), words=[],
         absent=["out/*.staged.*"], check=check_bom),

    # -- prepared .h5 datasets (eval and train) --
    dict(name="h5_tokens_float", setup=h5_files("float_tokens"),
         argv=["eval", "--checkpoint", "{ckpt}", "--data", "bad.h5", "--records", "rec.h5"], rc=1,
         words=["bad.h5", "/tokens", "wrong type", "int32"], absent=["rec.h5"]),
    dict(name="h5_tokens_wrong_width", setup=h5_files("wide_tokens"),
         argv=["eval", "--checkpoint", "{ckpt}", "--data", "bad.h5", "--records", "rec.h5"], rc=1,
         words=["bad.h5", "/tokens", "[160, 25]", "max_len"], absent=["rec.h5"]),
    dict(name="h5_tokens_rank3", setup=h5_files("rank3_tokens"),
         argv=["eval", "--checkpoint", "{ckpt}", "--data", "bad.h5"], rc=1, words=["bad.h5", "/tokens", "rank 3"]),
    dict(name="h5_labels_short", setup=h5_files("short_labels"),
         argv=["eval", "--checkpoint", "{ckpt}", "--data", "bad.h5"], rc=1, words=["bad.h5", "/labels", "[159]", "[160]"]),
    dict(name="h5_label_out_of_range", setup=h5_files("label_range"),
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--set", "data.train=bad.h5"], rc=1,
         words=["bad.h5", "/labels[0] = 7", "[0, 3)"], absent=["run"]),
    dict(name="h5_token_id_out_of_range", setup=h5_files("token_range"),
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--set", "data.train=bad.h5"], rc=1,
         words=["bad.h5", "/tokens[0, 0] = 999999"], absent=["run"]),
    dict(name="h5_vocab_not_strings", setup=h5_files("int_vocab"),
         argv=["eval", "--checkpoint", "{ckpt}", "--data", "bad.h5"], rc=1, words=["bad.h5", "/vocab", "string"]),
    dict(name="h5_vocab_missing", setup=h5_files("no_vocab"),
         argv=["eval", "--checkpoint", "{ckpt}", "--data", "bad.h5"], rc=1, words=["bad.h5", "missing", "/vocab"]),
    dict(name="h5_n_classes_not_integer", setup=h5_files("string_n_classes"),
         argv=["eval", "--checkpoint", "{ckpt}", "--data", "bad.h5"], rc=1,
         words=["bad.h5", "n_classes", "integer"]),
    dict(name="h5_huge_shape", setup=h5_files("huge_tokens"),
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--set", "data.train=bad.h5"], rc=1,
         words=["bad.h5", "/tokens", "damaged file"], absent=["run"]),
    dict(name="h5_zero_rows_train", setup=h5_files("zero_rows"),
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--set", "data.train=bad.h5"], rc=1,
         words=["bad.h5", "0 rows"], absent=["run"]),
    dict(name="h5_zero_rows_eval", setup=h5_files("zero_rows"),
         argv=["eval", "--checkpoint", "{ckpt}", "--data", "bad.h5"], rc=1, words=["bad.h5", "0 rows"]),
    dict(name="text_file_as_dataset_train", setup=files(a__csv='"a","x"\n'),
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--set", "data.train=a.csv"], rc=1,
         words=["a.csv", "not an HDF5 file", "no HDF5 signature"], absent=["run"]),
    dict(name="text_file_as_dataset_eval", setup=files(a__h5="just text\n"),
         argv=["eval", "--checkpoint", "{ckpt}", "--data", "a.h5", "--records", "rec.h5"], rc=1,
         words=["a.h5", "HDF5"], absent=["rec.h5"]),
    dict(name="dataset_symlink_loop", setup=links,
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--set", "data.train=loop.h5"], rc=1,
         words=["loop.h5", "a symbolic link loop"], absent=["run"]),
    dict(name="dataset_dangling_link", setup=links,
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--set", "data.train=gone.h5"], rc=1,
         words=["gone.h5", "a dangling symbolic link", "missing.h5"], absent=["run"]),
    dict(name="dataset_directory", setup=links,
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--set", "data.train=adir.h5"], rc=1,
         words=["adir.h5", "is a directory"], absent=["run"]),
    dict(name="checkpoint_symlink_loop_eval", setup=links,
         argv=["eval", "--checkpoint", "loop.h5", "--data", "{good}/test.h5"], rc=1,
         words=["loop.h5", "a symbolic link loop"]),
    dict(name="checkpoint_directory_eval", setup=links,
         argv=["eval", "--checkpoint", "adir.h5", "--data", "{good}/test.h5"], rc=1,
         words=["adir.h5", "is a directory"]),
    dict(name="config_symlink_loop", setup=links, argv=["train", "--config", "loop.h5"], rc=2,
         words=["config file", "loop.h5", "a symbolic link loop"]),
    dict(name="config_directory", setup=links, argv=["train", "--config", "adir.h5"], rc=2,
         words=["config file", "adir.h5", "is a directory"]),
    dict(name="csv_directory_prepare", setup=links,
         argv=["prepare", "--train", "adir.h5", "--test", "adir.h5", "--out", "o", "--format", "csv"], rc=1,
         words=["adir.h5", "is a directory"], absent=["o"]),
    dict(name="dataset_file_missing", setup=None,
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--set", "data.train=nothere.h5"], rc=1,
         words=["nothere.h5", "no such file"], absent=["run"]),

    # -- configurations --
    dict(name="config_unknown_key", setup=config("[data]\ntrain = x.h5\n[model]\nd_modl = 3\n"),
         argv=["train", "--config", "c.ini"], rc=2, words=["c.ini:4", "'model.d_modl'", "unknown key", "d_model"]),
    dict(name="config_unknown_section", setup=config("[bogus]\nx = 1\n"),
         argv=["train", "--config", "c.ini"], rc=2, words=["c.ini:2", "[bogus]", "sections:"]),
    dict(name="config_wrong_type", setup=config("[model]\nd_model = abc\n"),
         argv=["train", "--config", "c.ini"], rc=2, words=["c.ini:2", "model.d_model", "expected an integer", "'abc'"]),
    dict(name="config_out_of_range", setup=config("[train]\nlr = 0\n"),
         argv=["train", "--config", "c.ini"], rc=2, words=["c.ini:2", "train.lr", "out of range", "(0, 1]"]),
    dict(name="config_bad_enum", setup=config("[explore]\nshape = step\n"),
         argv=["train", "--config", "c.ini"], rc=2,
         words=["c.ini:2", "explore.shape", "linear, cosine, exponential, adaptive", "'step'"]),
    dict(name="config_nan", setup=config("[train]\nlr = nan\n"),
         argv=["train", "--config", "c.ini"], rc=2, words=["c.ini:2", "train.lr", "expected a number"]),
    dict(name="config_syntax_error", setup=config("; ok\n[data\ntrain = x\n"),
         argv=["train", "--config", "c.ini"], rc=2, words=["c.ini:2", "syntax error"]),
    dict(name="config_line_too_long", setup=config("[data]\ntrain = %s\n" % ("a" * 2000)),
         argv=["train", "--config", "c.ini"], rc=2, words=["c.ini:2", "longer than"]),
    dict(name="config_file_missing", setup=None, argv=["train", "--config", "missing.ini"], rc=2,
         words=["config file", "missing.ini", "no such file"]),
    dict(name="config_is_binary", setup=lambda d: shutil.copy(FIX["ckpt"], os.path.join(d, "c.ini")),
         argv=["train", "--config", "c.ini"], rc=2, words=["c.ini:1", "syntax error"]),
    dict(name="config_cross_field", setup=config("[data]\ntrain = x.h5\n[model]\nd_model = 30\n"),
         argv=["train", "--config", "c.ini"], rc=2, words=["model.d_model (30)", "model.n_heads (4)"]),
    dict(name="config_data_train_unset", setup=config("[model]\nd_model = 32\n"),
         argv=["train", "--config", "c.ini"], rc=2, words=["data.train is not set"]),
    dict(name="set_without_equals", setup=None, argv=["train", "--config", TINY_CFG, "--set", "train.lr"], rc=2,
         words=["--set train.lr", "section.key=value"]),
    dict(name="set_wrong_type", setup=None, argv=["train", "--config", TINY_CFG, "--set", "train.steps=x"], rc=2,
         words=["--set train.steps=x", "train.steps", "expected an integer"]),
    dict(name="set_key_without_section", setup=None, argv=["train", "--config", TINY_CFG, "--set", "steps=5"], rc=2,
         words=["--set steps=5", "'steps'", "section"]),
    dict(name="set_negative_seed", setup=None, argv=["train", "--config", TINY_CFG, "--set", "train.seed=-1"], rc=2,
         words=["train.seed", "non-negative", "'-1'"]),

    # -- command lines --
    dict(name="no_command", setup=None, argv=[], rc=2, words=["usage"]),
    dict(name="unknown_command", setup=None, argv=["frobnicate"], rc=2, words=["unknown command", "'frobnicate'"]),
    dict(name="prepare_unknown_flag", setup=None, argv=["prepare", "--bogus"], rc=2, words=["prepare", "'--bogus'"]),
    dict(name="prepare_missing_out", setup=None, argv=["prepare", "--train", "a.csv", "--test", "b.csv"], rc=2,
         words=["missing --out"]),
    dict(name="prepare_missing_value", setup=None,
         argv=["prepare", "--train", "a.csv", "--test", "b.csv", "--out", "o", "--max-len"], rc=2,
         words=["--max-len", "missing value"]),
    dict(name="prepare_bad_number", setup=None,
         argv=["prepare", "--train", "a.csv", "--test", "b.csv", "--out", "o", "--max-len", "0"], rc=2,
         words=["--max-len", "[1, 65536]", "'0'"]),
    dict(name="prepare_unknown_extension", setup=None, argv=["prepare", "--train", "a.dat", "--test", "b.csv",
                                                             "--out", "o"], rc=2, words=["'a.dat'", "--format"]),
    dict(name="prepare_flag_value_on_switch", setup=None, argv=["prepare", "--header=1"], rc=2,
         words=["--header", "takes no value"]),
    dict(name="train_unknown_flag", setup=None, argv=["train", "--bogus"], rc=2, words=["'--bogus'"]),
    dict(name="train_missing_config", setup=None, argv=["train"], rc=2, words=["--config FILE is required"]),
    dict(name="train_config_without_value", setup=None, argv=["train", "--config"], rc=2, words=["--config", "FILE"]),
    dict(name="train_resume_without_value", setup=None, argv=["train", "--config", TINY_CFG, "--resume"], rc=2,
         words=["--resume", "auto"]),
    dict(name="eval_missing_data", setup=None, argv=["eval", "--checkpoint", "{ckpt}"], rc=2,
         words=["--data", "required"]),
    dict(name="eval_unknown_flag", setup=None, argv=["eval", "--bogus"], rc=2, words=["'--bogus'"]),
    dict(name="eval_bad_batch", setup=None, argv=["eval", "--checkpoint", "a", "--data", "b", "--batch", "0"], rc=2,
         words=["--batch", "'0'"]),

    # -- checkpoints --
    dict(name="eval_other_models_checkpoint", setup=None,
         argv=["eval", "--checkpoint", "{ckpt_other}", "--data", "{good}/test.h5", "--records", "rec.h5"], rc=1,
         words=["test.h5", "step-", "vocabulary"], absent=["rec.h5"]),
    dict(name="eval_dataset_other_vocabulary", setup=None,
         argv=["eval", "--checkpoint", "{ckpt}", "--data", "{smallvocab}/test.h5", "--records", "rec.h5"], rc=1,
         words=["smallvocab/test.h5", "vocabulary"], absent=["rec.h5"]),
    dict(name="eval_dataset_other_max_len", setup=None,
         argv=["eval", "--checkpoint", "{ckpt}", "--data", "{len16}/test.h5"], rc=1, words=["len16/test.h5", "max_len"]),
    dict(name="eval_truncated_checkpoint", setup=copy_ckpt_truncated(False),
         argv=["eval", "--checkpoint", "bad.h5", "--data", "{good}/test.h5", "--records", "rec.h5"], rc=1,
         words=["bad.h5", "HDF5"], absent=["rec.h5"]),
    dict(name="eval_truncated_checkpoint_with_digest", setup=copy_ckpt_truncated(True),
         argv=["eval", "--checkpoint", "ck/" + "{ckpt_base}", "--data", "{good}/test.h5"], rc=1,
         words=["{ckpt_base}", "corrupt"]),
    dict(name="eval_text_file_as_checkpoint", setup=files(c__h5="not a checkpoint\n"),
         argv=["eval", "--checkpoint", "c.h5", "--data", "{good}/test.h5"], rc=1, words=["c.h5", "not an HDF5 file"]),
    dict(name="eval_dataset_as_checkpoint", setup=None,
         argv=["eval", "--checkpoint", "{good}/test.h5", "--data", "{good}/test.h5"], rc=1,
         words=["test.h5", "not a budgetformer checkpoint"]),
    dict(name="resume_other_models_checkpoint", setup=None,
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--set", "model.d_model=32", "--resume", "{ckpt}"], rc=1,
         words=["model.d_model = 32", "16", "step-"], absent=["run"]),
    dict(name="resume_text_file", setup=files(c__h5="not a checkpoint\n"),
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--resume", "c.h5"], rc=1, words=["c.h5"], absent=["run"]),
    dict(name="resume_dataset_other_vocabulary", setup=None,
         argv=["train", "--config", TINY_CFG] + TRAIN_OK + ["--set", "data.train={smallvocab}/train.h5", "--resume",
                                                            "{ckpt}"], rc=1,
         words=["smallvocab/train.h5", "vocab", "step-"], absent=["run"]),
]



def expand(s):
    return s.format(**FIX, ckpt_base=os.path.basename(FIX["ckpt"]))


def run_case(c):
    d = os.path.join(WORK, c["name"])
    os.makedirs(d)
    if c.get("setup"):
        c["setup"](d)
    args = [expand(a) for a in c["argv"]]
    try:
        rc, out, err, secs = run(args, d, c.get("timeout", 60))
    except subprocess.TimeoutExpired:
        return ["timed out (a hang?)"], 0.0
    problems = []
    if rc < 0:
        problems.append("killed by signal %d" % -rc)
    want = c["rc"] if isinstance(c["rc"], tuple) else (c["rc"],)
    if rc not in want:
        problems.append("exit status %d, expected %s" % (rc, " or ".join(map(str, want))))
    for w in c.get("words", []):
        w = expand(w)
        if w not in err:
            problems.append("stderr lacks %r" % w)
    for pat, what in CRASH_PATTERNS:
        m = pat.search(err)
        if m:
            problems.append("%s: %r" % (what, err[max(0, m.start() - 80):m.end() + 40].strip()))
    for a in c.get("absent", []):
        left = glob.glob(os.path.join(d, a))
        if left:
            problems.append("left behind: %s" % ", ".join(os.path.relpath(p, d) for p in left))
    if c.get("check") and not problems:
        msg = c["check"](rc, err, d)
        if msg:
            problems.append(msg)
    if problems:
        first = err.strip().splitlines()
        problems.append("stderr: %s" % (first[-1] if first else "(empty)"))
    return problems, secs


def main():
    if not os.path.exists(EXE):
        sys.exit("bad_inputs: BF_EXE=%s does not exist" % EXE)
    t0 = time.time()
    setup_fixtures()
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    failed = known = fixed = 0
    for c in CASES:
        problems, secs = run_case(c)
        bug = c.get("known_bug")
        if problems and bug and not STRICT:
            known += 1
            print("KNOWN-BUG %-40s %s | %s" % (c["name"], bug, "; ".join(problems)))
        elif problems:
            failed += 1
            print("FAIL      %-40s %s" % (c["name"], "; ".join(problems)))
        elif bug:
            fixed += 1
            print("FIXED     %-40s passes now: remove its known_bug marker" % c["name"])
        else:
            print("ok        %-40s exit %s, %.2fs" % (c["name"], c["rc"], secs))
        sys.stdout.flush()
    print("bad_inputs: %d cases, %d failed, %d known bugs, %d fixed, %.1f s" %
          (len(CASES), failed, known, fixed, time.time() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
