#!/usr/bin/env bash
# The head-budget study of docs/FIDELITY.md: trains variants of the shipped configurations (seed 1, test file
# cleared), evaluates each final checkpoint on the validation split, with the shuffle and constant budget
# controls for learned budgets, and prints one table row per variant.
#
#   usage: launch/budget-study.sh [--out DIR] [--jobs N] FILE
#   FILE: one variant a line, "NAME DATASET [section.key=value ...]" (# starts a comment), for example
#         lex-t50-gn wordnet-lex train.budget_target=0.5 model.gate_norm=1
#   --out DIR   where runs go (default runs/budget-study); a variant whose result exists is not trained again
#   --jobs N    variants trained at once, one process and one OpenBLAS thread each (default 2)
# Needs the prepared data (bash launch/prepare-data.sh wordnet-pos wordnet-lex spam) and build/budgetformer
# (or BF_EXE). Results: DIR/NAME.json (eval --json on valid) and DIR/NAME.ctl-{shuffle,constant,oracle}.json
# (oracle: the label-reading upper bound of README "Adaptivity controls"). A finished variant without its
# oracle file gets it on the next run, without training again.
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/budget-study jobs=2
while [ $# -gt 1 ]; do
  case $1 in
    --out) out=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) echo "budget-study: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[ $# -eq 1 ] && [ -f "$1" ] || { sed -n '6,9p' "$0" >&2; exit 2; }
exe=${BF_EXE:-build/budgetformer}
[ -x "$exe" ] || { echo "budget-study: $exe is not built (cmake -S . -B build && cmake --build build)" >&2; exit 2; }
mkdir -p "$out"
export OPENBLAS_NUM_THREADS=1 EXE=$exe OUT=$out

one() { # one NAME DATASET SETS...
  local name=$1 ds=$2; shift 2
  if [ -f "$OUT/$name.json" ]; then # finished; add a control evaluation it lacks (the oracle came later)
    case " $* " in *model.full_heads=1*|*model.fixed_budget=*) return 0 ;; esac
    local ck0
    ck0=$(ls "$OUT/$name"/checkpoints/step-*.h5 2>/dev/null | sort | tail -n 1)
    if [ -n "$ck0" ] && [ ! -f "$OUT/$name.ctl-oracle.json" ]; then
      "$EXE" eval --checkpoint "$ck0" --data "data/$ds/valid.h5" --json --budget-control oracle > "$OUT/$name.ctl-oracle.json" || true
    fi
    return 0
  fi
  local -a sets=()
  local a
  for a in "$@"; do sets+=(--set "$a"); done
  rm -rf "${OUT:?}/$name"
  if ! "$EXE" train --config "configs/$ds.ini" --set run.dir="$OUT/$name" --set data.test= --set train.eval_every=0 \
       "${sets[@]}" > "$OUT/$name.log" 2>&1; then
    echo "budget-study: $name failed, see $OUT/$name.log" >&2
    return 0
  fi
  local ck
  ck=$(ls "$OUT/$name"/checkpoints/step-*.h5 | sort | tail -n 1)
  "$EXE" eval --checkpoint "$ck" --data "data/$ds/valid.h5" --json > "$OUT/$name.json.tmp" && mv "$OUT/$name.json.tmp" "$OUT/$name.json"
  case " $* " in *model.full_heads=1*|*model.fixed_budget=*) return 0 ;; esac
  local c
  for c in shuffle constant oracle; do
    "$EXE" eval --checkpoint "$ck" --data "data/$ds/valid.h5" --json --budget-control "$c" > "$OUT/$name.ctl-$c.json" || true
  done
}
export -f one
grep -v '^[[:space:]]*\(#\|$\)' "$1" | xargs -P "$jobs" -L 1 bash -c 'one "$@"' _
/usr/bin/python3 tools/budget_study_table.py "$out" "$1" --oracle
