"""One copy of the datasets' rows per node (dist.shared_dataset, docs/SCALING.md) and the per-rank memory
report, on 2 ranks of this machine with a training file of about 30 MiB of rows (the tiny corpus prepared,
its rows repeated with h5py).

Checks, each named in the output:
  report           every run prints each rank's peak RSS, RSS, PSS and private memory, and the rows' size;
                   log.h5 /memory holds the same numbers (KiB) and says whether the rows were shared
  bitwise          2 ranks with the shared window and with per-rank copies: the same BF_TRACE lines (loss,
                   eps and weight checksum per update) and the same log.h5 /metrics/loss, bit for bit
  one_copy_pss     the ranks' PSS summed drops by about one copy of the rows (0.7x to 1.3x) with the window:
                   the node holds one copy, not two
  no_private_copy  the ranks' private memory summed drops by about two copies (at least 1.6x): no rank holds
                   the rows as its own
  tokens_uint16    the rows' size is that of uint16 tokens (vocabulary <= 65536), int32 lengths and labels
  bad_file         a training file with a token id out of the vocabulary, on 2 ranks with the window: exit
                   status 1 and the loader's message naming the file and the entry, no update, no hang
"""
import os
import re
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (CONFIG, EXE, MPIRUN2, TINY, check, finish, log_loss, read_trace, run,  # noqa: E402
                    work_dir)

WORK = work_dir("shared_dataset")
T = 64
ROWS = 240000  # 240000 x 64 uint16 tokens + lengths + labels = about 31 MiB
MEM = re.compile(r"memory of rank (\d+): peak RSS ([\d.]+) MiB; now RSS ([\d.]+) MiB, PSS ([\d.]+) MiB, "
                 r"private ([\d.]+) MiB")
ROWS_LINE = re.compile(r"the datasets' rows are ([\d.]+) MiB, held (once per node|by every rank)")


def make_data():
    """The tiny corpus prepared at max_len 64, its training rows repeated to ROWS rows (a valid file)."""
    data = os.path.join(WORK, "data")
    run([EXE, "prepare", "--train", os.path.join(TINY, "train.csv"), "--test", os.path.join(TINY, "test.csv"),
         "--out", data, "--max-len", str(T)])
    path = os.path.join(data, "train.h5")
    with h5py.File(path, "r+") as f:
        for name in ("tokens", "lengths", "labels", "source_line"):
            x = f[name][()]
            reps = -(-ROWS // x.shape[0])
            big = np.concatenate([x] * reps, 0)[:ROWS]
            del f[name]
            f.create_dataset(name, data=big)
    return data


def train(data, run_dir, shared):
    trace = os.path.join(WORK, os.path.basename(run_dir))
    args = ["train", "--config", CONFIG]
    for s in ("data.train=%s/train.h5" % data, "data.test=%s/test.h5" % data, "run.dir=" + run_dir,
              "train.steps=6", "train.log_every=2", "dist.shared_dataset=%d" % shared):
        args += ["--set", s]
    env = dict(os.environ, BF_TRACE=trace)
    p = run(MPIRUN2 + [EXE] + args, env=env)
    mem = {int(m.group(1)): [float(v) for v in m.groups()[1:]] for m in MEM.finditer(p.stderr)}
    rows = ROWS_LINE.search(p.stderr)
    check("report_" + ("shared" if shared else "own"), sorted(mem) == [0, 1] and rows is not None and
          rows.group(2) == ("once per node" if shared else "by every rank"), p.stderr[-600:])
    with h5py.File(os.path.join(run_dir, "log.h5"), "r") as f:
        logged = np.stack([f["memory/" + k][()] for k in ("peak_rss_kb", "rss_kb", "pss_kb", "private_kb")], 1)
        attrs = dict(f["memory"].attrs)
    printed = np.array([mem.get(r, [0] * 4) for r in (0, 1)])
    check("report_log_" + ("shared" if shared else "own"), logged.shape == (2, 4) and
          np.all(np.abs(logged / 1024.0 - printed) <= 0.051) and attrs.get("shared_dataset") == shared and
          rows is not None and abs(attrs.get("dataset_rows_bytes", 0) / 2 ** 20 - float(rows.group(1))) < 0.006,
          "log.h5 /memory %s %s; printed %s" % (logged.tolist(), attrs, printed.tolist()))
    return trace, mem, float(rows.group(1)) if rows else 0.0


data = make_data()
tr_shared, mem_shared, rows_mib = train(data, os.path.join(WORK, "run-shared"), 1)
tr_own, mem_own, _ = train(data, os.path.join(WORK, "run-own"), 0)

check("bitwise", read_trace(tr_shared, 2) == read_trace(tr_own, 2) and
      np.array_equal(log_loss(os.path.join(WORK, "run-shared"))[1], log_loss(os.path.join(WORK, "run-own"))[1]))
n = 0
for name in ("train.h5", "test.h5"):  # data.test is loaded (and shared) too
    with h5py.File(os.path.join(data, name), "r") as f:
        n += f["tokens"].shape[0]
expect = n * (T * 2 + 8) / 2 ** 20
check("tokens_uint16", abs(rows_mib - expect) < 0.01, "%.2f MiB of rows, %.2f expected" % (rows_mib, expect))
pss = [sum(m[r][2] for r in m) for m in (mem_shared, mem_own)]
priv = [sum(m[r][3] for r in m) for m in (mem_shared, mem_own)]
detail = ("rows %.1f MiB; PSS summed %.1f (shared) vs %.1f (per rank); private summed %.1f vs %.1f"
          % (rows_mib, pss[0], pss[1], priv[0], priv[1]))
print(detail)
check("one_copy_pss", 0.7 * rows_mib <= pss[1] - pss[0] <= 1.3 * rows_mib, detail)
check("no_private_copy", priv[1] - priv[0] >= 1.6 * rows_mib, detail)
bad = os.path.join(WORK, "bad")
run([EXE, "prepare", "--train", os.path.join(TINY, "train.csv"), "--test", os.path.join(TINY, "test.csv"),
     "--out", bad, "--max-len", "24"])
with h5py.File(os.path.join(bad, "train.h5"), "r+") as f:
    f["tokens"][3, 0] = len(f["vocab"])
p = run(MPIRUN2 + [EXE, "train", "--config", CONFIG, "--set", "data.train=%s/train.h5" % bad, "--set",
                   "data.test=", "--set", "run.dir=" + os.path.join(WORK, "run-bad")], expect=None)
check("bad_file", p.returncode == 1 and "train.h5: dataset /tokens[3, 0]" in p.stderr and "step " not in p.stderr,
      "exit %d: %s" % (p.returncode, p.stderr[-600:]))
finish(WORK)
