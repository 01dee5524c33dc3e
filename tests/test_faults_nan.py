"""Non-finite numbers: an update whose loss or gradient norm is not finite is skipped on every rank and counted
(log.h5 /metrics/skipped, the checkpoint's skipped_steps); train.max_nonfinite of them in a row stop the run
without saving the diverged state (docs/FAILURES.md). NaN comes from BF_FAULT=nan_at_step:N[:COUNT] (the
highest rank's loss and gradient are NaN at updates N .. N+COUNT-1).

Checks, each named in the output:
  nan_once      2 ranks, NaN at update 5 on rank 1 only: a warning, update 5 is skipped on both ranks (no trace
                line, no /metrics row; the weights of both ranks stay bitwise equal), /metrics/skipped is 0
                before and 1 from update 6 on, the final checkpoint says skipped_steps 1, exit status 0
  nan_short     1 rank, NaN at updates 25 and 26 with train.max_nonfinite = 3: both skipped, the run goes on
  nan_in_a_row  1 rank, NaN at updates 25, 26, 27 with train.max_nonfinite = 3 and checkpoints every 10: exit
                status 1 with a message naming train.max_nonfinite and the intact checkpoint; step-00000020.h5
                is the newest checkpoint, valid, with skipped_steps 0; nothing newer was written; --resume auto
                without the fault continues from it to the end
  bad_spec      a malformed BF_FAULT is refused with a message (exit status 1)
"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (EXE, MPIRUN2, check, checkpoint_names, finish, inspect, prepare, read_trace,  # noqa: E402
                    run, train_args, work_dir)

WORK = work_dir("faults_nan")


def part_once(data):
    run_dir = os.path.join(WORK, "once")
    trace = os.path.join(WORK, "t-once")
    p = run(MPIRUN2 + [EXE] + train_args(data, run_dir, "train.steps=40"),
            dict(os.environ, BF_FAULT="nan_at_step:5", BF_TRACE=trace))
    check("nan_once: a warning names update 5 and the run finishes (exit 0)",
          "step 5: non-finite loss or gradient norm; the update is skipped" in p.stderr and "test: accuracy" in p.stderr)
    lines = read_trace(trace, 2)
    steps = [int(l.split()[0]) for l in lines[0]]
    check("nan_once: update 5 is skipped on both ranks, whose weights stay bitwise equal",
          lines[0] == lines[1] and steps == [s for s in range(1, 41) if s != 5])
    with h5py.File(os.path.join(run_dir, "log.h5"), "r") as f:
        mstep, skipped = f["metrics/step"][()], f["metrics/skipped"][()] if "skipped" in f["metrics"] else None
    check("nan_once: log.h5 has no row for update 5 and /metrics/skipped counts it from update 6 on",
          skipped is not None and list(mstep) == steps and
          np.array_equal(skipped, (mstep > 5).astype(np.int64)), "skipped %s" % (skipped[:8],))
    j = inspect(os.path.join(run_dir, "checkpoints", "step-00000040.h5"))[1]
    check("nan_once: the final checkpoint says skipped_steps 1", j is not None and j["skipped_steps"] == 1)


def part_short(data):
    run_dir = os.path.join(WORK, "short")
    p = run([EXE] + train_args(data, run_dir, "train.steps=40", "train.max_nonfinite=3"),
            dict(os.environ, BF_FAULT="nan_at_step:25:2"))
    check("nan_short: two in a row (below train.max_nonfinite = 3) are skipped and training goes on",
          "(2 in a row, 2 in all)" in p.stderr and "2 steps were skipped" in p.stderr and "test: accuracy" in p.stderr)


def part_in_a_row(data):
    run_dir = os.path.join(WORK, "row")
    sets = ("train.steps=40", "train.max_nonfinite=3", "checkpoint.every=10")
    p = run([EXE] + train_args(data, run_dir, *sets), dict(os.environ, BF_FAULT="nan_at_step:25:3"), expect=1)
    err = p.stderr
    check("nan_in_a_row: exit status 1 with the message",
          "stopping at step 27: 3 updates in a row had a non-finite loss or gradient norm (train.max_nonfinite = 3"
          in err and "step-00000020.h5, is intact" in err, err.strip()[-500:])
    names = checkpoint_names(run_dir)
    j = inspect(os.path.join(run_dir, "checkpoints", "step-00000020.h5"))[1]
    check("nan_in_a_row: step-00000020.h5 is the newest checkpoint, valid, from before the NaN",
          names == ["step-00000010.h5", "step-00000020.h5"] and j is not None and
          j["checksum"]["status"] == "valid" and j["step"] == 20 and j["skipped_steps"] == 0, str(names))
    p = run([EXE] + train_args(data, run_dir, *sets) + ["--resume", "auto"])
    check("nan_in_a_row: --resume auto without the fault continues from step 20 to the end",
          "resuming from %s/checkpoints/step-00000020.h5" % run_dir in p.stderr and
          checkpoint_names(run_dir)[-1] == "step-00000040.h5")


def part_bad_spec(data):
    p = run([EXE] + train_args(data, os.path.join(WORK, "bad"), "train.steps=10"),
            dict(os.environ, BF_FAULT="nan_at_step:x"), expect=1)
    check("bad_spec: a malformed BF_FAULT is refused", "BF_FAULT: 'nan_at_step:x'" in p.stderr, p.stderr.strip())


def main():
    data = prepare(WORK)
    part_once(data)
    part_short(data)
    part_in_a_row(data)
    part_bad_spec(data)
    finish(WORK)


if __name__ == "__main__":
    main()
