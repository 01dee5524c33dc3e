#!/usr/bin/env bash
# Scaling benchmark (not a test): trains the same configuration on 1, 2, 4, ... ranks of this machine (one
# OpenBLAS thread per rank, each rank bound to a core, the same global batch), with and without the sharded
# optimiser (dist.shard_optimizer), R times each, the settings alternating within every repeat so that
# background load hits them alike. Prints per setting the median samples/s (and range), the speed-up over
# 1 rank unsharded, the parallel efficiency, the median CPU milliseconds per input, the median communication
# fraction and the peak memory per rank. With --buckets it times 2 ranks for each dist.bucket_kb instead.
#
#   usage: launch/bench-scaling.sh [--configs "LIST"] [--ranks "1 2 4"] [--shard "0 1"] [--repeats R]
#                                  [--steps N] [--markdown] [--buckets] [--bucket-sizes "64 256 1024"]
#                                  [--exe PATH] [--config FILE] [-- --set k=v ...]
#
#   --configs LIST  what to train, blank-separated; each is a configuration file or one of the names
#                   wordnet-pos, wordnet-lex, spam (configs/<name>.ini, data/<name>/ prepared), scaling
#                   (configs/scaling.ini: the shipped large-shape configuration), standard (the benchmark
#                   shape of launch/bench-vs-pytorch.sh: d_model 256, 8 heads, 4 layers, d_ff 1024, 128
#                   tokens per input, global batch 32, vocabulary 16384, a fixed budget of 4 of 8 heads (so
#                   every update costs the same), on synthetic full-length inputs made here) and tiny (configs/tiny.ini on the repository's tiny corpus). Default: "wordnet-pos
#                   standard" when data/wordnet-pos is prepared, else "tiny standard". --config FILE = one file.
#   --ranks LIST    world sizes (default 1, 2, 4, ... up to this machine's cores, and the core count itself)
#   --shard LIST    dist.shard_optimizer values (default "0 1"; "0" with a program that lacks the key)
#   --steps N       updates per run (default 300; 30 for standard and 20 for scaling, whose updates take ~1 s)
#   --markdown      also print the table as Markdown (for docs/SCALING.md)
#   --exe PATH      the program (default build/budgetformer); given more than once, every program runs every
#                   setting within each repeat (old and new builds measured alike), each with its own speed-up
#                   over its own 1-rank run
# Every run stops after --steps updates with train.stop_at, so every schedule is the configured one; data.valid
# and data.test are cleared and checkpoints are off. Extra arguments after -- go to `budgetformer train`.
#
# Measures:
#   samples/s   inputs / training time, from the progress lines after the first interval (which holds the
#               start-up): the harmonic mean of their samples/s (about 10 intervals per run)
#   ms CPU/in   the trainer's final line "... s CPU over P ranks (X ms CPU per input)": user+system CPU of
#               all ranks over the whole loop, per input; ideal scaling keeps it flat as ranks are added
#   comm        the progress lines' "comm" (wall time waiting in collectives over the interval), median
#   peak MiB    the largest peak resident set (getrusage) of any rank, from the trainer's memory report
#               (blank with a program that does not print one)
# The machine is shared: read the spread (min..max), not just the median, and run it when it is quiet.
# More ranks than cores run oversubscribed (launch/bf-mpirun.sh) and measure contention, not scaling.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
exes=()
configs='' ranks_list='' shard_list='' repeats=3 steps='' buckets=0 bucket_sizes="64 256 1024 4096 16384" md=0
while [ $# -gt 0 ]; do
  case $1 in
    --configs) configs=$2; shift 2 ;;
    --config) configs=$2; shift 2 ;;
    --ranks) ranks_list=$2; shift 2 ;;
    --shard) shard_list=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --markdown) md=1; shift ;;
    --buckets) buckets=1; shift ;;
    --bucket-sizes) bucket_sizes=$2; shift 2 ;;
    --exe) exes+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,36s/^# \{0,1\}//p' "$0"; exit 0 ;;
    --) shift; break ;;
    *) echo "bench-scaling: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ "${#exes[@]}" -gt 0 ] || exes=("${BF_EXE:-$root/build/budgetformer}")
for e in "${exes[@]}"; do [ -x "$e" ] || { echo "bench-scaling: $e not found: build first or pass --exe" >&2; exit 2; }; done
exe=${exes[0]}
[[ $repeats =~ ^[1-9][0-9]*$ ]] || { echo "bench-scaling: --repeats expects a positive integer" >&2; exit 2; }
[ -z "$steps" ] || [[ $steps =~ ^[1-9][0-9]*$ ]] || { echo "bench-scaling: --steps expects a positive integer" >&2; exit 2; }
cores=$(nproc)
if [ -z "$ranks_list" ]; then
  for ((p = 1; p <= cores; p *= 2)); do ranks_list+="$p "; done
  case " $ranks_list " in *" $cores "*) ;; *) ranks_list+="$cores" ;; esac
