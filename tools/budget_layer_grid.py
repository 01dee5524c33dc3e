"""Do a model's per-input budgets beat the best constant budget per layer? (issue 13's adaptivity question)

    /usr/bin/python3 tools/budget_layer_grid.py --valid VALID.h5 --test TEST.h5 [--json] CHECKPOINT...

`eval --budget-control constant` gives every input the rounded mean of each layer's budgets. When a layer's
mean lies near a half (2.13 / 1.74 heads, say), the rounding moves heads from one layer to another, and the
control then measures where the heads sit as much as whether they follow the input. This tool separates the
two: for each checkpoint (a learned-budget model) it evaluates the same weights with every constant budget
per layer (k_1, ..., k_L in 1..H, every input alike, the heads still chosen by relevance; H^L passes over the
valid split), keeps those that spend no more heads in all than the model's own mean budgets (sum of k_l <=
sum of the valid means), picks the most accurate of them on the valid split, and reads that one and the
model's own budgets once on the test split. Own minus that is the part of the accuracy that per-input budgets
earn over where the heads sit. That constant gets at most the model's heads (usually fewer: the sum is
rounded down), so it favours the model; a second one, allowed the sum rounded up (at most one head more in
all), favours the constant. Between the two, at the model's exact cost: each input given the larger of the
two constants with probability f and the smaller otherwise (f such that the expected heads are the model's
own); its expected test accuracy is (1 - f) acc_small + f acc_large. Own minus that "mixture" is the
compute-matched answer.

Prints per checkpoint the valid means, own accuracy, the chosen per-layer budgets and both test accuracies;
with several checkpoints (seeds), the mean and sample sd of the per-seed differences (in points). --json
prints one JSON object instead. Evaluation uses the Python package (python/budgetformer), which computes what
the C program does (tests/test_python_package.py); one thread, float32.
"""
import argparse
import itertools
import json
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import budgetformer  # noqa: E402


