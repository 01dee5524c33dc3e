"""Extending a finished run to more steps keeps every input in the /heads records.

A tiny run (heads.every = 7) finishes at train.steps = 20, off the heads.every grid, so its last /heads record
(step 20) covers updates 15..20 only. `train --set train.steps=30 --resume auto` then goes on to 30:
  - the checkpoint of step 20 keeps the counts of that last interval, the resume drops the early record, and
    the extended run's /heads/step, count and class_count equal those of a run trained to 30 at once;
  - with a step-20 checkpoint as an older build wrote it (the counts reset after the last record, an all-zero
    /headstats/block), the record at step 20 stays and the next one counts from update 21: every input of
    the 30 updates is counted exactly once, nothing twice.
The data order does not depend on train.steps, so counts by class match too."""
import hashlib
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, check, finish, prepare, run, train_args, work_dir  # noqa: E402

BATCH = 16
SETS = ("heads.every=7", "checkpoint.every=10", "train.batch_size=%d" % BATCH)


def read_heads(path):
    with h5py.File(path, "r") as f:
        return {k: f["/heads/" + k][()] for k in ("step", "count", "class_count")}


def zero_headstats(ckpt):
    """Makes CKPT's /headstats/block all zero, as an older build saved it after its last record, and rewrites
    the checksum sidecar so the file is still valid."""
    with h5py.File(ckpt, "r+") as f:
        f["/headstats/block"][...] = 0
    with open(ckpt, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    d, name = os.path.split(ckpt)
    with open(os.path.join(d, "." + name + ".sha256"), "w") as fh:
        fh.write("%s  %s\n" % (digest, name))


def main():
    work = work_dir("test_heads_extend")
    data = prepare(work)
    full = os.path.join(work, "full")
    run([EXE] + train_args(data, full, *SETS, "train.steps=30"))
    ref = read_heads(os.path.join(full, "log.h5"))
    check("the uninterrupted run records at 7, 14, 21, 28 and 30",
          ref["step"].tolist() == [7, 14, 21, 28, 30], str(ref["step"]))

    ext = os.path.join(work, "extended")
    run([EXE] + train_args(data, ext, *SETS, "train.steps=20"))
    first = read_heads(os.path.join(ext, "log.h5"))
    check("the 20-step run's last record is at 20 and counts updates 15..20",
          first["step"].tolist() == [7, 14, 20] and first["count"][-1] == 6 * BATCH, str(first))
    with h5py.File(os.path.join(ext, "checkpoints", "step-00000020.h5"), "r") as f:
        kept = int(f["/headstats/block"][0])
    check("its final checkpoint keeps the counts of that interval (%d inputs)" % (6 * BATCH), kept == 6 * BATCH,
          str(kept))
    p = run([EXE] + train_args(data, ext, *SETS, "train.steps=30") + ["--resume", "auto"])
    got = read_heads(os.path.join(ext, "log.h5"))
    for k in ("step", "count", "class_count"):
        check("extended to 30: /heads/%s = the uninterrupted run's" % k, np.array_equal(got[k], ref[k]),
              "%s vs %s\n%s" % (got[k].tolist(), ref[k].tolist(), p.stderr[-300:]))

    old = os.path.join(work, "older")
    run([EXE] + train_args(data, old, *SETS, "train.steps=20"))
    zero_headstats(os.path.join(old, "checkpoints", "step-00000020.h5"))
    run([EXE] + train_args(data, old, *SETS, "train.steps=30") + ["--resume", "auto"])
    got = read_heads(os.path.join(old, "log.h5"))
    check("an older final checkpoint: the record at 20 stays, the next counts from update 21",
          got["step"].tolist() == [7, 14, 20, 21, 28, 30] and
          got["count"].tolist() == [7 * BATCH, 7 * BATCH, 6 * BATCH, 1 * BATCH, 7 * BATCH, 2 * BATCH],
          "%s %s" % (got["step"].tolist(), got["count"].tolist()))
    check("an older final checkpoint: every input of the 30 updates counted once (class counts sum to the "
          "uninterrupted run's)", np.array_equal(got["class_count"].sum(axis=0), ref["class_count"].sum(axis=0)),
          "%s vs %s" % (got["class_count"].sum(axis=0), ref["class_count"].sum(axis=0)))
    finish(work)


if __name__ == "__main__":
    main()
