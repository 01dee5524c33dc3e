#!/usr/bin/env bash
# Speed benchmark (not a test): this project against the PyTorch reference of docs/MODEL.md on the same model
# and batch, one thread each, in fp32 and in bf16 (ours: --precision bf16 through oneDNN; PyTorch:
# torch.autocast("cpu", dtype=torch.bfloat16)); prints per-pair ratios with their spread, and the
# memory and 2-rank lines.
#   usage: launch/bench-vs-pytorch.sh [ROUNDS] [-- extra bench flags, e.g. --d-model 128]
# Standard shape: d_model 256, 8 heads, 4 layers, d_ff 1024, max_len 128, batch 32, vocabulary 16384,
# every input a full 128 tokens; the BudgetFormer model's budget is set to 4 of 8 heads with spread
# relevance, so inputs choose different head sets (the hard case for grouping).
#
# These machines' speed swings several times within minutes, so two sides timed one after the other are not
# comparable. Each pair below runs its two sides at the same time, one per core (taskset), and the cores
# are swapped from one round to the next; a ratio is taken within each pair and the summary gives the
# median over rounds with the smallest and largest. The pairs: ours bf16 || PyTorch bf16 autocast, ours
# fp32 || PyTorch fp32, ours bf16 || ours fp32 (training only). Needs 2 cores (falls back to alternating the
# two sides in turn, with a warning, on one).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift || true
[ "${1:-}" = "--" ] && shift
exe=${BF_EXE:-./build/budgetformer}
py=${BF_PYTHON:-/usr/bin/python3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cores=$(getconf _NPROCESSORS_ONLN)

echo "machine: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')," \
     "bf16: $(grep -o -m1 -w -e avx512_bf16 -e amx_bf16 /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} (same for both sides); one thread each; $rounds rounds"

# pair NAME ROUND CMD_A -- CMD_B: A and B at once on cores (r%2, 1-r%2), outputs NAME.a.R.json, NAME.b.R.json
pair() {
  local name=$1 r=$2
  shift 2
  local a=() b=()
  while [ "$1" != "--" ]; do a+=("$1"); shift; done
  shift
  b=("$@")
  if [ "$cores" -ge 2 ]; then
    local ca=$((r % 2)) cb=$((1 - r % 2))
    taskset -c $ca "${a[@]}" > "$out/$name.a.$r.json" &
    local pa=$!
    taskset -c $cb "${b[@]}" > "$out/$name.b.$r.json"
    wait $pa
  else
    echo "warning: one core: the two sides of $name run one after the other" >&2
    "${a[@]}" > "$out/$name.a.$r.json"
    "${b[@]}" > "$out/$name.b.$r.json"
  fi
}

for r in $(seq 1 "$rounds"); do
  pair bf16 "$r" "$exe" bench --repeats 10 --precision bf16 "$@" -- \
       "$py" tests/reference/bench_torch.py --repeats 10 --autocast "$@"
  pair fp32 "$r" "$exe" bench --repeats 10 "$@" -- "$py" tests/reference/bench_torch.py --repeats 10 "$@"
  pair self "$r" "$exe" bench --repeats 10 --only train --precision bf16 "$@" -- \
       "$exe" bench --repeats 10 --only train "$@"
  echo "round $r done" >&2
done
# Peak memory of training alone (one rank, training step only), and 2 ranks of training in each precision.
"$exe" bench --repeats 3 --only train "$@" > "$out/mem32.json"
"$exe" bench --repeats 3 --only train --precision bf16 "$@" > "$out/mem16.json"
mpirun -np 2 --oversubscribe --bind-to core "$exe" bench --repeats 10 --only train "$@" > "$out/two32.json"
mpirun -np 2 --oversubscribe --bind-to core "$exe" bench --repeats 10 --only train --precision bf16 "$@" \
  > "$out/two16.json"

"$py" - "$out" "$rounds" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
load = lambda p: [json.load(open(f"{d}/{p}.{r}.json")) for r in range(1, rounds + 1)]
ours16, torch16, ours32, torch32, self16, self32 = (load(p) for p in
    ("bf16.a", "bf16.b", "fp32.a", "fp32.b", "self.a", "self.b"))

def ratios(xs, ys, mx, kx, my, ky):
    return [x[mx][kx] / y[my][ky] for x, y in zip(xs, ys)]

def line(name, rs, target=None):
    med = statistics.median(rs)
    t = "" if target is None else (f"  target >= {target}: " + ("met" if med >= target else "NOT met"))
    print(f"{name:62s} {med:6.2f}  [{min(rs):.2f} .. {max(rs):.2f}]{t}")

print(f"\nper-pair ratios, median over {rounds} rounds [smallest .. largest]")
B, F = "budgetformer", "full_heads"
TR, IA, IS = "train_samples_per_s", "infer_all_samples_per_s", "infer_skip_samples_per_s"
line("bf16 training, BudgetFormer: ours / PyTorch bf16 autocast", ratios(ours16, torch16, B, TR, B, TR), 1.3)
line("bf16 training, full heads: ours / PyTorch bf16 autocast", ratios(ours16, torch16, F, TR, F, TR))
line("bf16 training, BudgetFormer: ours bf16 / ours fp32", ratios(self16, self32, B, TR, B, TR), 1.8)
line("bf16 training, full heads: ours bf16 / ours fp32", ratios(self16, self32, F, TR, F, TR))
line("bf16 inference: ours 4 of 8 heads / PyTorch bf16 full heads", ratios(ours16, torch16, B, IS, F, IA), 1.6)
line("fp32 training, BudgetFormer: ours / PyTorch fp32", ratios(ours32, torch32, B, TR, B, TR), 1.2)
line("fp32 inference: ours 4 of 8 heads / PyTorch fp32 full heads", ratios(ours32, torch32, B, IS, F, IA), 1.6)
print("\nsamples/s, medians (each side measured while its pair partner ran on the other core)")
med = lambda runs, m, k: statistics.median(r[m][k] for r in runs)
for name, runs, m, k in (("ours bf16 training, BudgetFormer", ours16, B, TR),
                         ("PyTorch bf16 training, BudgetFormer", torch16, B, TR),
                         ("ours fp32 training, BudgetFormer", ours32, B, TR),
                         ("PyTorch fp32 training, BudgetFormer", torch32, B, TR),
                         ("ours bf16 inference, 4 of 8 heads", ours16, B, IS),
                         ("PyTorch bf16 inference, full heads", torch16, F, IA),
                         ("ours fp32 inference, 4 of 8 heads", ours32, B, IS),
                         ("PyTorch fp32 inference, full heads", torch32, F, IA)):
    print(f"  {name:50s} {med(runs, m, k):8.2f}")
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
