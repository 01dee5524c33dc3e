#!/usr/bin/python3
"""The positive control of docs/FIDELITY.md round 8, read by the half of the inputs it was built on.

usage: hint_control_table.py OUT [--data TEST.h5] [--exe PATH] [--hint-word hintmark] [--two-level] [--json FILE]

OUT is a `launch/reproduce.sh --datasets wordnet-lex-hint` output directory. In that dataset half of the
glosses start with the word "hintmark" and then a word naming their class (launch/make-hint-csv.sh): those
inputs need no attention at all, the other half is plain wordnet-lex. This reads, for every finished run
OUT/wordnet-lex-hint/<variant>/seed<N>/, the test records (`eval --records`) and splits accuracy and the
budget per layer by the two halves. For the learned-budget variants (target<r>) it also evaluates the same
checkpoint with `--budget-control shuffle` and `--budget-control constant` (the issue's two controls) with
--records, so the controls are split the same way. The half of an input is read from its own first token
(the dataset's /tokens and /vocab), not from the CSV.

Prints one Markdown table (mean ± sample sd over seeds) and, per learned variant, own minus each control,
paired by seed, overall and on each half. --json writes the per-seed numbers.

--two-level adds, for the learned variants, what the same weights give with the allocation the construction
calls for, set from outside (the Python package's forward(budgets=...), as tools/budget_layer_grid.py does):
one head in every layer for a hinted input and c heads in every layer for a plain one, c = 1..H, and between
the two c around the model's own mean heads the mixture at exactly that cost (each plain input given the
larger c with probability f; expected accuracy interpolated, by linearity). Own minus that mixture says how
far the learned budgets are from a predictor that reads the hint perfectly. Needs python3-torch too.
Exit status 1 naming the file when something it needs is missing or malformed.
Needs Debian's python3-h5py and python3-numpy.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np

DATASET = "wordnet-lex-hint"
VARIANT = re.compile(r"^(full|fixed\d+|target\d*\.?\d+|layers\d+(?:-\d+)+)$")


def fail(msg):
    sys.exit("hint_control_table.py: " + msg)


def mean_sd(xs):
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def fmt(xs, digits=2, sign=False):
    m, s = mean_sd(xs)
    f = "%+.*f" if sign else "%.*f"
    return (f % (digits, m)) + ("" if s is None else " ± %.*f" % (digits, s))


def table_head(caption, columns):
    """A blank line, the caption, a blank line and a Markdown table's header for these columns."""
    print()
    print(caption)
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def hinted_rows(path, word):
    """Boolean [N]: the input's first token is `word`."""
    try:
        with h5py.File(path, "r") as f:
            vocab = [v.decode() if isinstance(v, bytes) else str(v) for v in f["vocab"][()]]
            first = f["tokens"][:, 0]
    except (OSError, KeyError) as e:
        fail("%s: not a prepared dataset with /tokens and /vocab (%s)" % (path, e))
    if word not in vocab:
        fail("%s: the word '%s' is not in the vocabulary: not the wordnet-lex-hint dataset?" % (path, word))
    return first == vocab.index(word)


def read_records(path, n):
    try:
        with h5py.File(path, "r") as f:
            r = f["records"]
            label, pred, budget = r["label"][()], r["pred"][()], r["budget"][()]
    except (OSError, KeyError) as e:
        fail("%s: not an evaluation records file (%s)" % (path, e))
    if len(label) != n:
        fail("%s: %d records, the dataset has %d inputs" % (path, len(label), n))
    return label, pred, budget


def split_stats(records, hint):
    """Accuracy (percent) and mean budget per layer: overall, on the hinted half, on the plain half."""
    label, pred, budget = records
    ok = (label == pred)
    out = {}
    for name, sel in (("all", np.ones_like(hint)), ("hint", hint), ("plain", ~hint)):
        out[name] = {"acc": 100.0 * float(ok[sel].mean()),
                     "heads": [float(x) for x in budget[sel].mean(axis=0)]}
    return out


