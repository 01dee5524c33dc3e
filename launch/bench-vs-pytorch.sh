#!/usr/bin/env bash
# Speed benchmark (not a test): this project against the PyTorch reference of docs/MODEL.md on the same model
# and batch, one thread each, side by side in one run, alternating the two R times; prints medians and the
# ratios the performance issue asks for, plus a 2-rank training line.
#   usage: launch/bench-vs-pytorch.sh [ROUNDS] [-- extra bench flags, e.g. --d-model 128]
# Standard shape: d_model 256, 8 heads, 4 layers, d_ff 1024, max_len 128, batch 32, vocabulary 16384,
# every input a full 128 tokens; the BudgetFormer model's budget is set to 4 of 8 heads with spread
# relevance, so inputs choose different head sets (the hard case for grouping).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
[ "${1:-}" = "--" ] && shift
exe=${BF_EXE:-./build/budgetformer}
py=${BF_PYTHON:-/usr/bin/python3}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "machine: $(getconf _NPROCESSORS_ONLN) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} (same for both sides); one thread each; $rounds rounds"
for r in $(seq 1 "$rounds"); do
  "$exe" bench --repeats 10 "$@" > "$out/c.$r.json"
  "$py" tests/reference/bench_torch.py --repeats 10 "$@" > "$out/torch.$r.json"
  mpirun -np 2 --oversubscribe --bind-to core "$exe" bench --repeats 10 --only train "$@" > "$out/c2.$r.json"
  echo "round $r done" >&2
done
# Peak memory of training alone (one rank, training step only).
"$exe" bench --repeats 3 --only train "$@" > "$out/mem.json"

"$py" - "$out" "$rounds" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
load = lambda p: [json.load(open(f"{d}/{p}.{r}.json")) for r in range(1, rounds + 1)]
c, t, c2 = load("c"), load("torch"), load("c2")
med = lambda xs: statistics.median(xs)
def m(runs, model, key):
    return med([r[model][key] for r in runs])
peak = max(r["sgemm_peak_gflops"] for r in c) * 1e9
rows = [
    ("training samples/s, full heads", m(c, "full_heads", "train_samples_per_s"), m(t, "full_heads", "train_samples_per_s")),
    ("training samples/s, BudgetFormer", m(c, "budgetformer", "train_samples_per_s"), m(t, "budgetformer", "train_samples_per_s")),
    ("inference samples/s, full heads", m(c, "full_heads", "infer_skip_samples_per_s"), m(t, "full_heads", "infer_all_samples_per_s")),
    ("inference samples/s, BudgetFormer (ours skips heads)", m(c, "budgetformer", "infer_skip_samples_per_s"), m(t, "budgetformer", "infer_all_samples_per_s")),
]
print(f"\n{'medians of ' + str(rounds) + ' rounds':55s} {'ours':>9s} {'PyTorch':>9s} {'ratio':>7s}")
for name, a, b in rows:
    print(f"{name:55s} {a:9.2f} {b:9.2f} {a / b:7.2f}")
skip = m(c, "budgetformer", "infer_skip_samples_per_s")
allm = m(c, "budgetformer", "infer_all_samples_per_s")
tfull = m(t, "full_heads", "infer_all_samples_per_s")
f_all, f_skip = c[0]["flops_forward_all_heads"], c[0]["flops_forward_skip"]
heads = c[0]["budgetformer"]["mean_heads"]
print(f"\nBudgetFormer inference (mean {heads:.2f} of 8 heads) vs PyTorch full-heads inference: {skip / tfull:.2f}x (target >= 1.6)")
per_round = [x["budgetformer"]["infer_skip_samples_per_s"] / y["full_heads"]["infer_all_samples_per_s"] for x, y in zip(c, t)]
print("  the same ratio round by round (the two sides alternate, so each pair shares the machine's state): "
      + " ".join(f"{r:.2f}" for r in per_round))
lhs, rhs = skip / allm - 1, 0.8 * (f_all / f_skip - 1)
print(f"skipping pays: t_all/t_skip - 1 = {lhs:.3f} vs 0.8 x (F_all/F_skip - 1) = {rhs:.3f} -> {'met' if lhs >= rhs else 'NOT met'}")
train_c = m(c, "budgetformer", "train_samples_per_s")
print(f"training vs PyTorch: {train_c / m(t, 'budgetformer', 'train_samples_per_s'):.2f}x (target >= 1.2)")
f_train = c[0]["flops_train_step"]
bs = c[0]["batch"]
print(f"sgemm peak (best of rounds, one thread): {peak / 1e9:.1f} GFLOP/s")
print(f"MFU: ours training {f_train * train_c / bs / peak:.2f}, ours inference (skip) {f_skip * skip / bs / peak:.2f}, "
      f"PyTorch training {f_train * m(t, 'budgetformer', 'train_samples_per_s') / bs / peak:.2f}, "
      f"PyTorch full inference {f_all * tfull / bs / peak:.2f}")
mem = json.load(open(f"{d}/mem.json"))
print(f"peak memory of training: {mem['peak_rss_bytes'] / 2**20:.0f} MiB; parameters + gradients + AdamW moments + "
      f"activations = {mem['train_state_bytes'] / 2**20:.0f} MiB; ratio {mem['peak_rss_bytes'] / mem['train_state_bytes']:.2f} (target <= 1.3)")
two = med([r["budgetformer"]["train_samples_per_s"] for r in c2])
print(f"2 ranks, training samples/s {two:.2f} vs 1 rank {train_c:.2f}: speed-up {two / train_c:.2f}, scaling efficiency {two / train_c / 2:.2f}")
PY
