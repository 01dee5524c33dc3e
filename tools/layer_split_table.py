#!/usr/bin/python3
"""The pre-registered comparison of docs/FIDELITY.md ("What is left"): the learned head budget against models
*trained* with a fixed budget per layer (model.layer_budgets) spending the same heads in all.

usage: layer_split_table.py RESULTS.json [RESULTS.json ...] [--json OUT] [--plot OUT.png]

Reads the results.json that launch/reproduce.sh writes in its --out directory (one or several: a dataset may
appear in only one of them). For every dataset and every learned-budget row target<r> it takes the total
T = round(L * H * r) heads and every trained split layers<k_1>-...-<k_L> whose budgets sum to T and are not all
equal (the equal split is the fixed budget k = T / L, shown for reference when it was run). The split is
chosen by its mean valid accuracy over its seeds; only then is test read, for the chosen split and the learned
budget, paired by seed (the seeds both have). The learned budget "beats" the chosen split when the mean of the
paired test differences is above their standard deviation (sample sd, n - 1), the issue's "more than the seed
standard deviation"; with one common seed no verdict is given.

Prints a Markdown table per dataset and target, then one summary table. --json writes the same numbers;
--plot draws one panel per dataset and target: valid and test accuracy of every split (mean, bars one seed sd),
the learned budget as a band (mean ± sd), the chosen split marked (needs Debian's python3-matplotlib).
Exit status 1 when a file is missing or is not a results.json of launch/reproduce.sh, naming it; 0 otherwise
(a target without any trained split is reported as such, not an error).
Standard library only, but for --plot.
"""
import argparse
import json
import math
import re
import sys

SPLIT = re.compile(r"^layers(\d+(?:-\d+)+)$")
TARGET = re.compile(r"^target(\d+(?:\.\d+)?)$")
FIXED = re.compile(r"^fixed(\d+)$")


def fail(msg):
    sys.exit("layer_split_table.py: " + msg)


def mean(xs):
    return sum(xs) / len(xs)


def sd(xs):
    """Sample standard deviation (n - 1); None below two values."""
    if len(xs) < 2:
        return None
    m = mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def load(paths):
    """{dataset: {variant: row}} merged over the files; a dataset in two files is refused (which to trust?)."""
    datasets, origin = {}, {}
    for p in paths:
        try:
            with open(p) as f:
                doc = json.load(f)
        except OSError as e:
            fail("%s: cannot read: %s" % (p, e.strerror))
        except ValueError as e:
            fail("%s: not JSON: %s" % (p, e))
        if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), dict):
            fail("%s: no \"datasets\" object: not a results.json of launch/reproduce.sh" % p)
        for name, d in doc["datasets"].items():
            rows = d.get("rows") if isinstance(d, dict) else None
            if not isinstance(rows, dict):
                fail("%s: dataset %s has no \"rows\" object" % (p, name))
            if name in datasets:
                fail("%s: dataset %s is also in %s; give each dataset once" % (p, name, origin[name]))
            for v, r in rows.items():
                for key in ("seeds", "valid_accuracy_all", "test_accuracy_all", "n_heads", "n_layers"):
                    if key not in r:
                        fail("%s: %s row %s has no \"%s\"" % (p, name, v, key))
                if not (len(r["seeds"]) == len(r["valid_accuracy_all"]) == len(r["test_accuracy_all"])):
                    fail("%s: %s row %s: seeds, valid_accuracy_all and test_accuracy_all differ in length"
                         % (p, name, v))
            datasets[name], origin[name] = rows, p
    return datasets


def by_seed(row, split):
    return dict(zip(row["seeds"], row[split + "_accuracy_all"]))


def summarise(variant, row):
    return {"variant": variant, "seeds": list(row["seeds"]),
            "valid": 100 * mean(row["valid_accuracy_all"]), "test": 100 * mean(row["test_accuracy_all"]),
            "valid_sd": None if sd(row["valid_accuracy_all"]) is None else 100 * sd(row["valid_accuracy_all"]),
            "test_sd": None if sd(row["test_accuracy_all"]) is None else 100 * sd(row["test_accuracy_all"]),
            "heads": row.get("valid_heads")}


def compare(rows):
    """The comparisons of one dataset, one per learned target row, sorted by r."""
    out = []
    targets = sorted((float(TARGET.match(v).group(1)), v) for v in rows if TARGET.match(v) and rows[v]["seeds"])
    for r, tv in targets:
        learned = rows[tv]
        H, L = learned["n_heads"], learned["n_layers"]
        total = int(math.floor(L * H * r + 0.5))
        splits, constant = [], None
        for v, row in rows.items():
            m = SPLIT.match(v)
            if m and row["seeds"]:
                ks = [int(k) for k in m.group(1).split("-")]
                if len(ks) == L and sum(ks) == total and len(set(ks)) > 1:
                    splits.append(summarise(v, row))
            m = FIXED.match(v)
            if m and row["seeds"] and int(m.group(1)) * L == total:
                constant = summarise(v, row)
        # Chosen on valid only; ties go to the name, so the choice does not depend on the files' order.
        splits.sort(key=lambda s: (-s["valid"], s["variant"]))
        entry = {"target": r, "variant": tv, "total_heads": total, "n_heads": H, "n_layers": L,
                 "learned": summarise(tv, learned), "splits": splits, "constant": constant, "chosen": None}
        if splits:
            chosen = splits[0]
            a, b = by_seed(learned, "test"), by_seed(rows[chosen["variant"]], "test")
            common = sorted(set(a) & set(b))
            diffs = [100 * (a[s] - b[s]) for s in common]
            d_sd = sd(diffs)
            entry["chosen"] = chosen["variant"]
            entry["paired_seeds"] = common
            entry["diff_points"] = mean(diffs) if diffs else None
            entry["diff_sd_points"] = d_sd
            entry["beats"] = None if d_sd is None else entry["diff_points"] > d_sd
        out.append(entry)
    return out


