#!/usr/bin/env bash
# Scaling benchmark (not a test): trains the same configuration on 1 rank and on 2 ranks of this machine
# (one OpenBLAS thread per rank, each rank bound to a core, the same global batch), R times each,
# alternating 1 and 2 so that background load hits both alike, and prints per world size the median
# samples/s, the median CPU milliseconds per input and the median communication fraction, then the
# 2-rank/1-rank ratios. With --buckets it times 2 ranks for each dist.bucket_kb in BUCKETS instead.
#
#   usage: launch/bench-scaling.sh [--config FILE] [--repeats R] [--steps N] [--buckets]
#                                  [--bucket-sizes "64 256 1024 4096 16384"] [--exe PATH] [-- --set k=v ...]
#
# Default configuration: configs/wordnet-pos.ini when it and data/wordnet-pos/train.h5 exist (stopped after
# --steps updates with train.stop_at, so every schedule is the configured one), else configs/tiny.ini on the
# tiny corpus made bigger: d_model 64, d_ff 256, global batch 64, 300 updates. Extra arguments after -- go
# to `budgetformer train` (e.g. -- --set train.batch_size=128).
#
# Measures:
#   samples/s   inputs / training time, from the progress lines after the first interval (which holds the
#               start-up): the harmonic mean of their samples/s (10 intervals per run)
#   ms CPU/in   the trainer's final line "... s CPU over P ranks (X ms CPU per input)": user+system CPU of
#               all ranks over the whole loop, per input; ideal scaling keeps it flat as ranks are added
#   comm        the progress lines' "comm" (wall time waiting in allreduce/broadcast over the interval),
#               median over the intervals after the first
# The machine is shared: read the spread (min..max), not just the median, and run it when it is quiet.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
exe=${BF_EXE:-$root/build/budgetformer}
config='' repeats=3 steps='' buckets=0 bucket_sizes="64 256 1024 4096 16384"
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --buckets) buckets=1; shift ;;
    --bucket-sizes) bucket_sizes=$2; shift 2 ;;
    --exe) exe=$2; shift 2 ;;
    -h|--help) sed -n '2,26s/^# \{0,1\}//p' "$0"; exit 0 ;;
    --) shift; break ;;
    *) echo "bench-scaling: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[ -x "$exe" ] || { echo "bench-scaling: $exe not found: build first or pass --exe" >&2; exit 2; }