fi
for p in $ranks_list; do [[ $p =~ ^[1-9][0-9]*$ ]] || { echo "bench-scaling: --ranks: '$p' is not a rank count" >&2; exit 2; }; done
if [ -z "$configs" ]; then
  if [ -f "$root/data/wordnet-pos/train.h5" ]; then configs="wordnet-pos standard"; else configs="tiny standard"; fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-scaling.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Which programs know dist.shard_optimizer? (an older build refuses the key at once)
has_shard=()
for e in "${exes[@]}"; do
  probe=$("$e" train --config "$root/configs/tiny.ini" --set dist.shard_optimizer=0 --set train.steps=0 \
          --set "run.dir=$work/probe-key" 2>&1 || true)
  case $probe in *"unknown key 'dist.shard_optimizer'"*) has_shard+=(0) ;; *) has_shard+=(1) ;; esac
  rm -rf "$work/probe-key"
done
[ -n "$shard_list" ] || shard_list="0 1"

# The standard shape (launch/standard-shape.sh).
. "$here/standard-shape.sh"

# Sets config_file and sets[] for configuration name $1 (and its default steps).
setup_config() {
  local name=$1 n
  sets=()
  case $name in
    tiny)
      config_file=$root/configs/tiny.ini; n=${steps:-300}
      "$exe" prepare --train "$root/tests/data/tiny/train.csv" --test "$root/tests/data/tiny/test.csv" \
        --out "$work/tiny" --max-len 24 > /dev/null 2>&1
      sets+=(--set "data.train=$work/tiny/train.h5" --set model.d_model=64 --set model.d_ff=256
             --set train.batch_size=64 --set "train.steps=$((n + 30))" --set train.warmup=20 --set "train.stop_at=$n") ;;
    standard)
      standard_shape_data "$exe" "$work"
      config_file=$root/configs/tiny.ini; n=${steps:-30}
      standard_shape_sets "$work" "$n"
      sets+=("${standard_sets[@]}" --set train.batch_size=32) ;;
    wordnet-pos|wordnet-lex|spam|scaling)
      config_file=$root/configs/$name.ini; n=${steps:-300}
      [ "$name" = scaling ] && n=${steps:-20}
      sets+=(--set "train.stop_at=$n") ;;
    *)
      [ -f "$name" ] || { echo "bench-scaling: '$name' is neither a configuration file nor a known name" >&2; exit 2; }
      config_file=$name; n=${steps:-300}
      sets+=(--set "train.stop_at=$n") ;;
  esac
  run_steps=$n
  local log_every=$(( n / 10 > 0 ? n / 10 : 1 ))
  sets+=(--set data.valid= --set data.test= --set "train.log_every=$log_every" --set checkpoint.every=0
         --set "heads.every=$n" "${extra[@]+"${extra[@]}"}")
}
extra=("$@")

# One run: appends "samples_per_s ms_cpu_per_input comm_fraction peak_mib" (or "fail") to RESULTS.
n_run=0
one_run() { # exe ranks RESULTS [extra --set args...]
  local exe=$1 ranks=$2 results=$3; shift 3
  n_run=$((n_run + 1))
  local out=$work/run$n_run.log
  if ! bash "$here/bf-mpirun.sh" -n "$ranks" --threads 1 --exe "$exe" -- train --config "$config_file" \
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
    # the memory report: "... peak RSS X MiB ..." once per rank (or "max X MiB"): keep the largest
    /peak RSS/ { s = $0; sub(/.*peak RSS[^0-9]*/, "", s); sub(/[^0-9.].*/, "", s); if (s + 0 > peak) peak = s + 0 }
    END {
      if (k == 0) { print "fail"; exit }
      for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (comm[j] < comm[i]) { t = comm[i]; comm[i] = comm[j]; comm[j] = t }
      med = (k % 2) ? comm[(k + 1) / 2] : (comm[k / 2] + comm[k / 2 + 1]) / 2
      printf "%.1f %.4f %.3f %s\n", k / inv, cpu, med, (peak > 0 ? sprintf("%.0f", peak) : "-")
    }' "$out" | tee -a "$results"
  rm -rf "$work/run$n_run"
}

