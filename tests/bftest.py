"""Helpers shared by the script tests tests/test_*.py (this module is not a test itself: CMake registers only
tests/test_*.py).

A test imports it with
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bftest import ...
and finds the tools and data through the environment that tests/CMakeLists.txt sets: BF_EXE (the trainer),
BF_SOURCE_DIR (the source tree) and BF_WORK (where work directories go; the system temporary directory when
unset). Every test makes its own work directory (work_dir), since tests run in parallel and in several build
trees.

Checks are recorded in the module's list `failures`; a test ends with finish() or report().
"""
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

EXE = os.environ["BF_EXE"]
SRC = os.environ["BF_SOURCE_DIR"]
WORK_ROOT = os.environ.get("BF_WORK", tempfile.gettempdir())
CONFIG = os.path.join(SRC, "configs", "tiny.ini")
TINY = os.path.join(SRC, "tests", "data", "tiny")
TIMEOUT = 240  # seconds per process: a hang must fail the test, not stall ctest

failures = []

# The counter-based generator of include/budgetformer/rng.h (splitmix64 rounds over the key), for tests that
# recompute a draw (data order, the shuffle control's permutation).
M64 = (1 << 64) - 1


def mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def rng_key(seed, epoch, index, layer, stream, head):
    h = mix64(seed)
    h = mix64(h ^ epoch)
    h = mix64(h ^ index)
    h = mix64(h ^ ((stream << 32) | layer))
    return mix64(h ^ head)


def work_dir(prefix):
    """A new, unique work directory below BF_WORK named PREFIX-XXXXXXXX."""
    os.makedirs(WORK_ROOT, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix + "-", dir=WORK_ROOT)


def check(name, ok, detail=""):
    """Prints 'ok   NAME' or 'FAIL NAME' (with ': DETAIL' for a failure, or for a success when DETAIL is short:
    long details such as stderr are shown only for a failure), records a failure, and returns ok."""
    show = detail and (not ok or len(detail) < 160)
    print(("ok   " if ok else "FAIL ") + name + (": " + detail if show else ""), flush=True)
    if not ok:
        failures.append(name)
    return ok


def check_quiet(cond, what):
    """Records a failure and prints 'FAIL: WHAT' when cond is false; prints nothing for a success."""
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def sanitizer_clean(text):
    """True when text holds no sanitizer report (AddressSanitizer, UBSan 'runtime error:')."""
    return "runtime error:" not in text and "Sanitizer" not in text


def run(cmd, env=None, expect=0):
    """Runs cmd (output captured as text, TIMEOUT seconds at the most) and returns the CompletedProcess.
    Exits the test with the command and its output when the exit status is not expect (None: any status) or
    stderr holds a sanitizer report."""
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT)
    if (expect is not None and p.returncode != expect) or not sanitizer_clean(p.stderr):
        sys.exit("command exited %d (expected %s): %s\n%s\n%s" % (p.returncode, expect, " ".join(cmd), p.stdout,
                                                                  p.stderr))
    return p


def prepare(work):
    """Prepares the tiny corpus (tests/data/tiny, --max-len 24) into WORK/data and returns that directory."""
    data = os.path.join(work, "data")
    run([EXE, "prepare", "--train", os.path.join(TINY, "train.csv"), "--test", os.path.join(TINY, "test.csv"),
         "--out", data, "--max-len", "24"])
    return data


def train_args(data, run_dir, *sets):
    """Arguments of 'budgetformer train' on configs/tiny.ini with the prepared data, run.dir and more --set's."""
    args = ["train", "--config", CONFIG]
    for s in ("data.train=%s/train.h5" % data, "data.test=%s/test.h5" % data, "run.dir=" + run_dir) + sets:
        args += ["--set", s]
    return args


def mpirun(n):
    """The mpirun prefix for n ranks (oversubscribed, not bound)."""
    return ["mpirun", "-np", str(n), "--oversubscribe", "--bind-to", "none"]


