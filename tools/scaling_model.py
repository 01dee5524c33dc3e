#!/usr/bin/env python3
"""Cost model of data-parallel training: predicted step time, speed-up and efficiency against the number of
ranks P, for configs/*.ini (or the files given). Standard library only. docs/SCALING.md explains the model.

  python3 tools/scaling_model.py                         # every configs/*.ini, with the step times stored below
  python3 tools/scaling_model.py configs/tiny.ini --measure --exe build/budgetformer
                                                         # measure the 1-rank step-time curve on this machine first
  python3 tools/scaling_model.py --latency-us 5 --overlap 0 --bandwidths 10,25,100

Step time on P ranks with global batch B, n = ceil(B / P) inputs on the busiest rank:
  T(P) = T1(n) + exposed allreduce + 2 small collectives
  T1(n)      measured: the step time of a 1-rank run with global batch n (forward, backward, AdamW on every
             parameter, gradient norm; everything a rank does besides communicating)
  allreduce  ring, per bucket of b bytes: 2 (P-1)/P * b / bandwidth + 2 (P-1) * latency; the buckets are
             those dist.c makes (whole tensors, backward order, dist.bucket_kb)
  exposed    the embedding bucket (tok_emb, pos_emb: their gradients are final only when backward ends)
             is never hidden; the other buckets are hidden behind up to --overlap x the backward time
             (backward = 2/3 of the per-input compute)
  small      the eps broadcast and the loss/budget allreduce: 2 x 2 ceil(log2 P) x latency
Speed-up(P) = T1(B) / T(P) (samples/s ratio, same global batch); efficiency = speed-up / P.
"""
import argparse
import configparser
import glob
import math
import os
import resource
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# config.h / docs/CONFIG.md defaults of the keys the model needs.
DEFAULTS = {"model.d_model": 64, "model.n_heads": 4, "model.n_layers": 2, "model.d_ff": 128,
            "train.batch_size": 32, "train.micro_batch": 0, "dist.bucket_kb": 1024}

# Vocabulary (PAD and UNK included), max_len and classes of the prepared datasets (launch/prepare-data.sh:
# --vocab-size 16384, --max-len 48 for WordNet, 256 for spam; tiny: tests/data/tiny with --max-len 24).
DATASETS = {"tiny": (34, 24, 3), "wordnet-pos": (16384, 48, 4), "wordnet-lex": (16384, 48, 45),
            "spam": (16384, 256, 3), "wordnet-lex-hint": (16384, 48, 45)}
# Mean tokens per training input (for --sparse-embedding: rows of tok_emb a global batch can touch).
MEAN_LEN = {"tiny": 10.8, "wordnet-pos": 14.5, "wordnet-lex": 14.5, "spam": 207.5, "wordnet-lex-hint": 15.45}

# Step time T1(n) in ms of a 1-rank run with global batch n, measured with `--measure` (CPU time of 400
# updates minus that of 100, median of 3 interleaved passes; spam 160 minus 40; one OpenBLAS thread) on the
# 2-core AMD EPYC KVM build machine, Release build of commit a9595bc, while other jobs shared the machine.
# Keyed by the model shape (V, T, D, H, L, F, C). Spam was measured on data prepared as
# launch/prepare-data.sh does (vocabulary 16384, max_len 256).
MEASURED = {
    (34, 24, 16, 4, 2, 32, 3): {1: 0.036, 2: 0.045, 4: 0.077, 8: 0.131, 16: 0.244},  # tiny
    (16384, 48, 64, 8, 2, 128, 4): {1: 3.078, 2: 3.092, 4: 3.339, 8: 3.723, 16: 4.502, 32: 5.886,
                                    64: 9.504},  # wordnet-pos
    (16384, 48, 64, 4, 2, 128, 45): {1: 2.867, 2: 3.090, 4: 3.305, 8: 3.659, 16: 4.528, 32: 5.874,
                                     64: 8.986},  # wordnet-lex
    (16384, 256, 64, 4, 2, 128, 3): {1: 5.336, 2: 8.081, 4: 13.616, 8: 24.440, 16: 44.786,
                                     32: 90.113},  # spam
}