median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) {print "nan"; exit} print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
minmax() { sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s..%s", lo, hi}'; }
col() { awk -v c="$1" '$1 != "fail" && $c != "-" {print $c}' "$2"; }

echo "bench-scaling: $cores cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), load average" \
     "$(cut -d' ' -f1-3 /proc/loadavg), $repeats repeats, ranks: $ranks_list, dist.shard_optimizer: $shard_list"
md_rows=()
for cfg in $configs; do
  setup_config "$cfg"
  echo
  echo "== $cfg: $(basename "$config_file") ${sets[*]}"
  "$exe" train --config "$config_file" "${sets[@]}" --set "run.dir=$work/probe" --set train.stop_at=1 2>&1 |
    sed -n 's/^budgetformer: \(training .* parameters\).*/bench-scaling: \1/p' || true
  rm -rf "$work/probe"
  tag=$(basename "$cfg" .ini)
  if [ "$buckets" = 1 ]; then
    for kb in $bucket_sizes; do : > "$work/$tag.b$kb"; done
    for ((i = 1; i <= repeats; i++)); do
      for kb in $bucket_sizes; do
        printf '  repeat %d, 2 ranks, bucket_kb %s: samples/s, ms CPU per input, comm fraction, peak MiB = ' "$i" "$kb"
        one_run "$exe" 2 "$work/$tag.b$kb" --set "dist.bucket_kb=$kb"
      done
    done
    printf '\n%-10s %12s %20s %14s %8s\n' bucket_kb samples/s "(min..max)" "ms CPU/input" comm
    for kb in $bucket_sizes; do
      f=$work/$tag.b$kb
      printf '%-10s %12s %20s %14s %8s\n' "$kb" "$(col 1 "$f" | median)" "($(col 1 "$f" | minmax))" \
        "$(col 2 "$f" | median)" "$(col 3 "$f" | median)"
    done
    continue
  fi
  # Settings "program ranks shard": sharding over one rank is the unsharded run; a program without the key
  # runs unsharded only.
  settings=()
  for ((x = 0; x < ${#exes[@]}; x++)); do for p in $ranks_list; do for s in $shard_list; do
    [ "$s" != 0 ] && { [ "$p" = 1 ] || [ "${has_shard[$x]}" = 0 ]; } && continue
    settings+=("$x $p $s")
    : > "$work/$tag.e$x.p$p.s$s"
  done; done; done
  for ((i = 1; i <= repeats; i++)); do
    for st in "${settings[@]}"; do
      read -r x p s <<< "$st"
      shard_set=()
      [ "${has_shard[$x]}" = 1 ] && shard_set=(--set "dist.shard_optimizer=$s")
      printf '  repeat %d, program %d, %d rank(s), shard %s: samples/s, ms CPU per input, comm fraction, peak MiB = ' \
        "$i" "$((x + 1))" "$p" "$s"
      one_run "${exes[$x]}" "$p" "$work/$tag.e$x.p$p.s$s" "${shard_set[@]+"${shard_set[@]}"}"
    done
  done
  for ((x = 0; x < ${#exes[@]}; x++)); do echo "program $((x + 1)): ${exes[$x]}"; done
  printf '\n%-8s %-6s %-6s %12s %20s %9s %11s %13s %7s %10s\n' program ranks shard samples/s "(min..max)" speed-up \
    efficiency "ms CPU/input" comm "peak MiB"
  for st in "${settings[@]}"; do
    read -r x p s <<< "$st"
    f=$work/$tag.e$x.p$p.s$s
    base=$(col 1 "$work/$tag.e$x.p1.s0" | median)
    sps=$(col 1 "$f" | median)
    read -r sp eff < <(awk -v a="$sps" -v b="$base" -v p="$p" 'BEGIN { if (b > 0 && a == a + 0) printf "%.2f %.0f%%\n", a / b, 100 * a / b / p; else print "- -" }')
    peak=$(col 4 "$f" | median)
    [ "$peak" = nan ] && peak=-
    printf '%-8s %-6s %-6s %12s %20s %9s %11s %13s %7s %10s\n' "$((x + 1))" "$p" "$s" "$sps" "($(col 1 "$f" | minmax))" \
      "$sp" "$eff" "$(col 2 "$f" | median)" "$(col 3 "$f" | median)" "$peak"
    md_rows+=("| $cfg | $((x + 1)) | $p | $s | $sps ($(col 1 "$f" | minmax)) | ${sp}x | $eff | $(col 2 "$f" | median) | $(col 3 "$f" | median) | $peak |")
  done
  for p in $ranks_list; do [ "$p" -gt "$cores" ] && { echo "(world sizes above $cores cores ran oversubscribed)"; break; }; done
done
if [ "$md" = 1 ] && [ "${#md_rows[@]}" -gt 0 ]; then
  echo
  echo "| configuration | program | ranks | shard | samples/s, median (range) | speed-up | efficiency | ms CPU per input | comm | peak MiB per rank |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${md_rows[@]}"
fi
