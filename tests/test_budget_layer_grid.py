"""Budgets set from outside in the Python package (BudgetFormer.forward(budgets=...)) and the per-layer constant
budget comparison of tools/budget_layer_grid.py, on the tiny corpus (a learned-budget model trained for 120
updates with train.budget_target = 0.5, so its budgets differ between inputs and layers).

  own_budgets      budgets = the model's own per-input budgets [B, L] gives the same logits, bit for bit, and
                   budgets = 0 everywhere keeps the model's own
  matches_c        budgets = the rounded per-layer means gives, on every test input, the budgets, head sets and
                   logits (1e-4) of `budgetformer eval --budget-control constant --records`, and its accuracy
  changes          a different constant changes the budgets used (the override is not ignored)
  refused          out-of-range budgets, the wrong shape, and a full-heads model raise ValueError naming them
  tool             the tool's JSON: the "at most" constant spends at most the model's heads, the "rounded up" one
                   at most one more, each is the most accurate on valid among those allowed (recomputed here
                   over every constant), its test accuracy is what the package computes for it, and the
                   mixture lies between the two
  tool_errors      the tool refuses a full-heads checkpoint and a file that is not a prepared dataset, naming them,
                   with a nonzero status
"""
import itertools
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, SRC, check, finish, prepare, run, train_args, work_dir  # noqa: E402

sys.path.insert(0, os.path.join(SRC, "python"))
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import budgetformer  # noqa: E402

TOOL = os.path.join(SRC, "tools", "budget_layer_grid.py")
BASE = ("train.batch_size=16", "train.warmup=5", "explore.eps_start=0", "explore.eps_end=0", "explore.steps=40",
        "train.lr=3e-3", "train.budget_ramp=40", "train.steps=120", "checkpoint.every=120")

work = work_dir("layer-grid")
data = prepare(work)


def train(name, *sets):
    d = os.path.join(work, name)
    run([EXE] + train_args(data, d, *(BASE + sets)))
    ck = sorted(os.listdir(os.path.join(d, "checkpoints")))
    return os.path.join(d, "checkpoints", [c for c in ck if c.endswith(".h5")][-1])


def split(path):
    with h5py.File(path, "r") as f:
        return f["tokens"][()].astype(np.int64), f["lengths"][()].astype(np.int64), f["labels"][()]


learned = train("learned", "train.budget_target=0.5")
full = train("full", "model.full_heads=1")
model = budgetformer.load(learned)
H, L = model.config["n_heads"], model.config["n_layers"]
tok, ln, y = split(os.path.join(data, "test.h5"))
T = torch.from_numpy(tok[:, :int(ln.max())])
with torch.no_grad():
    own = model(T, torch.from_numpy(ln))
    same = model(T, torch.from_numpy(ln), budgets=own["budget"])
    zero = model(T, torch.from_numpy(ln), budgets=[0] * L)
check("own_budgets", torch.equal(own["logits"], same["logits"]) and torch.equal(own["logits"], zero["logits"]) and
      torch.equal(own["budget"], same["budget"]), "budgets per layer %s" % own["budget"].float().mean(0).tolist())

# the C program's constant control, with its records
rec_path = os.path.join(work, "constant.h5")
c = json.loads(run([EXE, "eval", "--checkpoint", learned, "--data", os.path.join(data, "test.h5"), "--json",
                    "--budget-control", "constant", "--records", rec_path]).stdout)
with h5py.File(rec_path, "r") as f:
    rec = {k: f["records"][k][()] for k in f["records"]}
constant = [int(k) for k in rec["budget"][0]]
with torch.no_grad():
    ctl = model(T, torch.from_numpy(ln), budgets=constant)
