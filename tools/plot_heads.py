#!/usr/bin/python3
"""Plots of head allocation from a run's log.h5 and, optionally, an evaluation records file.

usage: plot_heads.py LOG.h5 [--records RECORDS.h5 [--data DATASET.h5]] --out DIR

Writes into DIR (created if needed) and prints each file written:
  head_usage.png        heatmap of /heads/usage: x = training step (each record spans its interval),
                        y = layer/head, colour = fraction of the interval's inputs that selected the head
  eps_budget.png        eps (top) and the mean budget per layer (bottom) over training, from /metrics
  budget_by_class.png   with --records: per layer, the distribution of the budget k by true class;
                        without: the mean budget per layer by class from the last /heads/class_usage record
  budget_by_length.png  with --records only: mean budget per layer by input-length bucket
  budget_diagnostics.png  with the /heads diagnostics histograms: per layer, the distribution of the
                        continuous budget k^ over training (heatmap per /heads record, median and quartiles
                        on top), the same for the gate mass over the selected heads, and the budget
                        multiplier lambda per update (/metrics/budget_lambda) below
Class names come from --data DATASET.h5 (/label_names), else "class <i>". Layouts: docs/LOGS.md.
Needs Debian's python3 with python3-h5py, python3-matplotlib and numpy (matplotlib's Agg backend, no display).
"""
import argparse
import os
import sys

import h5py
import numpy as np
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

BUCKETS = [(1, 8), (9, 16), (17, 32), (33, 64), (65, 128), (129, None)]


def fail(msg):
    print("plot_heads.py: " + msg, file=sys.stderr)
    sys.exit(1)


def open_h5(path):
    if not os.path.exists(path):
        fail("%s: no such file" % path)
    try:
        return h5py.File(path, "r")
    except OSError as e:
        fail("%s: not a readable HDF5 file (%s)" % (path, e))


def read(f, path, name, ndim):
    if name not in f:
        fail("%s: missing dataset %s" % (path, name))
    a = f[name][()]
    if a.ndim != ndim:
        fail("%s: dataset %s has shape %s (expected %d dimensions)" % (path, name, a.shape, ndim))
    return a


def load_log(path):
    with open_h5(path) as f:
        if "metrics" not in f and "heads" not in f:
            fail("%s: not a training log (no /metrics or /heads group)" % path)
        log = {}
        if "metrics" in f:
            log["step"] = read(f, path, "/metrics/step", 1)
            log["eps"] = read(f, path, "/metrics/eps", 1)
            log["mean_budget"] = read(f, path, "/metrics/mean_budget", 2)
            if not len(log["step"]) == len(log["eps"]) == log["mean_budget"].shape[0]:
                fail("%s: /metrics/step, /metrics/eps and /metrics/mean_budget differ in length" % path)
        if "heads" in f:
            log["h_step"] = read(f, path, "/heads/step", 1)
            log["h_count"] = read(f, path, "/heads/count", 1)
            log["class_count"] = read(f, path, "/heads/class_count", 2)
            log["usage"] = read(f, path, "/heads/usage", 3)
            log["class_usage"] = read(f, path, "/heads/class_usage", 4)
            R = len(log["h_step"])
            if log["usage"].shape[0] != R or log["class_count"].shape[0] != R or log["class_usage"].shape[0] != R:
                fail("%s: /heads datasets differ in their number of records" % path)
            # budget diagnostics (optional: logs written before them have none)
            for k in ("khat_hist", "mass_hist", "logit_hist"):
                if "/heads/" + k in f:
                    log[k] = read(f, path, "/heads/" + k, 3)
                    if log[k].shape[0] != R or log[k].shape[1] != log["usage"].shape[1]:
                        fail("%s: /heads/%s has shape %s (expected [%d, %d, bins])" % (path, k, log[k].shape, R,
                                                                                      log["usage"].shape[1]))
        if "metrics" in f and "/metrics/budget_lambda" in f:
            log["lambda"] = read(f, path, "/metrics/budget_lambda", 1)
            if len(log["lambda"]) != len(log["step"]):
                fail("%s: /metrics/budget_lambda and /metrics/step differ in length" % path)
    return log


