#!/usr/bin/env bash
# Reproduces the BudgetFormer comparison on real text and writes the results document.
#
#   usage: launch/reproduce.sh [--quick] [--out DIR] [--seeds N] [--datasets LIST] [--variants LIST]
#                              [--ranks N] [--no-doc] [--report-only]
#
#   (no option)       the full reproduction: prepares wordnet-pos, wordnet-lex and spam (launch/prepare-data.sh),
#                     trains every variant below with seeds 1..3 on 2 MPI ranks with the shipped configurations
#                     (configs/<dataset>.ini, chosen on the validation split: docs/TUNING.md), evaluates every
#                     final checkpoint on the valid file and (once) on the test file, and writes
#                     docs/RESULTS.md and docs/results/*.png. Several hours on a 2-core machine.
#   --quick           a smoke version for CI (< 10 min): few steps, 1 seed, evaluation on subsets of
#                     valid/test, 2 adaptive candidates instead of 3. Never writes docs/: the document goes to
#                     DIR/RESULTS.md and the plots to DIR/results/. Its numbers are not results.
#   --out DIR         where runs and evaluations go (default runs/reproduce, or runs/reproduce-quick with --quick)
#   --seeds N         seeds 1..N (default 3; 1 with --quick)
#   --datasets LIST   comma- or blank-separated subset of: wordnet-pos wordnet-lex spam
#   --variants LIST   subset of: budgetformer adaptive full fixed1 fixed2 fixed4 noexplore
#   --ranks N         MPI ranks per training run (default 2)
#   --costs LIST      the budget costs tried besides the shipped one (default 0.03 0.02 0.01; 0.01 with --quick).
#                     Running again with more candidates trains only the new ones; when the choice changes,
#                     the learned-budget runs of the old choice are moved to DIR/<dataset>/stale-*/
#   --no-doc          do not write docs/RESULTS.md in a full run (the document then goes to DIR/RESULTS.md)
#   --report-only     train nothing: regenerate the document from what DIR already holds
#
# Variants (every one is configs/<dataset>.ini plus --set overrides):
#   budgetformer   learned budget, exploration annealed on the fixed (cosine) schedule; train.budget_cost
#                  chosen on the valid split among the shipped value, 0.03, 0.02 and 0.01 (seed 1; the chosen
#                  cost is used by every learned-budget variant: budgetformer, adaptive, noexplore)
#   adaptive       explore.shape=adaptive: the rank-0 coordinator ends exploration when the loss stops falling;
#                  window/threshold/anneal_steps chosen on the valid split among a few candidates (seed 1)
#   full           model.full_heads=1: every head, gate 1 (the baseline)
#   fixed1/2/4     model.fixed_budget=k: k heads per input chosen by the learned relevance, no learned budget
#   noexplore      BudgetFormer with explore.eps_start=0 explore.eps_end=0 (no exploration at all)
#
# Every run lives in DIR/<dataset>/<variant>/seed<N>/ (run.dir = .../run). A run whose evaluation files
# exist is skipped and an interrupted one continues from its last checkpoint (--resume auto), so running
# the same command again continues an interrupted reproduction. To stop one cleanly, signal the whole
# process group (kill -TERM -- -PGID): launch/bf-mpirun.sh makes the ranks checkpoint, and this script
# stops after that run. During training data.test is cleared: the test file is read only by the final
# `budgetformer eval` of the chosen configurations, once per run.
# Wall-clock and CPU seconds of every run go to its job.json; every invocation is logged in DIR/invocations.tsv.
# Environment: BF_EXE (default build/budgetformer, built if missing), BF_PYTHON (default /usr/bin/python3,
# with python3-h5py and python3-matplotlib).
set -euo pipefail

# Bash reads a script while running it, so editing (or checking out) this file during a run of several hours
# would change the running job: run from a private copy instead.
if [ -z "${BF_REPRO_ROOT:-}" ]; then
  BF_REPRO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  export BF_REPRO_ROOT
  copy=$(mktemp "${TMPDIR:-/tmp}/reproduce.XXXXXX.sh")
  cp "${BASH_SOURCE[0]}" "$copy"
  BF_REPRO_COPY=$copy exec bash "$copy" "$@"
