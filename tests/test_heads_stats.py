"""The /heads records of log.h5 count every input of every interval exactly once, on 1 and on 2 ranks.

Tiny configuration, heads.every = 7, train.steps = 30, batch 16, trained on 1 rank and on 2 ranks (mpirun):
  - /heads/step is 7, 14, 21, 28, 30 and /heads/count is (steps in the interval) x batch_size;
  - /heads/class_count sums to /heads/count, and equals the labels of the interval's inputs recomputed here
    from the epoch order of include/budgetformer/sampler.h (Fisher-Yates with bf_rng_key of src/kernels/rng.c,
    splitmix64 reimplemented in bftest.py);
  - the 1-rank and 2-rank class_count records are identical;
  - within each record: budget_hist sums to 1 per layer, sum_h usage = sum_k k budget_hist (every selected
    head is one unit of budget), class_usage weighted by class_count adds up to usage x count, and the mean
    budget of the record equals the mean of /metrics/mean_budget over the interval's steps;
  - the budget diagnostics histograms (logit_hist, khat_hist, mass_hist) of every record sum to count in each
    layer, on 1 and on 2 ranks (the one allreduce carries them)."""
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, SRC, check_quiet as check, failures, rng_key  # noqa: E402

DATA = os.environ["BF_TEST_DATA"]
WORK = os.path.join(os.environ["BF_WORK"], "test_heads_stats")
EVERY, STEPS, BATCH, SEED = 7, 30, 16, 1

STREAM_SHUFFLE = 4


def epoch_perm(n, seed, epoch):
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng_key(seed, epoch, i, 0, STREAM_SHUFFLE, 0) % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def expected_class_counts(labels, n_classes, record_steps):
    """Class counts of each interval from the stream order: global batch s is positions [sB, (s+1)B)."""
    n = len(labels)
    perms = {}
    out, prev = [], 0
    for last in record_steps:
        counts = np.zeros(n_classes, dtype=np.int64)
        for p in range(prev * BATCH, last * BATCH):
            e = p // n
            if e not in perms:
                perms[e] = epoch_perm(n, SEED, e)
            counts[labels[perms[e][p % n]]] += 1
        out.append(counts)
        prev = last
    return np.array(out)


def train(run_dir, data_dir, ranks):
    cmd = [EXE, "train", "--config", os.path.join(SRC, "configs", "tiny.ini"),
           "--set", "data.train=" + os.path.join(data_dir, "train.h5"),
           "--set", "data.test=" + os.path.join(data_dir, "test.h5"),
           "--set", "run.dir=" + run_dir, "--set", "heads.every=%d" % EVERY,
           "--set", "train.steps=%d" % STEPS, "--set", "train.batch_size=%d" % BATCH,
           "--set", "train.seed=%d" % SEED]
    if ranks > 1:
        cmd = ["mpirun", "-np", str(ranks), "--oversubscribe"] + cmd
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    if p.returncode != 0:
        print(p.stdout)
        sys.exit("training on %d rank(s) failed with exit status %d" % (ranks, p.returncode))


def read_log(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ("/metrics/step", "/metrics/mean_budget", "/heads/step", "/heads/count",
                                      "/heads/class_count", "/heads/usage", "/heads/budget_hist",
                                      "/heads/class_usage", "/heads/logit_hist", "/heads/khat_hist",
                                      "/heads/mass_hist")}


def check_log(name, log, labels, n_classes, expected_steps):
    hs, cnt, cc = log["/heads/step"], log["/heads/count"], log["/heads/class_count"]
    check(list(hs) == expected_steps, "%s: /heads/step %s, expected %s" % (name, list(hs), expected_steps))
    if list(hs) != expected_steps:
        return
    lengths = np.diff([0] + expected_steps)
    check(np.array_equal(cnt, lengths * BATCH), "%s: /heads/count %s = steps x batch %s"
          % (name, list(cnt), list(lengths * BATCH)))
    check(np.array_equal(cc.sum(axis=1), cnt), "%s: class_count rows sum to count" % name)
    want = expected_class_counts(labels, n_classes, expected_steps)
    check(np.array_equal(cc, want), "%s: class_count equals the labels of each interval's inputs "
          "recomputed from the epoch order\n got %s\nwant %s" % (name, cc.tolist(), want.tolist()))

    usage, hist, cu = log["/heads/usage"], log["/heads/budget_hist"], log["/heads/class_usage"]
    R, L, H = usage.shape
    k = np.arange(1, H + 1)
    check(np.allclose(hist.sum(axis=2), 1.0, atol=1e-5), "%s: budget_hist sums to 1 per record and layer" % name)
    check(np.allclose(usage.sum(axis=2), (hist * k).sum(axis=2), atol=1e-4),
          "%s: heads selected per input (sum of usage) = mean budget (from budget_hist)" % name)
    weighted = (cu * cc[:, :, None, None]).sum(axis=1)
    check(np.allclose(weighted, usage * cnt[:, None, None], atol=1e-3),
          "%s: class_usage x class_count adds up to usage x count" % name)
    for key in ("/heads/logit_hist", "/heads/khat_hist", "/heads/mass_hist"):
        dh = log[key]
        check(dh.shape[:2] == (R, L) and np.array_equal(dh.sum(axis=2), np.repeat(cnt[:, None], L, axis=1)),
              "%s: %s counts every input of the interval once per layer (sums to count x layers)" % (name, key))
    steps, mb = log["/metrics/step"], log["/metrics/mean_budget"]
    prev = 0
    for r, last in enumerate(expected_steps):
        sel = (steps > prev) & (steps <= last)
        check(np.allclose(mb[sel].mean(axis=0), (hist[r] * k).sum(axis=1), atol=1e-4),
              "%s: record %d mean budget equals the mean of /metrics/mean_budget over steps %d..%d"
              % (name, r, prev + 1, last))
        prev = last


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    data_dir = os.path.join(WORK, "data")
    subprocess.run([EXE, "prepare", "--train", os.path.join(DATA, "tiny", "train.csv"),
                    "--test", os.path.join(DATA, "tiny", "test.csv"), "--out", data_dir, "--max-len", "24"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    with h5py.File(os.path.join(data_dir, "train.h5"), "r") as f:
        labels = f["/labels"][()].tolist()
        n_classes = int(f.attrs["n_classes"])
    expected_steps = list(range(EVERY, STEPS + 1, EVERY))
    if expected_steps[-1] != STEPS:
        expected_steps.append(STEPS)

    logs = {}
    for ranks in (1, 2):
        run_dir = os.path.join(WORK, "run-%drank" % ranks)
        train(run_dir, data_dir, ranks)
        logs[ranks] = read_log(os.path.join(run_dir, "log.h5"))
        check_log("%d rank(s)" % ranks, logs[ranks], labels, n_classes, expected_steps)

    for key in ("/heads/step", "/heads/count", "/heads/class_count"):
        check(np.array_equal(logs[1][key], logs[2][key]), "1-rank and 2-rank %s are identical" % key)

    if failures:
        print("%d check(s) failed" % len(failures))
        sys.exit(1)
    print("all checks passed: %d records, class counts %s" % (len(expected_steps), logs[2]["/heads/class_count"].tolist()))


if __name__ == "__main__":
    main()
