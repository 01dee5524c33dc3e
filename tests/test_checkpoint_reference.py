"""A model trained a few hundred steps by the C trainer and evaluated with `eval --records` gives the same
logits (2e-3), budgets and head masks as the independent PyTorch reference loading its checkpoint with h5py.
Runs a learned-budget model (with exploration during training) and a fixed-budget model."""
import glob
import os
import shutil
import subprocess
import sys

EXE = os.environ["BF_EXE"]
SRC = os.environ["BF_SOURCE_DIR"]
WORK = os.path.join(os.environ["BF_WORK"], "checkpoint_reference")


def run(*args):
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(args)}\n{p.stdout}\n{p.stderr}")
    return p


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    data = os.path.join(WORK, "data")
    run(EXE, "prepare", "--train", f"{SRC}/tests/data/tiny/train.csv", "--test", f"{SRC}/tests/data/tiny/test.csv",
        "--out", data, "--max-len", "24")
    failures = 0
    for name, extra in (("learned", []), ("fixed", ["--set", "model.fixed_budget=2"])):
        rundir = os.path.join(WORK, name)
        run(EXE, "train", "--config", f"{SRC}/configs/tiny.ini", "--set", f"data.train={data}/train.h5",
            "--set", f"data.test={data}/test.h5", "--set", f"run.dir={rundir}", "--set", "train.steps=300",
            "--set", "explore.steps=150", *extra)
        ckpt = sorted(glob.glob(f"{rundir}/checkpoints/step-*.h5"))[-1]
        for split in ("train", "test"):
            rec = os.path.join(WORK, f"{name}-{split}-records.h5")
            run(EXE, "eval", "--checkpoint", ckpt, "--data", f"{data}/{split}.h5", "--records", rec)
            p = subprocess.run([sys.executable, f"{SRC}/tests/reference/compare_records.py", ckpt,
                                f"{data}/{split}.h5", rec, "--min-agree", "0.999"], capture_output=True, text=True)
            print(f"{name}/{split}: {p.stdout.strip()}")
            if p.returncode != 0:
                print(p.stderr)
                failures += 1
    print(f"{failures} of 4 comparisons disagree")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