fi
[ -n "${BF_REPRO_COPY:-}" ] && rm -f "$BF_REPRO_COPY"   # bash has the file open; the name is not needed
root=$BF_REPRO_ROOT
here=$root/launch
unset BF_REPRO_ROOT BF_REPRO_COPY
cd "$root"

usage() { sed -n 's/^#   \{0,1\}//; 4,5p' "$here/reproduce.sh" >&2; echo "see the header of launch/reproduce.sh for every option" >&2; }
die() { echo "reproduce: $*" >&2; exit 2; }

quick=0 out= nseeds= datasets_arg= variants_arg= costs_arg= ranks=2 doc=1 report_only=0
orig_args=("$@")
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --seeds) nseeds=${2:?--seeds needs a number}; shift 2 ;;
    --datasets) datasets_arg=${2:?--datasets needs a list}; shift 2 ;;
    --variants) variants_arg=${2:?--variants needs a list}; shift 2 ;;
    --ranks) ranks=${2:?--ranks needs a number}; shift 2 ;;
    --costs) costs_arg=${2:?--costs needs a list}; shift 2 ;;
    --no-doc) doc=0; shift ;;
    --report-only) report_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "reproduce: unknown option '$1'" >&2; usage; exit 2 ;;
  esac
done

all_datasets=(wordnet-pos wordnet-lex spam)
all_variants=(budgetformer adaptive full fixed1 fixed2 fixed4 noexplore)
in_list() { local x=$1; shift; local y; for y in "$@"; do [ "$x" = "$y" ] && return 0; done; return 1; }
read -r -a datasets <<< "${datasets_arg//,/ }"
read -r -a variants <<< "${variants_arg//,/ }"
[ ${#datasets[@]} -gt 0 ] || datasets=("${all_datasets[@]}")
[ ${#variants[@]} -gt 0 ] || variants=("${all_variants[@]}")
for d in "${datasets[@]}"; do in_list "$d" "${all_datasets[@]}" || die "unknown dataset '$d' (known: ${all_datasets[*]})"; done
for v in "${variants[@]}"; do in_list "$v" "${all_variants[@]}" || die "unknown variant '$v' (known: ${all_variants[*]})"; done
[ -n "$nseeds" ] || { if [ "$quick" = 1 ]; then nseeds=1; else nseeds=3; fi; }
[[ $nseeds =~ ^[1-9][0-9]*$ ]] || die "--seeds expects a positive integer, got '$nseeds'"
[[ $ranks =~ ^[1-9][0-9]*$ ]] || die "--ranks expects a positive integer, got '$ranks'"
for c in ${costs_arg//,/ }; do [[ $c =~ ^[0-9]*\.?[0-9]+$ ]] || die "--costs expects non-negative numbers, got '$c'"; done
[ -n "$out" ] || { if [ "$quick" = 1 ]; then out=runs/reproduce-quick; else out=runs/reproduce; fi; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Where the document goes: docs/ only for a full run (never for --quick).
if [ "$quick" = 0 ] && [ "$doc" = 1 ]; then
  md=$root/docs/RESULTS.md plots=$root/docs/results
else
  md=$out/RESULTS.md plots=$out/results
fi

py=${BF_PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
exec 3>&2   # the script's own stderr, for messages (a trap may run while 2 is redirected into a run's files)
log() { printf 'reproduce: [%s] %s\n' "$(date +%H:%M:%S)" "$*" >&3; }

quoted_cmd=$(printf ' %q' launch/reproduce.sh "${orig_args[@]}")
quoted_cmd=${quoted_cmd# }
t_start=$(date +%s)
rc_total=0
record_invocation() {
  local rc=$?
  printf '%s\t%s\t%s\t%s\t%s\n' "$t_start" "$(date +%s)" "$rc" "$quick" "$quoted_cmd" >> "$out/invocations.tsv"
}

report() {
  local -a extra=()
  [ "$quick" = 1 ] && extra+=(--quick)
  [ "$report_only" = 1 ] || extra+=(--running-since "$t_start" --command "$quoted_cmd")
  "$py" "$root/tools/results_table.py" report --out "$out" --md "$md" --plots "$plots" --seeds "$nseeds" \
    --datasets "${datasets[*]}" --variants "${variants[*]}" "${extra[@]}"
}

if [ "$report_only" = 1 ]; then
  report
  exit 0
fi
trap record_invocation EXIT

# ---- the program and the data ---------------------------------------------------------------------------------
if [ -n "${BF_EXE:-}" ]; then
  exe=$BF_EXE
else
  exe=$root/build/budgetformer
  if [ ! -x "$exe" ]; then
    log "building $exe (cmake, Release)"
    cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >&2
    cmake --build "$root/build" -j "$(nproc)" >&2
  fi
fi
[ -x "$exe" ] || die "$exe is not an executable (set BF_EXE or build: cmake -S . -B build && cmake --build build)"
# Every run of this invocation uses one copy of the program, so a rebuild meanwhile cannot mix two versions;
# DIR/bin/budgetformer.source says which commit it was built from (as far as the tree at copy time tells).
mkdir -p "$out/bin"
if [ -f "$out/bin/budgetformer" ] && cmp -s "$exe" "$out/bin/budgetformer"; then
  log "program: $exe, the same as the copy the earlier runs in $out used"
else
  if [ -f "$out/bin/budgetformer" ] && ls "$out"/*/*/seed*/job.json > /dev/null 2>&1; then
    log "WARNING: $exe differs from the program the finished runs in $out used; they are kept (a new --out gives a reproduction with one program)"
  fi
  cp "$exe" "$out/bin/budgetformer.tmp"
  mv "$out/bin/budgetformer.tmp" "$out/bin/budgetformer"
  src_rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$root" diff --quiet HEAD -- src include CMakeLists.txt 2>/dev/null || src_rev="$src_rev with local changes to src/, include/ or CMakeLists.txt"
  echo "$src_rev" > "$out/bin/budgetformer.source"
  log "program: $exe (copied to $out/bin/budgetformer, sha256 $(sha256sum "$exe" | cut -c1-16)..., source $src_rev)"
fi
exe=$out/bin/budgetformer
BF_EXE=$exe bash "$root/launch/prepare-data.sh" "${datasets[@]}"
"$py" "$root/tools/results_table.py" env --out "$out" --exe "$exe"

if [ -f "$root/launch/bf-mpirun.sh" ]; then
  mpi=(bash "$root/launch/bf-mpirun.sh" -n "$ranks" --bind none --exe "$exe" --)
else
  mpi=(mpirun -np "$ranks" --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1 -x OMP_NUM_THREADS=1 "$exe")
fi

# ini_get FILE SECTION KEY: the value in a shipped configuration (comments and blanks stripped).
ini_get() {
  awk -v s="[$2]" -v k="$3" '
    /^[ \t]*[;#]/ { next }
    /^[ \t]*\[/ { gsub(/[ \t]/, ""); sec = $0; next }
    sec == s { line = $0; sub(/[ \t]+;.*/, "", line); n = index(line, "=");
               if (n) { key = substr(line, 1, n - 1); val = substr(line, n + 1); gsub(/^[ \t]+|[ \t]+$/, "", key);
                        gsub(/^[ \t]+|[ \t]+$/, "", val); if (key == k) v = val } }
    END { print v }' "$1"
}

# ---- per-dataset settings ---------------------------------------------------------------------------------------
# quick mode: steps, and the valid/test subsets (rows) used for evaluation
quick_steps() { case $1 in spam) echo 12 ;; *) echo 40 ;; esac; }
quick_rows() { case $1 in spam) echo 150 ;; *) echo 1000 ;; esac; }

eval_file() { # eval_file DATASET valid|test -> the file evaluations read
  local ds=$1 split=$2
  if [ "$quick" = 1 ]; then
    local f=$out/data/$ds/$split.h5
    if [ ! -f "$f" ]; then
      mkdir -p "$out/data/$ds"
      "$py" "$root/tools/results_subset.py" "$root/data/$ds/$split.h5" "$f" --max "$(quick_rows "$ds")" >&2
    fi
    echo "$f"
  else
    echo "$root/data/$ds/$split.h5"
  fi
}

explore_steps() { # the explore.steps the runs of DATASET use
  if [ "$quick" = 1 ]; then echo $(( $(quick_steps "$1") / 2 )); else ini_get "configs/$1.ini" explore steps; fi
}

base_overrides() { # base_overrides DATASET: --set arguments every run of the dataset gets
  local ds=$1
  printf '%s\n' "data.test="
  if [ "$quick" = 1 ]; then
    local s; s=$(quick_steps "$ds")
    printf '%s\n' "data.valid=" "train.steps=$s" "train.warmup=5" "explore.steps=$((s / 2))" "train.log_every=10" \
      "train.eval_every=0" "heads.every=10" "checkpoint.every=0"
  fi
}

# The learned-budget variants use the budget cost chosen on the valid split (tune_cost); the others have no
# learned budget, so the cost does not apply to them (docs/MODEL.md).
cost_overrides() { # cost_overrides DATASET VARIANT
  case $2 in
    budgetformer|adaptive|noexplore) cat "$out/$1/tune-cost/chosen.overrides" ;;
  esac
}

variant_overrides() { # variant_overrides DATASET VARIANT
  case $2 in
    budgetformer) ;;
    full) echo "model.full_heads=1" ;;
    fixed1) echo "model.fixed_budget=1" ;;
    fixed2) echo "model.fixed_budget=2" ;;
    fixed4) echo "model.fixed_budget=4" ;;
    noexplore) printf '%s\n' "explore.eps_start=0" "explore.eps_end=0" ;;
    adaptive) cat "$out/$1/tune/chosen.overrides" ;;
  esac
}

