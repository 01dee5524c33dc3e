#!/usr/bin/env bash
# Speed benchmark (not a test): this project against the PyTorch reference of docs/MODEL.md on the same model
# and batch, one thread each, in fp32 and in bf16 (ours: --precision bf16 through oneDNN; PyTorch:
# torch.autocast("cpu", dtype=torch.bfloat16)); prints per-pair ratios with their spread, and the
# memory and 2-rank lines.
#   usage: launch/bench-vs-pytorch.sh [ROUNDS] [-- extra bench flags, e.g. --d-model 128]
#   BF_BENCH_SECONDS (default 15): timed seconds per side and pair; BF_BENCH_LEAD (default 20): set-up time.
# Standard shape: d_model 256, 8 heads, 4 layers, d_ff 1024, max_len 128, batch 32, vocabulary 16384,
# every input a full 128 tokens; the BudgetFormer model's budget is set to 4 of 8 heads with spread
# relevance, so inputs choose different head sets (the hard case for grouping).
#
# These machines' speed swings several times within minutes, so two sides timed one after the other are not
# comparable. Each pair below runs its two sides at the same time, one per core (taskset), swapping the cores
# from one round to the next; both start timing at the same wall-clock moment after their own set-up and
# warm-up (--start-at) and time for the same number of seconds (--seconds), so a swing hits both alike. The
# ratio is taken within each pair; the summary gives the median over rounds, the smallest and largest, and
# every pair's. The five pairs of a round (BudgetFormer model, 4 of 8 heads): training ours bf16 || PyTorch
# bf16 autocast, ours bf16 || ours fp32, ours fp32 || PyTorch fp32; inference ours bf16 skipping heads ||
# PyTorch bf16 autocast full heads, the same in fp32. On one core the two sides alternate (with a warning).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift || true
[ "${1:-}" = "--" ] && shift
exe=${BF_EXE:-./build/budgetformer}
py=${BF_PYTHON:-/usr/bin/python3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# BF_BENCH_OUT=DIR keeps every side's JSON there; by default they go to a temporary directory.
if [ -n "${BF_BENCH_OUT:-}" ]; then
  out=$BF_BENCH_OUT
  mkdir -p "$out"
else
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
cores=$(getconf _NPROCESSORS_ONLN)

echo "machine: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')," \
     "bf16: $(grep -o -m1 -w -e avx512_bf16 -e amx_bf16 /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} (same for both sides); one thread each; $rounds rounds"

# pair NAME ROUND CMD_A -- CMD_B: A and B at once on cores (r%2, 1-r%2), both told to start timing at the same
# wall-clock moment (--start-at, after their set-up and warm-up) and to time for $secs seconds; outputs
# NAME.a.R.json, NAME.b.R.json.
secs=${BF_BENCH_SECONDS:-15}
lead=${BF_BENCH_LEAD:-20}   # seconds for both sides' set-up and warm-up before the common start
pair() {
  local name=$1 r=$2
  shift 2
  local a=() b=()
  while [ "$1" != "--" ]; do a+=("$1"); shift; done
  shift
  b=("$@")
  local t0=$(( $(date +%s) + lead ))
  local common=(--repeats 3 --seconds "$secs" --start-at "$t0")
  if [ "$cores" -ge 2 ]; then
    local ca=$((r % 2)) cb=$((1 - r % 2))
    taskset -c $ca "${a[@]}" "${common[@]}" > "$out/$name.a.$r.json" &
    local pa=$!
    taskset -c $cb "${b[@]}" "${common[@]}" > "$out/$name.b.$r.json"
    wait $pa
  else
    echo "warning: one core: the two sides of $name run one after the other" >&2
    "${a[@]}" --repeats 10 > "$out/$name.a.$r.json"
    "${b[@]}" --repeats 10 > "$out/$name.b.$r.json"
  fi
}

c=("$exe" bench "$@")
t=("$py" tests/reference/bench_torch.py "$@")
for r in $(seq 1 "$rounds"); do
  pair train16 "$r" "${c[@]}" --only train --model budgetformer --precision bf16 -- \
       "${t[@]}" --only train --model budgetformer --autocast
  pair self "$r" "${c[@]}" --only train --model budgetformer --precision bf16 -- \
       "${c[@]}" --only train --model budgetformer
  pair train32 "$r" "${c[@]}" --only train --model budgetformer -- "${t[@]}" --only train --model budgetformer
  pair infer16 "$r" "${c[@]}" --only infer-skip --model budgetformer --precision bf16 -- \
       "${t[@]}" --only infer --model full --autocast
  pair infer32 "$r" "${c[@]}" --only infer-skip --model budgetformer -- "${t[@]}" --only infer --model full
  echo "round $r done" >&2
done
# Peak memory of training alone (one rank, training step only), and 2 ranks of training in each precision.
"$exe" bench --repeats 3 --only train --model budgetformer "$@" > "$out/mem32.json"
"$exe" bench --repeats 3 --only train --model budgetformer --precision bf16 "$@" > "$out/mem16.json"
mpirun -np 2 --oversubscribe --bind-to core "$exe" bench --repeats 10 --only train --model budgetformer "$@" \
  > "$out/two32.json"
mpirun -np 2 --oversubscribe --bind-to core "$exe" bench --repeats 10 --only train --model budgetformer \
  --precision bf16 "$@" > "$out/two16.json"

"$py" - "$out" "$rounds" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
load = lambda p: [json.load(open(f"{d}/{p}.{r}.json")) for r in range(1, rounds + 1)]
P = {p: load(p) for p in ("train16.a", "train16.b", "self.a", "self.b", "train32.a", "train32.b",
                           "infer16.a", "infer16.b", "infer32.a", "infer32.b")}
B, F = "budgetformer", "full_heads"
TR, IA, IS = "train_samples_per_s", "infer_all_samples_per_s", "infer_skip_samples_per_s"

def ratios(name, mx, kx, my, ky):
    return [x[mx][kx] / y[my][ky] for x, y in zip(P[name + ".a"], P[name + ".b"])]

def line(name, rs, target=None):
    med = statistics.median(rs)
    t = "" if target is None else (f"  target >= {target}: " + ("met" if med >= target else "NOT met"))
    print(f"{name:62s} {med:6.2f}  [{min(rs):.2f} .. {max(rs):.2f}]{t}")
    print(" " * 8 + "pairs: " + " ".join(f"{x:.2f}" for x in rs))

print(f"\nper-pair ratios (both sides at once, one core each), median over {rounds} rounds [smallest .. largest]")
line("bf16 training, BudgetFormer: ours / PyTorch bf16 autocast", ratios("train16", B, TR, B, TR), 1.3)
line("bf16 training, BudgetFormer: ours bf16 / ours fp32", ratios("self", B, TR, B, TR), 1.8)
line("bf16 inference: ours 4 of 8 heads / PyTorch bf16 full heads", ratios("infer16", B, IS, F, IA), 1.6)
line("fp32 training, BudgetFormer: ours / PyTorch fp32", ratios("train32", B, TR, B, TR), 1.2)
line("fp32 inference: ours 4 of 8 heads / PyTorch fp32 full heads", ratios("infer32", B, IS, F, IA), 1.6)
print("\nsamples/s, medians (each side measured while its pair partner ran on the other core)")
med = lambda p, m, k: statistics.median(r[m][k] for r in P[p])
for name, p, m, k in (("ours bf16 training, BudgetFormer", "train16.a", B, TR),
                      ("PyTorch bf16 training, BudgetFormer", "train16.b", B, TR),
                      ("ours fp32 training, BudgetFormer", "train32.a", B, TR),
                      ("PyTorch fp32 training, BudgetFormer", "train32.b", B, TR),
                      ("ours bf16 inference, 4 of 8 heads", "infer16.a", B, IS),
                      ("PyTorch bf16 inference, full heads", "infer16.b", F, IA),
                      ("ours fp32 inference, 4 of 8 heads", "infer32.a", B, IS),
                      ("PyTorch fp32 inference, full heads", "infer32.b", F, IA)):
    print(f"  {name:50s} {med(p, m, k):8.2f}")
ours32 = P["train32.a"]
peak = max(r["sgemm_peak_gflops"] for r in ours32)
print(f"sgemm peak (best of rounds, one thread): {peak:.1f} GFLOP/s")
for tag in ("32", "16"):
    mem = json.load(open(f"{d}/mem{tag}.json"))
    print(f"peak memory of training ({mem['precision']}): {mem['peak_rss_bytes'] / 2**20:.0f} MiB; parameters + "
          f"gradients + AdamW moments + activations = {mem['train_state_bytes'] / 2**20:.0f} MiB; ratio "
          f"{mem['peak_rss_bytes'] / mem['train_state_bytes']:.2f} (target <= 1.3)")
    two = json.load(open(f"{d}/two{tag}.json"))[B][TR]
    print(f"2 ranks, {mem['precision']} training samples/s {two:.2f} (no pair partner: not a ratio)")
PY
