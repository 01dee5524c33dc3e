"""Data-parallel training over MPI, end to end on the tiny corpus (1, 2 and 3 ranks on a 2-core machine).

Checks, each named in the output:
  world_sizes      1, 2 and 3 ranks (3 does not divide the global batch 16) give the same loss at each of
                   the first 30 updates (1e-4 relative; trace and log.h5 /metrics/loss) and the same eps
  ranks_agree      after every update every rank holds bitwise identical weights (the checksum column of
                   BF_TRACE), the same eps and the same loss, for 2 and 3 ranks, with one gradient bucket
                   and with many (dist.bucket_kb = 1)
  buckets          at 2 ranks the bucket size changes nothing, bit for bit (a + b = b + a)
  contiguous       dist.balance_shards = 0 (contiguous parts instead of the deal by cost) at 3 ranks: the
                   1-rank losses (1e-4 relative), every rank bitwise identical weights
  reproducible     two 2-rank runs with the same seed (the second through launch/bf-mpirun.sh) are bitwise
                   identical: trace, log.h5 /metrics/loss and every /model and /optim dataset of the final
                   checkpoint
  schedule_fixed   the eps every rank applies is the linear schedule of schedule.h
  adaptive         explore.shape = adaptive with explore.window = 5: every rank applies the coordinator's eps,
                   which equals a replay of the coordinator (schedule.h) over the logged global losses,
                   leaves eps_start before explore.steps (the loss rule fired), and matches the 1-rank run
  micro_batch      train.micro_batch (gradient accumulation) gives the losses of no micro-batching (1e-5
                   relative), at 1 rank (micro 4 and 5) and 2 ranks (micro 3: parts 3+3+2)
  comm_metrics     log.h5 /metrics/comm_fraction is logged per update in [0, 1]; the progress line shows it
  eval             `eval --json` under mpirun -np 2 and -np 3 gives the 1-rank accuracy, macro-F1, budgets
                   and per-input records
  small_batch      train.batch_size below the number of ranks fails cleanly on every rank (no hang)
  wrapper          launch/bf-mpirun.sh builds the mpirun line it should; SIGUSR1 or SIGTERM sent to it
                   reaches every rank as SIGUSR1 (the trainer's checkpoint-and-stop)
Every run writes under a fresh directory in $BF_WORK, removed when everything passed.
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import CONFIG, EXE, SRC, launcher as mpi_prefix, work_dir  # noqa: E402

DATA = os.environ.get("BF_TEST_DATA", os.path.join(SRC, "tests", "data"))
WRAPPER = os.path.join(SRC, "launch", "bf-mpirun.sh")
RUN_TIMEOUT = 180  # seconds per process; a hang in a collective must fail the test, not stall ctest
COMPARE_STEPS = 30
STEPS = 60
# Pinned here so that edits to configs/tiny.ini do not change what is tested: 3 ranks must not divide the
# global batch, and the linear schedule is checked against its formula.
BASE = ["train.steps=%d" % STEPS, "train.batch_size=16", "train.micro_batch=0", "train.warmup=5",
        "dist.bucket_kb=1024", "explore.eps_start=1", "explore.eps_end=0", "explore.steps=40"]

WORK = work_dir("mpi_training")
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)
    if not ok:
        failures.append(name + (": " + detail if detail else ""))
    return ok


def run(cmd, env_extra=None, expect_rc=0):
    env = dict(os.environ)
    env.update(env_extra or {})
    t0 = time.time()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=RUN_TIMEOUT)
    if expect_rc is not None and p.returncode != expect_rc:
        sys.stderr.write("command: %s\nexit %d (expected %d)\nstdout:\n%s\nstderr:\n%s\n"
                         % (" ".join(cmd), p.returncode, expect_rc, p.stdout, p.stderr))
        raise RuntimeError("command failed: " + " ".join(cmd))
    return p, time.time() - t0


def prepare():
    out = os.path.join(WORK, "data")
    run([EXE, "prepare", "--train", os.path.join(DATA, "tiny", "train.csv"), "--test",
         os.path.join(DATA, "tiny", "test.csv"), "--out", out, "--max-len", "24"])
    return out


class Run:
    """One training run: its directory, the per-rank traces and what it printed."""

    def __init__(self, name, world, data, sets=(), launcher=None):
        self.name, self.world = name, world
        self.dir = os.path.join(WORK, name)
        self.trace_prefix = os.path.join(WORK, name + ".trace")
        args = ["train", "--config", CONFIG, "--set", "data.train=" + os.path.join(data, "train.h5"),
                "--set", "data.test=" + os.path.join(data, "test.h5"), "--set", "run.dir=" + self.dir]
        for s in BASE + list(sets):
            args += ["--set", s]
        if launcher == "wrapper":
            cmd = ["bash", WRAPPER, "-n", str(world), "--exe", EXE, "--"] + args
        else:
            cmd = mpi_prefix(world) + [EXE] + args
        p, self.seconds = run(cmd, {"BF_TRACE": self.trace_prefix})
        self.stderr = p.stderr
        self.traces = [self._read_trace(r) for r in range(world)]

    def _read_trace(self, rank):
        rows = []
        with open("%s.rank%d" % (self.trace_prefix, rank)) as f:
            for line in f:
                step, eps, loss, checksum = line.split()
                rows.append((int(step), float(eps), float(loss), checksum))
        return rows

    def losses(self):
        return [r[2] for r in self.traces[0]]

    def eps(self):
        return [r[1] for r in self.traces[0]]

    def log(self, name):
        with h5py.File(os.path.join(self.dir, "log.h5"), "r") as f:
            return f[name][()]

    def checkpoint(self):
        d = os.path.join(self.dir, "checkpoints")
        return os.path.join(d, sorted(os.listdir(d))[-1])


def rel_diff(a, b):
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def max_rel(xs, ys):
    return max(rel_diff(x, y) for x, y in zip(xs, ys))


def check_ranks_agree(run_):
    """Every line of every rank's trace equals rank 0's: same eps, loss and weight checksum."""
    ref = run_.traces[0]
    steps_ok = len(ref) == STEPS and [r[0] for r in ref] == list(range(1, STEPS + 1))
    check("ranks_agree %s: rank 0 traced updates 1..%d" % (run_.name, STEPS), steps_ok, "%d lines" % len(ref))
    for rank in range(1, run_.world):
        other = run_.traces[rank]
        bad = [i + 1 for i, (a, b) in enumerate(zip(ref, other)) if a != b]
        check("ranks_agree %s: rank %d = rank 0 at every update (eps, loss, weight checksum)" % (run_.name, rank),
              len(other) == len(ref) and not bad,
              "" if not bad else "first difference at update %d: rank 0 %s, rank %d %s"
              % (bad[0], ref[bad[0] - 1], rank, other[bad[0] - 1]))


def model_datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        for group in ("model", "optim"):
            def visit(name, obj, group=group):
                if isinstance(obj, h5py.Dataset):
                    out[group + "/" + name] = obj[()].tobytes()
            f[group].visititems(visit)
    return out


def linear_eps(start, end, steps, step):
    t = 1.0 if steps <= 1 else (step - 1) / (steps - 1)
    if t >= 1.0:
        return end
    if t <= 0.0:
        return start
    return start + (end - start) * t


def replay_adaptive(losses, eps_start, eps_end, steps, window, threshold, anneal_steps):
    """The coordinator of schedule.h, written out again: eps of each update given the global losses."""
    anneal_from = 1 if steps == 0 else 0
    wsum, wn, prev = 0.0, 0, -1.0
    eps = []
    for step, loss in enumerate(losses, start=1):
        if anneal_from == 0 or step < anneal_from:
            eps.append(eps_start)
        else:
            eps.append(linear_eps(eps_start, eps_end, anneal_steps, step - anneal_from + 1))
        if anneal_from == 0:  # observe
            wsum += loss
            wn += 1
            if wn == window:
                mean = wsum / wn
                if prev > 0 and (prev - mean) / prev < threshold:
                    anneal_from = step + 1
                prev, wsum, wn = mean, 0.0, 0
            if anneal_from == 0 and step >= steps:
                anneal_from = step + 1
    return eps


def eval_json(world, ckpt, data, records):
    p, _ = run(mpi_prefix(world) + [EXE, "eval", "--checkpoint", ckpt, "--data", data, "--json",
                                    "--records", records])
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    check("eval np %d: one JSON line on stdout (rank 0 only)" % world, len(lines) == 1, "%d lines" % len(lines))
    return json.loads(lines[0])


def test_wrapper():
    def dry(*args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.run(["bash", WRAPPER, "--dry-run", "--exe", EXE] + list(args) + ["--", "train", "--help"],
                           env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
        line = [l for l in p.stderr.splitlines() if l.startswith("bf-mpirun: running:")]
        return p.returncode, (line[0].split() if line else [])

    cores = len(os.sched_getaffinity(0))
    rc, cmd = dry("-n", "1")
    ok = rc == 0 and "-np" in cmd and "OPENBLAS_NUM_THREADS=1" in cmd and "--bind-to" in cmd and \
        cmd[cmd.index("--bind-to") + 1] == "core" and "--oversubscribe" not in cmd and cmd[-3:] == [EXE, "train", "--help"]
    check("wrapper: -n 1 binds to a core, one OpenBLAS thread, no --oversubscribe", ok, " ".join(cmd))
    check("wrapper: --allow-run-as-root exactly when root", ("--allow-run-as-root" in cmd) == (os.geteuid() == 0))
    rc, cmd = dry("-n", str(cores + 1))
    check("wrapper: more ranks than cores -> --oversubscribe, no binding",
          rc == 0 and "--oversubscribe" in cmd and cmd[cmd.index("--bind-to") + 1] == "none", " ".join(cmd))
    hostfile = os.path.join(WORK, "hosts")
    with open(hostfile, "w") as f:
        f.write("localhost slots=%d\n" % (cores + 1))
    rc, cmd = dry("-n", str(cores + 1), "--hostfile", hostfile, "--threads", "2")
    check("wrapper: with a hostfile no --oversubscribe; --threads 2 -> 2 cores per rank, OPENBLAS_NUM_THREADS=2",
          rc == 0 and "--oversubscribe" not in cmd and "--hostfile" in cmd and "slot:PE=2" in cmd
          and "OPENBLAS_NUM_THREADS=2" in cmd, " ".join(cmd))
    rc, _ = dry("-n", "0")
    check("wrapper: -n 0 is a usage error (exit 2)", rc == 2, "exit %d" % rc)

    # Signal forwarding, with a shell standing in for budgetformer: whatever stop signal the wrapper gets
    # (SIGUSR1, or SIGTERM as from a scheduler), every rank receives SIGUSR1 at once (mpirun itself would
    # turn SIGTERM into a kill of the ranks about a second later).
    for k, sig in enumerate((signal.SIGUSR1, signal.SIGTERM)):
        fake = os.path.join(WORK, "fake-rank-%d.sh" % k)
        with open(fake, "w") as f:
            f.write("#!/bin/bash\nr=$OMPI_COMM_WORLD_RANK\n"
                    "trap 'echo USR1 > \"$0.got.$r\"; exit 0' USR1\n"
                    "trap 'echo TERM > \"$0.term.$r\"; exit 4' TERM\n"
                    "echo ready > \"$0.ready.$r\"\nfor i in $(seq 600); do sleep 0.05; done\nexit 3\n")
        os.chmod(fake, 0o755)
        p = subprocess.Popen(["bash", WRAPPER, "-n", "2", "--bind", "none", "--exe", fake, "--", "x"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while time.time() < deadline and not all(os.path.exists("%s.ready.%d" % (fake, r)) for r in range(2)):
            time.sleep(0.1)
        p.send_signal(sig)
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        got = [os.path.exists("%s.got.%d" % (fake, r)) for r in range(2)]
        term = [os.path.exists("%s.term.%d" % (fake, r)) for r in range(2)]
        check("wrapper: %s to the wrapper reaches every rank as SIGUSR1" % sig.name,
              all(got) and not any(term) and p.returncode == 0,
              "ranks that got SIGUSR1 %s, SIGTERM %s, exit %s, stderr: %s"
              % (got, term, p.returncode, err.strip()[-300:]))


def main():
    t_start = time.time()
    data = prepare()
    fixed = ["explore.shape=linear"]

    # ---- world sizes, rank agreement, buckets, reproducibility
    runs = {w: Run("w%d" % w, w, data, fixed) for w in (1, 2, 3)}
    ref = runs[1].losses()[:COMPARE_STEPS]
    for w in (2, 3):
        d = max_rel(ref, runs[w].losses()[:COMPARE_STEPS])
        check("world_sizes: trace loss of updates 1..%d, %d ranks vs 1 rank" % (COMPARE_STEPS, w), d <= 1e-4,
              "max relative difference %.2e" % d)
        logged = runs[w].log("metrics/loss")[:COMPARE_STEPS].astype(float)
        d = max_rel(runs[1].log("metrics/loss")[:COMPARE_STEPS].astype(float), logged)
        check("world_sizes: log.h5 /metrics/loss of updates 1..%d, %d ranks vs 1 rank" % (COMPARE_STEPS, w),
              d <= 1e-4, "max relative difference %.2e" % d)
        check("world_sizes: eps of every update, %d ranks = 1 rank" % w, runs[w].eps() == runs[1].eps())
        check_ranks_agree(runs[w])
    expect = [linear_eps(1.0, 0.0, 40, s) for s in range(1, STEPS + 1)]
    d = max(abs(a - b) for a, b in zip(runs[2].eps(), expect))
    check("schedule_fixed: eps is the linear schedule (eps_start 1 -> eps_end 0 over 40 updates)", d <= 1e-6,
          "max difference %.2e" % d)

    many = {w: Run("w%d-bucket1k" % w, w, data, fixed + ["dist.bucket_kb=1"]) for w in (2, 3)}
    for w in (2, 3):
        n_buckets = [l for l in many[w].stderr.splitlines() if "gradient buckets" in l]
        check("buckets: dist.bucket_kb=1 makes many buckets (%d ranks)" % w,
              bool(n_buckets) and not n_buckets[0].rstrip().endswith(" 1 gradient buckets"),
              n_buckets[0] if n_buckets else "no 'gradient buckets' line in the output")
        check_ranks_agree(many[w])
    check("buckets: 2 ranks, bucket_kb=1 trace bitwise = bucket_kb default trace", many[2].traces == runs[2].traces)
    d = max_rel(ref, many[3].losses()[:COMPARE_STEPS])
    check("buckets: 3 ranks, bucket_kb=1 loss vs 1 rank", d <= 1e-4, "max relative difference %.2e" % d)

    contig = Run("w3-contiguous", 3, data, fixed + ["dist.balance_shards=0"])
    d = max_rel(ref, contig.losses()[:COMPARE_STEPS])
    check("contiguous: 3 ranks, dist.balance_shards=0 loss vs 1 rank", d <= 1e-4, "max relative difference %.2e" % d)
    check_ranks_agree(contig)

    again = Run("w2-again", 2, data, fixed, launcher="wrapper")
    check("reproducible: 2-rank trace (eps, loss, checksum, every rank) identical in a second run",
          again.traces == runs[2].traces)
    check("reproducible: log.h5 /metrics/loss bytes identical",
          again.log("metrics/loss").tobytes() == runs[2].log("metrics/loss").tobytes())
    a, b = model_datasets(runs[2].checkpoint()), model_datasets(again.checkpoint())
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    check("reproducible: final checkpoint /model and /optim datasets byte for byte (%d datasets)" % len(a),
          len(a) > 0 and not diff, ", ".join(diff[:5]))

    # ---- communication metrics
    for w in (1, 2):
        cf = runs[w].log("metrics/comm_fraction")
        check("comm_metrics: /metrics/comm_fraction has one value per update in [0, 1] (%d rank%s)"
              % (w, "s" if w > 1 else ""), len(cf) == STEPS and bool(np.all((cf >= 0) & (cf <= 1))),
              "%d values, range %.3g..%.3g" % (len(cf), cf.min(), cf.max()))
    check("comm_metrics: 2 ranks spend some time communicating", float(runs[2].log("metrics/comm_fraction").max()) > 0)
    check("comm_metrics: progress line shows comm %",
          any(" | comm " in l and "%" in l for l in runs[2].stderr.splitlines()))
    check("comm_metrics: final line gives CPU seconds over 2 ranks and ms CPU per input",
          any("s CPU over 2 ranks" in l and "ms CPU per input" in l for l in runs[2].stderr.splitlines()))

    # ---- adaptive coordinator: explore.steps beyond the run, so only the loss rule can end exploring
    adaptive = ["explore.shape=adaptive", "explore.window=5", "explore.threshold=0.5", "explore.steps=1000",
                "explore.anneal_steps=10", "explore.eps_start=0.8", "explore.eps_end=0.05"]
    ad = {w: Run("adaptive-w%d" % w, w, data, adaptive) for w in (1, 2, 3)}
    for w in (2, 3):
        check_ranks_agree(ad[w])
        eps = ad[w].eps()
        changed = [i + 1 for i, e in enumerate(eps) if abs(e - 0.8) > 1e-7]
        check("adaptive %d ranks: eps starts at eps_start and leaves it within the run" % w,
              abs(eps[0] - 0.8) < 1e-7 and bool(changed) and changed[0] < 1000,
              "first update with eps != eps_start: %s" % (changed[0] if changed else "none"))
        replay = replay_adaptive(ad[w].losses(), 0.8, 0.05, 1000, 5, 0.5, 10)
        d = max(abs(x - y) for x, y in zip(eps, replay))
        check("adaptive %d ranks: eps = the coordinator replayed over the global losses" % w, d <= 1e-6,
              "max difference %.2e; eps %s; replay %s" % (d, eps[:25], replay[:25]) if d > 1e-6 else "")
        check("adaptive %d ranks: same eps sequence as 1 rank" % w, eps == ad[1].eps())
        check("adaptive %d ranks: eps reaches eps_end" % w, abs(eps[-1] - 0.05) < 1e-7, "last eps %g" % eps[-1])

    # ---- gradient accumulation
    for micro in (4, 5):
        r = Run("w1-micro%d" % micro, 1, data, fixed + ["train.micro_batch=%d" % micro])
        d = max_rel(runs[1].losses(), r.losses())
        check("micro_batch: 1 rank, micro_batch=%d vs none, loss of all %d updates" % (micro, STEPS), d <= 1e-5,
              "max relative difference %.2e" % d)
    r = Run("w2-micro3", 2, data, fixed + ["train.micro_batch=3"])
    d = max_rel(runs[2].losses(), r.losses())
    check("micro_batch: 2 ranks, micro_batch=3 vs none, loss of all %d updates" % STEPS, d <= 1e-5,
          "max relative difference %.2e" % d)
    check_ranks_agree(r)

    # ---- distributed evaluation of one checkpoint
    ckpt, test_h5 = runs[1].checkpoint(), os.path.join(data, "test.h5")
    records = {w: os.path.join(WORK, "records-np%d.h5" % w) for w in (1, 2, 3)}
    ev = {w: eval_json(w, ckpt, test_h5, records[w]) for w in (1, 2, 3)}
    for w in (2, 3):
        same = all(ev[w][k] == ev[1][k] for k in ("n", "accuracy", "macro_f1", "mean_budget", "budget_hist",
                                                  "flops_ratio", "attention_flops_ratio"))
        check("eval: mpirun -np %d eval --json = 1 rank (n, accuracy, macro-F1, budgets, FLOPs)" % w,
              same and ev[w]["n"] == 160 and abs(ev[w]["loss"] - ev[1]["loss"]) <= 1e-5,
              "1 rank %s; %d ranks %s" % ({k: ev[1][k] for k in ("n", "accuracy", "macro_f1", "loss")},
                                          w, {k: ev[w][k] for k in ("n", "accuracy", "macro_f1", "loss")}))
        with h5py.File(records[1], "r") as f1, h5py.File(records[w], "r") as fw:
            names = []
            f1.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            bad = []
            for n in names:
                x, y = f1[n][()], fw[n][()] if n in fw else None
                if y is None or x.shape != y.shape:
                    bad.append(n)
                elif x.dtype.kind == "f":
                    if not np.allclose(x, y, rtol=0, atol=1e-5):
                        bad.append(n)
                elif not np.array_equal(x, y):
                    bad.append(n)
            check("eval: --records under %d ranks = 1 rank, in dataset order (%d datasets)" % (w, len(names)),
                  bool(names) and not bad, ", ".join(bad))

    # ---- a global batch smaller than the world fails cleanly on every rank
    small_dir = os.path.join(WORK, "small-batch")
    p, secs = run(mpi_prefix(3) + [EXE, "train", "--config", CONFIG, "--set",
                                   "data.train=" + os.path.join(data, "train.h5"), "--set", "run.dir=" + small_dir,
                                   "--set", "train.batch_size=2"], expect_rc=None)
    check("small_batch: batch 2 on 3 ranks exits non-zero with a message naming train.batch_size",
          p.returncode != 0 and "train.batch_size" in p.stderr, "exit %d, %.1f s" % (p.returncode, secs))

    test_wrapper()

    print("%d checks failed; %.1f s" % (len(failures), time.time() - t_start))
    if failures:
        print("failed:\n  " + "\n  ".join(failures))
        print("run directories kept in " + WORK)
        return 1
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