# Budget-cost candidates (train.budget_cost): the shipped value, then smaller ones that let the budget grow
# (--costs LIST replaces the smaller ones).
cost_candidates() {
  local shipped; shipped=$(ini_get "configs/$1.ini" train budget_cost)
  local -a more
  if [ -n "$costs_arg" ]; then read -r -a more <<< "${costs_arg//,/ }"
  elif [ "$quick" = 1 ]; then more=(0.01)
  else more=(0.03 0.02 0.01); fi
  printf '%s\n' "$shipped" "${more[@]}" | awk '!seen[$0 + 0]++'
}

# Adaptive candidates, relative to the exploration length E (explore.steps, which the coordinator also
# uses as the latest end of exploring): name window threshold anneal_steps.
adaptive_candidates() {
  local E; E=$(explore_steps "$1")
  local n=3; [ "$quick" = 1 ] && n=2
  local -a div_w=(30 15 15) thr=(0.02 0.01 0.002) div_a=(6 3 2)
  local i w a
  for ((i = 0; i < n; i++)); do
    w=$(( E / div_w[i] )); [ "$w" -ge 2 ] || w=2
    a=$(( E / div_a[i] )); [ "$a" -ge 1 ] || a=1
    echo "w$w-t${thr[i]}-a$a $w ${thr[i]} $a"
  done
}

