"""The training step allocates nothing after the first (performance issue): with BF_CHECK_ALLOC=1 the trainer
compares bf_alloc_count() (every bf_xmalloc, bf_xcalloc, bf_xrealloc, bf_xstrdup) before and after each update
after the first of the process, outside checkpoint saves, evaluation and log writes, and fails the run naming
the update if it changed.

Checks, each named in the output:
  ranks_N     the tiny configuration on N = 1 and 2 ranks with exploration on, micro-batching
              (train.micro_batch = 3), head records every 7 updates, a validation set evaluated every 10,
              checkpoints every 10 and 80 updates (three epochs: the sampler's two permutation slots are both
              used): exit status 0 and the trainer's confirmation line
  resumed     a run resumed at update 40 (another epoch parity first) under the same check: exit status 0
  caught      BF_FAULT=alloc_in_step:7 (one stray bf_xmalloc inside update 7) fails the run on 2 ranks with a
              message naming update 7: the check can fail
"""
import os
import shutil
import subprocess
import sys
import tempfile

EXE = os.environ["BF_EXE"]
SRC = os.environ["BF_SOURCE_DIR"]
WORK_ROOT = os.environ.get("BF_WORK", tempfile.gettempdir())
CONFIG = os.path.join(SRC, "configs", "tiny.ini")
TIMEOUT = 240
CONFIRM = "BF_CHECK_ALLOC: no update after the first allocated"

os.makedirs(WORK_ROOT, exist_ok=True)
WORK = tempfile.mkdtemp(prefix="no_alloc-", dir=WORK_ROOT)
failures = []


def check(name, ok, detail=""):
    show = detail and (not ok or len(detail) < 160)
    print(("ok   " if ok else "FAIL ") + name + (": " + detail if show else ""), flush=True)
    if not ok:
        failures.append(name)
    return ok


def run(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT)
    if "runtime error:" in p.stderr or "Sanitizer" in p.stderr:
        sys.exit("sanitizer report from %s:\n%s" % (" ".join(cmd), p.stderr))
    return p


def launcher(ranks):
    return [] if ranks == 1 else ["mpirun", "-np", str(ranks), "--oversubscribe", "--bind-to", "none"]


def train(data, run_dir, ranks, *extra, fault=None, resume=None):
    cmd = launcher(ranks) + [EXE, "train", "--config", CONFIG]
    sets = ["data.train=%s/train.h5" % data, "data.test=%s/test.h5" % data, "data.valid=%s/test.h5" % data,
            "run.dir=" + run_dir, "train.steps=80", "train.micro_batch=3", "heads.every=7", "train.eval_every=10",
            "checkpoint.every=10", "train.log_every=5", "explore.steps=60"] + list(extra)
    for s in sets:
        cmd += ["--set", s]
    if resume:
        cmd += ["--resume", resume]
    env = dict(os.environ, BF_CHECK_ALLOC="1")
    if fault:
        env["BF_FAULT"] = fault
    return run(cmd, env)


def main():
    data = os.path.join(WORK, "data")
    tiny = os.path.join(SRC, "tests", "data", "tiny")
    p = run([EXE, "prepare", "--train", os.path.join(tiny, "train.csv"), "--test", os.path.join(tiny, "test.csv"),
             "--out", data, "--max-len", "24"])
    if p.returncode:
        sys.exit(p.stderr)
    for ranks in (1, 2):
        p = train(data, os.path.join(WORK, "r%d" % ranks), ranks)
        check("ranks_%d: no update after the first allocates (exit 0)" % ranks, p.returncode == 0 and CONFIRM in p.stderr,
              "exit %d: %s" % (p.returncode, p.stderr.strip()[-600:]))
    run_dir = os.path.join(WORK, "resumed")
    p = train(data, run_dir, 2, "train.stop_at=40")
    p2 = train(data, run_dir, 2, resume="auto")
    check("resumed: a run resumed at update 40 allocates nothing after its first update",
          p.returncode == 0 and p2.returncode == 0 and CONFIRM in p2.stderr and "resuming from" in p2.stderr,
          "exit %d, %d: %s" % (p.returncode, p2.returncode, p2.stderr.strip()[-600:]))
    p = train(data, os.path.join(WORK, "caught"), 2, fault="alloc_in_step:7")
    check("caught: a stray allocation in update 7 fails the run, naming the update",
          p.returncode == 1 and "BF_CHECK_ALLOC: update 7 allocated 1 time" in p.stderr,
          "exit %d: %s" % (p.returncode, p.stderr.strip()[-600:]))
    if failures:
        print("%d check(s) failed: %s (work files kept in %s)" % (len(failures), ", ".join(failures), WORK))
        sys.exit(1)
    shutil.rmtree(WORK, ignore_errors=True)
    print("all checks passed")


if __name__ == "__main__":
    main()
