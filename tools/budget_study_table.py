"""The table of launch/budget-study.sh: one Markdown row per variant of a listing, from DIR/NAME.json (eval --json
on the valid split) and DIR/NAME.ctl-{shuffle,constant}.json (the same with --budget-control).

    /usr/bin/python3 tools/budget_study_table.py DIR LISTING [--oracle]
Control cells give the control's accuracy and, in brackets, the model's own minus the control's (points);
--oracle adds the column of the oracle control (DIR/NAME.ctl-oracle.json).
"""
import json, os, sys
out, listing = sys.argv[1], sys.argv[2]
oracle = "--oracle" in sys.argv[3:]  # a column for the oracle control (README "Adaptivity controls")
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