# ---- one run ------------------------------------------------------------------------------------------------------
# run_job JOBDIR DATASET VARIANT SEED WITH_TEST OVERRIDE...
#   trains (or continues) into JOBDIR/run, evaluates the final checkpoint on valid (and test when WITH_TEST=1)
#   and writes JOBDIR/job.json. Returns 0 when done, 1 when a step failed, 75 when interrupted.
run_job() {
  local job=$1 ds=$2 variant=$3 seed=$4 with_test=$5; shift 5
  local -a ov=("$@") sets=()
  local o
  for o in "${ov[@]}" "train.seed=$seed" "run.dir=$job/run"; do sets+=(--set "$o"); done
  mkdir -p "$job"
  if [ -f "$job/job.json" ] && { [ "$with_test" = 0 ] || [ -f "$job/test.json" ]; }; then
    return 0
  fi
  rm -f "$job/FAILED"
  local TIMEFORMAT='%R %U %S' rc=0
  if [ ! -f "$job/trained" ]; then
    log "train $ds $variant seed $seed -> ${job#"$out"/}"
    printf '%q ' "${mpi[@]}" train --config "configs/$ds.ini" "${sets[@]}" --resume auto > "$job/train.cmd"
    echo >> "$job/train.cmd"
    if { time "${mpi[@]}" train --config "configs/$ds.ini" "${sets[@]}" --resume auto >> "$job/train.log" 2>&1; } 2>> "$job/train.time"; then
      touch "$job/trained"
    else
      rc=$?
      log "FAILED (exit $rc): $ds $variant seed $seed; see $job/train.log"
      tail -n 5 "$job/train.log" >&2 || true
      echo "train exit $rc" > "$job/FAILED"
      [ "$rc" = 75 ] && return 75
      return 1
    fi
  fi
  local ckpt
  ckpt=$(ls "$job/run/checkpoints"/step-*.h5 2>/dev/null | sort | tail -n 1)
  [ -n "$ckpt" ] || { echo "no checkpoint" > "$job/FAILED"; log "FAILED: no checkpoint in $job/run"; return 1; }
  local split f
  for split in valid test; do
    [ "$split" = test ] && [ "$with_test" = 0 ] && continue
    [ -f "$job/$split.json" ] && continue
    f=$(eval_file "$ds" "$split")
    local -a rec=()
    [ "$split" = test ] && rec=(--records "$job/$split-records.h5")
    if { time "$exe" eval --checkpoint "$ckpt" --data "$f" --json "${rec[@]}" > "$job/$split.json.tmp" 2>> "$job/eval.log"; } 2>> "$job/$split.time"; then
      mv "$job/$split.json.tmp" "$job/$split.json"
    else
      rc=$?
      log "FAILED (exit $rc): eval $split of $ds $variant seed $seed; see $job/eval.log"
      echo "eval $split exit $rc" > "$job/FAILED"
      return 1
    fi
  done
  local wall cpu
  read -r wall cpu < <(awk '{ w += $1; c += $2 + $3 } END { printf "%.1f %.1f\n", w, c }' "$job/train.time")
  {
    printf '{"dataset": "%s", "variant": "%s", "seed": %d, "quick": %d, "ranks": %d, ' "$ds" "$variant" "$seed" "$quick" "$ranks"
    printf '"checkpoint": "%s", "train_wall_s": %s, "train_cpu_s": %s, "overrides": [' "${ckpt#"$out"/}" "$wall" "$cpu"
    local first=1
    for o in "${ov[@]}" "train.seed=$seed"; do
      [ $first = 1 ] || printf ', '
      first=0
      printf '"%s"' "$o"
    done
    printf '], "finished": %d}\n' "$(date +%s)"
  } > "$job/job.json"
}