def load_records(path):
    with open_h5(path) as f:
        if "records" not in f:
            fail("%s: not an evaluation records file (no /records group)" % path)
        rec = {k: read(f, path, "/records/" + k, n) for k, n in
               (("label", 1), ("pred", 1), ("length", 1), ("budget", 2), ("head_mask", 2), ("logits", 2))}
        n = len(rec["label"])
        for k in ("pred", "length", "budget", "head_mask", "logits"):
            if rec[k].shape[0] != n:
                fail("%s: /records/%s has %d rows, /records/label %d" % (path, k, rec[k].shape[0], n))
    return rec


def load_class_names(path, n_classes):
    with open_h5(path) as f:
        if "label_names" not in f:
            fail("%s: missing dataset /label_names" % path)
        names = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in f["/label_names"][()]]
    if len(names) != n_classes:
        fail("%s: /label_names has %d names, the run has %d classes" % (path, len(names), n_classes))
    return names


def save(fig, out_dir, name, written):
    path = os.path.join(out_dir, name)
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        fail("cannot write %s: %s" % (path, e.strerror or e))
    plt.close(fig)
    written.append(path)


def plot_head_usage(log, out_dir, written):
    usage = log["usage"]  # [R, L, H]
    R, L, H = usage.shape
    steps = log["h_step"]
    edges = np.concatenate([[0], steps]).astype(float)  # record r covers steps (edges[r], edges[r+1]]
    grid = usage.reshape(R, L * H).T  # rows: layer-major, head-minor
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.28 * L * H + 1.5)))
    mesh = ax.pcolormesh(edges, np.arange(L * H + 1), grid, vmin=0.0, vmax=1.0, cmap="viridis", shading="flat")
    ax.set_yticks(np.arange(L * H) + 0.5)
    ax.set_yticklabels(["L%d h%d" % (l, h) for l in range(L) for h in range(H)], fontsize=7)
    ax.invert_yaxis()
    for l in range(1, L):
        ax.axhline(l * H, color="white", linewidth=1.5)
    ax.set_xlabel("training step (each column is one /heads record interval)")
    ax.set_ylabel("layer / head")
    ax.set_title("Head usage over training (fraction of the interval's inputs selecting the head)")
    fig.colorbar(mesh, ax=ax, label="usage fraction")
    fig.tight_layout()
    save(fig, out_dir, "head_usage.png", written)


def plot_eps_budget(log, out_dir, written, n_heads):
    step, eps, mb = log["step"], log["eps"], log["mean_budget"]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    ax1.plot(step, eps, color="tab:red", label="eps")
    ax1.set_ylabel("exploration rate eps")
    ax1.set_ylim(-0.05, 1.05)
    ax1.set_title("Exploration rate and mean budget over training")
    ax1.legend(loc="upper right")
    for l in range(mb.shape[1]):
        ax2.plot(step, mb[:, l], label="layer %d" % l)
    ax2.set_xlabel("training step")
    ax2.set_ylabel("mean budget k (heads)" + (" of %d" % n_heads if n_heads else ""))
    if n_heads:
        ax2.set_ylim(0.8, n_heads + 0.2)
    ax2.legend(loc="upper right")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save(fig, out_dir, "eps_budget.png", written)


def plot_budget_by_class_records(rec, names, n_heads, out_dir, written):
    budget, label = rec["budget"], rec["label"]
    L, C = budget.shape[1], len(names)
    ks = np.arange(1, n_heads + 1)
    fig, axes = plt.subplots(1, L, figsize=(max(5.0, 4.5 * L), 4), squeeze=False)
    width = 0.8 / C
    for l, ax in enumerate(axes[0]):
        for c in range(C):
            b = budget[label == c, l]
            if len(b) == 0:
                continue
            frac = np.array([(b == k).mean() for k in ks])
            ax.bar(ks - 0.4 + (c + 0.5) * width, frac, width,
                   label="%s (n=%d, mean %.2f)" % (names[c], len(b), b.mean()))
        ax.set_xticks(ks)
        ax.set_xlabel("budget k (heads used)")
        ax.set_ylabel("fraction of the class's inputs")
        ax.set_title("Layer %d" % l)
        ax.set_ylim(0.0, 1.3)  # room for the legend above the bars
        ax.legend(fontsize=7, loc="upper right")
    fig.suptitle("Budget distribution by true class (evaluation records)")
    fig.tight_layout()
    save(fig, out_dir, "budget_by_class.png", written)


