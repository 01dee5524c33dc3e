#!/usr/bin/env bash
# launch/reproduce.sh --quick end to end (the CI version of the results reproduction, docs/RESULTS.md).
#
# Checks, each named in the output:
#   runs          `launch/reproduce.sh --quick --out $BF_WORK/repro` exits 0 within 10 minutes
#   table         DIR/RESULTS.md has, for every dataset x variant, a row with 1 seed and numbers in range:
#                 accuracy, macro-F1 and valid accuracy in [0, 100]; heads per layer in [1, H] (H for full
#                 heads, k for fixed budget k); FLOPs ratios in (0, 1] (1 for full heads); samples/s > 0
#   claims        the computed claims table has a row per dataset for the chosen target variant (0.5 in --quick),
#                 a verdict line, and the budget-control table a row for it (controls run, or "not run" when
#                 the program has no eval --budget-control)
#   adaptivity    an adaptivity section, and a plot, per dataset; plots (Pareto too) are PNG files under 200 KB
#   results_json  DIR/results.json agrees with the markdown table (accuracy of every row)
#   docs_kept     docs/RESULTS.md and docs/results/ are not touched by --quick
#   resume        a second run with the same --out trains and evaluates nothing and rewrites the document
# Needs the prepared data (launch/prepare-data.sh, which the script runs), Open MPI and Debian's python3 with
# h5py and matplotlib. Environment (set by ctest): BF_EXE, BF_SOURCE_DIR, BF_WORK, BF_PYTHON.
set -uo pipefail
src=${BF_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
work=${BF_WORK:-${TMPDIR:-/tmp}}
py=${BF_PYTHON:-/usr/bin/python3}
out=$work/repro
mkdir -p "$work"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
failures=0
check() { # check NAME CONDITION-EXIT-STATUS [DETAIL]
  if [ "$2" = 0 ]; then echo "ok   $1${3:+: $3}"; else echo "FAIL $1${3:+: $3}"; failures=$((failures + 1)); fi
}
docs_sum() { (cd "$src" && { cat docs/RESULTS.md 2>/dev/null; ls -l docs/results 2>/dev/null; find docs/results -type f -exec cat {} + 2>/dev/null; } | md5sum); }

rm -rf "$out"
before=$(docs_sum)
t0=$(date +%s)
timeout 840 bash "$src/launch/reproduce.sh" --quick --out "$out" > "$work/repro.log" 2>&1
rc=$?
t1=$(date +%s)
check runs "$rc" "exit $rc after $((t1 - t0)) s (log: $work/repro.log)"
if [ "$rc" != 0 ]; then
  tail -n 30 "$work/repro.log"
  echo "FAILED: $failures check(s)"
  exit 1
fi

"$py" - "$out" <<'EOF'
import json, os, re, sys
out = sys.argv[1]
md = open(os.path.join(out, "RESULTS.md")).read()
datasets = ["wordnet-pos", "wordnet-lex", "spam"]
H_of = {"wordnet-pos": 8, "wordnet-lex": 4, "spam": 4}
def variants_of(ds):  # --quick: full, fixed k = 1 and H/2, one target (0.5)
    H = H_of[ds]
    return {"full multi-head attention": "full", "fixed budget k = 1": 1, "fixed budget k = %d" % (H // 2): H // 2,
            "BudgetFormer, target r = 0.5": None}
bad = []
def report(name, problems):
    print(("ok   " if not problems else "FAIL ") + name + (": " + "; ".join(problems[:8]) if problems else ""))
    return 0 if not problems else 1
fails = 0

# table: the per-dataset tables of the results section
results = md.split("## Results (test split)", 1)[1].split("\n## ", 1)[0]
acc_md = {}
for ds in datasets:
    part = results.split("### " + ds + "\n", 1)
    if len(part) < 2:
        bad.append("no table for " + ds)
        continue
    rows = [l for l in part[1].split("\n### ", 1)[0].splitlines() if l.startswith("| ") and not l.startswith("| variant")]
    seen = {}
    for l in rows:
        c = [x.strip() for x in l.strip("|").split("|")]
        seen[c[0]] = c
    for v, kind in variants_of(ds).items():
        c = seen.get(v)
        if c is None:
            bad.append("%s: no row '%s'" % (ds, v))
            continue
        try:
            seeds = int(c[1]); acc = float(c[2].split()[0]); f1 = float(c[3].split()[0])
            m = re.match(r"([0-9.]+) of (\d+)$", c[4]); heads, H = float(m.group(1)), int(m.group(2))
            attn, tot, sps = float(c[5]), float(c[6]), float(c[7]); vacc = float(c[8].split()[0])
        except (ValueError, AttributeError, IndexError) as e:
            bad.append("%s / %s: unparsable row %r (%s)" % (ds, v, l, e))
            continue
        acc_md[(ds, v)] = acc
        ok = seeds == 1 and 0 <= acc <= 100 and 0 <= f1 <= 100 and 0 <= vacc <= 100 and 1 <= heads <= H \
            and 0 < attn <= 1 and 0 < tot <= 1 and sps > 0 and acc > 0
        if kind == "full":
            ok = ok and heads == H and attn == 1.0 and tot == 1.0
        elif kind is not None:
            ok = ok and abs(heads - kind) < 1e-9 and abs(attn - kind / H) < 2e-3
        if not ok:
            bad.append("%s / %s: out of range: %s" % (ds, v, c))
fails += report("table", bad)

claims = md.split("## The claims, checked", 1)[1].split("\n## ", 1)[0]
bad = [ds for ds in datasets if not re.search(r"^\| %s \| BudgetFormer, target r = 0\.5 \|" % re.escape(ds), claims, re.M)]
bad += [ds + ": no verdict" for ds in datasets if "- **%s**" % ds not in claims]
controls = md.split("## Budget controls", 1)[1].split("\n## ", 1)[0]
bad += [ds + ": no budget-control row" for ds in datasets
        if not re.search(r"^\| %s \| BudgetFormer, target r = 0\.5 \| 1 \|" % re.escape(ds), controls, re.M)]
fails += report("claims", ["no chosen BudgetFormer row for " + b if ":" not in b else b for b in bad])

bad = []
ad = md.split("## Adaptivity", 1)[1].split("\n## ", 1)[0]
for ds in datasets:
    m = re.search(r"### %s \(.*?\)\n\n!\[[^\]]*\]\(([^)]+)\)" % re.escape(ds), ad)
    if not m:
        bad.append("no adaptivity section with a plot for " + ds)
        continue
    if "| length " not in ad.split("### " + ds, 1)[1] or "| correct predictions |" not in ad.split("### " + ds, 1)[1]:
        bad.append(ds + ": no length or correct/wrong rows")
for link in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md):
    p = os.path.join(out, link)
    if not os.path.isfile(p):
        bad.append("missing plot " + link)
    elif open(p, "rb").read(8) != b"\x89PNG\r\n\x1a\n" or os.path.getsize(p) >= 200 * 1024:
        bad.append("%s: not a PNG under 200 KB (%d bytes)" % (link, os.path.getsize(p)))
fails += report("adaptivity", bad)

bad = []
j = json.load(open(os.path.join(out, "results.json")))
for ds in datasets:
    for v, r in j["datasets"][ds]["rows"].items():
        a = acc_md.get((ds, r["name"]))
        if a is None or abs(a - 100 * r["test_accuracy"]) > 0.006:
            bad.append("%s / %s: json %.4f, markdown %s" % (ds, v, r["test_accuracy"], a))
    if len(j["datasets"][ds]["rows"]) != len(variants_of(ds)):
        bad.append("%s: %d rows in results.json" % (ds, len(j["datasets"][ds]["rows"])))
fails += report("results_json", bad)
sys.exit(1 if fails else 0)
EOF
py_rc=$?
[ "$py_rc" = 0 ] || failures=$((failures + 1))

after=$(docs_sum)
[ "$before" = "$after" ]; check docs_kept $? "docs/RESULTS.md and docs/results/ unchanged"

rm -f "$out/RESULTS.md"
t0=$(date +%s)
timeout 300 bash "$src/launch/reproduce.sh" --quick --out "$out" > "$work/repro2.log" 2>&1
rc=$?
t1=$(date +%s)
retrained=$(grep -c "reproduce: \[.*\] train " "$work/repro2.log")
[ "$rc" = 0 ] && [ "$retrained" = 0 ] && [ -f "$out/RESULTS.md" ] && [ -z "$(find "$out" -name '*.json.tmp')" ]
check resume $? "second run: exit $rc, $retrained runs trained again, $((t1 - t0)) s"

if [ "$failures" = 0 ]; then
  echo "all checks passed"
  rm -rf "$out"
  exit 0
fi
echo "FAILED: $failures check(s); outputs kept in $out"
exit 1
