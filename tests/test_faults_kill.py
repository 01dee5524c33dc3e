"""Killed processes: a rank killed with SIGKILL ends the whole job in bounded time, and a process killed at any
point of a checkpoint save leaves the previous checkpoints valid; --resume auto continues from the newest
valid one (docs/FAILURES.md).

Checks, each named in the output:
  rank_sigkill   2 ranks under mpirun, checkpoint every 50 updates: SIGKILL to rank 1 after a few checkpoints
                 ends the job (mpirun exits non-zero) within 60 s; every committed checkpoint is valid
                 (inspect --json) and --resume auto on 2 ranks continues from the newest one
  crash_PHASE    1 rank, checkpoints every 10 updates; BF_FAULT=crash_in_save:PHASE:20 kills the process
                 (SIGKILL) at that point of the save of update 20, for PHASE = before_data, mid_data,
                 before_rename, after_rename: every step-*.h5 left is valid; --resume auto resumes from step 10
                 (or 20 after the rename) and the continued run's log.h5 /metrics/loss over updates 1..30 is
                 bitwise that of an uninterrupted run; the leftovers of the killed save are gone afterwards
  crash_2ranks   the same crash (mid_data) on rank 0 of a 2-rank job ends the job within 60 s; resume works
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (EXE, MPIRUN2, TIMEOUT, check, checkpoint_files, checkpoint_names, finish, log_loss,  # noqa: E402
                    prepare, run, sanitizer_clean, train_args, valid_steps, work_dir)

BOUND = 60  # seconds within which a job with a dead rank must have ended
WORK = work_dir("faults_kill")


def all_valid(run_dir):
    """(every step-*.h5 valid, their steps, details)."""
    steps, bad = valid_steps(run_dir, why=True)
    return not bad and bool(steps), steps, "; ".join(bad)


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


def rank_pid(mpirun_pid, rank):
    for c in children(mpirun_pid):
        try:
            with open("/proc/%d/environ" % c, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if ("OMPI_COMM_WORLD_RANK=%d" % rank).encode() in env:
            return c
    return None


def part_rank_sigkill(data):
    run_dir = os.path.join(WORK, "killed")
    log = open(os.path.join(WORK, "killed.out"), "w+")
    p = subprocess.Popen(MPIRUN2 + [EXE] + train_args(data, run_dir, "train.steps=100000", "checkpoint.every=50",
                                                     "checkpoint.keep=100", "train.log_every=50"),
                         stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and p.poll() is None and len(checkpoint_names(run_dir)) < 3:
        time.sleep(0.05)
    victim = rank_pid(p.pid, 1)
    if p.poll() is not None or victim is None:
        p.kill()
        p.wait()
        log.seek(0)
        check("rank_sigkill", False, "no rank 1 to kill (mpirun %s): %s" % (p.poll(), log.read()[-1500:]))
        return
    t0 = time.time()
    os.kill(victim, signal.SIGKILL)
    try:
        rc = p.wait(timeout=BOUND)
        took = time.time() - t0
    except subprocess.TimeoutExpired:
        p.kill()
        rc, took = p.wait(), None
    log.seek(0)
    out = log.read()
    check("rank_sigkill: the job ends after SIGKILL of rank 1", took is not None and rc != 0,
          "mpirun exit %s after %s s" % (rc, "%.1f" % took if took is not None else "more than %d" % BOUND))
    ok, steps, bad = all_valid(run_dir)
    check("rank_sigkill: every committed checkpoint is valid", ok, "steps %s %s" % (steps, bad))
    if not steps:
        return
    newest = max(steps)
    p = run(MPIRUN2 + [EXE] + train_args(data, run_dir, "train.steps=100000", "train.stop_at=%d" % (newest + 10),
                                         "train.log_every=50") + ["--resume", "auto"])
    check("rank_sigkill: --resume auto continues from the newest checkpoint (step %d)" % newest,
          "resuming from %s/checkpoints/step-%08d.h5" % (run_dir, newest) in p.stderr)
    check("rank_sigkill: no sanitizer report", sanitizer_clean(out))


def part_crash(data, phase, reference, mpi=False):
    name = "crash_2ranks" if mpi else "crash_" + phase
    run_dir = os.path.join(WORK, name)
    sets = ("train.steps=30", "checkpoint.every=10", "checkpoint.keep=5")
    env = dict(os.environ, BF_FAULT="crash_in_save:%s:20" % phase)
    t0 = time.time()
    p = run((MPIRUN2 if mpi else []) + [EXE] + train_args(data, run_dir, *sets), env, expect=None)
    took = time.time() - t0
    killed = p.returncode != 0 if mpi else p.returncode == -signal.SIGKILL
    check("%s: the process is killed in the save of update 20" % name,
          killed and "BF_FAULT: killing this process" in p.stderr and took < BOUND + 30,
          "exit %s after %.1f s" % (p.returncode, took))
    files = checkpoint_files(run_dir)
    ok, steps, bad = all_valid(run_dir)
    want = [10, 20] if phase == "after_rename" else [10]
    check("%s: every step-*.h5 left is valid: steps %s" % (name, want), ok and steps == want,
          "files %s %s" % (files, bad))
    p = run((MPIRUN2 if mpi else []) + [EXE] + train_args(data, run_dir, *sets) + ["--resume", "auto"])
    resumed = "resuming from %s/checkpoints/step-%08d.h5" % (run_dir, want[-1]) in p.stderr
    check("%s: --resume auto resumes from step %d" % (name, want[-1]), resumed, "" if resumed else p.stderr[-800:])
    sa, la = log_loss(reference)
    sb, lb = log_loss(run_dir)
    check("%s: the continued run's /metrics/loss is bitwise the uninterrupted run's" % name,
          np.array_equal(sa, sb) and np.array_equal(la.view(np.uint32), lb.view(np.uint32)))
    left = [n for n in checkpoint_files(run_dir) if n.endswith(".tmp")]
    check("%s: no temporary file of the killed save is left" % name, not left, str(left))


def main():
    data = prepare(WORK)
    part_rank_sigkill(data)
    reference = os.path.join(WORK, "reference")
    run([EXE] + train_args(data, reference, "train.steps=30", "checkpoint.every=10"))
    for phase in ("before_data", "mid_data", "before_rename", "after_rename"):
        part_crash(data, phase, reference)
    reference2 = os.path.join(WORK, "reference2")
    run(MPIRUN2 + [EXE] + train_args(data, reference2, "train.steps=30", "checkpoint.every=10"))
    part_crash(data, "mid_data", reference2, mpi=True)
    finish(WORK)


if __name__ == "__main__":
    main()
