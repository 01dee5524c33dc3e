"""model.layer_budgets (added option, docs/MODEL.md): a fixed budget per layer, end to end.

Trains configs/tiny.ini (4 heads, 2 layers) with model.layer_budgets = 3,1 and checks that
  stored       the checkpoint's /model has fixed_budget = -1 and the int64 array layer_budgets = [3, 1]
  inspect      inspect --json reports layer_budgets [3, 1]
  eval         every test input used 3 heads in layer 0 and 1 in layer 1 (eval --json budget histograms)
  python       the Python package loads it as a fixed model with those budgets and predicts the C program's
               classes on every test input
  resume_same  --resume with the same layer_budgets continues
  resume_diff  --resume with model.layer_budgets = 2,2 exits 2 naming model.layer_budgets and both values
  missing      a copy without the layer_budgets attribute is refused by eval, naming the attribute
  bad_key      model.layer_budgets = 3 (one value for two layers) exits 2 naming the key and the count
"""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, SRC, TIMEOUT, check, finish, prepare, run, train_args, work_dir  # noqa: E402

WORK = work_dir("layer_budgets")
data = prepare(WORK)
d = os.path.join(WORK, "run")
run([EXE] + train_args(data, d, "train.steps=30", "checkpoint.every=10", "model.layer_budgets=3,1"))
ck = os.path.join(d, "checkpoints", "step-00000030.h5")

with h5py.File(ck, "r") as f:
    g = f["model"]
    check("stored", int(g.attrs["fixed_budget"]) == -1 and list(np.asarray(g.attrs["layer_budgets"])) == [3, 1],
          "fixed_budget %r, layer_budgets %r" % (g.attrs.get("fixed_budget"), g.attrs.get("layer_budgets")))

j = json.loads(run([EXE, "inspect", "--json", ck]).stdout)
check("inspect", j["model"].get("layer_budgets") == [3, 1] and j["model"]["fixed_budget"] == -1, str(j["model"]))

e = json.loads(run([EXE, "eval", "--json", "--checkpoint", ck, "--data", data + "/test.h5"]).stdout)
check("eval", e["budget_hist"] == [[0, 0, 1, 0], [1, 0, 0, 0]] and e["mean_budget"] == [3, 1],
      "%r %r" % (e["mean_budget"], e["budget_hist"]))

sys.path.insert(0, os.path.join(SRC, "python"))
import budgetformer  # noqa: E402
import torch  # noqa: E402
m = budgetformer.load(ck)
rec = os.path.join(WORK, "records.h5")
run([EXE, "eval", "--checkpoint", ck, "--data", data + "/test.h5", "--records", rec])
with h5py.File(data + "/test.h5", "r") as f:
    tokens, lengths = f["tokens"][()], f["lengths"][()]
with h5py.File(rec, "r") as f:
    pred_c = f["records/pred"][()]
with torch.no_grad():
    out = m(torch.as_tensor(tokens.astype(np.int64)), torch.as_tensor(lengths.astype(np.int64)))
pred_py = out["logits"].argmax(dim=1).numpy()
check("python", m.mode == "fixed" and m.config["layer_budgets"] == (3, 1)
      and (out["budget"].numpy() == np.array([3, 1])).all() and (pred_py == pred_c).all(),
      "mode %s, %d of %d predictions differ" % (m.mode, int((pred_py != pred_c).sum()), len(pred_c)))

p = subprocess.run([EXE] + train_args(data, d, "train.steps=40", "checkpoint.every=10", "model.layer_budgets=3,1")
                   + ["--resume", "auto"], capture_output=True, text=True, timeout=TIMEOUT)
check("resume_same", p.returncode == 0 and os.path.exists(os.path.join(d, "checkpoints", "step-00000040.h5")),
      p.stderr[-400:])

p = subprocess.run([EXE] + train_args(data, d, "train.steps=50", "model.layer_budgets=2,2") + ["--resume", "auto"],
                   capture_output=True, text=True, timeout=TIMEOUT)
check("resume_diff", p.returncode != 0 and "model.layer_budgets" in p.stderr and "2,2" in p.stderr
      and "3,1" in p.stderr, "exit %d: %s" % (p.returncode, p.stderr[-400:]))

bad = os.path.join(WORK, "no-budgets.h5")
shutil.copyfile(ck, bad)
with h5py.File(bad, "r+") as f:
    del f["model"].attrs["layer_budgets"]
p = subprocess.run([EXE, "eval", "--checkpoint", bad, "--data", data + "/test.h5"], capture_output=True, text=True,
                   timeout=TIMEOUT)
check("missing", p.returncode != 0 and "layer_budgets" in p.stderr and "no-budgets.h5" in p.stderr,
      "exit %d: %s" % (p.returncode, p.stderr[-400:]))

p = subprocess.run([EXE] + train_args(data, os.path.join(WORK, "bad"), "model.layer_budgets=3"),
                   capture_output=True, text=True, timeout=TIMEOUT)
check("bad_key", p.returncode == 2 and "model.layer_budgets" in p.stderr and "n_layers = 2" in p.stderr,
      "exit %d: %s" % (p.returncode, p.stderr[-400:]))

finish(WORK)
