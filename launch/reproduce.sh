#!/usr/bin/env bash
# Reproduces the BudgetFormer comparison on real text and writes the results document.
#
#   usage: launch/reproduce.sh [--quick] [--out DIR] [--seeds N] [--datasets LIST] [--variants LIST]
#                              [--targets LIST] [--method-set "k=v ..."] [--set-all "k=v ..."] [--ranks N] [--no-doc]
#                              [--report-only]
#
#   (no option)       the full reproduction: prepares wordnet-pos, wordnet-lex and spam (launch/prepare-data.sh),
#                     trains every variant below with seeds 1..3 on 2 MPI ranks with the shipped configurations
#                     (configs/<dataset>.ini), evaluates every final checkpoint on the valid file and (once) on
#                     the test file, runs the budget controls of the learned-budget runs, and writes
#                     docs/RESULTS.md and docs/results/*.png. Hours on a 2-core machine.
#   --quick           a smoke version for CI (< 10 min): few steps, 1 seed, evaluation on subsets of
#                     valid/test, one target (0.5) per dataset, fixed budgets k = 1 and H/2 only. Never writes
#                     docs/: the document goes to DIR/RESULTS.md and the plots to DIR/results/. Not results.
#   --out DIR         where runs and evaluations go (default runs/reproduce, or runs/reproduce-quick with --quick)
#   --seeds N         seeds 1..N (default 3; 1 with --quick)
#   --datasets LIST   comma- or blank-separated subset of: wordnet-pos wordnet-lex spam, or wordnet-lex-hint (the
#                     positive control of docs/FIDELITY.md round 8; never part of the default; an invocation that
#                     names it writes its document to DIR/RESULTS.md, as --no-doc does, never to docs/)
#   --variants LIST   subset of the variants below by name (full, fixed<k>, target<r>, layers<k1>-<k2>), or the groups
#                     `fixed` and `target`; a name a dataset does not have (fixed8 with 4 heads) is skipped there
#   --targets LIST    the budget targets r of the learned variants, for every dataset (default 0.25 0.48
#                     with 8 heads, 0.375 0.48 with 4; 0.5 with --quick); r below 1/H is skipped. The upper
#                     target sits 0.02 below half the heads: the controller holds the mean within about
#                     0.005 of r on either side, so r = 0.5 failed the claims' cap of H/2 heads half the time
#   --method-set "k=v k=v"  extra --set overrides of the learned-budget variants only (experiments; use a new
#                     --out: a finished run trained with other overrides is not retrained, it is reported FAILED)
#   --set-all "k=v k=v"  extra --set overrides of every variant (experiments on the training itself, e.g.
#                     dist.grad_precision=bf16; use a new --out, as with --method-set). They are recorded in each
#                     run's overrides (results.json) and in DIR/invocations.tsv
#   --ranks N         MPI ranks per training run (default 2)
#   --no-doc          do not write docs/RESULTS.md in a full run (the document then goes to DIR/RESULTS.md)
#   --report-only     train nothing: regenerate the document from what DIR already holds
#
# Variants (every one is configs/<dataset>.ini plus --set overrides; H = model.n_heads of the configuration):
#   full           model.full_heads=1 model.gate_norm=0: every head, gate 1 (the baseline)
#   fixed<k>       model.fixed_budget=k for every k = 1..H: k heads per input chosen by the learned relevance
#   layers<k1>-<k2>...  model.layer_budgets=k1,k2,...: a fixed budget per layer (added option; trained only
#                  when named with --variants, e.g. --variants layers3-1)
#   target<r>      learned budget with train.budget_target=r (mean fraction of heads k/H), with the shipped
#                  configuration's own training options (its method keys, e.g. train.sandwich, model.gate_norm)
#                  plus --method-set. The BudgetFormer of the claims is, among the target variants whose mean
#                  valid heads per layer is at most H/2, the one with the best mean valid accuracy.
# Budget controls: every learned-budget run's final checkpoint is also evaluated on valid and test with
# `budgetformer eval --budget-control shuffle` and `--budget-control constant` (the same weights with the
# budgets moved between inputs): <split>-shuffle.json, <split>-constant.json beside <split>.json. A program
# without that option (exit 2, unknown option) leaves <split>-<control>.missing and the report says "not run";
# a newer program copy in DIR/bin retries them.
#
# Every run lives in DIR/<dataset>/<variant>/seed<N>/ (run.dir = .../run). A run whose evaluation files
# exist is skipped and an interrupted one continues from its last checkpoint (--resume auto), so running
# the same command again continues an interrupted reproduction. To stop one cleanly, signal the whole
# process group (kill -TERM -- -PGID): launch/bf-mpirun.sh makes the ranks checkpoint, and this script
# stops after that run. During training data.test is cleared: the test file is read only by the final
# `budgetformer eval` (and its controls) of each run.
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

usage() { sed -n 's/^#   \{0,1\}//; 4,6p' "$here/reproduce.sh" >&2; echo "see the header of launch/reproduce.sh for every option" >&2; }
die() { echo "reproduce: $*" >&2; exit 2; }

