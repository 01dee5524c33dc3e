"""Preemption: a stop signal makes the run write one checkpoint and exit with status 75, and --resume auto
continues it exactly (docs/FAILURES.md).

Checks, each named in the output:
  wrapper_sigterm  2 ranks under launch/bf-mpirun.sh; SIGTERM to the wrapper (which passes SIGUSR1 to mpirun)
                   while training runs: exit status 75, exactly one checkpoint (checkpoint.every = 0), valid, at
                   the update where the ranks stopped; a second SIGTERM while that checkpoint is being written
                   (BF_FAULT=delay_in_save keeps the save open) is ignored and the save completes
  resume_exact     --resume auto on 2 ranks continues from that checkpoint: every rank's BF_TRACE lines after
                   the stop and log.h5 /metrics/loss over the whole run are bitwise those of an uninterrupted
                   2-rank run (both end at the same train.stop_at)
  provenance       the checkpoint written under mpirun names the MPI library in /provenance
  one_rank_sigint  1 rank without a launcher: SIGINT gives exit status 75 and a valid checkpoint; --resume auto
                   continues to the end with exit status 0
"""
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import h5py
import numpy as np

EXE = os.environ["BF_EXE"]
SRC = os.environ["BF_SOURCE_DIR"]
WORK_ROOT = os.environ.get("BF_WORK", tempfile.gettempdir())
CONFIG = os.path.join(SRC, "configs", "tiny.ini")
WRAPPER = os.path.join(SRC, "launch", "bf-mpirun.sh")
TIMEOUT = 240  # seconds per process: a hang must fail the test, not stall ctest
EX_PREEMPTED = 75

