"""The positive control's corpus (launch/make-hint-csv.sh) and its table (tools/hint_control_table.py), on the
tiny corpus standing in for wordnet-lex.

  hint_csv         every row keeps its label and its text, and gets "hintmark hint<label>" in front exactly when
                   the CRC-32 of its text is odd (recomputed here); both halves are non-empty; a second run
                   writes the same bytes
  hint_csv_errors  a row with three fields is refused, naming the file and the line, with a nonzero status
  halves           the tool's count of hinted test inputs is the number of hinted rows of the CSV
  own              for a fixed-budget run and a learned-budget run, the tool's overall accuracy is the one
                   `budgetformer eval --json` reports, and it is the hinted and plain halves' accuracies weighted
                   by their sizes
  controls         the shuffle control's budgets have the same histogram per layer as the model's own (so the
                   same mean heads), the constant control's are the same for every input of a layer and equal the
                   rounded mean of the own budgets, and the learned budgets differ between inputs
  two_level        --two-level: with hinted inputs at 1 head and plain ones at c, the tool's mean heads per layer
                   are (n_hint + c n_plain) / n for every c, its hinted-half accuracy at c = 1 is what the
                   package gives with budget 1 for every input, and the mixture spends the model's own mean heads
                   with an accuracy between its two levels
  tool_errors      a directory without runs and a dataset without the hint word are refused, naming them, with
                   status 1
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, SRC, TINY, check, finish, run, train_args, work_dir  # noqa: E402

TOOL = os.path.join(SRC, "tools", "hint_control_table.py")
SCRIPT = os.path.join(SRC, "launch", "make-hint-csv.sh")
PY = "/usr/bin/python3"

work = work_dir("hint-table")
csv_dir = os.path.join(work, "csv")
os.makedirs(os.path.join(csv_dir, "wordnet-lex"))
for split in ("train", "test"):
    shutil.copy(os.path.join(TINY, split + ".csv"), os.path.join(csv_dir, "wordnet-lex", split + ".csv"))
run(["bash", SCRIPT, csv_dir])


def rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


ok, n_hint, n_plain = True, 0, 0
for split in ("train", "test"):
    src = rows(os.path.join(csv_dir, "wordnet-lex", split + ".csv"))
    dst = rows(os.path.join(csv_dir, "wordnet-lex-hint", split + ".csv"))
    ok &= len(src) == len(dst)
    for (label, text), (label2, text2) in zip(src, dst):
        odd = zlib.crc32(text.encode("utf-8")) & 1
        want = "hintmark hint%s %s" % (label.replace(".", "").lower(), text) if odd else text
        ok &= label == label2 and text2 == want
        if split == "test":
            n_hint, n_plain = n_hint + bool(odd), n_plain + (not odd)
first = open(os.path.join(csv_dir, "wordnet-lex-hint", "test.csv"), "rb").read()
run(["bash", SCRIPT, csv_dir])
again = open(os.path.join(csv_dir, "wordnet-lex-hint", "test.csv"), "rb").read()
check("hint_csv", ok and n_hint > 0 and n_plain > 0 and first == again,
      "%d hinted and %d plain test rows" % (n_hint, n_plain))

bad_dir = os.path.join(work, "bad")
os.makedirs(os.path.join(bad_dir, "wordnet-lex"))
for split in ("train", "test"):
    with open(os.path.join(bad_dir, "wordnet-lex", split + ".csv"), "w") as f:
        f.write('"a","one two"\n"b","three","four"\n')
p = subprocess.run(["bash", SCRIPT, bad_dir], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
check("hint_csv_errors", p.returncode != 0 and "train.csv line 2" in p.stderr and "expected 2 fields" in p.stderr,
      p.stderr.strip()[-200:])

# A reproduce-like output directory: OUT/bin/budgetformer and OUT/wordnet-lex-hint/<variant>/seed1/.
data = os.path.join(work, "data")
run([EXE, "prepare", "--train", os.path.join(csv_dir, "wordnet-lex-hint", "train.csv"),
     "--test", os.path.join(csv_dir, "wordnet-lex-hint", "test.csv"), "--out", data, "--max-len", "26"])
test_h5 = os.path.join(data, "test.h5")
out = os.path.join(work, "out")
os.makedirs(os.path.join(out, "bin"))
os.symlink(EXE, os.path.join(out, "bin", "budgetformer"))
BASE = ("train.batch_size=16", "train.warmup=5", "explore.eps_start=0", "explore.eps_end=0", "explore.steps=40",
        "train.lr=3e-3", "train.budget_ramp=40", "train.steps=120", "checkpoint.every=120")
evals = {}
for variant, sets in (("fixed1", ("model.fixed_budget=1",)), ("target0.5", ("train.budget_target=0.5",))):
    job = os.path.join(out, "wordnet-lex-hint", variant, "seed1")
    run([EXE] + train_args(data, os.path.join(job, "run"), *(BASE + sets)))
    ck_dir = os.path.join(job, "run", "checkpoints")
    ckpt = os.path.join(ck_dir, sorted(c for c in os.listdir(ck_dir) if c.endswith(".h5"))[-1])
    rec = os.path.join(job, "test-records.h5")
    p = run([EXE, "eval", "--checkpoint", ckpt, "--data", test_h5, "--json", "--records", rec])
    evals[variant] = json.loads(p.stdout)
    with open(os.path.join(job, "test.json"), "w") as f:
        f.write(p.stdout)

js = os.path.join(work, "table.json")
p = run([PY, TOOL, out, "--data", test_h5, "--two-level", "--json", js])
doc = json.load(open(js))
check("halves", doc["hinted"] == n_hint and doc["n"] == n_hint + n_plain,
      "%d of %d hinted" % (doc["hinted"], doc["n"]))

ok, detail = True, []
for variant in ("fixed1", "target0.5"):
    own = doc["runs"][variant]["1"]["own"]
    acc = 100.0 * evals[variant]["accuracy"]
    weighted = (own["hint"]["acc"] * n_hint + own["plain"]["acc"] * n_plain) / (n_hint + n_plain)
    ok &= abs(own["all"]["acc"] - acc) < 1e-3 and abs(weighted - own["all"]["acc"]) < 1e-9
    detail.append("%s %.3f (eval %.3f)" % (variant, own["all"]["acc"], acc))
check("own", ok, "; ".join(detail))

# The controls, recomputed from records of the same evaluations the tool makes.
import h5py  # noqa: E402
import numpy as np  # noqa: E402

ckpt = evals["target0.5"]["checkpoint"]
recs = {}
for ctl in ("own", "shuffle", "constant"):
    path = os.path.join(work, ctl + ".h5")
    cmd = [EXE, "eval", "--checkpoint", ckpt, "--data", test_h5, "--records", path]
    run(cmd + ([] if ctl == "own" else ["--budget-control", ctl]))
    with h5py.File(path, "r") as f:
        recs[ctl] = f["records/budget"][()]
own_b, shuf_b, const_b = recs["own"], recs["shuffle"], recs["constant"]
same_hist = all(sorted(own_b[:, l]) == sorted(shuf_b[:, l]) for l in range(own_b.shape[1]))
rounded = np.clip(np.floor(own_b.mean(axis=0) + 0.5), 1, None)
const_ok = all((const_b[:, l] == rounded[l]).all() for l in range(own_b.shape[1]))
varies = any(len(set(own_b[:, l])) > 1 for l in range(own_b.shape[1]))
tool_rows = doc["runs"]["target0.5"]["1"]
heads_ok = all(abs(tool_rows["shuffle"]["all"]["heads"][l] - tool_rows["own"]["all"]["heads"][l]) < 1e-9
               and abs(tool_rows["constant"]["all"]["heads"][l] - rounded[l]) < 1e-9 for l in range(own_b.shape[1]))
check("controls", same_hist and const_ok and varies and heads_ok,
      "own means %s, constant %s" % (own_b.mean(axis=0).round(2).tolist(), rounded.tolist()))

tl = tool_rows["two_level"]
n_all = n_hint + n_plain
heads_formula = all(abs(tl[str(c)]["all"]["heads"][l] - (n_hint + c * n_plain) / n_all) < 1e-9
                    for c in range(1, 5) for l in range(own_b.shape[1]))
sys.path.insert(0, os.path.join(SRC, "python"))
import torch  # noqa: E402
import budgetformer  # noqa: E402
model = budgetformer.load(ckpt)
with h5py.File(test_h5, "r") as f:
    tok, ln, lab = f["tokens"][()].astype(np.int64), f["lengths"][()].astype(np.int64), f["labels"][()]
    first_is_hint = tok[:, 0] == [v.decode() if isinstance(v, bytes) else v for v in f["vocab"][()]].index("hintmark")
with torch.no_grad():
    pred1 = model(tok[:, :int(ln.max())], ln, budgets=[1] * own_b.shape[1])["logits"].argmax(dim=1).numpy()
hint_acc_1 = 100.0 * float((pred1 == lab)[first_is_hint].mean())
mm = tool_rows["two_level_matched"]
lo, hi = tl[str(mm["c"])], tl[str(mm["c"] + 1)]
own_heads = float(own_b.mean())
mix_heads = (1 - mm["f"]) * np.mean(lo["all"]["heads"]) + mm["f"] * np.mean(hi["all"]["heads"])
check("two_level", heads_formula and abs(tl["1"]["hint"]["acc"] - hint_acc_1) < 1e-9 and
      abs(mix_heads - own_heads) < 1e-9 and min(lo["all"]["acc"], hi["all"]["acc"]) - 1e-9 <= mm["all"] <=
      max(lo["all"]["acc"], hi["all"]["acc"]) + 1e-9,
      "hinted at 1 head %.2f %%, mixture of c = %d and %d (f %.2f)" % (hint_acc_1, mm["c"], mm["c"] + 1, mm["f"]))

empty = os.path.join(work, "empty")
os.makedirs(os.path.join(empty, "bin"))
os.symlink(EXE, os.path.join(empty, "bin", "budgetformer"))
p1 = subprocess.run([PY, TOOL, empty, "--data", test_h5], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
p2 = subprocess.run([PY, TOOL, out, "--data", test_h5, "--hint-word", "nosuchword"], stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE, text=True)
check("tool_errors", p1.returncode == 1 and "wordnet-lex-hint" in p1.stderr and
      p2.returncode == 1 and "nosuchword" in p2.stderr and "test.h5" in p2.stderr,
      (p1.stderr + " | " + p2.stderr).strip()[-300:])

finish(work)
