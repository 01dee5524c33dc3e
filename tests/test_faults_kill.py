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
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

EXE = os.environ["BF_EXE"]
SRC = os.environ["BF_SOURCE_DIR"]
WORK_ROOT = os.environ.get("BF_WORK", tempfile.gettempdir())
CONFIG = os.path.join(SRC, "configs", "tiny.ini")
TIMEOUT = 240
BOUND = 60  # seconds within which a job with a dead rank must have ended

os.makedirs(WORK_ROOT, exist_ok=True)
WORK = tempfile.mkdtemp(prefix="faults_kill-", dir=WORK_ROOT)
failures = []


def check(name, ok, detail=""):
    show = detail and (not ok or len(detail) < 160)  # long details (stderr) only for a failure
    print(("ok   " if ok else "FAIL ") + name + (": " + detail if show else ""), flush=True)
    if not ok:
        failures.append(name)
    return ok


def sanitizer_clean(text):
    return "runtime error:" not in text and "Sanitizer" not in text


def run(cmd, env=None, expect=0):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT)
    if (expect is not None and p.returncode != expect) or not sanitizer_clean(p.stderr):
        sys.exit("command exited %d (expected %s): %s\n%s\n%s" % (p.returncode, expect, " ".join(cmd), p.stdout,
                                                                  p.stderr))
    return p


def prepare():
    data = os.path.join(WORK, "data")
    tiny = os.path.join(SRC, "tests", "data", "tiny")
    run([EXE, "prepare", "--train", os.path.join(tiny, "train.csv"), "--test", os.path.join(tiny, "test.csv"),
         "--out", data, "--max-len", "24"])
    return data


def train_args(data, run_dir, *sets):
    args = ["train", "--config", CONFIG]
    for s in ("data.train=%s/train.h5" % data, "data.test=%s/test.h5" % data, "run.dir=" + run_dir) + sets:
        args += ["--set", s]
    return args


MPIRUN2 = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none"]


def checkpoint_files(run_dir):
    d = os.path.join(run_dir, "checkpoints")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def all_valid(run_dir):
    """(every step-*.h5 valid, their steps, details)."""
    steps, bad = [], []
    for n in checkpoint_files(run_dir):
        if not n.startswith("step-"):
            continue
        p = subprocess.run([EXE, "inspect", "--json", os.path.join(run_dir, "checkpoints", n)], capture_output=True,
                           text=True, timeout=TIMEOUT)
        ok = p.returncode == 0 and json.loads(p.stdout)["checksum"]["status"] == "valid"
        (steps if ok else bad).append(int(n[5:13]) if ok else n + ": " + p.stderr.strip())
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


def log_loss(run_dir):
    with h5py.File(os.path.join(run_dir, "log.h5"), "r") as f:
        return f["metrics/step"][()], f["metrics/loss"][()]


def part_rank_sigkill(data):
    run_dir = os.path.join(WORK, "killed")
    log = open(os.path.join(WORK, "killed.out"), "w+")
    p = subprocess.Popen(MPIRUN2 + [EXE] + train_args(data, run_dir, "train.steps=100000", "checkpoint.every=50",
                                                     "checkpoint.keep=100", "train.log_every=50"),
                         stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and p.poll() is None and len([n for n in checkpoint_files(run_dir)
                                                               if n.startswith("step-")]) < 3:
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
    data = prepare()
    part_rank_sigkill(data)
    reference = os.path.join(WORK, "reference")
    run([EXE] + train_args(data, reference, "train.steps=30", "checkpoint.every=10"))
    for phase in ("before_data", "mid_data", "before_rename", "after_rename"):
        part_crash(data, phase, reference)
    reference2 = os.path.join(WORK, "reference2")
    run(MPIRUN2 + [EXE] + train_args(data, reference2, "train.steps=30", "checkpoint.every=10"))
    part_crash(data, "mid_data", reference2, mpi=True)
    if failures:
        print("%d check(s) failed: %s (work files kept in %s)" % (len(failures), ", ".join(failures), WORK))
        sys.exit(1)
    shutil.rmtree(WORK, ignore_errors=True)
    print("all checks passed")


if __name__ == "__main__":
    main()