os.makedirs(WORK_ROOT, exist_ok=True)
WORK = tempfile.mkdtemp(prefix="faults_signal-", dir=WORK_ROOT)
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
    if p.returncode != expect or not sanitizer_clean(p.stderr):
        sys.exit("command exited %d (expected %d): %s\n%s\n%s" % (p.returncode, expect, " ".join(cmd), p.stdout,
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


def mpirun(n):
    return ["mpirun", "-np", str(n), "--oversubscribe", "--bind-to", "none"]


class Watched:
    """A process whose merged stdout/stderr lines are read by a thread, so the test can wait for a line."""

    def __init__(self, cmd, env):
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines, self.q = [], queue.Queue()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def wait_for(self, pred, timeout=TIMEOUT):
        """Returns the first line (from now on) for which pred is true, or None at EOF or timeout."""
        end = time.time() + timeout
        while time.time() < end:
            try:
                line = self.q.get(timeout=max(0.01, end - time.time()))
            except queue.Empty:
                break
            if line is None:
                self.q.put(None)
                return None
            self.lines.append(line)
            if pred(line):
                return line
        return None

    def finish(self, timeout=TIMEOUT):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        self.wait_for(lambda _l: False, timeout=10)
        return rc, "".join(self.lines)


def progress_step(line):
    """The update number of a progress line 'step    100/3000 | ...', else None."""
    if line.startswith("step ") and "|" in line:
        try:
            return int(line.split()[1].split("/")[0])
        except ValueError:
            return None
    return None


def inspect(path):
    p = subprocess.run([EXE, "inspect", "--json", path], capture_output=True, text=True, timeout=TIMEOUT)
    return p.returncode, (json.loads(p.stdout) if p.returncode == 0 else None), p.stderr


def checkpoints(run_dir):
    d = os.path.join(run_dir, "checkpoints")
    return sorted(n for n in os.listdir(d) if n.startswith("step-"))


def read_trace(prefix, ranks):
    out = []
    for r in range(ranks):
        with open("%s.rank%d" % (prefix, r)) as f:
            out.append(f.read().splitlines())
    return out


def loss_of(run_dir):
    with h5py.File(os.path.join(run_dir, "log.h5"), "r") as f:
        return f["metrics/step"][()], f["metrics/loss"][()]


def part_wrapper(data):
    steps = "train.steps=4000"
    stopped = os.path.join(WORK, "stopped")
    env = dict(os.environ, BF_TRACE=os.path.join(WORK, "t-first"), BF_FAULT="delay_in_save:1500")
    w = Watched(["bash", WRAPPER, "-n", "2", "--bind", "none", "--exe", EXE, "--"] +
                train_args(data, stopped, steps, "train.log_every=50", "checkpoint.every=0"), env)
    seen = w.wait_for(lambda l: (progress_step(l) or 0) >= 100)
    if not seen:
        rc, out = w.finish()
        check("wrapper_sigterm", False, "no progress line at step >= 100 (exit %s):\n%s" % (rc, out[-2000:]))
        return None
    t0 = time.time()
    w.p.send_signal(signal.SIGTERM)
    saving = w.wait_for(lambda l: "stopping after update" in l, timeout=60)
    if saving:
        w.p.send_signal(signal.SIGTERM)  # while the save is held open by delay_in_save
    ignored = w.wait_for(lambda l: "another stop signal" in l, timeout=60)
    rc, out = w.finish()
    names = checkpoints(stopped)
    stop_step = int(saving.split("after update")[1].split()[0]) if saving else -1
    check("wrapper_sigterm: exit status 75 after SIGTERM to the wrapper", rc == EX_PREEMPTED,
          "exit %s after %.1f s" % (rc, time.time() - t0))
    check("wrapper_sigterm: the second SIGTERM during the save is ignored", saving is not None and ignored is not None,
          out[-1500:] if not (saving and ignored) else "")
    check("wrapper_sigterm: exactly one checkpoint, at the update where the ranks stopped",
          names == ["step-%08d.h5" % stop_step], "%s, stopped after update %d" % (names, stop_step))
    check("wrapper_sigterm: no sanitizer report", sanitizer_clean(out))
    if len(names) != 1:
        return None
    irc, j, ierr = inspect(os.path.join(stopped, "checkpoints", names[0]))
    check("wrapper_sigterm: the checkpoint is valid (inspect --json)",
          irc == 0 and j["checksum"]["status"] == "valid" and j["step"] == stop_step,
          ierr.strip() if irc else "")
    if j:
        mpi = j["provenance"].get("mpi_library_version", "")
        check("provenance: mpi_library_version names the MPI library", "MPI" in mpi and "not initialised" not in mpi,
              mpi)
    return stopped, stop_step


def part_resume(data, stopped, stop_step):
    end = "train.stop_at=%d" % (stop_step + 40)
    steps = "train.steps=4000"
    straight = os.path.join(WORK, "straight")
    env = dict(os.environ, BF_TRACE=os.path.join(WORK, "t-straight"))
    run(mpirun(2) + [EXE] + train_args(data, straight, steps, "train.log_every=50", end), env)
    env = dict(os.environ, BF_TRACE=os.path.join(WORK, "t-resumed"))
    p = run(mpirun(2) + [EXE] + train_args(data, stopped, steps, "train.log_every=50", end) + ["--resume", "auto"],
            env)
    check("resume_exact: --resume auto starts from the stop checkpoint",
          "resuming from %s/checkpoints/step-%08d.h5" % (stopped, stop_step) in p.stderr)
    full, first, resumed = (read_trace(os.path.join(WORK, t), 2) for t in ("t-straight", "t-first", "t-resumed"))
    for r in range(2):
        check("resume_exact: rank %d trace before the stop equals the uninterrupted run's" % r,
              first[r] == full[r][:len(first[r])] and len(first[r]) == stop_step,
              "%d lines, stopped at %d" % (len(first[r]), stop_step))
        check("resume_exact: rank %d trace after the resume is bitwise the uninterrupted run's (40 updates)" % r,
              resumed[r] == full[r][stop_step:] and len(resumed[r]) == 40)
    sa, la = loss_of(straight)
    sb, lb = loss_of(stopped)
    check("resume_exact: log.h5 /metrics/loss bitwise equal over all %d updates" % len(sa),
          np.array_equal(sa, sb) and np.array_equal(la.view(np.uint32), lb.view(np.uint32)),
          "steps %d vs %d" % (len(sa), len(sb)))


def part_one_rank(data):
    run_dir = os.path.join(WORK, "one")
    w = Watched([EXE] + train_args(data, run_dir, "train.steps=100000", "train.log_every=50"), dict(os.environ))
    if not w.wait_for(lambda l: (progress_step(l) or 0) >= 50):
        rc, out = w.finish()
        check("one_rank_sigint", False, "no progress line (exit %s): %s" % (rc, out[-1500:]))
        return
    w.p.send_signal(signal.SIGINT)
    rc, out = w.finish()
    names = checkpoints(run_dir)
    check("one_rank_sigint: exit status 75 and one checkpoint", rc == EX_PREEMPTED and len(names) == 1,
          "exit %s, %s" % (rc, names))
    if len(names) != 1:
        return
    step = int(names[0][5:13])
    irc, j, _ = inspect(os.path.join(run_dir, "checkpoints", names[0]))
    check("one_rank_sigint: the checkpoint is valid and says MPI was not initialised",
          irc == 0 and j["checksum"]["status"] == "valid" and
          j["provenance"].get("mpi_library_version") == "MPI not initialised")
    p = run([EXE] + train_args(data, run_dir, "train.steps=%d" % (step + 20), "train.log_every=50") +
            ["--resume", "auto"])
    check("one_rank_sigint: --resume auto finishes the run (exit 0)",
          "resuming from" in p.stderr and "step-%08d.h5" % (step + 20) in p.stderr)


def main():
    data = prepare()
    got = part_wrapper(data)
    if got:
        part_resume(data, *got)
    part_one_rank(data)
    if failures:
        print("%d check(s) failed: %s (work files kept in %s)" % (len(failures), ", ".join(failures), WORK))
        sys.exit(1)
    shutil.rmtree(WORK, ignore_errors=True)
    print("all checks passed")


if __name__ == "__main__":
    main()
