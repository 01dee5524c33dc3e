"""The table of launch/budget-study.sh: one Markdown row per variant of a listing, from DIR/NAME.json (eval --json
on the valid split) and DIR/NAME.ctl-{shuffle,constant}.json (the same with --budget-control).

    /usr/bin/python3 tools/budget_study_table.py DIR LISTING [--oracle] [--by-setting]
Control cells give the control's accuracy and, in brackets, the model's own minus the control's (points);
--oracle adds the column of the oracle control (DIR/NAME.ctl-oracle.json).
--by-setting prints instead one row per setting: the variants whose names differ only in a final -s<seed>,
with the mean and sample standard deviation over their seeds of the accuracy and of the per-seed differences
own minus control (the adaptivity criterion of issue 13 compares that mean with that sd).
"""
import json, os, re, statistics, sys
out, listing = sys.argv[1], sys.argv[2]
oracle = "--oracle" in sys.argv[3:]  # a column for the oracle control (README "Adaptivity controls")
by_setting = "--by-setting" in sys.argv[3:]


def mean_sd(xs, signed=False):
    """'mean ± sd' of xs ('+' shown on differences when signed); the value alone for one seed."""
    if not xs:
        return ""
    f = "%+.2f" if signed else "%.2f"
    return f % xs[0] if len(xs) == 1 else (f + " ± %.2f") % (statistics.mean(xs), statistics.stdev(xs))


if by_setting:
    controls = ("shuffle", "constant") + (("oracle",) if oracle else ())
    groups = {}  # setting -> [dataset, accuracies, {control: differences}]
    for line in open(listing):
        line = line.split("#")[0].split()
        if not line:
            continue
        name, ds = line[0], line[1]
        setting = re.sub(r"-s\d+$", "", name)
        g = groups.setdefault(setting, [ds, [], {c: [] for c in controls}])
        try:
            j = json.load(open(os.path.join(out, name + ".json")))
        except (OSError, ValueError):
            continue
        g[1].append(100 * j["accuracy"])
        for c in controls:
            try:
                k = json.load(open(os.path.join(out, "%s.ctl-%s.json" % (name, c))))["budget_control"]
                g[2][c].append(100 * (j["accuracy"] - k["accuracy"]))
            except (OSError, ValueError, KeyError):
                pass
    print("| setting | dataset | seeds | valid accuracy | " + " | ".join("own - " + c for c in controls) + " |")
    print("|---|---|---|---|" + "---|" * len(controls))
    for setting, (ds, acc, diffs) in groups.items():
        print("| %s | %s | %d | %s | %s |" % (setting, ds, len(acc), mean_sd(acc),
                                             " | ".join(mean_sd(diffs[c], signed=True) for c in controls)))
    sys.exit(0)
print("| variant | dataset | valid accuracy | macro-F1 | heads per layer | fraction k/H | shuffle control | constant control |"
      + (" oracle control |" if oracle else ""))
print("|---|---|---|---|---|---|---|---|" + ("---|" if oracle else ""))
for line in open(listing):
    line = line.split("#")[0].split()
    if not line:
        continue
    name, ds = line[0], line[1]
    try:
        j = json.load(open(os.path.join(out, name + ".json")))
    except (OSError, ValueError):
        print("| %s | %s | not run | | | | | |" % (name, ds) + (" |" if oracle else ""))
        continue
    mb = j["mean_budget"]
    ctl = []
    for c in ("shuffle", "constant") + (("oracle",) if oracle else ()):
        try:
            k = json.load(open(os.path.join(out, "%s.ctl-%s.json" % (name, c))))["budget_control"]
            ctl.append("%.2f (%+.2f)" % (100 * k["accuracy"], 100 * (j["accuracy"] - k["accuracy"])))
        except (OSError, ValueError, KeyError):
            ctl.append("")
    print("| %s | %s | %.2f | %.2f | %s of %d | %.3f | %s |" % (
        name, ds, 100 * j["accuracy"], 100 * j["macro_f1"], " / ".join("%.2f" % x for x in mb), j["n_heads"],
        sum(mb) / len(mb) / j["n_heads"], " | ".join(ctl)))