def read_config(path, sets=()):
    cp = configparser.ConfigParser(inline_comment_prefixes=(";",), comment_prefixes=(";", "#"),
                                   interpolation=None)
    with open(path) as f:
        cp.read_file(f)
    values = dict(DEFAULTS)
    for section in cp.sections():
        for key, value in cp.items(section):
            values[section + "." + key] = value.strip()
    for s in sets:
        key, _, value = s.partition("=")
        values[key] = value
    return values


def shape_of(values, vocab=None, max_len=None, classes=None):
    data = values.get("data.train", "")
    name = os.path.basename(os.path.dirname(data)) if data else ""
    V, T, C = DATASETS.get(name, (16384, 48, 4))
    V, T, C = vocab or V, max_len or T, classes or C
    return dict(V=V, T=T, D=int(values["model.d_model"]), H=int(values["model.n_heads"]),
                L=int(values["model.n_layers"]), F=int(values["model.d_ff"]), C=C, data=name or "?")


def tensor_table(s):
    """(name, floats) in the parameter block's order (src/kernels/model.c build_table)."""
    V, T, D, H, L, F, C = s["V"], s["T"], s["D"], s["H"], s["L"], s["F"], s["C"]
    t = [("tok_emb", V * D), ("pos_emb", T * D)]
    for l in range(L):
        t += [("ln1/gamma", D), ("ln1/beta", D), ("router/w_rel", D * H), ("router/b_rel", H),
              ("router/w_bud", D), ("router/b_bud", 1), ("attn/w_qkv", 3 * D * D), ("attn/b_qkv", 3 * D),
              ("attn/w_out", D * D), ("attn/b_out", D), ("ln2/gamma", D), ("ln2/beta", D), ("ffn/w1", D * F),
              ("ffn/b1", F), ("ffn/w2", F * D), ("ffn/b2", D)]
    t += [("ln_f/gamma", D), ("ln_f/beta", D), ("classifier/w", D * C), ("classifier/b", C)]
    return t


