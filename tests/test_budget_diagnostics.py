"""The budget diagnostics of log.h5's /heads records mean what docs/LOGS.md says.

Tiny configuration trained for exactly one epoch (30 updates x 16 = the 480 training inputs, each once) with
eps = 0 and a learning rate of 1e-30 and train.lr_min = 0 (the weights stay those of the final checkpoint up to far below float
rounding), heads.every = 15 (two records) and 30 (one record covering the whole epoch):
  - logit_hist, khat_hist and mass_hist count each input once per layer: every record's counts sum to
    /heads/count per layer, so to inputs x layers over the layers;
  - at eps = 0 the k^ bins 4k-6 .. 4k-3 (k^ within 1/2 of k) hold exactly the inputs whose budget was k:
    khat_hist folded into budgets equals budget_hist x count;
  - the record of the whole epoch agrees with `eval --records` of the final checkpoint on train.h5: the
    histograms binned here from the records' khat and sel_mass (and the budget logit recovered from khat),
    with the bins of docs/LOGS.md, equal the record's (up to 2 inputs per layer and histogram moved by one
    bin from the float rounding of the training forward vs the head-skipping inference);
  - /metrics/budget_lambda is train.budget_cost at every update (no budget target);
  - `budgetformer heads --json` reports the diagnostics: count per layer, quartiles ordered, within the bins."""
import json
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, check, finish, prepare, run, train_args, work_dir  # noqa: E402

L, H, BATCH, STEPS = 2, 4, 16, 30
KB = 4 * (H - 1)


def logit_bins(khat):
    q = (khat.astype(np.float64) - 1.0) / (H - 1)
    out = np.empty(q.shape, dtype=np.int64)
    lo, hi = q <= 0.0, q >= 1.0
    mid = ~(lo | hi)
    a = np.log(q[mid] / (1.0 - q[mid]))
    out[mid] = np.clip(np.floor((a + 6.0) * 24 / 12.0), 0, 23)
    out[lo], out[hi] = 0, 23
    return out


def khat_bins(khat):
    return np.clip(np.floor((khat.astype(np.float64) - 1.0) * 4), 0, KB - 1).astype(np.int64)


def mass_bins(mass):
    return np.clip(np.floor(mass.astype(np.float64) * 20), 0, 19).astype(np.int64)


def hist(bins, n):
    return np.array([np.bincount(bins[:, l], minlength=n) for l in range(bins.shape[1])])