def fmt(x, nd=2):
    return "-" if x is None else "%.*f" % (nd, x)


def pm(m, s):
    return fmt(m) if s is None else "%s ± %s" % (fmt(m), fmt(s))


def label(variant):
    m = SPLIT.match(variant)
    return "(%s)" % ", ".join(m.group(1).split("-")) if m else variant


def print_tables(results):
    summary = []
    for name, entries in results.items():
        for e in entries:
            print("### %s, learned target r = %g (%s; %d heads in all over %d layers)\n"
                  % (name, e["target"], e["variant"], e["total_heads"], e["n_layers"]))
            print("| model | seeds | mean heads per layer (valid) | valid accuracy | test accuracy |")
            print("|---|---|---|---|---|")
            lr = e["learned"]
            print("| learned budget | %d | %s | %s | %s |" % (len(lr["seeds"]), fmt(lr["heads"]),
                                                           pm(lr["valid"], lr["valid_sd"]), pm(lr["test"], lr["test_sd"])))
            for s in e["splits"]:
                mark = " (chosen on valid)" if s["variant"] == e["chosen"] else ""
                # Test is shown for every split for the record; only the chosen one enters the comparison.
                print("| trained split %s%s | %d | %s | %s | %s |" % (label(s["variant"]), mark, len(s["seeds"]),
                                                                   fmt(s["heads"]), pm(s["valid"], s["valid_sd"]),
                                                                   pm(s["test"], s["test_sd"])))
            c = e["constant"]
            if c:
                print("| fixed k = %d (equal split, reference) | %d | %s | %s | %s |"
                      % (e["total_heads"] // e["n_layers"], len(c["seeds"]), fmt(c["heads"]),
                         pm(c["valid"], c["valid_sd"]), pm(c["test"], c["test_sd"])))
            print()
            if e["chosen"] is None:
                print("No trained split of %d heads was run.\n" % e["total_heads"])
                summary.append((name, e, "no split run"))
                continue
            verdict = ("one common seed: no verdict" if e["beats"] is None else
                       "learned beats it beyond the sd" if e["beats"] else "not beyond the sd")
            print("Learned minus the chosen split on test, paired by seed (%s): **%s** points: %s.\n"
                  % (", ".join(str(s) for s in e["paired_seeds"]), pm(e["diff_points"], e["diff_sd_points"]), verdict))
            summary.append((name, e, verdict))
    print("### Summary\n")
    print("| dataset | target r | heads in all | chosen split | learned - chosen, test (points) | verdict |")
    print("|---|---|---|---|---|---|")
    for name, e, verdict in summary:
        print("| %s | %g | %d | %s | %s | %s |" % (name, e["target"], e["total_heads"],
                                                  label(e["chosen"]) if e["chosen"] else "-",
                                                  pm(e.get("diff_points"), e.get("diff_sd_points")), verdict))


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [(name, e) for name, entries in results.items() for e in entries if e["splits"]]
    if not panels:
        fail("--plot: no dataset has a trained split to draw")
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.4), squeeze=False)
    for col, (name, e) in enumerate(panels):
        splits = sorted(e["splits"], key=lambda s: s["variant"])
        names = [label(s["variant"]) for s in splits]
        for row, split in enumerate(("valid", "test")):
            ax = axes[row][col]
            lr = e["learned"]
            lo_hi = lr[split] - (lr[split + "_sd"] or 0), lr[split] + (lr[split + "_sd"] or 0)
            ax.axhspan(*lo_hi, color="tab:orange", alpha=0.25, lw=0)
            ax.axhline(lr[split], color="tab:orange", label="learned budget (%.2f heads/layer)" % (lr["heads"] or 0))
            ys = [s[split] for s in splits]
            err = [s[split + "_sd"] or 0 for s in splits]
            colors = ["tab:blue" if s["variant"] == e["chosen"] else "tab:gray" for s in splits]
            ax.bar(range(len(splits)), ys, yerr=err, color=colors, capsize=3)
            c = e["constant"]
            if c:
                ax.axhline(c[split], color="k", ls="--", lw=1, label="fixed k = %d" % (e["total_heads"] // e["n_layers"]))
            ax.set_xticks(range(len(splits)))
            ax.set_xticklabels(names, fontsize=8)
            lo = min(min(y - d for y, d in zip(ys, err)), lo_hi[0], c[split] if c else 100)
            hi = max(max(y + d for y, d in zip(ys, err)), lo_hi[1], c[split] if c else 0)
            ax.set_ylim(lo - 0.3 * (hi - lo + 0.05), hi + 0.3 * (hi - lo + 0.05))
            ax.set_ylabel("%s accuracy (%%)" % split)
            if row == 0:
                ax.set_title("%s, r = %g: %d heads in all\n(blue: chosen on valid)" % (name, e["target"], e["total_heads"]),
                             fontsize=9)
                ax.legend(fontsize=7, loc="lower left")
            else:
                ax.set_xlabel("trained split (heads in layer 0, 1, ...)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", nargs="+", help="results.json of launch/reproduce.sh")
    ap.add_argument("--json", help="also write the numbers here")
    ap.add_argument("--plot", help="also draw the comparison here (PNG)")
    a = ap.parse_args()
    results = {name: compare(rows) for name, rows in sorted(load(a.results).items())}
    print_tables(results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
    if a.plot:
        plot(results, a.plot)


if __name__ == "__main__":
    main()
