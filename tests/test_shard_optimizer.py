"""The sharded optimiser (dist.shard_optimizer = 1, ZeRO stage 1) against the unsharded trainer, on the tiny
corpus (30 updates, exploration on, checkpoints every 10; a run takes about a second).

Checks, each named in the output:
  same_loss_P    P = 2 and 3 ranks: the loss of every update sharded is within 1e-6 relative of the unsharded
                 run's (BF_TRACE and log.h5 /metrics/loss); the detail says whether they are bitwise equal
  replicas_P     sharded, every rank holds bitwise identical weights after every update (BF_TRACE checksums)
  memory_P       the startup line's optimiser bytes per rank: sharded, the largest of the P parts (within one
                 parameter's 8 bytes of 1/P of the unsharded figure, which is 8 bytes per parameter)
  buckets_3      sharded on 3 ranks with dist.bucket_kb = 1 (many small reduce-scatter buckets): the losses
                 stay within 1e-6 relative of unsharded
  layout         a sharded checkpoint holds the datasets of an unsharded one (names, shapes, types) and
                 `inspect` finds its checksum valid
  repeatable     two sharded 3-rank runs: bitwise identical traces, log.h5 losses and every /model and /optim
                 dataset of the final checkpoint
  resume_P       P = 2 and 3, sharded: stopped after update 15 (train.stop_at) and continued with --resume auto
                 gives the uninterrupted run's trace (15 + 15 lines) and final checkpoint, bit for bit
  killed         a sharded 2-rank run whose rank 0 is killed (SIGKILL, BF_FAULT=crash_in_save) half way
                 through writing the checkpoint of update 20, continued with --resume auto from update 10:
                 updates 11..30 and the final checkpoint are bitwise the uninterrupted run's
  nonfinite      a NaN gradient at update 5 (BF_FAULT=nan_at_step) is skipped on every rank, sharded as
                 unsharded: the same trace on 3 ranks
  elastic        the sharded 2-rank checkpoint of update 15 continued on 3 ranks, the 3-rank one on 1 rank:
                 updates 16..30 within 1e-4 relative of the uninterrupted run
  mixed          the sharded 2-rank checkpoint continued unsharded, and an unsharded one continued sharded:
                 updates 16..30 within 1e-6 relative of the uninterrupted run
  rows_P         P = 2 and 3, without BF_TRACE (whose checksum gathers every weight each update), on 400
                 made-up rows of 10 words from 3000 and a model whose token embedding is most of the block
                 (1 layer, d_ff 4), so each rank gathers
                 only the embedding rows the next update reads: every checkpoint (updates 10, 20, 30) equals
                 the unsharded run's, every /model and /optim dataset bit for bit; also with a NaN update
                 skipped at update 5 (the next update then needs the whole table)
  no_alloc       a sharded 2-rank run under BF_CHECK_ALLOC=1 allocates nothing in an update after the first
  bad_value      dist.shard_optimizer = 2 is refused before training, naming the key
"""
import os
import re
import shutil
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (EXE, check, checkpoint_arrays, finish, inspect, launcher, max_rel, prepare,  # noqa: E402
                    read_trace, run, train_args, work_dir)

WORK = work_dir("shard_optimizer")
STEPS = 30
STOP = 15
COMMON = ["data.test=", "train.steps=%d" % STEPS, "train.batch_size=16", "train.micro_batch=0",
          "checkpoint.every=10", "checkpoint.keep=5", "explore.eps_start=0.9", "explore.eps_end=0.2",
          "explore.steps=30"]
SHARD = ["dist.shard_optimizer=1"]
BYTES = re.compile(r"optimiser state [0-9.]+ MiB per rank \((\d+) bytes")


class Run:
    """A training run in WORK/name on `ranks` ranks (BF_TRACE on); resume continues an existing run.dir."""

    def __init__(self, data, name, ranks, sets, resume=False, env_extra=None, expect=0, traced=True):
        self.dir = os.path.join(WORK, name)
        self.trace = os.path.join(WORK, name + (".resumed" if resume else "") + ".trace")
        cmd = launcher(ranks) + [EXE] + train_args(data, self.dir, *(COMMON + sets))
        if resume:
            cmd += ["--resume", "auto"]
        env = dict(os.environ, BF_TRACE=self.trace, **(env_extra or {}))
        if not traced:
            del env["BF_TRACE"]
        p = run(cmd, env, expect=expect)
        self.returncode, self.stderr = p.returncode, p.stderr
        self.lines = read_trace(self.trace, ranks) if traced else None
        m = BYTES.search(self.stderr)
        self.opt_bytes = int(m.group(1)) if m else None

    def losses(self):
        return np.array([float(line.split()[2]) for line in self.lines[0]])

    def log_loss(self):
        with h5py.File(os.path.join(self.dir, "log.h5"), "r") as f:
            return f["metrics/step"][()], f["metrics/loss"][()].astype(np.float64)

    def final(self):
        return os.path.join(self.dir, "checkpoints", "step-%08d.h5" % STEPS)


