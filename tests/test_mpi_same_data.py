"""Same data on every rank (docs/FAILURES.md, "Different data on different ranks"): two ranks whose data.train
path names different contents (here: each rank runs in its own working directory, where data/train.h5 differs
in one label) are refused at load: exit status 1 and a message naming data.train, the path and the rank; no
update is made. With the same contents in both directories the run trains.
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import CONFIG, EXE, TIMEOUT, TINY, check, finish, mpirun, run, work_dir  # noqa: E402

WORK = work_dir("mpi_same_data")


def prep(where, csv):
    run([EXE, "prepare", "--train", csv, "--test", os.path.join(TINY, "test.csv"), "--out",
         os.path.join(where, "data"), "--max-len", "24"])


def two_ranks(a, b, run_dir):
    args = [EXE, "train", "--config", CONFIG, "--set", "data.train=data/train.h5", "--set", "data.test=",
            "--set", "train.steps=8", "--set", "run.dir=" + run_dir]
    mp = mpirun(1)  # the first rank's options; MPMD: one rank per working directory
    cmd = mp[:1] + ["--oversubscribe", "--bind-to", "none", "-np", "1", "-wdir", a] + args + \
        [":", "-np", "1", "-wdir", b] + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)


def main():
    a, b, same = (os.path.join(WORK, n) for n in ("a", "b", "same"))
    for d in (a, b, same):
        os.makedirs(d)
    prep(a, os.path.join(TINY, "train.csv"))
    shutil.copytree(os.path.join(a, "data"), os.path.join(same, "data"))
    with open(os.path.join(TINY, "train.csv")) as f:
        lines = f.read().splitlines(True)
    # one row gets another row's label (tokens and vocabulary unchanged)
    first_label = lines[0].split(",", 1)[0]
    for i in range(1, len(lines)):
        lab, rest = lines[i].split(",", 1)
        if lab != first_label:
            lines[i] = first_label + "," + rest
            break
    csv = os.path.join(b, "train.csv")
    with open(csv, "w") as f:
        f.writelines(lines)
    prep(b, csv)
    p = two_ranks(a, b, os.path.join(WORK, "run-diff"))
    check("mismatch: exit status 1 naming data.train, the path and rank 1",
          p.returncode == 1 and "data.train = data/train.h5 on rank 1" in p.stderr and "other data than on rank 0"
          in p.stderr, "exit %d: %s" % (p.returncode, p.stderr[-800:]))
    check("mismatch: no update was made", "step " not in p.stderr and
          not os.path.exists(os.path.join(WORK, "run-diff", "checkpoints")))
    p = two_ranks(a, same, os.path.join(WORK, "run-same"))
    check("same contents: the 2-rank run trains", p.returncode == 0 and "step-00000008.h5" in p.stderr,
          p.stderr[-800:])
    finish(WORK)


if __name__ == "__main__":
    main()
