"""The budget controller (train.budget_target, dual ascent on lambda by the rank-0 coordinator) and the added
training options (train.sandwich, train.budget_supervise), end to end on the tiny corpus.

Checks, each named in the output:
  converges        with train.budget_target = 0.5 (2 of 4 heads) the mean fraction of heads k/H that eval
                   reports on the training and test files ends within 0.1 of 0.5 (tiny data, 240 updates), and
                   lambda, stored in the checkpoint's /coordinator, is finite and not 0
  target_moves     a target of 0.25 ends with fewer heads than 0.75 on the same data and seed
  ranks_1_2_3      1, 2 and 3 ranks give the same losses at every update (1e-4 relative) and the same lambda
                   (1e-4 relative); every rank of a 2- and a 3-rank run holds bitwise identical weights
  resume_bitwise   a run stopped at update 40 (train.stop_at) and resumed gives a final checkpoint whose /model
                   and /optim datasets and budget_lambda are bitwise those of the uninterrupted run
  options_ranks    the sandwich rule with distillation, budget supervision and gate_norm: 1 and 2 ranks give
                   the same losses (1e-4 relative) and 2 ranks agree bitwise
  supervise_rank   batch-ranked budget supervision (train.supervise_rank = 1) changes the losses against the
                   same run without it, still ends within 0.1 of the target 0.5, and the ranks of a 2-rank run
                   agree bitwise (its targets are shared within each rank's micro-batch, so 1 and 2 ranks
                   differ); without train.budget_target it is refused, naming both keys
  supervise_center centred supervision (train.supervise_center = 1) changes the losses against the uncentred
                   run, still ends within 0.1 of the target, and is refused when no supervision is on
  budget_spread    train.budget_spread = 1 (sigma 1 head): the sd of k^ over the training inputs is larger in
                   every layer than that of converges' run (the same but for the key) (and above 0.3 heads), the fraction of heads
                   still ends within 0.1 of the target 0.5, and the ranks of a 2-rank run agree bitwise
"""
import os
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, check, finish, launcher, prepare, read_trace, run, train_args, work_dir  # noqa: E402

WORK = work_dir("budget_target")
DATA = prepare(WORK)
BASE = ("train.batch_size=16", "train.warmup=5", "explore.eps_start=1", "explore.eps_end=0", "explore.steps=40",
        "train.lr=3e-3", "train.budget_ramp=40")


def train(name, ranks, *sets):
    d = os.path.join(WORK, name)
    trace = os.path.join(WORK, name + ".trace")
    env = dict(os.environ, BF_TRACE=trace)
    p = subprocess.run(launcher(ranks) + [EXE] + train_args(DATA, d, *(BASE + sets)), capture_output=True,
                       text=True, env=env, timeout=300)
    if p.returncode != 0:
        sys.exit("training %s failed (%d):\n%s" % (name, p.returncode, p.stderr))
    return d, read_trace(trace, ranks)


def last_checkpoint(d):
    c = os.path.join(d, "checkpoints")
    return os.path.join(c, sorted(os.listdir(c))[-1])


def lam(d):
    with h5py.File(last_checkpoint(d), "r") as f:
        return float(f["coordinator"].attrs["budget_lambda"])


def fraction(d, data_file):
    import json
    p = run([EXE, "eval", "--checkpoint", last_checkpoint(d), "--data", data_file, "--json"])
    j = json.loads(p.stdout)
    return float(np.mean(j["mean_budget"])) / j["n_heads"]


def losses(traces):
    return [float(line.split()[2]) for line in traces[0]]


def rel(a, b):
    return max(abs(x - y) / max(abs(x), abs(y), 1e-30) for x, y in zip(a, b))


def datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and (name.startswith("model/") or name.startswith("optim/")):
                out[name] = obj[()]
        f.visititems(visit)
        out["budget_lambda"] = f["coordinator"].attrs["budget_lambda"]
    return out


# converges / target_moves
half, _ = train("half", 1, "train.steps=240", "train.budget_target=0.5")
f_train, f_test = fraction(half, DATA + "/train.h5"), fraction(half, DATA + "/test.h5")
check("converges", abs(f_train - 0.5) <= 0.1 and abs(f_test - 0.5) <= 0.1 and np.isfinite(lam(half)) and
      lam(half) != 0.0, "fraction of heads train %.3f test %.3f, lambda %.4g" % (f_train, f_test, lam(half)))
low, _ = train("low", 1, "train.steps=240", "train.budget_target=0.25")
high, _ = train("high", 1, "train.steps=240", "train.budget_target=0.75")
f_low, f_high = fraction(low, DATA + "/train.h5"), fraction(high, DATA + "/train.h5")
check("target_moves", f_low + 0.1 < f_high, "fraction of heads at target 0.25: %.3f, at 0.75: %.3f" % (f_low, f_high))

# ranks_1_2_3
runs = {r: train("ranks%d" % r, r, "train.steps=60", "train.budget_target=0.5") for r in (1, 2, 3)}
l1 = losses(runs[1][1])
worst = max(rel(l1, losses(runs[r][1])) for r in (2, 3))
lams = [lam(runs[r][0]) for r in (1, 2, 3)]
lam_rel = max(abs(x - lams[0]) / max(abs(lams[0]), 1e-30) for x in lams)
agree = all(len({line.split()[3] for line in rows}) == 1 for r in (2, 3) for rows in zip(*runs[r][1]))
check("ranks_1_2_3", worst <= 1e-4 and lam_rel <= 1e-4 and agree,
      "loss rel %.2g, lambda %s (rel %.2g), ranks bitwise equal: %s" % (worst, lams, lam_rel, agree))