def launcher(ranks):
    """No prefix for 1 rank, else mpirun(ranks)."""
    return [] if ranks == 1 else mpirun(ranks)


MPIRUN2 = mpirun(2)


def checkpoint_files(run_dir):
    """Sorted names of every file in RUN_DIR/checkpoints ([] without that directory)."""
    d = os.path.join(run_dir, "checkpoints")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def checkpoint_names(run_dir):
    """Sorted names of the step-*.h5 files in RUN_DIR/checkpoints."""
    return [n for n in checkpoint_files(run_dir) if n.startswith("step-")]


def inspect(path):
    """'budgetformer inspect --json PATH': (exit status, the parsed JSON or None on failure, stderr)."""
    p = subprocess.run([EXE, "inspect", "--json", path], capture_output=True, text=True, timeout=TIMEOUT)
    return p.returncode, (json.loads(p.stdout) if p.returncode == 0 else None), p.stderr


def valid_steps(run_dir, why=False):
    """(steps of the valid step-*.h5 files of run_dir, the others): inspect --json says checksum valid. The
    others are named, with inspect's stderr after ': ' when why is true."""
    steps, bad = [], []
    for n in checkpoint_names(run_dir):
        rc, j, err = inspect(os.path.join(run_dir, "checkpoints", n))
        if rc == 0 and j["checksum"]["status"] == "valid":
            steps.append(int(n[5:-3]))
        else:
            bad.append(n + ": " + err.strip() if why else n)
    return steps, bad


def read_trace(prefix, ranks):
    """The lines of each rank's BF_TRACE file PREFIX.rankR, for R < ranks."""
    out = []
    for r in range(ranks):
        with open("%s.rank%d" % (prefix, r)) as f:
            out.append(f.read().splitlines())
    return out


def log_loss(run_dir):
    """(/metrics/step, /metrics/loss) of RUN_DIR/log.h5."""
    import h5py
    with h5py.File(os.path.join(run_dir, "log.h5"), "r") as f:
        return f["metrics/step"][()], f["metrics/loss"][()]


def checkpoint_arrays(path):
    """Every dataset under /model and /optim of a checkpoint: {"model/...": array}."""
    import h5py
    out = {}
    with h5py.File(path, "r") as f:
        for g in ("model", "optim"):
            f[g].visititems(lambda n, o: out.__setitem__(g + "/" + n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def max_rel(a, b):
    """Largest |a - b| / |b| over two equally long sequences; infinity when their lengths differ or are 0."""
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.abs(b))) if len(a) == len(b) and len(a) else float("inf")


def finish(work):
    """The end of a test using check(): with failures, says which (keeping WORK) and exits 1; else removes
    WORK and says all checks passed."""
    if failures:
        print("%d check(s) failed: %s (work files kept in %s)" % (len(failures), ", ".join(failures), work))
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print("all checks passed")


def report():
    """The end of a test using check_quiet(): exits 1 after the number of failures, else says all passed."""
    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("all checks passed")


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


def process_parents():
    """{pid: parent pid} of every process (from /proc)."""
    parent = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    parent[int(p)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    return parent


def descendants(root_pid):
    """The pids of every process below root_pid."""
    parent = process_parents()
    out = []
    for pid in parent:
        q = parent.get(pid)
        while q is not None and q != root_pid and q > 1:
            q = parent.get(q)
        if q == root_pid:
            out.append(pid)
    return out


def rank_pids(launcher_pid):
    """{rank: pid} of the processes below launcher_pid that have OMPI_COMM_WORLD_RANK in their environment."""
    out = {}
    for pid in descendants(launcher_pid):
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            exe = os.readlink("/proc/%d/exe" % pid)
        except OSError:
            continue
        if b"OMPI_COMM_WORLD_RANK" in env and os.path.basename(exe) == os.path.basename(EXE):
            out[int(env[b"OMPI_COMM_WORLD_RANK"])] = pid
    return out
