"""log.h5 and evaluation records as h5py users see them (FILES.md):
  1. exactly the FILES.md names, dtypes and shapes (plus the documented extras of /metrics and /heads: the
     budget multiplier and the budget diagnostics histograms, whose counts sum to /heads/count per layer;
     and /memory, each rank's memory, once the last update is done: positive, PSS <= RSS <= peak RSS);
  2. h5py reads log.h5 over and over while a longer run writes it: every read succeeds and sees a complete,
     growing file (no lock error, no partial record);
  3. a writer killed with SIGKILL mid-run leaves a log.h5 that opens, with steps 1..S strictly increasing
     and every /heads dataset holding the same complete records: with the default train.log_write_every = 1
     and a train.log_every too large to ever sync, the log has grown past 100 updates before the kill (only
     the rewrite after every update explains that) and keeps them; with train.log_write_every = 0 the log
     only holds what the synced writes of train.log_every put there (S a multiple of it)."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, SRC, check_quiet as check, report  # noqa: E402

DATA = os.environ["BF_TEST_DATA"]
WORK = os.path.join(os.environ["BF_WORK"], "test_log_h5py")
L, H, C, N_TEST, BATCH = 2, 4, 3, 160, 16  # configs/tiny.ini and tests/data/tiny


def train_cmd(data_dir, run_dir, *sets):
    cmd = [EXE, "train", "--config", os.path.join(SRC, "configs", "tiny.ini"),
           "--set", "data.train=" + os.path.join(data_dir, "train.h5"),
           "--set", "data.test=" + os.path.join(data_dir, "test.h5"), "--set", "run.dir=" + run_dir]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    if p.returncode != 0:
        print(p.stdout)
        sys.exit("%s failed with exit status %d" % (" ".join(cmd[:2]), p.returncode))


def check_layout(path, want):
    """want: {dataset: (dtype string, shape)}; the file holds exactly these datasets."""
    with h5py.File(path, "r") as f:
        have = {}
        f.visititems(lambda name, obj: have.__setitem__("/" + name, obj) if isinstance(obj, h5py.Dataset) else None)
        check(sorted(have) == sorted(want), "%s holds exactly %s (has %s)" % (path, sorted(want), sorted(have)))
        for name, (dtype, shape) in want.items():
            if name in have:
                d = have[name]
                check(d.dtype == np.dtype(dtype), "%s %s dtype %s (expected %s)" % (path, name, d.dtype, dtype))
                check(d.shape == shape, "%s %s shape %s (expected %s)" % (path, name, d.shape, shape))


def log_layout(S, R, ranks=0):
    """ranks: the rows of /memory (0: a run that has not finished, without it)."""
    f4, i8 = "<f4", "<i8"
    memory = {"/memory/" + k: (i8, (ranks,)) for k in ("peak_rss_kb", "rss_kb", "pss_kb", "private_kb")}
    return dict(memory if ranks else {}, **{"/metrics/step": (i8, (S,)), "/metrics/loss": (f4, (S,)), "/metrics/lr": (f4, (S,)),
            "/metrics/eps": (f4, (S,)), "/metrics/mean_budget": (f4, (S, L)),
            "/metrics/samples_per_s": (f4, (S,)), "/metrics/grad_norm": (f4, (S,)),
            "/metrics/comm_fraction": (f4, (S,)), "/metrics/budget_lambda": (f4, (S,)),
            "/heads/logit_hist": (i8, (R, L, 24)), "/heads/khat_hist": (i8, (R, L, 4 * (H - 1))),
            "/heads/mass_hist": (i8, (R, L, 20)),
            "/heads/step": (i8, (R,)), "/heads/count": (i8, (R,)), "/heads/class_count": (i8, (R, C)),
            "/heads/usage": (f4, (R, L, H)), "/heads/budget_hist": (f4, (R, L, H)),
            "/heads/class_usage": (f4, (R, C, L, H))})


def read_complete(path):
    """Reads the whole log; returns (S, R, heads steps) after checking it is one consistent set of records."""
    with h5py.File(path, "r") as f:
        m = {k: f["/metrics/" + k][()] for k in f["/metrics"]}
        h = {k: f["/heads/" + k][()] for k in f["/heads"]}
    S = len(m["step"])
    R = len(h["step"])
    ok = np.array_equal(m["step"], np.arange(1, S + 1))
    ok = ok and all(v.shape[0] == S for v in m.values()) and m["mean_budget"].shape == (S, L)
    ok = ok and all(v.shape[0] == R for v in h.values())
    ok = ok and h["class_count"].shape == (R, C) and h["usage"].shape == (R, L, H)
    ok = ok and h["budget_hist"].shape == (R, L, H) and h["class_usage"].shape == (R, C, L, H)
    ok = ok and (R == 0 or (np.all(np.diff(h["step"]) > 0) and h["step"][-1] <= max(S, 0)))
    ok = ok and np.array_equal(h["class_count"].sum(axis=1), h["count"])
    if not ok:
        raise ValueError("inconsistent log: S=%d R=%d steps %s..., heads steps %s" %
                         (S, R, m["step"][:5], h["step"][:5]))
    return S, R, h


def part_layout(data_dir):
    run_dir = os.path.join(WORK, "layout")
    run(train_cmd(data_dir, run_dir, "train.steps=30", "heads.every=7"))
    check_layout(os.path.join(run_dir, "log.h5"), log_layout(30, 5, ranks=1))
    with h5py.File(os.path.join(run_dir, "log.h5"), "r") as f:
        m = {k: int(f["/memory/" + k][0]) for k in ("peak_rss_kb", "rss_kb", "pss_kb", "private_kb")}
        check(0 < m["private_kb"] <= m["pss_kb"] <= m["rss_kb"] and m["rss_kb"] <= m["peak_rss_kb"] + 1024,
              "/memory of the one rank: 0 < private <= PSS <= RSS <= peak RSS (+1 MiB): %s" % m)
        check(f["/memory"].attrs["shared_dataset"] == 0 and f["/memory"].attrs["dataset_rows_bytes"] > 0,
              "/memory attributes: shared_dataset 0 on one rank, dataset_rows_bytes > 0")
        count = f["/heads/count"][()]
        for k in ("logit_hist", "khat_hist", "mass_hist"):
            h = f["/heads/" + k][()]
            check(np.array_equal(h.sum(axis=2), np.repeat(count[:, None], L, axis=1)),
                  "/heads/%s: each record's counts sum to /heads/count in every layer" % k)
            check("bins" in f["/heads/" + k].attrs, "/heads/%s has the attribute 'bins' describing them" % k)
        lam = f["/metrics/budget_lambda"][()]
        check(np.allclose(lam, 0.05), "/metrics/budget_lambda is train.budget_cost = 0.05 without a budget "
              "target (got %s)" % lam[:5])
    ckpt = os.path.join(run_dir, "checkpoints", "step-00000030.h5")
    records = os.path.join(WORK, "records.h5")
    run([EXE, "eval", "--checkpoint", ckpt, "--data", os.path.join(data_dir, "test.h5"), "--records", records])
    check_layout(records, {"/records/label": ("<i4", (N_TEST,)), "/records/pred": ("<i4", (N_TEST,)),
                           "/records/logits": ("<f4", (N_TEST, C)), "/records/length": ("<i4", (N_TEST,)),
                           "/records/budget": ("<i4", (N_TEST, L)), "/records/head_mask": ("<u4", (N_TEST, L)),
                           "/records/khat": ("<f4", (N_TEST, L)), "/records/sel_mass": ("<f4", (N_TEST, L))})
    with h5py.File(records, "r") as r, h5py.File(os.path.join(data_dir, "test.h5"), "r") as d:
        check(np.array_equal(r["/records/label"][()], d["/labels"][()]), "records rows follow the dataset order")
        check(np.array_equal(r["/records/length"][()], d["/lengths"][()]), "records lengths equal /lengths")
        b, m = r["/records/budget"][()], r["/records/head_mask"][()]
        pop = np.vectorize(lambda x: bin(int(x)).count("1"))(m)
        check(np.array_equal(pop, b), "popcount(head_mask) equals budget")


def part_concurrent(data_dir, steps):
    """Poll-reads log.h5 with h5py while the trainer rewrites it."""
    run_dir = os.path.join(WORK, "concurrent")
    log = os.path.join(run_dir, "log.h5")
    err_path = os.path.join(WORK, "concurrent.stderr")  # a file, not a pipe nobody drains while polling
    with open(err_path, "w") as err_file:
        proc = subprocess.Popen(train_cmd(data_dir, run_dir, "train.steps=%d" % steps, "train.log_every=5",
                                          "heads.every=10"), stdout=subprocess.DEVNULL, stderr=err_file)
    reads, failures, sizes, deadline = 0, [], [], time.time() + 240
    while time.time() < deadline:
        done = proc.poll() is not None
        if os.path.exists(log):
            try:
                S, R, _ = read_complete(log)
                reads += 1
                sizes.append(S)
            except Exception as e:  # a lock error, a partial file or an inconsistent one
                failures.append(repr(e))
        if done:
            break
        time.sleep(0.005)
    else:
        proc.kill()
    rc = proc.wait()
    with open(err_path, errors="replace") as f:
        err = f.read()
    check(rc == 0, "the concurrent run exits 0 (rc %s): %s" % (rc, err[-500:]))
    check(not failures, "%d of %d reads while training failed: %s" % (len(failures), reads + len(failures),
                                                                       failures[:3]))
    distinct = sorted(set(sizes))
    check(reads >= 5 and len(distinct) >= 3, "at least 5 reads seeing a growing /metrics/step (%d reads, "
          "sizes %s)" % (reads, distinct[:5] + ["..."] + distinct[-3:]))
    check(all(b >= a for a, b in zip(sizes, sizes[1:])), "the log never shrinks between reads")
    check(sizes and sizes[-1] == steps, "the final read has all %d steps (last %s)" % (steps, sizes[-1:]))
    print("concurrent: %d reads, /metrics/step grew through %d sizes up to %d" % (reads, len(distinct), sizes[-1]))


def part_killed(data_dir, name, log_every, log_write_every):
    """SIGKILL mid-run: the log that remains holds every record of its last write."""
    run_dir = os.path.join(WORK, name)
    log = os.path.join(run_dir, "log.h5")
    every = 10
    proc = subprocess.Popen(train_cmd(data_dir, run_dir, "train.steps=1000000", "train.log_every=%d" % log_every,
                                      "train.log_write_every=%d" % log_write_every, "heads.every=%d" % every),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, grown = time.time() + 120, 0
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(log):
            try:
                grown = read_complete(log)[0]
            except Exception:
                pass  # judged after the kill
            if grown >= 100:
                break
        time.sleep(0.01)
    check(proc.poll() is None, "%s: the long run was still training when killed" % name)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    check(grown >= 100, "%s: log.h5 had grown to at least 100 steps before the kill (%d)" % (name, grown))
    try:
        S, R, h = read_complete(log)
    except Exception as e:
        check(False, "%s: log.h5 after SIGKILL opens and is consistent: %r" % (name, e))
        return
    check(S >= grown, "%s: after the kill %d steps, at least the %d read before it" % (name, S, grown))
    if log_write_every == 0:
        check(S % log_every == 0, "%s: %d steps, a multiple of train.log_every = %d (synced writes only)"
              % (name, S, log_every))
    check(np.array_equal(h["step"], np.arange(1, R + 1) * every), "heads steps are every %d: %s" % (every, h["step"][:5]))
    check(R == S // every, "%s: one /heads record per %d steps up to the last write (R %d, S %d)" % (name, every, R, S))
    check(np.all(h["count"] == every * BATCH), "every record counts heads.every x batch inputs")
    check_layout(log, log_layout(S, R))
    p = subprocess.run([EXE, "heads", log, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    check(p.returncode == 0 and '"n_steps": %d' % S in p.stdout, "budgetformer heads reads the killed log")
    leftovers = [n for n in os.listdir(run_dir) if re.search(r"\.tmp$", n)]
    print("%s (log_every %d, log_write_every %d): killed after %d logged steps, %d head records; temporary files "
          "left: %s" % (name, log_every, log_write_every, S, R, leftovers))


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    data_dir = os.path.join(WORK, "data")
    run([EXE, "prepare", "--train", os.path.join(DATA, "tiny", "train.csv"),
         "--test", os.path.join(DATA, "tiny", "test.csv"), "--out", data_dir, "--max-len", "24"])
    part_layout(data_dir)
    part_concurrent(data_dir, int(os.environ.get("BF_LOG_TEST_STEPS", "1500")))
    part_killed(data_dir, "killed", 1000000, 1)
    part_killed(data_dir, "killed-synced-only", 5, 0)
    report()


if __name__ == "__main__":
    main()