def two_level(ckpt, data, hint):
    """{c: stats} for hinted inputs at 1 head and plain ones at c heads in every layer, c = 1..H."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
    import budgetformer
    from budget_layer_grid import predictions, read_split
    model = budgetformer.load(ckpt)
    H, L = model.config["n_heads"], model.config["n_layers"]
    split = read_split(data)
    out = {}
    for c in range(1, H + 1):
        budgets = np.where(hint[:, None], 1, c).repeat(L, axis=1).astype(np.int64)
        pred, used = predictions(model, split, budgets)
        out[c] = split_stats((split[2], pred, used), hint)
    return out


def matched(levels, heads):
    """The mixture of two neighbouring plain-input budgets c, c+1 whose mean heads (over layers and inputs)
    equal `heads`: (c, f, expected stats' accuracies); None when `heads` lies outside the levels."""
    cs = sorted(levels)
    mh = {c: sum(levels[c]["all"]["heads"]) / len(levels[c]["all"]["heads"]) for c in cs}
    for lo, hi in zip(cs, cs[1:]):
        if mh[lo] <= heads <= mh[hi]:
            f = (heads - mh[lo]) / (mh[hi] - mh[lo])
            return {"c": lo, "f": f, **{h: (1 - f) * levels[lo][h]["acc"] + f * levels[hi][h]["acc"]
                                        for h in ("all", "hint", "plain")}}
    return None


def control_records(exe, ckpt, data, ctl, tmp):
    path = os.path.join(tmp, "%s.h5" % ctl)
    cmd = [exe, "eval", "--checkpoint", ckpt, "--data", data, "--records", path, "--json"]
    if ctl != "own":
        cmd += ["--budget-control", ctl]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode:
        fail("%s failed (exit %d):\n%s" % (" ".join(cmd), p.returncode, p.stderr[-2000:]))
    return path


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--data", default=os.path.join(root, "data", DATASET, "test.h5"))
    ap.add_argument("--exe", default=None, help="default: OUT/bin/budgetformer (the program that trained)")
    ap.add_argument("--hint-word", default="hintmark")
    ap.add_argument("--two-level", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    exe = a.exe or os.path.join(a.out, "bin", "budgetformer")
    if not os.access(exe, os.X_OK):
        fail("%s: not an executable program (--exe)" % exe)
    hint = hinted_rows(a.data, a.hint_word)
    n = len(hint)
    base = os.path.join(a.out, DATASET)
    if not os.path.isdir(base):
        fail("%s: no such directory (run launch/reproduce.sh --datasets %s --out %s)" % (base, DATASET, a.out))

    per = {}   # variant -> seed -> {"own": stats, "shuffle": stats, "constant": stats}
    for variant in sorted(os.listdir(base)):
        if not VARIANT.match(variant):
            continue
        for sd_name in sorted(os.listdir(os.path.join(base, variant))):
            m = re.match(r"^seed(\d+)$", sd_name)
            job = os.path.join(base, variant, sd_name)
            if not m or not os.path.isfile(os.path.join(job, "test.json")):
                continue
            with open(os.path.join(job, "test.json")) as f:
                ckpt = json.load(f).get("checkpoint")
            row = {}
            if variant.startswith("target"):
                if not ckpt or not os.path.isfile(ckpt):
                    fail("%s/test.json: its checkpoint %s is gone" % (job, ckpt))
                with tempfile.TemporaryDirectory(prefix="hint-") as tmp:
                    for ctl in ("own", "shuffle", "constant"):
                        row[ctl] = split_stats(read_records(control_records(exe, ckpt, a.data, ctl, tmp), n), hint)
                if a.two_level:
                    row["two_level"] = two_level(ckpt, a.data, hint)
                    own_heads = sum(row["own"]["all"]["heads"]) / len(row["own"]["all"]["heads"])
                    row["two_level_matched"] = matched(row["two_level"], own_heads)
            else:
                rec = os.path.join(job, "test-records.h5")
                if not os.path.isfile(rec):
                    fail("%s: missing (reproduce writes it with the test evaluation)" % rec)
                row["own"] = split_stats(read_records(rec, n), hint)
            per.setdefault(variant, {})[int(m.group(1))] = row
    if not per:
        fail("%s: no finished run" % base)

    def order(v):
        return (0, 0) if v == "full" else (1, int(v[5:])) if v.startswith("fixed") else (2, v)

    print("Test split of %s: %d inputs, %d with the hint (%.1f %%). Accuracy in percent, mean ± seed sd; "
          "heads = mean budget per layer (layer 0 / layer 1 ...)." % (DATASET, n, int(hint.sum()), 100 * hint.mean()))
    table_head("Every finished run, split by the halves.",
               ["variant", "seeds", "accuracy", "hinted half", "plain half", "heads, hinted", "heads, plain"])
    for v in sorted(per, key=order):
        seeds = sorted(per[v])
        own = [per[v][s]["own"] for s in seeds]
        heads = lambda half: " / ".join("%.2f" % mean_sd([o[half]["heads"][l] for o in own])[0]
                                        for l in range(len(own[0][half]["heads"])))
        print("| %s | %d | %s | %s | %s | %s | %s |" % (
            v, len(seeds), fmt([o["all"]["acc"] for o in own]), fmt([o["hint"]["acc"] for o in own]),
            fmt([o["plain"]["acc"] for o in own]), heads("hint"), heads("plain")))
    learned = [v for v in sorted(per, key=order) if v.startswith("target")]
    if learned:
        table_head("Own per-input budgets minus each control on the same weights, points, paired by seed "
                   "(mean ± sd); the control's heads per layer on the plain half in brackets.",
                   ["variant", "control", "all inputs", "hinted half", "plain half", "beyond the sd (all inputs)"])
        for v in learned:
            seeds = sorted(per[v])
            for ctl in ("shuffle", "constant"):
                d = {h: [per[v][s]["own"][h]["acc"] - per[v][s][ctl][h]["acc"] for s in seeds]
                     for h in ("all", "hint", "plain")}
                m, s = mean_sd(d["all"])
                ch = " / ".join("%.2f" % mean_sd([per[v][s_][ctl]["plain"]["heads"][l] for s_ in seeds])[0]
                                for l in range(len(per[v][seeds[0]][ctl]["plain"]["heads"])))
                verdict = "-" if s is None else ("yes" if m > s else "no")
                print("| %s | %s [%s] | %s | %s | %s | %s |" % (v, ctl, ch, fmt(d["all"], sign=True),
                                                            fmt(d["hint"], sign=True), fmt(d["plain"], sign=True),
                                                            verdict))
    if learned and a.two_level:
        table_head("The same weights with hinted inputs at 1 head and plain ones at c heads in every layer (set "
                   "from outside), and the mixture of two such c at the model's own mean heads; test, points.",
                   ["variant", "allocation", "accuracy", "hinted half", "plain half", "heads per layer (all inputs)"])
        for v in learned:
            seeds = sorted(per[v])
            for c in sorted(per[v][seeds[0]]["two_level"]):
                t = [per[v][s]["two_level"][c] for s in seeds]
                print("| %s | 1 \\| %d | %s | %s | %s | %s |" % (
                    v, c, fmt([x["all"]["acc"] for x in t]), fmt([x["hint"]["acc"] for x in t]),
                    fmt([x["plain"]["acc"] for x in t]),
                    " / ".join("%.2f" % x for x in t[0]["all"]["heads"])))
            mm = [per[v][s]["two_level_matched"] for s in seeds]
            if all(mm):
                d = {h: [per[v][s]["own"][h]["acc"] - mm[i][h] for i, s in enumerate(seeds)]
                     for h in ("all", "hint", "plain")}
                print("| %s | mixture at the own heads | %s | %s | %s | own minus it: %s (hinted %s, plain %s) |" % (
                    v, fmt([m["all"] for m in mm]), fmt([m["hint"] for m in mm]), fmt([m["plain"] for m in mm]),
                    fmt(d["all"], sign=True), fmt(d["hint"], sign=True), fmt(d["plain"], sign=True)))
    if a.json:
        for v in per:
            for s_ in per[v]:
                if "two_level" in per[v][s_]:
                    per[v][s_]["two_level"] = {str(c): x for c, x in per[v][s_]["two_level"].items()}
        with open(a.json, "w") as f:
            json.dump({"data": a.data, "n": n, "hinted": int(hint.sum()), "runs": per}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
