"""tools/plot_heads.py on a tiny training run (+ eval --records): every PNG it reports exists, is non-empty and
starts with the PNG signature; with --records it writes all five plots, with the log alone four (among them
budget_diagnostics.png from the /heads diagnostics histograms); a log written before the diagnostics (the
datasets deleted in a copy) still plots, without budget_diagnostics.png."""
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, SRC, check_quiet as check, report  # noqa: E402

DATA = os.environ["BF_TEST_DATA"]
PY = os.environ.get("BF_PYTHON", "/usr/bin/python3")
WORK = os.path.join(os.environ["BF_WORK"], "test_plot_heads")
SCRIPT = os.path.join(SRC, "tools", "plot_heads.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if p.returncode != 0:
        print(p.stdout, p.stderr)
        sys.exit("%s failed with exit status %d" % (" ".join(cmd[:3]), p.returncode))
    return p.stdout


def check_pngs(stdout, out_dir, expected):
    listed = [line.strip() for line in stdout.splitlines() if line.strip()]
    names = sorted(os.path.basename(p) for p in listed)
    check(names == sorted(expected), "the script lists %s, expected %s" % (names, sorted(expected)))
    for name in expected:
        path = os.path.join(out_dir, name)
        ok = os.path.isfile(path) and os.path.getsize(path) > 1000
        check(ok, "%s exists and is not empty" % path)
        if ok:
            with open(path, "rb") as f:
                check(f.read(8) == PNG_SIGNATURE, "%s starts with the PNG signature" % path)


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    data_dir, run_dir = os.path.join(WORK, "data"), os.path.join(WORK, "run")
    run([EXE, "prepare", "--train", os.path.join(DATA, "tiny", "train.csv"),
         "--test", os.path.join(DATA, "tiny", "test.csv"), "--out", data_dir, "--max-len", "24"])
    run([EXE, "train", "--config", os.path.join(SRC, "configs", "tiny.ini"),
         "--set", "data.train=" + os.path.join(data_dir, "train.h5"),
         "--set", "data.test=" + os.path.join(data_dir, "test.h5"),
         "--set", "run.dir=" + run_dir, "--set", "heads.every=5"])
    ckpts = sorted(n for n in os.listdir(os.path.join(run_dir, "checkpoints")) if re.match(r"^step-\d{8}\.h5$", n))
    check(len(ckpts) > 0, "the run saved a checkpoint")
    records = os.path.join(WORK, "records.h5")
    run([EXE, "eval", "--checkpoint", os.path.join(run_dir, "checkpoints", ckpts[-1]),
         "--data", os.path.join(data_dir, "test.h5"), "--records", records])
    log = os.path.join(run_dir, "log.h5")

    out_all = os.path.join(WORK, "plots-records")
    stdout = run([PY, SCRIPT, log, "--records", records, "--data", os.path.join(data_dir, "test.h5"),
                  "--out", out_all])
    check_pngs(stdout, out_all, ["head_usage.png", "eps_budget.png", "budget_by_class.png", "budget_by_length.png",
                                 "budget_diagnostics.png"])

    out_log = os.path.join(WORK, "plots-log")
    stdout = run([PY, SCRIPT, log, "--out", out_log])
    check_pngs(stdout, out_log, ["head_usage.png", "eps_budget.png", "budget_by_class.png", "budget_diagnostics.png"])

    import h5py
    old = os.path.join(WORK, "old-log.h5")
    shutil.copyfile(log, old)
    with h5py.File(old, "r+") as f:
        for k in ("/heads/logit_hist", "/heads/khat_hist", "/heads/mass_hist", "/metrics/budget_lambda"):
            del f[k]
    out_old = os.path.join(WORK, "plots-old")
    stdout = run([PY, SCRIPT, old, "--out", out_old])
    check_pngs(stdout, out_old, ["head_usage.png", "eps_budget.png", "budget_by_class.png"])

    # A records file given as the log is refused with a message naming it.
    p = subprocess.run([PY, SCRIPT, records, "--out", os.path.join(WORK, "bad")], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    check(p.returncode == 1 and records in p.stderr, "a records file as LOG.h5: exit 1 naming it (%d, %s)"
          % (p.returncode, p.stderr.strip()))

    # Outputs that cannot be written: one line naming the path, exit 1, no traceback.
    blocker = os.path.join(WORK, "a-file")
    with open(blocker, "w") as f:
        f.write("not a directory\n")
    taken = os.path.join(WORK, "plots-taken")
    os.makedirs(os.path.join(taken, "head_usage.png"))  # a directory where the PNG would go
    for out, path in ((os.path.join(blocker, "plots"), os.path.join(blocker, "plots")),
                      (taken, os.path.join(taken, "head_usage.png"))):
        p = subprocess.run([PY, SCRIPT, log, "--out", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=120)
        check(p.returncode == 1 and path in p.stderr and "Traceback" not in p.stderr and
              len(p.stderr.strip().splitlines()) == 1,
              "an unwritable --out %s: exit 1, one line naming %s (%d, %s)" % (out, path, p.returncode,
                                                                               p.stderr.strip()[-300:]))

    report()


if __name__ == "__main__":
    main()