# resume_bitwise
full, _ = train("full", 1, "train.steps=80", "train.budget_target=0.5")
part, _ = train("part", 1, "train.steps=80", "train.budget_target=0.5", "train.stop_at=40")
p = subprocess.run([EXE] + train_args(DATA, part, *(BASE + ("train.steps=80", "train.budget_target=0.5"))) +
                   ["--resume", "auto"], capture_output=True, text=True, timeout=300)
a, b = datasets(last_checkpoint(full)), datasets(last_checkpoint(part)) if p.returncode == 0 else {}
same = p.returncode == 0 and a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
check("resume_bitwise", same, "resume exit %d, %d datasets compared, lambda %s vs %s" %
      (p.returncode, len(a), a.get("budget_lambda"), b.get("budget_lambda")))

# options_ranks
opts = ("train.steps=30", "train.budget_target=0.5", "train.sandwich=1", "train.distill=0.7",
        "train.budget_supervise=0.05", "train.supervise_rel=0.5", "model.gate_norm=1")
o1, o2 = train("opt1", 1, *opts), train("opt2", 2, *opts)
agree2 = all(len({line.split()[3] for line in rows}) == 1 for rows in zip(*o2[1]))
d = rel(losses(o1[1]), losses(o2[1]))
check("options_ranks", d <= 1e-4 and agree2, "loss rel %.2g, 2 ranks bitwise equal: %s" % (d, agree2))

# supervise_rank
plain = train("plain", 1, "train.steps=120", "train.budget_target=0.5", "model.gate_norm=1")
ranked = train("ranked", 1, "train.steps=120", "train.budget_target=0.5", "model.gate_norm=1",
               "train.supervise_rank=1", "train.supervise_weight=1")
ranked2 = train("ranked2", 2, "train.steps=30", "train.budget_target=0.5", "train.supervise_rank=1")
agree_r = all(len({line.split()[3] for line in rows}) == 1 for rows in zip(*ranked2[1]))
moved = rel(losses(plain[1]), losses(ranked[1]))
f_r = fraction(ranked[0], DATA + "/train.h5")
p = subprocess.run([EXE] + train_args(DATA, os.path.join(WORK, "refused"), *(BASE + ("train.steps=5",
                   "train.supervise_rank=1"))), capture_output=True, text=True, timeout=60)
refused = p.returncode != 0 and "train.supervise_rank" in p.stderr and "train.budget_target" in p.stderr
check("supervise_rank", moved > 1e-4 and abs(f_r - 0.5) <= 0.1 and agree_r and refused,
      "loss moved by %.2g relative, fraction %.3f, 2 ranks bitwise equal: %s, refused without a target: %s (%s)"
      % (moved, f_r, agree_r, refused, p.stderr.strip().splitlines()[-1:] if p.stderr else ""))

# supervise_center
centred = train("centred", 1, "train.steps=120", "train.budget_target=0.5", "model.gate_norm=1",
                "train.supervise_rank=1", "train.supervise_weight=1", "train.supervise_center=1")
moved_c = rel(losses(ranked[1]), losses(centred[1]))
f_c = fraction(centred[0], DATA + "/train.h5")
p = subprocess.run([EXE] + train_args(DATA, os.path.join(WORK, "refused_c"), *(BASE + ("train.steps=5",
                   "train.supervise_center=1"))), capture_output=True, text=True, timeout=60)
refused_c = p.returncode != 0 and "train.supervise_center" in p.stderr and "train.supervise_rank" in p.stderr
check("supervise_center", moved_c > 1e-4 and abs(f_c - 0.5) <= 0.1 and refused_c,
      "loss moved by %.2g relative from the uncentred run, fraction %.3f, refused without supervision: %s (%s)"
      % (moved_c, f_c, refused_c, p.stderr.strip().splitlines()[-1:] if p.stderr else ""))

# budget_spread
spread = train("spread", 1, "train.steps=240", "train.budget_target=0.5", "train.budget_spread=1",
               "train.spread_weight=1")
spread2 = train("spread2", 2, "train.steps=30", "train.budget_target=0.5", "train.budget_spread=1")
agree_s = all(len({line.split()[3] for line in rows}) == 1 for rows in zip(*spread2[1]))


def khat_sd(d):
    """The sd of k^ over the training inputs, per layer (eval --records)."""
    rec = os.path.join(WORK, os.path.basename(d) + "-records.h5")
    run([EXE, "eval", "--checkpoint", last_checkpoint(d), "--data", DATA + "/train.h5", "--records", rec])
    with h5py.File(rec, "r") as f:
        return f["records/khat"][()].std(axis=0)


sd_plain, sd_spread = khat_sd(half), khat_sd(spread[0])
f_s = fraction(spread[0], DATA + "/train.h5")
check("budget_spread", sd_spread.min() > sd_plain.max() and sd_spread.min() > 0.3 and abs(f_s - 0.5) <= 0.1
      and agree_s,
      "sd of k^ per layer %s -> %s; fraction %.3f; 2 ranks equal: %s"
      % (" / ".join("%.2f" % x for x in sd_plain), " / ".join("%.2f" % x for x in sd_spread), f_s, agree_s))

finish(WORK)