def main():
    work = work_dir("test_budget_diagnostics")
    data = prepare(work)
    runs = {}
    for every in (15, 30):
        rd = os.path.join(work, "run-%d" % every)
        run([EXE] + train_args(data, rd, "train.lr=1e-30", "train.lr_min=0", "explore.eps_start=0", "explore.eps_end=0",
                               "train.steps=%d" % STEPS, "train.batch_size=%d" % BATCH, "heads.every=%d" % every))
        with h5py.File(os.path.join(rd, "log.h5"), "r") as f:
            runs[every] = {k: f[k][()] for k in ("/heads/count", "/heads/budget_hist", "/heads/logit_hist",
                                                  "/heads/khat_hist", "/heads/mass_hist", "/metrics/budget_lambda")}
            runs[every]["bins"] = {k: f["/heads/" + k].attrs["bins"] for k in ("logit_hist", "khat_hist",
                                                                               "mass_hist")}
        runs[every]["dir"] = rd

    for every, lg in runs.items():
        cnt = lg["/heads/count"]
        for k, nb in (("logit_hist", 24), ("khat_hist", KB), ("mass_hist", 20)):
            h = lg["/heads/" + k]
            check("every=%d: /heads/%s has shape [R, L, %d]" % (every, k, nb), h.shape == (len(cnt), L, nb),
                  str(h.shape))
            check("every=%d: /heads/%s counts sum to count per layer" % (every, k),
                  np.array_equal(h.sum(axis=2), np.repeat(cnt[:, None], L, axis=1)))
            check("every=%d: /heads/%s counts sum to inputs x layers" % (every, k),
                  np.array_equal(h.sum(axis=(1, 2)), cnt * L))
        kh = lg["/heads/khat_hist"]
        fold = np.zeros(kh.shape[:2] + (H,), dtype=np.int64)
        for j in range(KB):
            fold[:, :, min(H - 1, (j + 2) // 4)] += kh[:, :, j]
        want = np.rint(lg["/heads/budget_hist"] * cnt[:, None, None]).astype(np.int64)
        check("every=%d: khat_hist folded at the rounding points equals budget_hist x count (eps = 0)" % every,
              np.array_equal(fold, want), "%s vs %s" % (fold.tolist(), want.tolist()))
        check("every=%d: /metrics/budget_lambda = train.budget_cost 0.05 at every update" % every,
              len(lg["/metrics/budget_lambda"]) == STEPS and np.allclose(lg["/metrics/budget_lambda"], 0.05))
    check("two records of 15 updates add up to the record of 30",
          all(np.array_equal(runs[15]["/heads/" + k].sum(axis=0), runs[30]["/heads/" + k][0])
              for k in ("logit_hist", "khat_hist", "mass_hist")))
    check("bins attribute names the k^ range", "[1, 4]" in runs[30]["bins"]["khat_hist"],
          runs[30]["bins"]["khat_hist"])

    rd = runs[30]["dir"]
    records = os.path.join(work, "train-records.h5")
    run([EXE, "eval", "--checkpoint", os.path.join(rd, "checkpoints", "step-%08d.h5" % STEPS),
         "--data", os.path.join(data, "train.h5"), "--records", records])
    with h5py.File(records, "r") as f:
        khat, mass, budget = f["/records/khat"][()], f["/records/sel_mass"][()], f["/records/budget"][()]
    check("eval records cover the 480 training inputs", khat.shape == (480, L), str(khat.shape))
    for k, bins, nb in (("logit_hist", logit_bins(khat), 24), ("khat_hist", khat_bins(khat), KB),
                        ("mass_hist", mass_bins(mass), 20)):
        mine, rec = runs[30]["/heads/" + k][0], hist(bins, nb)
        moved = np.abs(mine - rec).sum(axis=1) // 2
        check("%s of the epoch agrees with the eval records (inputs in another bin per layer: %s)" % (k, moved.tolist()),
              np.all(moved <= 2), "\nlog     %s\nrecords %s" % (mine.tolist(), rec.tolist()))
    rb = np.array([np.bincount(budget[:, l] - 1, minlength=H) for l in range(L)])
    mb = np.rint(runs[30]["/heads/budget_hist"][0] * 480).astype(np.int64)
    check("budget_hist of the epoch agrees with the records' budgets", np.abs(rb - mb).sum() <= 4,
          "%s vs %s" % (rb.tolist(), mb.tolist()))
    check("the records' budgets are round(k^) at eps = 0",
          np.array_equal(budget, np.clip(np.floor(khat + np.float32(0.5)), 1, H).astype(np.int32)))

    p = run([EXE, "heads", "--json", os.path.join(runs[15]["dir"], "log.h5")])
    j = json.loads(p.stdout)
    d = j.get("diagnostics")
    ok = d is not None and d["first"]["count"] == 15 * BATCH and d["last"]["count"] == 15 * BATCH
    check("heads --json: diagnostics of the first and last record", ok, p.stdout[-300:] if not ok else "")
    if ok:
        for rec in ("first", "last"):
            for key, lo, hi in (("khat", 1.0, H), ("logit", -6.0, 6.0), ("mass", 0.0, 1.0)):
                for l, s in enumerate(d[rec][key]):
                    check("heads --json: %s %s layer %d: n = count, lo <= q1 <= median <= q3 <= hi" % (rec, key, l),
                          s["n"] == 15 * BATCH and lo <= s["q1"] <= s["median"] <= s["q3"] <= hi and
                          lo <= s["mean"] <= hi, str(s))
        # the median of k^ from the histogram lies in the bin of the median of the records' k^ (+- 1 bin)
        med = d["last"]["khat"][0]["median"]
        check("heads --json: k^ median near the records' median", abs(med - float(np.median(khat[:, 0]))) <= 0.5,
              "%g vs %g" % (med, float(np.median(khat[:, 0]))))
        check("heads --json: lambda", j["lambda"] is not None and abs(j["lambda"]["last"] - 0.05) < 1e-6,
              str(j.get("lambda")))
    p = run([EXE, "heads", os.path.join(runs[15]["dir"], "log.h5")])
    check("heads text: the budget diagnostics table", "Budget diagnostics per layer" in p.stdout and
          "gate mass" in p.stdout and "budget multiplier lambda" in p.stdout)
    finish(work)


if __name__ == "__main__":
    main()
