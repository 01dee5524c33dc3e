#!/usr/bin/env bash
# What the rewrite of log.h5 after every update (train.log_write_every = 1, the default) costs against the
# synced writes of train.log_every alone (train.log_write_every = 0): a benchmark, not a test. Both
# trainings run at the same time, one per core, and swap cores every repeat, so that background load hits
# them alike. Prints per repeat the trainer's ms CPU per input of each, then the medians and their ratio.
#
#   usage: launch/bench-log-writes.sh [--config FILE] [--steps N] [--repeats R] [--exe PATH]
#   default: configs/wordnet-pos.ini (data/wordnet-pos, launch/prepare-data.sh makes it), its 3000 steps,
#   3 repeats; no validation, test or checkpoints (they are the same on both sides).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
exe=${BF_EXE:-$root/build/budgetformer} config=$root/configs/wordnet-pos.ini repeats=3 n=
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$2; shift 2 ;;
    --steps) n=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --exe) exe=$2; shift 2 ;;
    -h|--help) sed -n '2,10s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "bench-log-writes: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$exe" ] || { echo "bench-log-writes: $exe not found: build first or pass --exe" >&2; exit 2; }
[ -f "$config" ] || { echo "bench-log-writes: $config not found" >&2; exit 2; }
[[ $repeats =~ ^[1-9][0-9]*$ && ( -z $n || $n =~ ^[1-9][0-9]*$ ) ]] ||
  { echo "bench-log-writes: --repeats and --steps expect positive integers" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "bench-log-writes: needs 2 cores, this machine has $(nproc)" >&2; exit 2; }
command -v taskset > /dev/null || { echo "bench-log-writes: needs taskset (util-linux)" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
w=$(mktemp -d "${TMPDIR:-/tmp}/bench-log-writes.XXXXXX")
trap 'rm -rf "$w"' EXIT
sets=(--set data.valid= --set data.test= --set checkpoint.every=0 --quiet)
[ -n "$n" ] && sets+=(--set "train.steps=$n")
cpu() { grep -o '[0-9.]* ms CPU per input' "$1" | awk '{print $1}'; }
ok() { [ -n "$(cpu "$1")" ] || { echo "bench-log-writes: a run failed:" >&2; tail -5 "$1" >&2; exit 1; }; }
: > "$w/results"
cd "$root"
for rep in $(seq 1 "$repeats"); do
  rm -rf "$w"/run-*
  a=$(( rep % 2 )) b=$(( (rep + 1) % 2 ))
  taskset -c $a "$exe" train --config "$config" "${sets[@]}" --set train.log_write_every=1 \
    --set "run.dir=$w/run-every" > "$w/every.log" 2>&1 &
  taskset -c $b "$exe" train --config "$config" "${sets[@]}" --set train.log_write_every=0 \
    --set "run.dir=$w/run-synced" > "$w/synced.log" 2>&1 || true
  wait || true
  ok "$w/every.log"; ok "$w/synced.log"
  steps=$(/usr/bin/python3 -c "import h5py,sys; print(h5py.File(sys.argv[1])['metrics/step'].shape[0])" \
    "$w/run-every/log.h5" 2> /dev/null || echo "?")
  echo "$(cpu "$w/every.log") $(cpu "$w/synced.log")" >> "$w/results"
  echo "repeat $rep: ms CPU per input, log.h5 after every update $(cpu "$w/every.log") (core $a)," \
       "synced writes only $(cpu "$w/synced.log") (core $b); $steps updates logged"
done
awk '{ e[NR] = $1; s[NR] = $2 }
     function median(x, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                                          if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
                                        return n % 2 ? x[(n + 1) / 2] : (x[n / 2] + x[n / 2 + 1]) / 2 }
     END { me = median(e, NR); ms = median(s, NR)
           printf "median ms CPU per input over %d repeats: every update %.4f, synced only %.4f; ratio %.3f\n",
                  NR, me, ms, me / ms }' "$w/results"