# Budget cost: train BudgetFormer (cosine schedule) with each candidate cost, seed 1, evaluate on valid only,
# keep the best valid accuracy among those that use at most half the heads (results_table.py choose-cost).
tune_cost() {
  local ds=$1 d=$out/$1/tune-cost
  local -a cands base
  mapfile -t cands < <(cost_candidates "$ds")
  local c rc all=1
  for c in "${cands[@]}"; do [ -f "$d/c$c/overrides" ] || all=0; done
  [ -f "$d/chosen.overrides" ] && [ "$all" = 1 ] && return 0
  mapfile -t base < <(base_overrides "$ds")
  for c in "${cands[@]}"; do
    rc=0
    run_job "$out/$ds/tune-cost/c$c/seed1" "$ds" "budgetformer:cost=$c" 1 0 "${base[@]}" "train.budget_cost=$c" || rc=$?
    [ "$rc" = 75 ] && return 75
    [ "$rc" = 0 ] || return 1
    [ "$stop_req" = 0 ] || return 75
    printf '%s\n' "train.budget_cost=$c" > "$out/$ds/tune-cost/c$c/overrides"
  done
  local chosen before=
  chosen=$("$py" "$root/tools/results_table.py" choose-cost --out "$out" --dataset "$ds")
  [ -f "$d/chosen" ] && before=$(cat "$d/chosen")
  if [ -n "$before" ] && [ "$before" != "$chosen" ]; then
    # An earlier invocation chose among fewer candidates: the learned-budget runs (and the adaptive tuning)
    # trained with its cost are moved aside, not mixed into the table.
    local stale=$out/$ds/stale-$before-$(date +%s) v
    mkdir -p "$stale"
    for v in budgetformer adaptive noexplore tune; do
      if [ -e "$out/$ds/$v" ]; then mv "$out/$ds/$v" "$stale/"; fi
    done
    log "budget cost for $ds: ${chosen#c} now beats ${before#c}; the runs that used ${before#c} moved to ${stale#"$out"/}"
  fi
  cp "$out/$ds/tune-cost/$chosen/overrides" "$out/$ds/tune-cost/chosen.overrides.tmp"
  echo "$chosen" > "$out/$ds/tune-cost/chosen"
  mv "$out/$ds/tune-cost/chosen.overrides.tmp" "$out/$ds/tune-cost/chosen.overrides"
  log "budget cost for $ds: chose ${chosen#c} on the valid split"
}