def buckets(table, bucket_kb, skip=()):
    """Bucket sizes in bytes as dist.c forms them: ranges in backward order, whole tensors, contiguous,
    at most bucket_kb KiB unless one tensor alone is larger. Returns [(bytes, holds_embedding)]."""
    cap = max(1, bucket_kb * 1024 // 4)
    out, size, emb = [], 0, False
    for name, n in reversed(table):
        if name in skip:
            continue
        if size and size + n > cap:
            out.append((4 * size, emb))
            size, emb = 0, False
        size += n
        emb = emb or name in ("tok_emb", "pos_emb")
    out.append((4 * size, emb))
    return out


def ring_allreduce_s(nbytes, P, bw_bytes, latency_s):
    if P == 1:
        return 0.0
    return 2.0 * (P - 1) / P * nbytes / bw_bytes + 2.0 * (P - 1) * latency_s


def interp(curve, n):
    """T1(n) from the measured points: piecewise linear, linear extrapolation beyond the ends."""
    pts = sorted(curve.items())
    if len(pts) == 1:
        return pts[0][1] * n / pts[0][0]
    for (n0, t0), (n1, t1) in zip(pts, pts[1:]):
        if n <= n1:
            return t0 + (t1 - t0) * (n - n0) / (n1 - n0)
    (n0, t0), (n1, t1) = pts[-2], pts[-1]
    return t1 + (t1 - t0) * (n - n1) / (n1 - n0)


def fit_line(curve):
    """Least-squares T1(n) = a + b n over the measured points with n >= 4 (small n are launch-bound)."""
    pts = [(n, t) for n, t in curve.items() if n >= 4] or list(curve.items())
    k = len(pts)
    if k == 1:
        return 0.0, pts[0][1] / pts[0][0]
    mx, my = sum(p[0] for p in pts) / k, sum(p[1] for p in pts) / k
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    b = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else my / mx
    return my - b * mx, b


def measure_curve(exe, config, sets, batches, steps, passes):
    """1-rank step time (ms) for each global batch n, in CPU time, which background load on a shared machine
    inflates far less than wall time: the CPU seconds (user + system, from the kernel's child accounting) of
    a run of `steps` updates minus those of a run of steps/4 updates, divided by the difference, so start-up
    and data loading cancel. `passes` interleaved rounds over all n; the median per n. On an idle machine a
    1-rank run's CPU time equals its wall time (one thread, no waiting)."""
    got = {n: [] for n in batches}
    short = max(1, steps // 4)
    with tempfile.TemporaryDirectory(prefix="scaling-model-") as tmp:
        for k in range(passes):
            for n in batches:
                cpu = {}
                for s_ in (short, steps):
                    run_dir = os.path.join(tmp, "b%d-%d-%d" % (n, k, s_))
                    cmd = [exe, "train", "--config", config] + [a for s in sets for a in ("--set", s)] + [
                        "--set", "train.batch_size=%d" % n, "--set", "train.micro_batch=0",
                        "--set", "train.steps=%d" % s_, "--set", "train.warmup=1", "--set", "train.stop_at=0",
                        "--set", "train.log_every=%d" % s_, "--set", "data.valid=", "--set", "data.test=",
                        "--set", "checkpoint.every=0", "--set", "heads.every=%d" % s_, "--set", "run.dir=" + run_dir]
                    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
                    before = resource.getrusage(resource.RUSAGE_CHILDREN)
                    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       cwd=ROOT)
                    after = resource.getrusage(resource.RUSAGE_CHILDREN)
                    if p.returncode:
                        sys.exit("measure: %s failed:\n%s" % (" ".join(cmd), p.stderr[-2000:]))
                    cpu[s_] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                got[n].append(1e3 * (cpu[steps] - cpu[short]) / (steps - short))
                print("  pass %d: T1(%d) = %.3f ms CPU per step" % (k + 1, n, got[n][-1]), file=sys.stderr)
    return {n: sorted(v)[len(v) // 2] for n, v in got.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", help="INI files (default: configs/*.ini)")
    ap.add_argument("--set", action="append", default=[], help="section.key=value applied to every config")
    ap.add_argument("--bandwidths", default="10,25,100", help="link bandwidths in Gb/s (default 10,25,100)")
    ap.add_argument("--latency-us", type=float, default=3.0, help="per-message latency in microseconds (3)")
    ap.add_argument("--overlap", type=float, default=0.5,
                    help="fraction of backward that can hide the non-embedding buckets (0.5)")
    ap.add_argument("--ranks", default="1,2,4,8,16,32,64,128,256")
    ap.add_argument("--fixed-ms", type=float,
                    help="what if: replace the fitted fixed part of T1 by this (e.g. a vectorised AdamW)")
    ap.add_argument("--shard-optimizer", action="store_true",
                    help="what if: the fixed part is split over the ranks (reduce-scatter, AdamW on 1/P of the "
                         "parameters, allgather: the same bytes as the allreduce)")
    ap.add_argument("--sparse-embedding", action="store_true",
                    help="what if: tok_emb's gradient travels as the rows the batch touched (allgather of at most "
                         "B x mean length rows of D floats + an index) instead of the dense V x D block")
    ap.add_argument("--measure", action="store_true", help="measure T1(n) on this machine with --exe")
    ap.add_argument("--exe", default=os.path.join(ROOT, "build", "budgetformer"))
    ap.add_argument("--measure-steps", type=int, default=400,
                    help="updates of the long measuring run (400; the short one makes a quarter)")
    ap.add_argument("--measure-passes", type=int, default=3, help="rounds over the batch sizes; median (3)")
    ap.add_argument("--vocab", type=int), ap.add_argument("--max-len", type=int), ap.add_argument("--classes", type=int)
    a = ap.parse_args()
    configs = a.configs or sorted(glob.glob(os.path.join(ROOT, "configs", "*.ini")))
    bws = [float(x) for x in a.bandwidths.split(",")]
    ranks = [int(x) for x in a.ranks.split(",")]
    lat = a.latency_us * 1e-6

    print("ring allreduce: 2(P-1)/P x bytes / bandwidth + 2(P-1) x %.1f us per bucket; overlap %.2f of backward; "
          "efficiency = speed-up / P at %s Gb/s" % (a.latency_us, a.overlap, ", ".join("%g" % b for b in bws)))
    for path in configs:
        values = read_config(path, a.set)
        s = shape_of(values, a.vocab, a.max_len, a.classes)
        table = tensor_table(s)
        n_params = sum(n for _, n in table)
        n_emb = (s["V"] + s["T"]) * s["D"]
        B = int(values["train.batch_size"])
        bk = buckets(table, int(values["dist.bucket_kb"]), ("tok_emb",) if a.sparse_embedding else ())
        mean_len = MEAN_LEN.get(s["data"], s["T"])
        sparse_rows = min(s["V"], math.ceil(int(values["train.batch_size"]) * mean_len))
        sparse_bytes = sparse_rows * (4 * s["D"] + 4) if a.sparse_embedding else 0
        key = (s["V"], s["T"], s["D"], s["H"], s["L"], s["F"], s["C"])
        print("\n== %s: V=%d T=%d D=%d H=%d L=%d F=%d C=%d (data %s), global batch %d" %
              (os.path.relpath(path, ROOT), s["V"], s["T"], s["D"], s["H"], s["L"], s["F"], s["C"], s["data"], B))
        print("   %d parameters (%.1f%% embeddings), allreduce %.2f MB per step in %d bucket(s) (bucket_kb %s); "
              "%.2f MB of them in buckets holding tok_emb or pos_emb, which wait for the end of backward"
              % (n_params, 100.0 * n_emb / n_params, sum(b for b, _ in bk) / 1e6, len(bk), values["dist.bucket_kb"],
                 sum(b for b, e in bk if e) / 1e6))
        curve = None
        if a.measure:
            data = values.get("data.train", "")
            if data and not os.path.exists(data if os.path.isabs(data) else os.path.join(ROOT, data)):
                print("   (not measured: %s is not prepared)" % data)
            else:
                ns = sorted({n for n in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024) if n <= B} | {B})
                curve = measure_curve(a.exe, os.path.abspath(path), a.set, ns, a.measure_steps, a.measure_passes)
                print("   measured T1(n) ms: " + ", ".join("%d: %.3f" % kv for kv in sorted(curve.items())))
                print("   for MEASURED: %r: {%s}," % (key, ", ".join("%d: %.3f" % kv for kv in sorted(curve.items()))))
        else:
            curve = MEASURED.get(key)
        if not curve:
            print("   no measured step times for this shape: run with --measure --exe build/budgetformer")
            continue
        fixed, per_input = fit_line(curve)
        print("   T1(n) ~ %.3f ms + %.4f ms x n (fit over n >= 4): the fixed part (AdamW over every parameter, "
              "norm, per-step work) is not divided by P" % (fixed, per_input))
        new_fixed = fixed if a.fixed_ms is None else a.fixed_ms
        if a.fixed_ms is not None:
            print("   what if: fixed part %.3f ms instead of %.3f" % (new_fixed, fixed))
        if a.shard_optimizer:
            print("   what if: fixed part divided over the ranks (sharded optimizer)")
        if a.sparse_embedding:
            print("   what if: tok_emb exchanged as <= %d touched rows (%.2f MB allgathered) instead of %.2f MB"
                  % (sparse_rows, sparse_bytes / 1e6, 4 * s["V"] * s["D"] / 1e6))

        def step1(n, P):  # T1(n) with the what-ifs applied
            return interp(curve, n) - fixed + (new_fixed / P if a.shard_optimizer else new_fixed)

        t1B = step1(B, 1)
        head = "%5s %6s %9s" % ("P", "n/rank", "T1(n) ms")
        for bw in bws:
            head += " | %7s %6s %5s" % ("%gGb ms" % bw, "x", "eff")
        print(head)
        for P in ranks:
            if P > B:
                print("%5d   -- impossible: fewer inputs (%d) than ranks" % (P, B))
                continue
            n = -(-B // P)
            t1 = step1(n, P)
            t_bwd = (2.0 / 3.0) * per_input * n
            row = "%5d %6d %9.3f" % (P, n, t1)
            for bw in bws:
                bwb = bw * 1e9 / 8
                emb = sum(ring_allreduce_s(b, P, bwb, lat) for b, e in bk if e)
                rest = sum(ring_allreduce_s(b, P, bwb, lat) for b, e in bk if not e)
                small = 0.0 if P == 1 else 2 * 2 * math.ceil(math.log2(P)) * lat
                if sparse_bytes and P > 1:  # ring allgather: (P-1)/P of the bytes, P-1 latencies
                    emb += (P - 1) / P * sparse_bytes / bwb + (P - 1) * lat
                exposed = emb + max(0.0, rest - a.overlap * t_bwd * 1e-3) + small
                t = t1 + 1e3 * exposed
                speed = t1B / t
                row += " | %7.3f %6.2f %4.0f%%" % (t, speed, 100.0 * speed / P)
            flag = "  (< 4 inputs per rank: launch-bound)" if n < 4 else ""
            print(row + flag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
