"""Resume reproduces an uninterrupted run.

Same world size (1 rank, and 2 ranks under mpirun): 40 updates straight versus the same run stopped after 20
(train.stop_at=20) and continued with --resume auto. The BF_TRACE lines of every rank (step, eps, loss,
weights checksum), log.h5 (/metrics and /heads) and the final checkpoint's weights, AdamW moments, head counts
and coordinator state must be bitwise identical.
Across world sizes (2 -> 1 and 1 -> 2): the stopped run's directory continues on the other number of ranks;
the first 20 logged losses are the first part's, exactly, and the remaining 20 are within 1e-4 (relative) of
the uninterrupted run's.
Exploration stays on throughout (eps > 0 at every step), the 1-rank lineage uses the adaptive coordinator (its
loss window is partly filled at step 20 and it decides to anneal only after the resume), and head records (every 7) and checkpoints (every 10, keep 2) fall on
other steps than the stop, so every piece of state that crosses the checkpoint matters."""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, SRC, read_trace  # noqa: E402

WORK = os.path.join(os.environ["BF_WORK"], "checkpoint_resume")
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)


def run(args, env=None):
    p = subprocess.run(args, capture_output=True, text=True, env=env)
    if p.returncode != 0 or "Sanitizer" in p.stderr or "runtime error:" in p.stderr:
        sys.exit(f"command failed ({p.returncode}): {' '.join(args)}\n{p.stdout}\n{p.stderr}")
    return p


def train(rundir, ranks, trace, *sets, resume=None):
    cmd = [] if ranks == 1 else ["mpirun", "-np", str(ranks), "--oversubscribe"]
    cmd += [EXE, "train", "--config", f"{SRC}/configs/tiny.ini"]
    for s in COMMON + list(sets) + [f"run.dir={rundir}"]:
        cmd += ["--set", s]
    if resume:
        cmd += ["--resume", resume]
    env = dict(os.environ, BF_TRACE=trace)
    return run(cmd, env)


def datasets(path, groups):
    out = {}
    with h5py.File(path, "r") as f:
        for g in groups:
            f[g].visititems(lambda n, o: out.__setitem__(f"{g}/{n}", o[()]) if isinstance(o, h5py.Dataset) else None)
        for g in ("state", "coordinator"):
            for k, v in f[g].attrs.items():
                if k not in ("config", "world_size"):
                    out[f"{g}@{k}"] = v
    return out


def same_arrays(a, b):
    bad = [k for k in a if k not in b or not np.array_equal(np.asarray(a[k]), np.asarray(b[k]))]
    return bad + [k for k in b if k not in a]


def same_world(ranks, lineage_sets):
    straight, stopped = f"{WORK}/straight{ranks}", f"{WORK}/stopped{ranks}"
    train(straight, ranks, f"{WORK}/t-straight{ranks}", *lineage_sets)
    p = train(stopped, ranks, f"{WORK}/t-first{ranks}", *lineage_sets, "train.stop_at=20")
    check("stopped after step 20" in p.stderr, f"{ranks} rank(s): the first part stops after step 20")
    # a copy of the stopped run for the other world size
    shutil.copytree(stopped, f"{WORK}/cross-from{ranks}")
    p = train(stopped, ranks, f"{WORK}/t-second{ranks}", *lineage_sets, resume="auto")
    check("resuming from" in p.stderr and "step-00000020.h5" in p.stderr,
          f"{ranks} rank(s): --resume auto continues from step-00000020.h5")
    a = read_trace(f"{WORK}/t-straight{ranks}", ranks)
    b1, b2 = read_trace(f"{WORK}/t-first{ranks}", ranks), read_trace(f"{WORK}/t-second{ranks}", ranks)
    for r in range(ranks):
        check(len(a[r]) == 40 and a[r] == b1[r] + b2[r],
              f"{ranks} rank(s), rank {r}: BF_TRACE (eps, loss, weights checksum) of 20 + 20 steps equals 40 straight")
    check(all(float(line.split()[1]) > 0 for line in a[0]), f"{ranks} rank(s): eps > 0 at every step")
    with h5py.File(f"{straight}/log.h5", "r") as fa, h5py.File(f"{stopped}/log.h5", "r") as fb:
        for k in ("step", "loss", "lr", "eps", "mean_budget", "grad_norm"):
            check(np.array_equal(fa["metrics/" + k][()], fb["metrics/" + k][()]),
                  f"{ranks} rank(s): log.h5 /metrics/{k} bitwise identical ({fa['metrics/' + k].shape[0]} records)")
        check(list(fb["metrics/step"][()]) == list(range(1, 41)), f"{ranks} rank(s): log steps 1..40 exactly once")
        for k in fa["heads"]:
            check(np.array_equal(fa["heads/" + k][()], fb["heads/" + k][()]),
                  f"{ranks} rank(s): log.h5 /heads/{k} identical")
    fa, fb = f"{straight}/checkpoints/step-00000040.h5", f"{stopped}/checkpoints/step-00000040.h5"
    bad = same_arrays(datasets(fa, ["model", "optim", "headstats"]), datasets(fb, ["model", "optim", "headstats"]))
    check(not bad, f"{ranks} rank(s): final weights, AdamW moments, head counts, state and coordinator bitwise "
                   f"identical{' (differ: ' + ', '.join(bad[:5]) + ')' if bad else ''}")
    ck = sorted(os.listdir(f"{stopped}/checkpoints"))
    check(ck == [".step-00000030.h5.sha256", ".step-00000040.h5.sha256", "step-00000030.h5", "step-00000040.h5"],
          f"{ranks} rank(s): checkpoint.keep=2 leaves the two newest ({' '.join(ck)})")


