"""Resuming from files written before the budget diagnostics existed.

A tiny run (heads.every = 7, checkpoint.every = 10) stops at update 20 (train.stop_at); then its files are
made to look like an older build's: the checkpoint's /headstats/block is cut to the counts in front of the
diagnostics (1 + C + 2 L H + C L H; its digest sidecar rewritten) and log.h5 loses /metrics/budget_lambda and
the /heads diagnostics histograms. `train --resume auto` to update 30 must:
  - `inspect --json` reads both the older and the current checkpoint;
  - accept the short block with a warning naming it, and keep its counts: /heads/count and class_count of
    every record equal those of an uninterrupted run;
  - start the diagnostics of the interpolated interval (updates 15..21) at the resume: the record at step 21
    counts 1 update x 16 inputs per layer, the later records their full intervals;
  - keep the old log's records: budget_lambda NaN and all-zero histograms for the rows and records read back
    (steps <= 20), real values after."""
import hashlib
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, check, finish, inspect, prepare, run, train_args, work_dir  # noqa: E402

L, H, C, BATCH = 2, 4, 3, 16
SETS = ("train.steps=30", "heads.every=7", "checkpoint.every=10", "train.batch_size=%d" % BATCH)


def read_log(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ("/heads/step", "/heads/count", "/heads/class_count", "/heads/khat_hist",
                                      "/heads/logit_hist", "/heads/mass_hist", "/metrics/step",
                                      "/metrics/budget_lambda")}


def main():
    work = work_dir("test_diagnostics_resume")
    data = prepare(work)
    full = os.path.join(work, "full")
    run([EXE] + train_args(data, full, *SETS))
    ref = read_log(os.path.join(full, "log.h5"))

    rd = os.path.join(work, "resumed")
    run([EXE] + train_args(data, rd, *SETS, "train.stop_at=20"))
    ckpt = os.path.join(rd, "checkpoints", "step-00000020.h5")
    legacy = 1 + C + 2 * L * H + C * L * H
    with h5py.File(ckpt, "r+") as f:
        block = f["/headstats/block"][()]
        check("the checkpoint's block holds the diagnostics after the %d older counts" % legacy,
              len(block) > legacy, str(len(block)))
        attrs = dict(f["/headstats/block"].attrs)
        del f["/headstats/block"]
        f["/headstats/block"] = block[:legacy]
        for k, v in attrs.items():
            f["/headstats/block"].attrs[k] = v
    with open(ckpt, "rb") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()
    with open(os.path.join(rd, "checkpoints", ".step-00000020.h5.sha256"), "w") as fh:
        fh.write("%s  step-00000020.h5\n" % digest)
    rc, j, err = inspect(ckpt)
    check("inspect --json reads the older checkpoint (checksum valid)", rc == 0 and j["checksum"]["status"] == "valid"
          and j["step"] == 20, err.strip()[-300:])
    rc, j, err = inspect(os.path.join(full, "checkpoints", "step-00000030.h5"))
    check("inspect --json reads a checkpoint with the diagnostics", rc == 0 and j["step"] == 30, err.strip()[-300:])
    with h5py.File(os.path.join(rd, "log.h5"), "r+") as f:
        for k in ("/metrics/budget_lambda", "/heads/logit_hist", "/heads/khat_hist", "/heads/mass_hist"):
            del f[k]

    p = run([EXE] + train_args(data, rd, *SETS) + ["--resume", "auto"])
    check("resume warns about the short /headstats/block", "without the budget diagnostics" in p.stderr and
          ckpt in p.stderr, p.stderr[-400:])
    got = read_log(os.path.join(rd, "log.h5"))
    for k in ("/heads/step", "/heads/count", "/heads/class_count", "/metrics/step"):
        check("resumed %s = uninterrupted run's" % k, np.array_equal(got[k], ref[k]), "%s vs %s" % (got[k], ref[k]))
    steps = got["/heads/step"]
    for k in ("/heads/khat_hist", "/heads/logit_hist", "/heads/mass_hist"):
        sums = got[k].sum(axis=2)  # [R, L]
        want = []
        for r, s in enumerate(steps):
            prev = steps[r - 1] if r else 0
            want.append(0 if s <= 20 else (s - max(prev, 20)) * BATCH)
        check("%s: records read back are zero, the resumed interval counts from update 21, later ones in full "
              "(%s)" % (k, want), np.array_equal(sums, np.repeat(np.array(want)[:, None], L, axis=1)),
              str(sums.tolist()))
    lam, ms = got["/metrics/budget_lambda"], got["/metrics/step"]
    check("budget_lambda: NaN for the rows read back, the run's lambda after",
          np.all(np.isnan(lam[ms <= 20])) and np.allclose(lam[ms > 20], 0.05), str(lam))
    finish(work)


if __name__ == "__main__":
    main()