def plot_budget_by_class_log(log, names, out_dir, written):
    r = len(log["h_step"]) - 1
    cu, cc = log["class_usage"][r], log["class_count"][r]  # [C, L, H], [C]
    C, L = cu.shape[0], cu.shape[1]
    mean = cu.sum(axis=2)  # [C, L] heads selected per input = mean budget
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * C + 3), 4))
    width = 0.8 / L
    x = np.arange(C)
    for l in range(L):
        ax.bar(x - 0.4 + (l + 0.5) * width, np.where(cc > 0, mean[:, l], np.nan), width, label="layer %d" % l)
    ax.set_xticks(x)
    ax.set_xticklabels(["%s\n(n=%d)" % (names[c], cc[c]) for c in range(C)], fontsize=8)
    ax.set_xlabel("true class")
    ax.set_ylabel("mean budget k (heads)")
    ax.set_title("Mean budget by class (last /heads record, step %d)" % log["h_step"][r])
    ax.set_ylim(0.0, 1.3 * max(1.0, float(np.nanmax(np.where(cc[:, None] > 0, mean, 0.0)))))
    ax.legend(ncol=L, loc="upper right")
    fig.tight_layout()
    save(fig, out_dir, "budget_by_class.png", written)


def plot_budget_by_length(rec, out_dir, written):
    budget, length = rec["budget"], rec["length"]
    L = budget.shape[1]
    labels, means, counts = [], [], []
    for lo, hi in BUCKETS:
        sel = (length >= lo) & ((length <= hi) if hi else True)
        if sel.sum() == 0:
            continue
        labels.append("%d-%d" % (lo, hi) if hi else "%d+" % lo)
        means.append(budget[sel].mean(axis=0))
        counts.append(int(sel.sum()))
    means = np.array(means).reshape(len(labels), L)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(labels) + 3), 4))
    x = np.arange(len(labels))
    width = 0.8 / L
    for l in range(L):
        ax.bar(x - 0.4 + (l + 0.5) * width, means[:, l], width, label="layer %d" % l)
    ax.set_xticks(x)
    ax.set_xticklabels(["%s\n(n=%d)" % (b, n) for b, n in zip(labels, counts)])
    ax.set_xlabel("input length (tokens)")
    ax.set_ylabel("mean budget k (heads)")
    ax.set_title("Mean budget by input length (evaluation records)")
    ax.set_ylim(0.0, 1.3 * max(1.0, float(means.max())))
    ax.legend(ncol=L, loc="upper right")
    fig.tight_layout()
    save(fig, out_dir, "budget_by_length.png", written)


def hist_quantiles(counts, lo, hi, qs=(0.25, 0.5, 0.75)):
    """Quantiles of each row of counts [R, bins] over the fixed bins [lo, hi], linear within a bin (NaN for
    an empty row), as budgetformer heads estimates them."""
    R, bins = counts.shape
    w = (hi - lo) / bins
    out = np.full((R, len(qs)), np.nan)
    for r in range(R):
        n = counts[r].sum()
        if n == 0:
            continue
        cum = np.concatenate([[0], np.cumsum(counts[r])])
        for i, q in enumerate(qs):
            t = q * n
            b = min(int(np.searchsorted(cum[1:], t, side="left")), bins - 1)
            c = counts[r, b]
            out[r, i] = lo + (b + ((t - cum[b]) / c if c else 0.0)) * w
    return out


