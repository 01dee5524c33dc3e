#!/usr/bin/env bash
# Shows that a tiny training gives bitwise the results of another commit: builds REV (default 5f58790, the
# commit before the source-tree reorganisation of issue 15) in a temporary `git worktree` and build directory,
# runs the same tiny training with both programs (tests/data/tiny prepared with --max-len 24, configs/tiny.ini
# pinned with --set, 40 updates, checkpoints every 20; 1 rank and 2 ranks), and compares:
#   - the per-update trace of every rank (BF_TRACE: step, eps, loss to 9 digits, weight checksum), line by line;
#   - every dataset of every checkpoint (each tensor of /model and /optim, the head statistics, ...) bit for bit,
#     and every attribute except those of the /provenance group (versions, git commit, creation time, host);
#   - every dataset of log.h5 bit for bit (except /metrics columns of wall-clock time and throughput);
#   - the prepared dataset files (train.h5, test.h5) bit for bit;
#   - the final checkpoint's eval records (bit for bit) and the output of eval --json, heads (log.h5 and
#     records), predict (text and JSON) and inspect --json (its provenance, checksum and file size left out).
# Exits 0 when everything matches, 1 on a difference (each one named), 2 on a usage or build error.
#
#   usage: tools/check-bitwise.sh [REV] [NEW_EXE]
#     REV      the commit to compare with (default 5f58790)
#     NEW_EXE  the program under test (default: build/budgetformer of this tree, built here when missing)
#   ctest:   configure with -DBF_BITWISE_REV=5f58790 and run `ctest -L bitwise` (test_bitwise).
#   env:   BF_BITWISE_DIR  work directory kept between runs (the build of REV is reused when its commit is the
#                          same); default a fresh temporary directory, removed at the end
#          BF_PYTHON       Python with h5py and numpy (default /usr/bin/python3)
#          BF_JOBS         parallel build jobs (default 2)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rev=${1:-5f58790}
new_exe=${2:-}
py=${BF_PYTHON:-/usr/bin/python3}
jobs=${BF_JOBS:-2}
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

commit=$(git -C "$root" rev-parse --verify "$rev^{commit}" 2> /dev/null) || { echo "check-bitwise: unknown commit '$rev'" >&2; exit 2; }
if [ -n "${BF_BITWISE_DIR:-}" ]; then
  work=$BF_BITWISE_DIR
  mkdir -p "$work"
  keep=1
else
  work=$(mktemp -d "${TMPDIR:-/tmp}/bf-bitwise-XXXXXXXX")
  keep=0
