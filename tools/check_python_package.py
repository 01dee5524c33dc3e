"""Checks the Python package (python/budgetformer) against budgetformer on a trained model and a prepared
dataset, input by input: the logits against `eval --records` (within --tol, default 1e-4), the budgets and the
head sets exactly, the tokenizer against the token ids prepare wrote for every row of the source CSV/TSV/JSONL
file, and a checkpoint saved from Python evaluating to the same accuracy with budgetformer eval.

    /usr/bin/python3 tools/check_python_package.py CHECKPOINT DATASET.h5 SOURCE_TEXT_FILE [--exe build/budgetformer]

e.g., after launch/quickstart.sh or `bash launch/prepare-data.sh wordnet-pos` and training configs/wordnet-pos.ini:

    /usr/bin/python3 tools/check_python_package.py runs/wordnet-pos/checkpoints/step-00003000.h5 \\
        data/wordnet-pos/test.h5 data/csv/wordnet-pos/test.csv

SOURCE_TEXT_FILE is read with the default columns of prepare (CSV: label first, the other columns joined by one
space; TSV: the text after the first tab; JSON Lines: the "text" field). Prints one line per check; exits 1 when
one fails.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import budgetformer  # noqa: E402


def source_texts(path):
    """Text of each source line (1-based line -> text) as prepare reads the file by default."""
    out = {}
    if path.lower().endswith((".jsonl", ".ndjson")):
        with open(path, encoding="utf-8") as f:
            for no, line in enumerate(f, 1):
                if line.strip():
                    out[no] = json.loads(line)["text"]
    elif path.lower().endswith((".tsv", ".txt")):
        with open(path, encoding="utf-8", newline="") as f:
            for no, line in enumerate(f, 1):
                line = line.rstrip("\n").rstrip("\r")
                if "\t" in line:
                    out[no] = line.split("\t", 1)[1]
    else:
        with open(path, encoding="utf-8", newline="") as f:
            r = csv.reader(f)
            for row in r:
                if row:
                    out[r.line_num - row_lines(row) + 1] = " ".join(c.strip() for c in row[1:])
    return out


def row_lines(row):
    return 1 + sum(c.count("\n") for c in row)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("dataset")
    ap.add_argument("source")
    ap.add_argument("--exe", default=os.path.join(HERE, "..", "build", "budgetformer"))
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(1)
    failed = []

    def check(name, ok, detail):
        print(("ok   " if ok else "FAIL ") + name + ": " + detail)
        if not ok:
            failed.append(name)

    with tempfile.TemporaryDirectory() as tmp:
        rec_path = os.path.join(tmp, "records.h5")
        ev = json.loads(subprocess.run([a.exe, "eval", "--checkpoint", a.checkpoint, "--data", a.dataset, "--records",
                                        rec_path, "--json"], check=True, capture_output=True, text=True).stdout)
        with h5py.File(rec_path, "r") as f:
            rec = {k: f["records"][k][()] for k in f["records"]}
        with h5py.File(a.dataset, "r") as f:
            tokens, lengths, lines = f["tokens"][()], f["lengths"][()], f["source_line"][()]
        model = budgetformer.load(a.checkpoint)
        logits, budget, mask = [], [], []
        with torch.no_grad():
            for s in range(0, len(tokens), 512):
                out = model(torch.from_numpy(tokens[s:s + 512]).long(), torch.from_numpy(lengths[s:s + 512]).long())
                logits.append(out["logits"].numpy())
                budget.append(out["budget"].numpy())
                mask.append(out["head_mask"].numpy())
        logits, budget, mask = np.concatenate(logits), np.concatenate(budget), np.concatenate(mask)
        n = len(tokens)
        diff = np.abs(logits - rec["logits"]).max(axis=1)
        check("logits within %g of eval --records" % a.tol, bool((diff <= a.tol).all()),
              "%d of %d inputs, max diff %.3g" % (int((diff <= a.tol).sum()), n, diff.max()))
        nb = int((budget != rec["budget"]).any(axis=1).sum())
        nm = int((mask != rec["head_mask"].astype(np.int64)).any(axis=1).sum())
        check("same budgets", nb == 0, "%d of %d inputs differ" % (nb, n))
        check("same head sets", nm == 0, "%d of %d inputs differ" % (nm, n))
        texts = source_texts(a.source)
        bad = [i for i in range(n) if model.tokenizer.encode(texts.get(int(lines[i]), "")) !=
               tokens[i, :lengths[i]].tolist()]
        check("tokenizer gives prepare's ids", not bad, "%d of %d rows differ%s" % (len(bad), n,
              " (first: row %d, line %d)" % (bad[0], lines[bad[0]]) if bad else ""))
        saved = os.path.join(tmp, "saved.h5")
        model.save(saved)
        ev2 = json.loads(subprocess.run([a.exe, "eval", "--checkpoint", saved, "--data", a.dataset, "--json"],
                                        check=True, capture_output=True, text=True).stdout)
        check("a checkpoint saved from Python evaluates to the same accuracy", ev2["accuracy"] == ev["accuracy"],
              "%s vs %s" % (ev2["accuracy"], ev["accuracy"]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