def plot_budget_diagnostics(log, out_dir, written, n_heads):
    kh, ms = log["khat_hist"], log["mass_hist"]  # [R, L, KB], [R, L, 20]
    R, L = kh.shape[0], kh.shape[1]
    edges = np.concatenate([[0], log["h_step"]]).astype(float)
    fig = plt.figure(figsize=(max(7.0, 4.5 * L), 9))
    grid = fig.add_gridspec(3, L, height_ratios=[3, 3, 2])
    for l in range(L):
        for row, (h, lo, hi, what) in enumerate(((kh, 1.0, float(n_heads), "continuous budget k^"),
                                                 (ms, 0.0, 1.0, "gate mass over S"))):
            ax = fig.add_subplot(grid[row, l])
            counts = h[:, l, :].astype(float)
            tot = counts.sum(axis=1, keepdims=True)
            frac = np.where(tot > 0, counts / np.where(tot > 0, tot, 1.0), np.nan)
            mesh = ax.pcolormesh(edges, np.linspace(lo, hi, h.shape[2] + 1), frac.T, vmin=0.0, vmax=1.0,
                                 cmap="magma", shading="flat")
            mid = 0.5 * (edges[:-1] + edges[1:])
            qs = hist_quantiles(h[:, l, :], lo, hi)
            ax.plot(mid, qs[:, 1], color="tab:cyan", label="median")
            ax.plot(mid, qs[:, 0], color="tab:cyan", linestyle="--", linewidth=0.8, label="quartiles")
            ax.plot(mid, qs[:, 2], color="tab:cyan", linestyle="--", linewidth=0.8)
            ax.set_ylim(lo, hi)
            ax.set_title("Layer %d: %s" % (l, what), fontsize=9)
            ax.set_ylabel(what)
            if row == 1:
                ax.set_xlabel("training step (/heads record intervals)")
            if l == L - 1:
                fig.colorbar(mesh, ax=ax, label="fraction of the interval's inputs")
            if l == 0 and row == 0:
                ax.legend(fontsize=7, loc="upper right")
    ax = fig.add_subplot(grid[2, :])
    if "lambda" in log and len(log["lambda"]) > 0:
        ax.plot(log["step"], log["lambda"], color="tab:green")
        ax.set_ylabel("budget multiplier lambda")
    else:
        ax.text(0.5, 0.5, "no /metrics/budget_lambda in this log", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("training step")
    ax.grid(alpha=0.3)
    fig.suptitle("Budget diagnostics over training (/heads/khat_hist, /heads/mass_hist, /metrics/budget_lambda)")
    fig.tight_layout()
    save(fig, out_dir, "budget_diagnostics.png", written)


def main():
    ap = argparse.ArgumentParser(description="Plot head allocation from log.h5 and evaluation records.")
    ap.add_argument("log", metavar="LOG.h5", help="the run's log.h5")
    ap.add_argument("--records", metavar="RECORDS.h5", help="records written by budgetformer eval --records")
    ap.add_argument("--data", metavar="DATASET.h5", help="prepared dataset whose /label_names name the classes")
    ap.add_argument("--out", metavar="DIR", required=True, help="directory for the PNG files")
    args = ap.parse_args()

    log = load_log(args.log)
    rec = load_records(args.records) if args.records else None
    n_heads = log["usage"].shape[2] if "usage" in log else None
    if rec is not None:
        if n_heads is None:  # records do not store H: the largest budget or selected head
            masks = rec["head_mask"].astype(np.uint64)
            top = int(masks.max()).bit_length() if masks.size else 0
            n_heads = max(int(rec["budget"].max()) if rec["budget"].size else 1, top, 1)
        if "mean_budget" in log and rec["budget"].shape[1] != log["mean_budget"].shape[1]:
            fail("%s has %d layers but %s has %d" % (args.records, rec["budget"].shape[1], args.log,
                                                      log["mean_budget"].shape[1]))
    if rec is not None:
        n_classes = rec["logits"].shape[1]
    elif "class_count" in log:
        n_classes = log["class_count"].shape[1]
    else:
        n_classes = 0
    names = load_class_names(args.data, n_classes) if args.data else ["class %d" % c for c in range(n_classes)]

    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        fail("--out %s: cannot create the directory: %s" % (args.out, e.strerror or e))
    written = []
    if "usage" in log and len(log["h_step"]) > 0:
        plot_head_usage(log, args.out, written)
    else:
        print("plot_heads.py: %s has no /heads records: no head_usage.png" % args.log, file=sys.stderr)
    if "step" in log and len(log["step"]) > 0:
        plot_eps_budget(log, args.out, written, n_heads)
    else:
        print("plot_heads.py: %s has no logged steps: no eps_budget.png" % args.log, file=sys.stderr)
    if rec is not None and len(rec["label"]) > 0:
        plot_budget_by_class_records(rec, names, n_heads, args.out, written)
        plot_budget_by_length(rec, args.out, written)
    elif "usage" in log and len(log["h_step"]) > 0:
        plot_budget_by_class_log(log, names, args.out, written)
    if "khat_hist" in log and "mass_hist" in log and len(log["h_step"]) > 0:
        plot_budget_diagnostics(log, args.out, written, n_heads)
    else:
        print("plot_heads.py: %s has no budget diagnostics in /heads: no budget_diagnostics.png" % args.log,
              file=sys.stderr)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