[[ $repeats =~ ^[1-9][0-9]*$ ]] || { echo "bench-scaling: --repeats expects a positive integer" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-scaling.XXXXXX")
trap 'rm -rf "$work"' EXIT
sets=()
if [ -z "$config" ] && [ -f "$root/configs/wordnet-pos.ini" ] && [ -f "$root/data/wordnet-pos/train.h5" ]; then
  config=$root/configs/wordnet-pos.ini
  steps=${steps:-300}
  sets+=(--set "data.train=$root/data/wordnet-pos/train.h5" --set data.valid= --set data.test=
         --set "train.stop_at=$steps")
elif [ -z "$config" ]; then
  config=$root/configs/tiny.ini
  steps=${steps:-300}
  "$exe" prepare --train "$root/tests/data/tiny/train.csv" --test "$root/tests/data/tiny/test.csv" \
    --out "$work/data" --max-len 24 > /dev/null 2>&1
  sets+=(--set "data.train=$work/data/train.h5" --set data.valid= --set data.test=
         --set model.d_model=64 --set model.d_ff=256 --set train.batch_size=64
         --set "train.steps=$steps" --set train.warmup=20)
else
  # A configuration of your own: its data paths as written (relative to the current directory).
  steps=${steps:-300}
  sets+=(--set data.valid= --set data.test= --set "train.stop_at=$steps")
fi
log_every=$(( steps / 10 > 0 ? steps / 10 : 1 ))
sets+=(--set "train.log_every=$log_every" --set "checkpoint.every=0" --set "heads.every=$steps" "$@")

# One run: appends "samples_per_s ms_cpu_per_input comm_fraction" (or "fail") to RESULTS and prints it.
n_run=0
one_run() { # ranks RESULTS [extra --set args...]
  local ranks=$1 results=$2; shift 2
  n_run=$((n_run + 1))
  local out=$work/run$n_run.log
  if ! bash "$here/bf-mpirun.sh" -n "$ranks" --threads 1 --exe "$exe" -- train --config "$config" \
       "${sets[@]}" --set "run.dir=$work/run$n_run" "$@" > "$out" 2>&1; then
    echo "bench-scaling: run $n_run ($ranks ranks) failed; its output:" >&2
    tail -n 20 "$out" >&2
    echo fail | tee -a "$results"
    return
  fi
  awk '
    /^step .*samples\/s/ {
      n++
      for (i = 1; i <= NF; i++) {
        if ($(i+1) == "samples/s") sps = $i
        if ($i == "comm") { c = $(i+1); sub("%", "", c) }
      }
      if (n > 1) { inv += 1 / sps; k++; comm[k] = c / 100 }
    }
    /ms CPU per input/ { s = $0; sub(/.*\(/, "", s); sub(/ ms CPU per input.*/, "", s); cpu = s }
    END {
      if (k == 0) { print "fail"; exit }
      # median of the comm fractions
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (comm[j] < comm[i]) { t = comm[i]; comm[i] = comm[j]; comm[j] = t }
      med = (k % 2) ? comm[(k + 1) / 2] : (comm[k / 2] + comm[k / 2 + 1]) / 2
      printf "%.1f %.4f %.3f\n", k / inv, cpu, med
    }' "$out" | tee -a "$results"
  rm -rf "$work/run$n_run"
}

median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) {print "nan"; exit} print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
minmax() { sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s..%s", lo, hi}'; }
col() { awk -v c="$1" '$1 != "fail" {print $c}' "$2"; }

echo "bench-scaling: $(basename "$config") ${sets[*]}"
echo "bench-scaling: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $repeats repeats, $steps updates per run"
"$exe" train --config "$config" "${sets[@]}" --set "run.dir=$work/probe" --set train.stop_at=1 --set train.steps=2 \
  --set train.warmup=0 2>&1 | sed -n 's/^budgetformer: \(training .* parameters\).*/bench-scaling: \1/p' || true
rm -rf "$work/probe"

if [ "$buckets" = 0 ]; then
  : > "$work/r1"; : > "$work/r2"
  for ((i = 1; i <= repeats; i++)); do
    for ranks in 1 2; do
      printf '  repeat %d, %d rank(s): samples/s, ms CPU per input, comm fraction = ' "$i" "$ranks"
      one_run "$ranks" "$work/r$ranks"
    done
  done
  printf '\n%-6s %12s %18s %14s %8s\n' ranks samples/s "(min..max)" "ms CPU/input" comm
  for ranks in 1 2; do
    printf '%-6s %12s %18s %14s %8s\n' "$ranks" "$(col 1 "$work/r$ranks" | median)" \
      "($(col 1 "$work/r$ranks" | minmax))" "$(col 2 "$work/r$ranks" | median)" "$(col 3 "$work/r$ranks" | median)"
  done
  s1=$(col 1 "$work/r1" | median) s2=$(col 1 "$work/r2" | median)
  c1=$(col 2 "$work/r1" | median) c2=$(col 2 "$work/r2" | median)
  awk -v s1="$s1" -v s2="$s2" -v c1="$c1" -v c2="$c2" 'BEGIN {
    printf "\nspeed-up 2 ranks / 1 rank: %.2f (ideal 2.00; parallel efficiency %.0f%%)\n", s2 / s1, 50 * s2 / s1
    printf "CPU per input 2 ranks / 1 rank: %.2f (ideal 1.00)\n", c2 / c1 }'
else
  for kb in $bucket_sizes; do : > "$work/b$kb"; done
  for ((i = 1; i <= repeats; i++)); do
    for kb in $bucket_sizes; do
      printf '  repeat %d, 2 ranks, bucket_kb %s: samples/s, ms CPU per input, comm fraction = ' "$i" "$kb"
      one_run 2 "$work/b$kb" --set "dist.bucket_kb=$kb"
    done
  done
  printf '\n%-10s %12s %18s %14s %8s\n' bucket_kb samples/s "(min..max)" "ms CPU/input" comm
  for kb in $bucket_sizes; do
    printf '%-10s %12s %18s %14s %8s\n' "$kb" "$(col 1 "$work/b$kb" | median)" "($(col 1 "$work/b$kb" | minmax))" \
      "$(col 2 "$work/b$kb" | median)" "$(col 3 "$work/b$kb" | median)"
  done
fi
