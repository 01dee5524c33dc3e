"""Outputs never overwrite inputs (docs/FAILURES.md, "Outputs naming inputs"): every command refuses, with exit
status 2 and a message naming both, an output that is one of its inputs, by name, through a symbolic link or a
hard link (compared by device and inode), and the input keeps its bytes.

  eval_records_ckpt     eval --records naming the --checkpoint
  eval_records_symlink  eval --records a symbolic link to the --data file
  eval_records_digest   eval --records a hard link to the checkpoint's digest file
  prepare_out_link      prepare --out DIR where DIR/train.h5 is a symbolic link to the --train CSV
  train_config          train --config run.dir/config.ini (it would be replaced by the resolved configuration)
  train_log_hardlink    train with run.dir/log.h5 a hard link to data.train
"""
import hashlib
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, TIMEOUT, TINY, check, finish, prepare, run, train_args, work_dir  # noqa: E402

WORK = work_dir("outputs_inputs")


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def refused(name, args, protected, words):
    before = {p: digest(p) for p in protected}
    p = subprocess.run([EXE] + args, capture_output=True, text=True, timeout=TIMEOUT)
    check("%s: exit status 2 naming output and input" % name,
          p.returncode == 2 and "would overwrite that input" in p.stderr and all(w in p.stderr for w in words),
          "exit %d: %s" % (p.returncode, p.stderr[-500:]))
    check("%s: the input is unchanged" % name, all(digest(q) == h for q, h in before.items()))


def main():
    data = prepare(WORK)
    rd = os.path.join(WORK, "run")
    run([EXE] + train_args(data, rd, "train.steps=10"))
    ck = os.path.join(rd, "checkpoints", "step-00000010.h5")
    side = os.path.join(rd, "checkpoints", ".step-00000010.h5.sha256")
    test = os.path.join(data, "test.h5")
    ev = ["eval", "--checkpoint", ck, "--data", test, "--records"]
    refused("eval_records_ckpt", ev + [ck], [ck], ["--records", "--checkpoint"])
    link = os.path.join(WORK, "records-link.h5")
    os.symlink(test, link)
    refused("eval_records_symlink", ev + [link], [test], ["a symbolic link to the input --data"])
    hard = os.path.join(WORK, "records-hard.h5")
    os.link(side, hard)
    refused("eval_records_digest", ev + [hard], [side], ["digest file"])
    out = os.path.join(WORK, "prep")
    os.makedirs(out)
    csv = os.path.join(WORK, "train.csv")
    with open(os.path.join(TINY, "train.csv"), "rb") as f, open(csv, "wb") as g:
        g.write(f.read())
    os.symlink(csv, os.path.join(out, "train.h5"))
    refused("prepare_out_link", ["prepare", "--train", csv, "--test", os.path.join(TINY, "test.csv"), "--out", out],
            [csv], ["--out", "--train"])
    cfg = os.path.join(rd, "config.ini")
    args = train_args(data, rd)
    args[args.index("--config") + 1] = cfg
    refused("train_config", args + ["--resume", "auto"], [cfg], ["run.dir/config.ini", "--config"])
    rd2 = os.path.join(WORK, "run2")
    os.makedirs(rd2)
    train_h5 = os.path.join(data, "train.h5")
    os.link(train_h5, os.path.join(rd2, "log.h5"))
    refused("train_log_hardlink", train_args(data, rd2) + ["--resume", "auto"], [train_h5],
            ["run.dir/log.h5", "data.train", "hard link"])
    finish(WORK)


if __name__ == "__main__":
    main()
