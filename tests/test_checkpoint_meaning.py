"""Checkpoints that parse and pass their digest but hold a state training cannot have produced are refused on
load, are never counted as kept by rotation, and never written; checkpoint names past step 99,999,999
(docs/FAILURES.md, "State that loads but is wrong"; docs/CHECKPOINTS.md).

A base run (1 rank) stops at step 20 with checkpoints 5, 10, 15, 20. Each case copies it, changes step-20 with
h5py and rewrites its digest (so only the meaning check can speak):
  neg_v          one AdamW second moment /optim/v < 0 (finite: it used to load and put NaN into weights)
  dup_vocab      two /vocab entries equal
  dup_label      two /label_names equal
  optim_t        /optim attribute t differs from /state step
  headstats_attr /headstats attribute n_layers differs from /model's
  counters       /state nonfinite_run above skipped_steps
  eps_range      /coordinator eps_start 1.5
  neg_count      a negative head-usage count in /headstats/block
For each: `--resume FILE` exits 1 naming the file and the field; `--resume auto` skips it naming it and
resumes from step-15.
  rotation       (neg_v) the resumed run stops at 18 with checkpoint.keep = 1: rotation keeps step-18 (the newest
                 a resume accepts) and leaves the refused step-20 as evidence; the next --resume auto takes 18
  eval_dup_vocab eval refuses the dup_vocab checkpoint naming /vocab
  large_steps    checkpoints of steps 99,999,999 (old 8-digit name) and 100,000,000 (9 digits): --resume auto takes
                 the numerically newest, trains to 100,000,002 and writes step-100000002.h5, which the next
                 --resume auto takes
"""
import hashlib
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (EXE, TIMEOUT, check, checkpoint_names, finish, inspect, prepare, train_args,  # noqa: E402
                    work_dir)

WORK = work_dir("checkpoint_meaning")


def ck(d, step):
    return "%s/checkpoints/step-%08d.h5" % (d, step)


def write_sidecar(path):
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    side = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".sha256")
    with open(side, "w") as f:
        f.write("%s  %s\n" % (digest, os.path.basename(path)))


def train(data, d, *sets, resume=None):
    cmd = [EXE] + train_args(data, d, "data.test=", "train.steps=30", "checkpoint.every=5", *sets)
    if resume:
        cmd += ["--resume", resume]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)


def edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)
    write_sidecar(path)


def set_strings(name, i, j):
    def fn(f):
        v = [x for x in f[name][()]]
        v[i] = v[j]
        del f[name]
        f.create_dataset(name, data=v, dtype=h5py.string_dtype("utf-8"))
    return fn


def neg_v(f):
    v = f["optim/v"]
    v[3] = -1e-4


def neg_count(f):
    b = f["headstats/block"]
    b[0] = -1


CASES = [
    ("neg_v", neg_v, ["/optim/v[3]", "negative"]),
    ("dup_vocab", set_strings("vocab", 5, 4), ["/vocab", "twice"]),
    ("dup_label", set_strings("label_names", 1, 0), ["/label_names", "twice"]),
    ("optim_t", lambda f: f["optim"].attrs.modify("t", np.int64(19)), ["/optim attribute t = 19", "step = 20"]),
    ("headstats_attr", lambda f: f["headstats"].attrs.modify("n_layers", np.int64(3)),
     ["/headstats attribute n_layers = 3"]),
    ("counters", lambda f: f["state"].attrs.modify("nonfinite_run", np.int64(5)), ["nonfinite_run = 5"]),
    ("eps_range", lambda f: f["coordinator"].attrs.modify("eps_start", 1.5), ["eps_start = 1.5", "[0, 1]"]),
    ("neg_count", neg_count, ["/headstats/block[0] = -1"]),
]


def case(data, base, name, fn, words):
    d = os.path.join(WORK, name)
    shutil.copytree(base, d)
    target = ck(d, 20)
    edit(target, fn)
    p = train(data, d, resume=target)
    check("%s: --resume FILE exits 1 naming the file and the field" % name,
          p.returncode == 1 and target in p.stderr and all(w in p.stderr for w in words), p.stderr[-700:])
    p = train(data, d, "train.stop_at=18", "checkpoint.keep=1", resume="auto")
    check("%s: --resume auto skips it with the reason and resumes from step 15" % name,
          p.returncode == 0 and "skipping %s" % target in p.stderr and all(w in p.stderr for w in words) and
          "resuming from %s" % ck(d, 15) in p.stderr, p.stderr[-900:])
    if name == "neg_v":
        names = checkpoint_names(d)
        check("rotation: keep = 1 keeps step-18 (the newest a resume accepts) and the refused step-20",
              names == ["step-00000018.h5", "step-00000020.h5"], str(names))
        p = train(data, d, "train.stop_at=19", resume="auto")
        check("rotation: the next --resume auto continues from step-18",
              p.returncode == 0 and "resuming from %s" % ck(d, 18) in p.stderr, p.stderr[-600:])
    if name == "dup_vocab":
        p = subprocess.run([EXE, "eval", "--checkpoint", target, "--data", data + "/test.h5"], capture_output=True,
                           text=True, timeout=TIMEOUT)
        check("eval_dup_vocab: eval refuses it naming /vocab", p.returncode == 1 and "/vocab" in p.stderr and
              "twice" in p.stderr, p.stderr[-500:])


def move_to_step(src, dst, step):
    shutil.copyfile(src, dst)

    def fn(f):
        s = f["state"].attrs
        b, n = int(s["batch_size"]), int(s["n_train"])
        for k, v in (("step", step), ("stream_position", step * b), ("epoch", step * b // n),
                     ("epoch_position", step * b % n), ("lr_schedule_step", step)):
            s.modify(k, np.int64(v))
        f["optim"].attrs.modify("t", np.int64(step))
    edit(dst, fn)


def large_steps(data, base):
    d = os.path.join(WORK, "large")
    os.makedirs(d + "/checkpoints")
    move_to_step(ck(base, 20), ck(d, 99999999), 99999999)
    move_to_step(ck(base, 20), "%s/checkpoints/step-100000000.h5" % d, 100000000)
    big = ["train.steps=1000000000", "checkpoint.every=0"]
    p = train(data, d, *big, "train.stop_at=100000002", resume="auto")
    check("large_steps: --resume auto takes step-100000000.h5 over step-99999999.h5 (numeric order)",
          p.returncode == 0 and "resuming from %s/checkpoints/step-100000000.h5" % d in p.stderr, p.stderr[-700:])
    new = "%s/checkpoints/step-100000002.h5" % d
    rc, j, err = inspect(new)
    check("large_steps: step-100000002.h5 is written and valid",
          rc == 0 and j["checksum"]["status"] == "valid" and j["step"] == 100000002, err[-300:])
    p = train(data, d, *big, "train.stop_at=100000003", resume="auto")
    check("large_steps: the next --resume auto takes step-100000002.h5",
          p.returncode == 0 and "resuming from %s" % new in p.stderr, p.stderr[-500:])


def main():
    data = prepare(WORK)
    base = os.path.join(WORK, "base")
    p = train(data, base, "train.stop_at=20", "checkpoint.keep=10")
    if not check("base run: checkpoints 5, 10, 15, 20", p.returncode == 0 and
                 checkpoint_names(base) == ["step-%08d.h5" % s for s in (5, 10, 15, 20)], p.stderr[-800:]):
        finish(WORK)
    for name, fn, words in CASES:
        case(data, base, name, fn, words)
    large_steps(data, base)
    finish(WORK)


if __name__ == "__main__":
    main()
