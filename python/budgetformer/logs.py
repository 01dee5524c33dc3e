"""pandas views of a run's log.h5 and of eval --records files (layouts: docs/LOGS.md)."""
import h5py
import numpy as np
import pandas as pd


def _strings(a):
    return [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in a]


def read_log(path):
    """A run's log.h5 (safe while training runs) as a dict of DataFrames:

    metrics: one row per update, indexed by step: loss, lr, eps, samples_per_s, grad_norm, comm_fraction,
             skipped (when present) and mean_budget_l0 .. mean_budget_l{L-1};
    heads:   one row per (record, layer, head): step, count, layer, head, usage (fraction of the interval's
             inputs that selected the head) and budget_hist (fraction whose budget k was head + 1);
    class_heads: one row per (record, class, layer, head): step, class, class_count, layer, head, usage.

    A group the file lacks gives an empty DataFrame."""
    out = {"metrics": pd.DataFrame(), "heads": pd.DataFrame(), "class_heads": pd.DataFrame()}
    with h5py.File(path, "r") as f:
        if "metrics" in f:
            m = {k: f["metrics"][k][()] for k in f["metrics"]}
            mb = m.pop("mean_budget", None)
            df = pd.DataFrame(m)
            if mb is not None:
                for l in range(mb.shape[1]):
                    df["mean_budget_l%d" % l] = mb[:, l]
            out["metrics"] = df.set_index("step") if "step" in df else df
        if "heads" in f:
            h = f["heads"]
            step, count = h["step"][()], h["count"][()]
            usage, hist = h["usage"][()], h["budget_hist"][()]
            R, L, H = usage.shape
            rr, ll, hh = np.meshgrid(np.arange(R), np.arange(L), np.arange(H), indexing="ij")
            out["heads"] = pd.DataFrame({"step": step[rr.ravel()], "count": count[rr.ravel()], "layer": ll.ravel(),
                                         "head": hh.ravel(), "usage": usage.ravel(), "budget_hist": hist.ravel()})
            if "class_usage" in h:
                cu, cc = h["class_usage"][()], h["class_count"][()]
                R, C, L, H = cu.shape
                rr, cl, ll, hh = np.meshgrid(np.arange(R), np.arange(C), np.arange(L), np.arange(H), indexing="ij")
                out["class_heads"] = pd.DataFrame({
                    "step": step[rr.ravel()], "class": cl.ravel(), "class_count": cc[rr.ravel(), cl.ravel()],
                    "layer": ll.ravel(), "head": hh.ravel(), "usage": cu.ravel()})
    return out


def read_records(path, data=None):
    """An eval --records file as one DataFrame row per evaluated input, in the dataset's order: label, pred,
    correct, length, logit_0 .. logit_{C-1}, budget_l0 .. budget_l{L-1}, heads_l0 .. (the selected heads of
    each layer, a tuple) and head_mask_l0 ... With data (the evaluated dataset .h5): also label_name,
    pred_name and source_line."""
    with h5py.File(path, "r") as f:
        r = f["records"]
        label, pred, length = r["label"][()], r["pred"][()], r["length"][()]
        logits, budget, mask = r["logits"][()], r["budget"][()], r["head_mask"][()].astype(np.int64)
    df = pd.DataFrame({"label": label, "pred": pred, "correct": label == pred, "length": length})
    for c in range(logits.shape[1]):
        df["logit_%d" % c] = logits[:, c]
    for l in range(budget.shape[1]):
        df["budget_l%d" % l] = budget[:, l]
    for l in range(mask.shape[1]):
        df["heads_l%d" % l] = [tuple(h for h in range(32) if m >> h & 1) for m in mask[:, l]]
        df["head_mask_l%d" % l] = mask[:, l]
    if data is not None:
        with h5py.File(data, "r") as d:
            names = np.array(_strings(d["label_names"][()]), dtype=object)
            src = d["source_line"][()]
        if len(src) != len(df):
            raise ValueError("%s has %d rows, the records %s %d" % (data, len(src), path, len(df)))
        df["label_name"] = names[label]
        df["pred_name"] = names[pred]
        df["source_line"] = src
    return df
