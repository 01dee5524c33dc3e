#!/usr/bin/env bash
# Where 2 ranks lose against one on the standard shape (a benchmark, not a test). Four settings alternate
# within every repeat, so that background load hits them alike:
#   1r-b32    1 rank, global batch 32 (the baseline of launch/bench-scaling.sh)
#   2r-b32    2 ranks under mpirun, global batch 32 (16 inputs per rank)
#   1r-b16    1 rank, batch 16: the per-rank work of 2r-b32 without MPI (the smaller batch's own cost)
#   2x1r-b16  two independent 1-rank runs of batch 16 at the same time, one per core: the machine shared by
#             two processes, without MPI (their samples/s summed)
# So 1r-b16 / 1r-b32 is what halving the per-rank batch costs, 2x1r-b16 / 1r-b16 what two processes sharing
# the machine cost, and 2r-b32 / 2x1r-b16 what MPI adds (the exchange, and ranks waiting for each other).
# Prints per repeat the ms CPU per input (the trainer's final line) and samples/s (harmonic mean of the
# progress lines after the first), then medians and ratios.
#
#   usage: launch/bench-two-ranks.sh [--repeats R] [--steps N] [--exe PATH]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
exe=${BF_EXE:-$root/build/budgetformer} repeats=8 n=30
while [ $# -gt 0 ]; do
  case $1 in
    --repeats) repeats=$2; shift 2 ;;
    --steps) n=$2; shift 2 ;;
    --exe) exe=$2; shift 2 ;;
    -h|--help) sed -n '2,16s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "bench-two-ranks: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$exe" ] || { echo "bench-two-ranks: $exe not found: build first or pass --exe" >&2; exit 2; }
[[ $repeats =~ ^[1-9][0-9]*$ && $n =~ ^[1-9][0-9]*$ ]] || { echo "bench-two-ranks: --repeats and --steps expect positive integers" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "bench-two-ranks: needs 2 cores, this machine has $(nproc)" >&2; exit 2; }
command -v taskset > /dev/null || { echo "bench-two-ranks: needs taskset (util-linux)" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
w=$(mktemp -d "${TMPDIR:-/tmp}/bench-two-ranks.XXXXXX")
trap 'rm -rf "$w"' EXIT
. "$here/standard-shape.sh"
standard_shape_data "$exe" "$w"
standard_shape_sets "$w" "$n"
args=(train --config "$root/configs/tiny.ini" "${standard_sets[@]}"
      --set data.valid= --set data.test= --set "train.log_every=$(( n / 10 > 0 ? n / 10 : 1 ))"
      --set checkpoint.every=0 --set "heads.every=$n")
cpu() { grep -o '[0-9.]* ms CPU per input' "$1" | awk '{print $1}'; }
sps() { grep -o '[0-9.]* samples/s' "$1" | awk 'NR > 1 { k++; s += 1 / $1 } END { if (k) printf "%.2f", k / s }'; }
ok() { [ -n "$(cpu "$1")" ] || { echo "bench-two-ranks: a run failed:" >&2; tail -5 "$1" >&2; exit 1; }; }
: > "$w/results"
for rep in $(seq 1 "$repeats"); do
  rm -rf "$w"/run-*
  taskset -c 0 "$exe" "${args[@]}" --set train.batch_size=32 --set "run.dir=$w/run-a" > "$w/a.log" 2>&1 || true
  bash "$here/bf-mpirun.sh" -n 2 --threads 1 --exe "$exe" -- "${args[@]}" --set train.batch_size=32 \
    --set "run.dir=$w/run-d" > "$w/d.log" 2>&1 || true
  taskset -c 0 "$exe" "${args[@]}" --set train.batch_size=16 --set "run.dir=$w/run-b" > "$w/b.log" 2>&1 || true
  taskset -c 0 "$exe" "${args[@]}" --set train.batch_size=16 --set "run.dir=$w/run-c0" > "$w/c0.log" 2>&1 &
  taskset -c 1 "$exe" "${args[@]}" --set train.batch_size=16 --set "run.dir=$w/run-c1" > "$w/c1.log" 2>&1 || true
  wait
  for f in a d b c0 c1; do ok "$w/$f.log"; done
  line="$(cpu "$w/a.log") $(cpu "$w/d.log") $(cpu "$w/b.log") $(cpu "$w/c0.log") $(cpu "$w/c1.log")"
  line+=" $(sps "$w/a.log") $(sps "$w/d.log") $(sps "$w/b.log") $(sps "$w/c0.log") $(sps "$w/c1.log")"
  echo "$line" >> "$w/results"
  set -- $line
  echo "repeat $rep: ms CPU per input 1r-b32 $1  2r-b32 $2  1r-b16 $3  2x1r-b16 $4 $5 | samples/s 1r-b32 $6  2r-b32 $7  1r-b16 $8  2x1r-b16 $9 + ${10}"
done
awk '
function median(a, n,   i, j, t) { for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
                                   return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }
{ n++; ca[n]=$1; cd[n]=$2; cb[n]=$3; cc[n]=($4+$5)/2; sa[n]=$6; sd[n]=$7; sb[n]=$8; sc[n]=$9+$10
  r1[n]=$3/$1; r2[n]=(($4+$5)/2)/$3; r3[n]=$2/(($4+$5)/2); r4[n]=$2/$1; s1[n]=$7/$6; s2[n]=($9+$10)/$6 }
END {
  printf "\nmedians of %d repeats\n", n
  printf "  ms CPU per input: 1r-b32 %.2f  2r-b32 %.2f  1r-b16 %.2f  2x1r-b16 %.2f\n", median(ca,n), median(cd,n), median(cb,n), median(cc,n)
  printf "  CPU per input ratios: 1r-b16/1r-b32 %.3f (smaller batch)  2x1r-b16/1r-b16 %.3f (shared machine)  2r-b32/2x1r-b16 %.3f (MPI)  2r-b32/1r-b32 %.3f (all)\n", median(r1,n), median(r2,n), median(r3,n), median(r4,n)
  printf "  samples/s over 1r-b32: 2r-b32 %.2fx  2x1r-b16 (summed) %.2fx\n", median(s1,n), median(s2,n)
}' "$w/results"