def cross_world(src_ranks, dst_ranks, lineage_sets):
    d = f"{WORK}/cross-from{src_ranks}"
    p = train(d, dst_ranks, f"{WORK}/t-cross{src_ranks}{dst_ranks}", *lineage_sets, resume="auto")
    check(f"written on {src_ranks} rank" in p.stderr and f"continuing on {dst_ranks}" in p.stderr,
          f"{src_ranks} -> {dst_ranks} ranks: resumed from the {src_ranks}-rank checkpoint")
    with h5py.File(f"{WORK}/straight{src_ranks}/log.h5", "r") as fa, h5py.File(f"{d}/log.h5", "r") as fb:
        sa, la = fa["metrics/step"][()], fa["metrics/loss"][()].astype(np.float64)
        sb, lb = fb["metrics/step"][()], fb["metrics/loss"][()].astype(np.float64)
    check(list(sb) == list(range(1, 41)), f"{src_ranks} -> {dst_ranks}: log steps 1..40 exactly once")
    check(np.array_equal(la[:20], lb[:20]), f"{src_ranks} -> {dst_ranks}: the first 20 losses are the first part's")
    rel = np.abs(la[20:] - lb[20:]) / np.abs(la[20:])
    check(rel.max() <= 1e-4, f"{src_ranks} -> {dst_ranks}: steps 21..40 loss within 1e-4 relative of the "
                             f"uninterrupted {src_ranks}-rank run (max {rel.max():.2e})")
    t = read_trace(f"{WORK}/t-cross{src_ranks}{dst_ranks}", dst_ranks)
    check(all(len(x) == 20 and x[0].split()[0] == "21" for x in t) and all(x == t[0] for x in t),
          f"{src_ranks} -> {dst_ranks}: every rank made updates 21..40 with equal weights")


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    data = f"{WORK}/data"
    run([EXE, "prepare", "--train", f"{SRC}/tests/data/tiny/train.csv", "--test", f"{SRC}/tests/data/tiny/test.csv",
         "--out", data, "--max-len", "24"])
    global COMMON
    COMMON = [f"data.train={data}/train.h5", "data.test=", "train.steps=40", "train.log_every=3",
              "checkpoint.every=10", "checkpoint.keep=2", "heads.every=7", "explore.eps_start=0.9",
              "explore.eps_end=0.2", "explore.steps=40"]
    adaptive = ["explore.shape=adaptive", "explore.window=6", "explore.threshold=0.01", "explore.anneal_steps=8"]
    linear = ["explore.shape=linear", "train.micro_batch=3"]
    same_world(1, adaptive)
    same_world(2, linear)
    cross_world(2, 1, linear)
    cross_world(1, 2, adaptive)
    print(f"{len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
