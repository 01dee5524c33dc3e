"""Training, resume and evaluation at train.precision = bf16 (docs/PERFORMANCE.md "bf16").

Checks, each named in the output:
  refused       with BF_CPU_NO_BF16=1 (as on a CPU without bf16 instructions) bf16 training exits 1 naming
                avx512_bf16 and amx_bf16, and eval --precision bf16 likewise
  twice         two bf16 runs of 40 updates end in bitwise identical checkpoints (weights and AdamW moments)
  resume        the same run stopped at update 20 and resumed (--resume auto) ends bitwise as the uninterrupted
                one (weights, AdamW moments), on 1 rank and on 2 ranks
  sharded       a 2-rank bf16 run with dist.shard_optimizer = 1 ends bitwise as the unsharded 2-rank bf16 run
                (the weights' bf16 copies are remade after the sharded update's allgather too)
  provenance    the checkpoint says /provenance/precision = bf16 (fp32 for an fp32 run); weights are fp32
  cross         an fp32 run's checkpoint at update 20 resumes in bf16 (a warning, then to the end), and an fp32
                checkpoint evaluates with --precision bf16
  no_alloc      BF_CHECK_ALLOC=1: no bf16 update after the first allocates
On a CPU without bf16 instructions (or a build without oneDNN) only `refused` runs, with the message the
real refusal gives, and the test exits 77 (ctest: skipped).
"""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, check, failures, finish, launcher, prepare, run, train_args, work_dir  # noqa: E402

WORK = work_dir("bf16_training")
COMMON = ("train.steps=40", "checkpoint.every=20", "checkpoint.keep=4", "train.log_every=5", "explore.steps=30")


def train(data, run_dir, ranks, *sets, env=None, resume=None, expect=0):
    cmd = launcher(ranks) + [EXE] + train_args(data, run_dir, *(COMMON + sets))
    if resume:
        cmd += ["--resume", resume]
    return run(cmd, env=dict(os.environ, **(env or {})), expect=expect)


def final_state(run_dir, step=40):
    with h5py.File(os.path.join(run_dir, "checkpoints", "step-%08d.h5" % step), "r") as f:
        out = {}
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) and
                     name.startswith(("model/", "optim/")) else None)
        prec = f["provenance"].attrs.get("precision", b"")
        prec = prec.decode() if isinstance(prec, bytes) else str(prec)
        return out, prec


def same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def names_features(text):
    return "avx512_bf16" in text and "amx_bf16" in text


def main():
    data = prepare(WORK)
    p = train(data, os.path.join(WORK, "refused"), 1, "train.precision=bf16", env={"BF_CPU_NO_BF16": "1"},
              expect=None)
    check("refused: bf16 on a CPU without bf16 instructions exits 1 naming avx512_bf16 and amx_bf16",
          p.returncode == 1 and (names_features(p.stderr) or "oneDNN" in p.stderr), p.stderr.strip()[-400:])
    probe = train(data, os.path.join(WORK, "probe"), 1, "train.precision=bf16", "train.steps=6",
                  "checkpoint.every=0", expect=None)
    if probe.returncode != 0:
        check("refused: the real refusal names the CPU features or the missing oneDNN",
              names_features(probe.stderr) or "lacks oneDNN" in probe.stderr, probe.stderr.strip()[-300:])
        if failures:
            finish(WORK)
        print("skipped: bf16 is not available here")
        sys.exit(77)

    a = os.path.join(WORK, "a")
    train(data, a, 1, "train.precision=bf16")
    train(data, os.path.join(WORK, "a2"), 1, "train.precision=bf16")
    sa, pa = final_state(a)
    check("twice: two bf16 runs end bitwise identical", same(sa, final_state(os.path.join(WORK, "a2"))[0]))
    check("provenance: /provenance/precision = bf16, weights stored as fp32",
          pa == "bf16" and all(v.dtype == np.float32 for k, v in sa.items() if k.startswith("model/")), pa)
    for ranks in (1, 2):
        full = a if ranks == 1 else os.path.join(WORK, "full2")
        if ranks == 2:
            train(data, full, 2, "train.precision=bf16")
        r = os.path.join(WORK, "resumed%d" % ranks)
        train(data, r, ranks, "train.precision=bf16", "train.stop_at=20")
        train(data, r, ranks, "train.precision=bf16", resume="auto")
        check("resume: bf16 stopped at 20 and resumed equals the uninterrupted run (%d rank%s)" %
              (ranks, "s" if ranks > 1 else ""), same(final_state(full)[0], final_state(r)[0]))
        if ranks == 2:
            sh = os.path.join(WORK, "sharded2")
            train(data, sh, 2, "train.precision=bf16", "dist.shard_optimizer=1")
            check("sharded: 2-rank bf16 sharded ends bitwise as unsharded (weights)",
                  same({k: v for k, v in final_state(full)[0].items() if k.startswith("model/")},
                       {k: v for k, v in final_state(sh)[0].items() if k.startswith("model/")}))

    f = os.path.join(WORK, "fp32")
    train(data, f, 1, "train.stop_at=20")
    p = train(data, f, 1, "train.precision=bf16", resume="auto")
    s20 = final_state(f, 20)[1]
    s40 = final_state(f, 40)[1]
    check("cross: an fp32 checkpoint resumes in bf16 (warned), provenance fp32 then bf16",
          s20 == "fp32" and s40 == "bf16" and "train.precision" in p.stderr, "%s -> %s" % (s20, s40))
    ck = os.path.join(f, "checkpoints", "step-%08d.h5" % 20)
    e32 = run([EXE, "eval", "--checkpoint", ck, "--data", data + "/test.h5", "--json"])
    e16 = run([EXE, "eval", "--checkpoint", ck, "--data", data + "/test.h5", "--json", "--precision", "bf16"])
    check("cross: eval --precision bf16 reads an fp32 checkpoint", e16.returncode == 0 and e32.returncode == 0)
    er = run([EXE, "eval", "--checkpoint", ck, "--data", data + "/test.h5", "--precision", "bf16"],
             env=dict(os.environ, BF_CPU_NO_BF16="1"), expect=None)
    check("refused: eval --precision bf16 without bf16 instructions exits 1 naming the features",
          er.returncode == 1 and names_features(er.stderr), er.stderr.strip()[-300:])

    p = train(data, os.path.join(WORK, "alloc"), 1, "train.precision=bf16", "train.micro_batch=3",
              env={"BF_CHECK_ALLOC": "1"}, expect=None)
    check("no_alloc: no bf16 update after the first allocates",
          p.returncode == 0 and "BF_CHECK_ALLOC: no update after the first allocated" in p.stderr,
          p.stderr.strip()[-400:])
    finish(WORK)


if __name__ == "__main__":
    main()