def read_split(path):
    """(tokens, lengths, labels) of a prepared dataset (.h5 from budgetformer prepare)."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            for name in ("tokens", "lengths", "labels"):
                if name not in f:
                    raise SystemExit("%s: no /%s dataset: not a file of budgetformer prepare" % (path, name))
            return (f["tokens"][()].astype(np.int64), f["lengths"][()].astype(np.int64),
                    f["labels"][()].astype(np.int64))
    except OSError as e:
        raise SystemExit("%s: cannot read (%s)" % (path, e))


def predictions(model, split, budgets=None, batch=1024):
    """(predicted class [n], budgets used [n, L]) on a split; budgets as BudgetFormer.forward takes them: [L]
    for every input alike, or [n, L] per input of the split (cut into the same batches as the inputs)."""
    import torch
    tokens, lengths, _ = split
    per_input = budgets is not None and np.ndim(budgets) == 2
    preds, used = [], []
    with torch.no_grad():
        for i in range(0, len(tokens), batch):
            ln = lengths[i:i + batch]
            out = model(tokens[i:i + batch, :int(ln.max())], ln,
                        budgets=budgets[i:i + batch] if per_input else budgets)
            preds.append(out["logits"].argmax(dim=1).numpy())
            used.append(out["budget"].numpy())
    return np.concatenate(preds), np.concatenate(used)


def accuracy(pred, labels):
    return 100.0 * float((pred == labels).mean())


def grid(path, valid, test):
    """The comparison for one checkpoint, as a dict."""
    model = budgetformer.load(path)
    if model.mode != "learned":
        raise SystemExit("%s: a %s model: its budget does not depend on the input, so there is nothing to "
                         "compare (this tool is for learned-budget checkpoints)" % (path, model.mode))
    H, L = model.config["n_heads"], model.config["n_layers"]
    own_valid, used = predictions(model, valid)
    means = used.mean(axis=0)
    within = float(means.sum()) + 1e-9          # the model's own heads in all (valid)
    above = int(np.ceil(within - 1e-6))          # the same rounded up: at most one head more in all
    rows = []
    for ks in itertools.product(range(1, H + 1), repeat=L):
        if sum(ks) <= above:
            rows.append((accuracy(predictions(model, valid, list(ks))[0], valid[2]), ks))
    own_test = accuracy(predictions(model, test)[0], test[2])
    out = {"checkpoint": path, "valid_mean_budget": [round(float(m), 4) for m in means],
           "valid_own": accuracy(own_valid, valid[2]), "test_own": own_test}
    # For each bound, the most accurate constant on valid; ties to more heads in all, then to the earlier
    # layers (deterministic). "at_most" never spends more heads than the model; "rounded_up" up to one more.
    for name, bound in (("at_most", within), ("rounded_up", above)):
        cand = [r for r in rows if sum(r[1]) <= bound]
        if not cand:  # fewer than one head per layer cannot happen (k >= 1): L heads is the least
            out[name] = None
            continue
        acc, best = max(cand, key=lambda r: (r[0], sum(r[1]), r[1]))
        test_acc = accuracy(predictions(model, test, list(best))[0], test[2])
        out[name] = {"budgets": list(best), "heads": sum(best), "valid": acc, "test": test_acc,
                     "difference": own_test - test_acc, "tried": len(cand)}
    lo, hi = out["at_most"], out["rounded_up"]
    if lo and hi and hi["heads"] > lo["heads"]:
        # Each input given the larger constant with probability f, the smaller otherwise, f chosen so that the
        # expected heads equal the model's own: a budget that ignores the input at the model's exact cost,
        # whose expected test accuracy is the interpolation below (linearity of expectation).
        f = min(1.0, max(0.0, (within - lo["heads"]) / (hi["heads"] - lo["heads"])))
        mixed = (1.0 - f) * lo["test"] + f * hi["test"]
        out["mixture"] = {"fraction_larger": f, "test": mixed, "difference": own_test - mixed}
    elif lo:  # the same constant under both bounds (valid prefers it even with a head more allowed, or the
        # model's heads are a whole number): it is the input-blind budget, at no more than the model's cost
        out["mixture"] = {"fraction_larger": 0.0, "test": lo["test"], "difference": lo["difference"]}
    else:
        out["mixture"] = None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--valid", required=True, help="prepared split the constant is chosen on")
    ap.add_argument("--test", required=True, help="prepared split both are read on once")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    ap.add_argument("checkpoints", nargs="+")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    valid, test = read_split(a.valid), read_split(a.test)
    results = [grid(p, valid, test) for p in a.checkpoints]
    summary = {}
    for name in ("at_most", "rounded_up", "mixture"):
        d = [r[name]["difference"] for r in results if r[name]]
        summary[name] = {"seeds": len(d), "mean_difference": statistics.mean(d) if d else None,
                         "sd_difference": statistics.stdev(d) if len(d) > 1 else None}
    if a.json:
        print(json.dumps({"results": results, "summary": summary}, indent=1))
        return
    print("| checkpoint | valid mean budget per layer (sum) | test own | best constant, at most the heads: "
          "budgets, test, own - it | best constant, rounded up | mixture of the two: test, own - it |")
    print("|---|---|---|---|---|---|")

    def cell(c):
        return "-" if not c else "%s: %.2f, %+.2f" % (" / ".join(str(k) for k in c["budgets"]), c["test"],
                                                      c["difference"])
    for r in results:
        m = r["valid_mean_budget"]
        mix = r["mixture"]
        print("| %s | %s (%.2f) | %.2f | %s | %s | %s |" % (
            r["checkpoint"], " / ".join("%.2f" % x for x in m), sum(m), r["test_own"], cell(r["at_most"]),
            cell(r["rounded_up"]), "-" if not mix else "%.2f, %+.2f" % (mix["test"], mix["difference"])))
    for name, what in (("at_most", "at most the model's heads"), ("rounded_up", "heads rounded up"),
                       ("mixture", "mixture at the model's heads")):
        s = summary[name]
        if s["sd_difference"] is not None:
            print("own - best constant per layer (%s), %d checkpoints: %+.2f ± %.2f points" % (
                what, s["seeds"], s["mean_difference"], s["sd_difference"]))


if __name__ == "__main__":
    main()
