"""Checks `budgetformer eval --records` against the independent PyTorch reference of docs/MODEL.md.

    /usr/bin/python3 tests/reference/compare_records.py CHECKPOINT.h5 DATASET.h5 RECORDS.h5 [--min-agree 0.999]

Loads the checkpoint with h5py into bf_reference (float32), runs it on the dataset's token ids at eps = 0
and compares, input by input, the logits (|difference| <= 2e-3), budgets and head masks (exactly) with the
records the C code wrote. Exits 1 unless at least --min-agree of the inputs agree on all three.
Prints the largest logit difference and the agreement rates.
"""
import argparse
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bf_reference  # noqa: E402

LOGIT_TOL = 2e-3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("dataset")
    ap.add_argument("records")
    ap.add_argument("--min-agree", type=float, default=0.999)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()

    torch.set_num_threads(1)
    model = bf_reference.load_checkpoint(a.checkpoint)
    with h5py.File(a.dataset, "r") as f:
        tokens = f["tokens"][()]
        lengths = f["lengths"][()]
    with h5py.File(a.records, "r") as f:
        r_logits = f["records/logits"][()]
        r_budget = f["records/budget"][()]
        r_mask = f["records/head_mask"][()].astype(np.int64)
        r_length = f["records/length"][()]
    n = tokens.shape[0]
    if r_logits.shape[0] != n:
        print(f"records hold {r_logits.shape[0]} rows, dataset {n}")
        return 1
    if not np.array_equal(r_length, lengths):
        print("records /records/length differs from the dataset's /lengths")
        return 1
    logits, budget, mask = [], [], []
    with torch.no_grad():
        for s in range(0, n, a.batch):
            out = model(torch.from_numpy(tokens[s:s + a.batch]).long(), torch.from_numpy(lengths[s:s + a.batch]).long())
            logits.append(out["logits"].numpy())
            budget.append(out["budget"].numpy())
            mask.append(out["head_mask"].numpy())
    logits = np.concatenate(logits)
    budget = np.concatenate(budget)
    mask = np.concatenate(mask)
    diff = np.abs(logits - r_logits).max(axis=1)
    ok_logits = diff <= LOGIT_TOL
    ok_budget = (budget == r_budget).all(axis=1)
    ok_mask = (mask == r_mask).all(axis=1)
    agree = ok_logits & ok_budget & ok_mask
    print(f"inputs {n}: logits within {LOGIT_TOL} {ok_logits.mean():.5f} (max diff {diff.max():.3g}), "
          f"budgets equal {ok_budget.mean():.5f}, head masks equal {ok_mask.mean():.5f}, all three {agree.mean():.5f}")
    if agree.mean() < a.min_agree:
        bad = np.nonzero(~agree)[0][:5]
        print(f"FAIL: agreement {agree.mean():.5f} < {a.min_agree}; first disagreeing inputs {bad.tolist()}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