fi
tree="$work/src-$commit"
cleanup() {
  if [ -d "$tree" ]; then git -C "$root" worktree remove --force "$tree" > /dev/null 2>&1 || true; fi
  git -C "$root" worktree prune > /dev/null 2>&1 || true
  [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

# ---- the two programs ----
old_build="$work/build-$commit"
if [ ! -x "$old_build/budgetformer" ]; then
  echo "check-bitwise: building $rev ($commit) in $old_build"
  rm -rf "$tree"
  git -C "$root" worktree add --detach "$tree" "$commit" > /dev/null 2>&1 \
    || { echo "check-bitwise: git worktree add failed" >&2; exit 2; }
  { cmake -S "$tree" -B "$old_build" -DCMAKE_BUILD_TYPE=Release -DBF_BUILD_TESTS=OFF > "$work/old-build.log" 2>&1 &&
    cmake --build "$old_build" -j "$jobs" --target budgetformer >> "$work/old-build.log" 2>&1; } \
    || { tail -n 30 "$work/old-build.log" >&2; echo "check-bitwise: the build of $rev failed" >&2; exit 2; }
fi
old_exe="$old_build/budgetformer"
if [ -z "$new_exe" ]; then
  new_exe="$root/build/budgetformer"
  if [ ! -x "$new_exe" ]; then
    echo "check-bitwise: building this tree in $root/build"
    { cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release > "$work/new-build.log" 2>&1 &&
      cmake --build "$root/build" -j "$jobs" --target budgetformer >> "$work/new-build.log" 2>&1; } \
      || { tail -n 30 "$work/new-build.log" >&2; echo "check-bitwise: the build of this tree failed" >&2; exit 2; }
  fi
fi
[ -x "$new_exe" ] || { echo "check-bitwise: no program at $new_exe" >&2; exit 2; }
echo "check-bitwise: old $old_exe ($rev)"
echo "check-bitwise: new $new_exe"

# ---- the same tiny training with each ----
tiny="$root/tests/data/tiny"
sets=(--set train.steps=40 --set train.batch_size=16 --set train.micro_batch=0 --set train.warmup=5
      --set train.log_every=10 --set explore.eps_start=1 --set explore.eps_end=0 --set explore.steps=30
      --set dist.bucket_kb=1 --set checkpoint.every=20 --set checkpoint.keep=3 --set heads.every=10
      --set train.eval_every=20)
# Both programs run in the same directory (the checkpoints store the configuration text, paths included);
# each run is then moved to run-NAME.
run_one() {  # run_one NAME EXE RANKS
  local name=$1 exe=$2 ranks=$3 out="$work/cur"
  rm -rf "$out" "$work/run-$1"
  mkdir -p "$out"
  "$exe" prepare --train "$tiny/train.csv" --test "$tiny/test.csv" --out "$out/data" --max-len 24 \
    > "$out/prepare.log" 2>&1 || { cat "$out/prepare.log" >&2; echo "check-bitwise: prepare failed ($name)" >&2; exit 2; }
  local launch=()
  [ "$ranks" = 1 ] || launch=(mpirun -np "$ranks" --oversubscribe --bind-to none)
  BF_TRACE="$out/trace" timeout 600 "${launch[@]}" "$exe" train --config "$root/configs/tiny.ini" \
    --set "data.train=$out/data/train.h5" --set "data.test=$out/data/test.h5" --set "run.dir=$out/run" \
    "${sets[@]}" > "$out/train.log" 2>&1 \
    || { tail -n 20 "$out/train.log" >&2; echo "check-bitwise: training failed ($name)" >&2; exit 2; }
  # The commands that read what training wrote: eval (records), heads (log.h5 and records), predict, inspect.
  local ck="$out/run/checkpoints/step-00000040.h5"
  "${launch[@]}" "$exe" eval --checkpoint "$ck" --data "$out/data/test.h5" --records "$out/records.h5" --json \
    > "$out/eval.json" 2> "$out/eval.log" || { cat "$out/eval.log" >&2; echo "check-bitwise: eval failed ($name)" >&2; exit 2; }
  "$exe" heads "$out/run/log.h5" --json > "$out/heads-log.json" 2>&1 || { echo "check-bitwise: heads failed ($name)" >&2; exit 2; }
  "$exe" heads "$out/records.h5" --json > "$out/heads-records.json" 2>&1 || { echo "check-bitwise: heads failed ($name)" >&2; exit 2; }
  "$exe" heads "$out/run/log.h5" > "$out/heads-log.txt" 2>&1 || { echo "check-bitwise: heads failed ($name)" >&2; exit 2; }
  tr -d '\r' < "$tiny/test.csv" | sed -n 's/^"[^"]*","\(.*\)"$/\1/p' > "$out/lines.txt"
  "$exe" predict --checkpoint "$ck" --input "$out/lines.txt" --top-k 2 > "$out/predict.txt" 2>&1 \
    || { echo "check-bitwise: predict failed ($name)" >&2; exit 2; }
  "$exe" predict --checkpoint "$ck" --input "$out/lines.txt" --json > "$out/predict.json" 2>&1 \
    || { echo "check-bitwise: predict failed ($name)" >&2; exit 2; }
  "$exe" inspect --json "$ck" > "$out/inspect.json" 2>&1 || { echo "check-bitwise: inspect failed ($name)" >&2; exit 2; }
  mv "$out" "$work/run-$name"
}
for ranks in 1 2; do
  echo "check-bitwise: training $ranks rank(s) with each program"
  run_one "old-$ranks" "$old_exe" "$ranks"
  run_one "new-$ranks" "$new_exe" "$ranks"
done

# ---- compare ----
"$py" - "$work" <<'EOF'
import json
import os
import sys

import h5py
import numpy as np

work = sys.argv[1]
# Provenance: where, when and with what the program was built or run. Everything else must match.
# Every attribute of a checkpoint's /provenance group (versions, build commit, creation time, host) is left out.
PROVENANCE_GROUP = "provenance"
# log.h5 columns of wall-clock time and throughput differ from run to run of the same program.
TIMING = {"time", "wall", "elapsed", "samples_per_s", "step_time", "comm_fraction", "seconds", "tokens_per_s"}
diffs = []
skipped = set()
counts = {"datasets": 0, "attributes": 0, "trace lines": 0}


def same_value(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return a.tobytes() == b.tobytes()
    return np.array_equal(a, b)


def walk(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj))
    out["/"] = f
    return out


def timing(name):
    base = name.rsplit("/", 1)[-1]
    return base in TIMING or "time" in base or "per_s" in base


def compare_h5(what, pa, pb, skip_timing=False):
    with h5py.File(pa, "r") as a, h5py.File(pb, "r") as b:
        oa, ob = walk(a), walk(b)
        if skip_timing:  # /memory: run-dependent, and absent in programs from before it
            for o in (oa, ob):
                for name in [n for n in o if n.startswith("memory")]:
                    skipped.add(name)
                    del o[name]
        if sorted(oa) != sorted(ob):
            diffs.append("%s: objects differ: only old %s, only new %s"
                         % (what, sorted(set(oa) - set(ob)), sorted(set(ob) - set(oa))))
        for name in sorted(set(oa) & set(ob)):
            x, y = oa[name], ob[name]
            if isinstance(x, h5py.Dataset) != isinstance(y, h5py.Dataset):
                diffs.append("%s: %s is a dataset in one file only" % (what, name))
                continue
            if isinstance(x, h5py.Dataset) and skip_timing and timing(name):
                skipped.add(name)
            elif isinstance(x, h5py.Dataset):
                counts["datasets"] += 1
                if not same_value(x[()], y[()]):
                    diffs.append("%s: dataset %s differs" % (what, name))
            if name == PROVENANCE_GROUP:
                continue
            ka, kb = set(x.attrs), set(y.attrs)
            if ka != kb:
                diffs.append("%s: attributes of %s differ: %s vs %s" % (what, name, sorted(ka), sorted(kb)))
            for k in sorted(ka & kb):
                counts["attributes"] += 1
                if not same_value(x.attrs[k], y.attrs[k]):
                    diffs.append("%s: attribute %s of %s differs: %r vs %r" % (what, k, name, x.attrs[k], y.attrs[k]))


for ranks in (1, 2):
    old, new = os.path.join(work, "run-old-%d" % ranks), os.path.join(work, "run-new-%d" % ranks)
    tag = "%d rank%s" % (ranks, "" if ranks == 1 else "s")
    for r in range(ranks):
        ta = open(os.path.join(old, "trace.rank%d" % r)).read().splitlines()
        tb = open(os.path.join(new, "trace.rank%d" % r)).read().splitlines()
        counts["trace lines"] += len(ta)
        if not ta:
            diffs.append("%s: rank %d wrote no trace" % (tag, r))
        if ta != tb:
            bad = next((i for i in range(min(len(ta), len(tb))) if ta[i] != tb[i]), min(len(ta), len(tb)))
            diffs.append("%s: trace of rank %d differs from line %d: %r vs %r"
                         % (tag, r, bad + 1, ta[bad] if bad < len(ta) else None, tb[bad] if bad < len(tb) else None))
    for d in ("train.h5", "test.h5"):
        compare_h5("%s data/%s" % (tag, d), os.path.join(old, "data", d), os.path.join(new, "data", d))
    ca = sorted(os.listdir(os.path.join(old, "run", "checkpoints")))
    cb = sorted(os.listdir(os.path.join(new, "run", "checkpoints")))
    if ca != cb:
        diffs.append("%s: checkpoint files differ: %s vs %s" % (tag, ca, cb))
    for c in sorted(set(ca) & set(cb)):
        if c.endswith(".h5"):
            compare_h5("%s checkpoints/%s" % (tag, c), os.path.join(old, "run", "checkpoints", c),
                       os.path.join(new, "run", "checkpoints", c))
    compare_h5("%s records.h5" % tag, os.path.join(old, "records.h5"), os.path.join(new, "records.h5"))
    ea, eb = (json.load(open(os.path.join(d, "eval.json"))) for d in (old, new))
    for j in (ea, eb):
        j.pop("samples_per_s", None)
    if ea != eb:
        diffs.append("%s: eval --json differs (samples_per_s left out)" % tag)
    for t in ("heads-log.json", "heads-records.json", "heads-log.txt", "predict.txt", "predict.json"):
        if open(os.path.join(old, t)).read() != open(os.path.join(new, t)).read():
            diffs.append("%s: the output %s differs" % (tag, t))
    ia, ib = (json.load(open(os.path.join(d, "inspect.json"))) for d in (old, new))
    for j in (ia, ib):
        for k in ("path", "file_size", "checksum", "provenance"):
            j.pop(k, None)
    if ia != ib:
        diffs.append("%s: inspect --json differs (provenance, checksum and size left out)" % tag)
    compare_h5("%s log.h5" % tag, os.path.join(old, "run", "log.h5"), os.path.join(new, "run", "log.h5"), True)
    print("check-bitwise: %s compared: trace, data, checkpoints %s, log.h5, records.h5, the outputs of eval, heads, "
          "predict and inspect" % (tag, ", ".join(c for c in ca if c.endswith(".h5"))))

print("check-bitwise: log.h5 timing columns left out: %s" % ", ".join(sorted(skipped)))
print("check-bitwise: %(datasets)d datasets, %(attributes)d attributes, %(trace lines)d trace lines compared" % counts)
if diffs:
    for d in diffs:
        print("DIFFERENT " + d)
    print("check-bitwise: %d difference(s)" % len(diffs))
    sys.exit(1)
print("check-bitwise: bitwise identical")
EOF