diff = float(np.abs(ctl["logits"].numpy() - rec["logits"]).max())
same_budgets = bool((ctl["budget"].numpy() == rec["budget"]).all())
same_heads = bool((ctl["head_mask"].numpy() == rec["head_mask"].astype(np.int64)).all())
acc_py = float((ctl["logits"].argmax(1).numpy() == y).mean())
acc_c = c["budget_control"]["accuracy"]
check("matches_c", diff <= 1e-4 and same_budgets and same_heads and abs(acc_py - acc_c) < 1e-4,
      "constant %s, logits max diff %.3g, accuracy %.4f vs C %.4f" % (constant, diff, acc_py, acc_c))

other = [1 if k > 1 else 2 for k in constant]
with torch.no_grad():
    moved = model(T, torch.from_numpy(ln), budgets=other)
check("changes", bool((moved["budget"].numpy() == np.array(other)).all()) and
      not torch.equal(moved["logits"], ctl["logits"]), "budgets %s" % other)


def refused(fn, words):
    try:
        fn()
    except ValueError as e:
        return all(w in str(e) for w in words)
    return False


with torch.no_grad():
    ok = (refused(lambda: model(T, torch.from_numpy(ln), budgets=[H + 1] * L), ["budgets", "0..%d" % H]) and
          refused(lambda: model(T, torch.from_numpy(ln), budgets=[1] * (L + 1)), ["budgets", "[%d]" % L]) and
          refused(lambda: budgetformer.load(full)(T, torch.from_numpy(ln), budgets=[1] * L), ["full-heads"]))
check("refused", ok)

valid = os.path.join(data, "train.h5")  # the tiny corpus has no valid split: train stands in for it
test = os.path.join(data, "test.h5")
p = run([sys.executable, TOOL, "--json", "--valid", valid, "--test", test, learned])
j = json.loads(p.stdout)["results"][0]
vt, vl, vy = split(valid)


def acc_with(tokens, lengths, labels, budgets):
    with torch.no_grad():
        out = model(torch.from_numpy(tokens[:, :int(lengths.max())]), torch.from_numpy(lengths), budgets=budgets)
    return 100.0 * float((out["logits"].argmax(1).numpy() == labels).mean())


heads = sum(j["valid_mean_budget"])
grid = {ks: acc_with(vt, vl, vy, list(ks)) for ks in itertools.product(range(1, H + 1), repeat=L)}
lo, hi, mix = j["at_most"], j["rounded_up"], j["mixture"]
best_lo = max(a for ks, a in grid.items() if sum(ks) <= heads + 1e-6)
best_hi = max(a for ks, a in grid.items() if sum(ks) <= np.ceil(heads - 1e-6))
ok = (lo["heads"] <= heads + 1e-6 and hi["heads"] <= np.ceil(heads - 1e-6) and
      abs(lo["valid"] - best_lo) < 1e-9 and abs(hi["valid"] - best_hi) < 1e-9 and
      abs(lo["test"] - acc_with(tok, ln, y, lo["budgets"])) < 1e-9 and
      abs(hi["test"] - acc_with(tok, ln, y, hi["budgets"])) < 1e-9 and
      min(lo["test"], hi["test"]) - 1e-9 <= mix["test"] <= max(lo["test"], hi["test"]) + 1e-9 and
      abs(j["test_own"] - acc_with(tok, ln, y, None)) < 1e-9)
check("tool", ok, "heads %.2f, at most %s (valid %.2f), rounded up %s (valid %.2f), mixture %.2f" % (
    heads, lo["budgets"], lo["valid"], hi["budgets"], hi["valid"], mix["test"]))

bad_full = subprocess.run([sys.executable, TOOL, "--valid", valid, "--test", test, full], capture_output=True,
                          text=True)
bad_data = subprocess.run([sys.executable, TOOL, "--valid", learned, "--test", test, learned], capture_output=True,
                          text=True)
check("tool_errors", bad_full.returncode != 0 and full in bad_full.stderr and "full" in bad_full.stderr and
      bad_data.returncode != 0 and learned in bad_data.stderr and "/tokens" in bad_data.stderr,
      (bad_full.stderr + bad_data.stderr)[-300:])
finish(work)