quick=0 out= nseeds= datasets_arg= variants_arg= targets_arg= method_set= set_all= ranks=2 doc=1 report_only=0
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
    --targets) targets_arg=${2:?--targets needs a list}; shift 2 ;;
    --method-set) method_set=${2?--method-set needs a list}; shift 2 ;;
    --set-all) set_all=${2?--set-all needs a list}; shift 2 ;;
    --no-doc) doc=0; shift ;;
    --report-only) report_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "reproduce: unknown option '$1'" >&2; usage; exit 2 ;;
  esac
done

all_datasets=(wordnet-pos wordnet-lex spam)
known_datasets=("${all_datasets[@]}" wordnet-lex-hint)
in_list() { local x=$1; shift; local y; for y in "$@"; do [ "$x" = "$y" ] && return 0; done; return 1; }
read -r -a datasets <<< "${datasets_arg//,/ }"
read -r -a variants_sel <<< "${variants_arg//,/ }"
read -r -a method_sets <<< "$method_set"
read -r -a all_sets <<< "$set_all"
[ ${#datasets[@]} -gt 0 ] || datasets=("${all_datasets[@]}")
for d in "${datasets[@]}"; do in_list "$d" "${known_datasets[@]}" || die "unknown dataset '$d' (known: ${known_datasets[*]})"; done
for v in "${variants_sel[@]}"; do
  [[ $v =~ ^(full|fixed|target|fixed[1-9][0-9]*|target(0|1)?\.?[0-9]+|layers[1-9][0-9]*(-[1-9][0-9]*)+)$ ]] || die "unknown variant '$v' (known: full fixed<k> target<r> layers<k1>-<k2>..., or the groups fixed and target)"
done
for o in "${method_sets[@]}"; do [[ $o == *=* ]] || die "--method-set expects key=value words, got '$o'"; done
for o in "${all_sets[@]}"; do [[ $o == *=* ]] || die "--set-all expects key=value words, got '$o'"; done
[ -n "$nseeds" ] || { if [ "$quick" = 1 ]; then nseeds=1; else nseeds=3; fi; }
[[ $nseeds =~ ^[1-9][0-9]*$ ]] || die "--seeds expects a positive integer, got '$nseeds'"
[[ $ranks =~ ^[1-9][0-9]*$ ]] || die "--ranks expects a positive integer, got '$ranks'"
for c in ${targets_arg//,/ }; do [[ $c =~ ^(0?\.[0-9]+|1|1\.0*)$ ]] || die "--targets expects numbers in (0, 1], got '$c'"; done
[ -n "$out" ] || { if [ "$quick" = 1 ]; then out=runs/reproduce-quick; else out=runs/reproduce; fi; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Where the document goes: docs/ only for a full run (never for --quick), and never for the positive control.
in_list wordnet-lex-hint "${datasets[@]}" && doc=0
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

# The variants of a dataset (in table order): full, fixed<k> (k = 1..H; 1 and H/2 with --quick), target<r>.
n_heads_of() { ini_get "configs/$1.ini" model n_heads; }
targets_of() {
  local H; H=$(n_heads_of "$1")
  local -a t
  if [ -n "$targets_arg" ]; then read -r -a t <<< "${targets_arg//,/ }"
  elif [ "$quick" = 1 ]; then t=(0.5)
  elif [ "$H" = 8 ]; then t=(0.25 0.48)
  else t=(0.375 0.48); fi
  local r
  for r in "${t[@]}"; do
    if awk -v r="$r" -v h="$H" 'BEGIN { exit !(r * h >= 1 - 1e-9) }'; then echo "$r"
    else log "skipping target $r on $1: below 1/H = 1/$H"; fi
  done
}
variants_of() {
  local ds=$1 H k r v
  H=$(n_heads_of "$ds")
  local -a all=(full)
  if [ "$quick" = 1 ]; then
    all+=(fixed1); [ $((H / 2)) -gt 1 ] && all+=("fixed$((H / 2))")
  else
    for ((k = 1; k <= H; k++)); do all+=("fixed$k"); done
  fi
  for r in $(targets_of "$ds"); do all+=("target$r"); done
  # per-layer fixed budgets are trained only when named (one budget per layer: the configuration's n_layers)
  for v in "${variants_sel[@]}"; do [[ $v == layers* ]] && all+=("$v"); done
  for v in "${all[@]}"; do
    if [ ${#variants_sel[@]} = 0 ] || in_list "$v" "${variants_sel[@]}" || in_list "${v%%[0-9.]*}" "${variants_sel[@]}"; then
      echo "$v"
    fi
  done
}
plan=
for d in "${datasets[@]}"; do
  [ -f "configs/$d.ini" ] || die "configs/$d.ini: no such configuration"
  plan+="$d:$(variants_of "$d" | paste -sd, -) "
done

report() {
  local -a extra=()
  [ "$quick" = 1 ] && extra+=(--quick)
  [ "$report_only" = 1 ] || extra+=(--running-since "$t_start" --command "$quoted_cmd")
  "$py" "$root/tools/results_table.py" report --out "$out" --md "$md" --plots "$plots" --seeds "$nseeds" \
    --datasets "${datasets[*]}" --plan "$plan" --method-set "$method_set" "${extra[@]}"
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


base_overrides() { # base_overrides DATASET: --set arguments every run of the dataset gets
  local ds=$1
  printf '%s\n' "data.test="
  if [ "$quick" = 1 ]; then
    local s; s=$(quick_steps "$ds")
    printf '%s\n' "data.valid=" "train.steps=$s" "train.warmup=5" "explore.steps=$((s / 2))" "train.log_every=10" \
      "train.eval_every=0" "heads.every=10" "checkpoint.every=0"
  fi
}

learned() { [[ $1 == target* ]]; }
variant_overrides() { # variant_overrides DATASET VARIANT
  case $2 in
    full) printf "%s\n" "model.full_heads=1" "model.gate_norm=0" ;;   # the trainer refuses gate_norm with full heads
    fixed*) echo "model.fixed_budget=${2#fixed}" ;;
    layers*) local k=${2#layers}; echo "model.layer_budgets=${k//-/,}" ;;
    target*) echo "train.budget_target=${2#target}"; [ ${#method_sets[@]} = 0 ] || printf '%s\n' "${method_sets[@]}" ;;
  esac
  [ ${#all_sets[@]} = 0 ] || printf '%s\n' "${all_sets[@]}"
}

# controls_done JOBDIR: every budget control of a learned run is evaluated, or marked missing by this program copy.
controls_done() {
  local split ctl
  for split in valid test; do
    for ctl in shuffle constant; do
      [ -f "$1/$split-$ctl.json" ] && continue
      [ -f "$1/$split-$ctl.missing" ] && ! [ "$exe" -nt "$1/$split-$ctl.missing" ] && continue
      return 1
    done
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
  if [ -f "$job/job.json" ] && { [ "$with_test" = 0 ] || [ -f "$job/test.json" ]; } &&
     { ! learned "$variant" || controls_done "$job"; }; then
    return 0
  fi
  printf '%s\n' "${ov[@]}" > "$job/overrides.now"
  if [ -f "$job/overrides" ] && ! cmp -s "$job/overrides" "$job/overrides.now"; then
    rm -f "$job/overrides.now"
    log "FAILED: $ds $variant seed $seed was trained with other overrides ($job/overrides); use another --out"
    echo "overrides differ" > "$job/FAILED"
    return 1
  fi
  mv "$job/overrides.now" "$job/overrides"
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
  if learned "$variant"; then
    local ctl erc
    for split in valid test; do
      for ctl in shuffle constant; do
        [ -f "$job/$split-$ctl.json" ] && continue
        [ -f "$job/$split-$ctl.missing" ] && ! [ "$exe" -nt "$job/$split-$ctl.missing" ] && continue
        f=$(eval_file "$ds" "$split")
        erc=0
        { time "$exe" eval --checkpoint "$ckpt" --data "$f" --json --budget-control "$ctl" > "$job/$split-$ctl.json.tmp" 2> "$job/$split-$ctl.err"; } 2>> "$job/$split-$ctl.time" || erc=$?
        cat "$job/$split-$ctl.err" >> "$job/eval.log"
        if [ "$erc" = 0 ]; then
          mv "$job/$split-$ctl.json.tmp" "$job/$split-$ctl.json"
          rm -f "$job/$split-$ctl.missing" "$job/$split-$ctl.err"
        elif [ "$erc" = 2 ] && grep -qi "unknown option" "$job/$split-$ctl.err"; then
          rm -f "$job/$split-$ctl.json.tmp" "$job/$split-$ctl.time"
          mv "$job/$split-$ctl.err" "$job/$split-$ctl.missing"
          log "budget control $ctl not in this program (eval: unknown option): $ds $variant seed $seed, $split; reported as not run"
        else
          log "FAILED (exit $erc): eval $split --budget-control $ctl of $ds $variant seed $seed; see $job/eval.log"
          echo "eval $split $ctl exit $erc" > "$job/FAILED"
          return 1
        fi
      done
    done
  fi
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

# ---- everything ----------------------------------------------------------------------------------------------------
# A stop signal (to the whole process group, see the header) lets the current run write its checkpoint and
# the current step finish; then the loop stops and the document is written from what is finished.
stop_req=0
trap 'stop_req=1; log "stop signal: finishing the current step, then stopping"' TERM INT
log "output: $out; plan: $plan; seeds 1..$nseeds; $ranks ranks; quick=$quick"
stop=0
for ((seed = 1; seed <= nseeds && !stop; seed++)); do
  for ds in "${datasets[@]}"; do
    [ "$stop" = 1 ] && break
    mapfile -t base < <(base_overrides "$ds")
    mapfile -t dvariants < <(variants_of "$ds")
    for variant in "${dvariants[@]}"; do
      job=$out/$ds/$variant/seed$seed
      rc=0
      mapfile -t vo < <(variant_overrides "$ds" "$variant")
      run_job "$job" "$ds" "$variant" "$seed" 1 "${base[@]}" "${vo[@]}" || rc=$?
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