# Adaptive exploration: train each candidate with seed 1, evaluate on valid only, keep the best.
# Runs with the chosen budget cost.
tune_adaptive() {
  local ds=$1
  [ -f "$out/$ds/tune/chosen.overrides" ] && return 0
  local -a base
  mapfile -t base < <(base_overrides "$ds"; cat "$out/$ds/tune-cost/chosen.overrides")
  local name w t a rc
  while read -r name w t a; do
    rc=0
    run_job "$out/$ds/tune/$name/seed1" "$ds" "adaptive:$name" 1 0 "${base[@]}" \
      explore.shape=adaptive "explore.window=$w" "explore.threshold=$t" "explore.anneal_steps=$a" || rc=$?
    [ "$rc" = 75 ] && return 75
    [ "$rc" = 0 ] || return 1
    [ "$stop_req" = 0 ] || return 75
    printf '%s\n' explore.shape=adaptive "explore.window=$w" "explore.threshold=$t" "explore.anneal_steps=$a" \
      > "$out/$ds/tune/$name/overrides"
  done < <(adaptive_candidates "$ds")
  local chosen
  chosen=$("$py" "$root/tools/results_table.py" choose --out "$out" --dataset "$ds")
  cp "$out/$ds/tune/$chosen/overrides" "$out/$ds/tune/chosen.overrides.tmp"
  echo "$chosen" > "$out/$ds/tune/chosen"
  mv "$out/$ds/tune/chosen.overrides.tmp" "$out/$ds/tune/chosen.overrides"
  log "adaptive for $ds: chose $chosen on the valid split"
}

# ---- everything ----------------------------------------------------------------------------------------------------
# A stop signal (to the whole process group, see the header) lets the current run write its checkpoint and
# the current step finish; then the loop stops and the document is written from what is finished.
stop_req=0
trap 'stop_req=1; log "stop signal: finishing the current step, then stopping"' TERM INT
log "output: $out; datasets: ${datasets[*]}; variants: ${variants[*]}; seeds 1..$nseeds; $ranks ranks; quick=$quick"
stop=0
for ((seed = 1; seed <= nseeds && !stop; seed++)); do
  for ds in "${datasets[@]}"; do
    [ "$stop" = 1 ] && break
    mapfile -t base < <(base_overrides "$ds")
    for variant in "${variants[@]}"; do
      job=$out/$ds/$variant/seed$seed
      rc=0
      case $variant in
        budgetformer|adaptive|noexplore)
          tune_cost "$ds" || rc=$?
          if [ "$rc" = 0 ] && [ "$variant" = budgetformer ] && [ "$seed" = 1 ] && [ ! -e "$job" ]; then
            mkdir -p "$out/$ds/budgetformer"
            ln -s "../tune-cost/$(cat "$out/$ds/tune-cost/chosen")/seed1" "$job"   # the tuned seed-1 run is this run
          fi ;;
      esac
      if [ "$rc" = 0 ] && [ "$variant" = adaptive ]; then
        tune_adaptive "$ds" || rc=$?
        if [ "$rc" = 0 ] && [ "$seed" = 1 ] && [ ! -e "$job" ]; then
          mkdir -p "$out/$ds/adaptive"
          ln -s "../tune/$(cat "$out/$ds/tune/chosen")/seed1" "$job"   # the tuned seed-1 run is this run
        fi
      fi
      if [ "$rc" = 0 ]; then
        mapfile -t vo < <(cost_overrides "$ds" "$variant"; variant_overrides "$ds" "$variant")
        run_job "$job" "$ds" "$variant" "$seed" 1 "${base[@]}" "${vo[@]}" || rc=$?
      fi
      [ "$stop_req" = 0 ] || rc=75
      if [ "$rc" = 75 ]; then
        log "interrupted: stopping (run the same command again to continue)"
        stop=1 rc_total=75
        break
      fi
      [ "$rc" = 0 ] || rc_total=1
    done
  done
done

log "writing $md"
report || rc_total=1
t_end=$(date +%s)
log "done in $(( (t_end - t_start) / 60 )) min $(( (t_end - t_start) % 60 )) s (exit $rc_total)"
exit "$rc_total"