datasets = checkpoint_arrays


def layout(path):
    """{dataset path: (shape, dtype)} of every dataset in a checkpoint."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, (o.shape, str(o.dtype))) if isinstance(o, h5py.Dataset) else None)
    return out


def differing(a, b):
    x, y = datasets(a), datasets(b)
    return sorted(k for k in set(x) | set(y) if k not in x or k not in y or not np.array_equal(x[k], y[k]))


def main():
    data = prepare(WORK)
    plain, sharded = {}, {}
    for p in (2, 3):
        plain[p] = Run(data, "plain%d" % p, p, [])
        sharded[p] = Run(data, "sharded%d" % p, p, SHARD)
        a, b = sharded[p].losses(), plain[p].losses()
        rel = max_rel(a, b)
        check("same_loss_%d: %d sharded losses within 1e-6 relative of unsharded (trace)" % (p, STEPS),
              len(a) == STEPS and rel <= 1e-6,
              "max %.2e%s" % (rel, ", bitwise equal" if np.array_equal(a, b) else ""))
        (sa, la), (sb, lb) = sharded[p].log_loss(), plain[p].log_loss()
        check("same_loss_%d: log.h5 /metrics/loss within 1e-6 relative" % p,
              list(sa) == list(sb) == list(range(1, STEPS + 1)) and max_rel(la, lb) <= 1e-6,
              "max %.2e" % max_rel(la, lb))
        checks = [[line.split()[3] for line in r] for r in sharded[p].lines]
        check("replicas_%d: every rank's weights bitwise equal after every update" % p,
              all(c == checks[0] and len(c) == STEPS for c in checks))
        full, part = plain[p].opt_bytes, sharded[p].opt_bytes
        check("memory_%d: optimiser bytes per rank about 1/%d (%s sharded, %s unsharded)" % (p, p, part, full),
              full is not None and part is not None and full % 8 == 0 and abs(part - full / p) <= 8 and
              "sharded 1/%d" % p in sharded[p].stderr and "not sharded" in plain[p].stderr)
    many = Run(data, "buckets3", 3, SHARD + ["dist.bucket_kb=1"])
    n_buckets = re.search(r"(\d+) gradient buckets", many.stderr)
    rel = max_rel(many.losses(), plain[3].losses())
    check("buckets_3: with dist.bucket_kb = 1 (%s buckets, parts of 0 floats for some ranks) the loss stays within "
          "1e-6 of unsharded" % (n_buckets.group(1) if n_buckets else "?"),
          n_buckets is not None and int(n_buckets.group(1)) > 3 and rel <= 1e-6, "max %.2e" % rel)
    rc, j, err = inspect(sharded[3].final())
    check("layout: a sharded checkpoint has the datasets of an unsharded one, checksum valid",
          rc == 0 and j["checksum"]["status"] == "valid" and layout(sharded[3].final()) == layout(plain[3].final()),
          err.strip()[-300:])

    again = Run(data, "again3", 3, SHARD)
    bad = differing(again.final(), sharded[3].final())
    (_, la), (_, lb) = again.log_loss(), sharded[3].log_loss()
    check("repeatable: two sharded 3-rank runs are bitwise identical (trace, log loss, checkpoint)",
          again.lines == sharded[3].lines and np.array_equal(la, lb) and not bad,
          "differ: " + ", ".join(bad[:5]) if bad else "")

    stopped = {}
    for p in (2, 3):
        first = Run(data, "stopped%d" % p, p, SHARD + ["train.stop_at=%d" % STOP])
        stopped[p] = os.path.join(WORK, "copy%d" % p)
        shutil.copytree(first.dir, stopped[p])
        second = Run(data, "stopped%d" % p, p, SHARD, resume=True)
        bad = differing(second.final(), sharded[p].final())
        check("resume_%d: %d + %d sharded updates are bitwise the uninterrupted run (trace, checkpoint)"
              % (p, STOP, STEPS - STOP),
              "resuming from" in second.stderr and
              all(first.lines[r] + second.lines[r] == sharded[p].lines[r] for r in range(p)) and not bad,
              "differ: " + ", ".join(bad[:5]) if bad else "")

    r = Run(data, "killed2", 2, SHARD, env_extra={"BF_FAULT": "crash_in_save:mid_data:20"}, expect=None)
    killed_ok = r.returncode != 0 and "BF_FAULT: killing this process" in r.stderr
    r2 = Run(data, "killed2", 2, SHARD, resume=True)
    bad = differing(r2.final(), sharded[2].final())
    check("killed: rank 0 killed while saving update 20, resumed from update 10: updates 11..30 and the final "
          "checkpoint bitwise the uninterrupted run's",
          killed_ok and "step-00000010.h5" in r2.stderr and
          all(r2.lines[k] == sharded[2].lines[k][10:] for k in range(2)) and not bad,
          "exit %d; differ: %s" % (r.returncode, ", ".join(bad[:5])) if not killed_ok or bad else "")

    nan = {"BF_FAULT": "nan_at_step:5"}
    a = Run(data, "nan_sharded3", 3, SHARD, env_extra=nan)
    b = Run(data, "nan_plain3", 3, [], env_extra=nan)
    check("nonfinite: a NaN gradient at update 5 is skipped, sharded as unsharded (3 ranks)",
          "update is skipped" in a.stderr and len(a.lines[0]) == STEPS - 1 and a.lines == b.lines)

    def continued(name, src, ranks, sets, straight, tol, what):
        d = os.path.join(WORK, name)
        shutil.copytree(src, d)
        r = Run(data, name, ranks, sets, resume=True)
        (sa, la), (_, lb) = r.log_loss(), straight.log_loss()
        rel = max_rel(la[STOP:], lb[STOP:])
        check("%s: updates %d..%d within %g relative of the uninterrupted run" % (what, STOP + 1, STEPS, tol),
              list(sa) == list(range(1, STEPS + 1)) and np.array_equal(la[:STOP], lb[:STOP]) and rel <= tol and
              all(x == r.lines[0] and len(x) == STEPS - STOP for x in r.lines), "max %.2e" % rel)

    continued("elastic2to3", stopped[2], 3, SHARD, sharded[2], 1e-4, "elastic 2 -> 3 sharded")
    continued("elastic3to1", stopped[3], 1, SHARD, sharded[3], 1e-4, "elastic 3 -> 1")
    continued("mixed_s2u", stopped[2], 2, [], sharded[2], 1e-6, "mixed: sharded checkpoint resumed unsharded")
    Run(data, "plainstop2", 2, ["train.stop_at=%d" % STOP])
    continued("mixed_u2s", os.path.join(WORK, "plainstop2"), 2, SHARD, plain[2], 1e-6,
              "mixed: unsharded checkpoint resumed sharded")

    # Many words, few per update: most embedding rows are not read by the next update (the tiny corpus's
    # small vocabulary is nearly all read by every batch).
    rng = np.random.default_rng(7)
    tsv = os.path.join(WORK, "words.tsv")
    with open(tsv, "w") as f:
        for i in range(400):
            f.write("c%d\t%s\n" % (i % 3, " ".join("w%d" % w for w in rng.integers(0, 3000, 10))))
    words = os.path.join(WORK, "words")
    run([EXE, "prepare", "--train", tsv, "--test", tsv, "--out", words, "--max-len", "10", "--min-count", "1"])
    table = ["model.n_layers=1", "model.d_ff=4"]
    for P in (2, 3):
        for tag, extra in (("", None), ("_nan", {"BF_FAULT": "nan_at_step:5"})):
            u = Run(words, "rows_plain%d%s" % (P, tag), P, table, env_extra=extra, traced=False)
            sh = Run(words, "rows_shard%d%s" % (P, tag), P, table + SHARD, env_extra=extra, traced=False)
            diff = []
            for step in (10, 20, 30):
                name = "checkpoints/step-%08d.h5" % step
                d = differing(os.path.join(u.dir, name), os.path.join(sh.dir, name))
                diff += ["%s at %d" % (k, step) for k in d]
            check("rows_%d: untraced, embedding-heavy, %severy checkpoint sharded = unsharded bit for bit" %
                  (P, "a NaN update skipped, " if tag else ""), not diff, ", ".join(diff[:4]))

    confirm = "BF_CHECK_ALLOC: no update after the first allocated"
    r = Run(data, "no_alloc", 2, SHARD + ["train.micro_batch=3"], env_extra={"BF_CHECK_ALLOC": "1"})
    check("no_alloc: a sharded update after the first allocates nothing", confirm in r.stderr)

    p = run([EXE] + train_args(data, os.path.join(WORK, "bad"), "dist.shard_optimizer=2"), expect=None)
    check("bad_value: dist.shard_optimizer = 2 is refused naming the key",
          p.returncode != 0 and "dist.shard_optimizer" in p.stderr, p.stderr.strip()[-300:])
    finish(WORK)


if __name__ == "__main__":
    main()
