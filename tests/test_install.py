"""`cmake --install BUILD --prefix P` gives a working installation: P/bin/budgetformer (every command's --help),
P/bin/bf-mpirun.sh running the installed program (a 2-rank training of configs/tiny.ini from
P/share/budgetformer/configs), the Python package under P/lib/python3/dist-packages (imported from there, it
loads that run's checkpoint), and the Slurm template P/share/budgetformer/launch/slurm.sbatch, whose run
directory is the same for a resubmitted job (another job id) and which finds the installed program on PATH
(srun replaced by a stub that records its arguments)."""
import glob
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import SRC, check, finish, run, work_dir  # noqa: E402

BUILD = os.environ["BF_BUILD_DIR"]
CMAKE = os.environ.get("BF_CMAKE", "cmake")
PY = os.environ.get("BF_PYTHON", "/usr/bin/python3")


def main():
    work = work_dir("install")
    P = os.path.join(work, "prefix")
    run([CMAKE, "--install", BUILD, "--prefix", P])
    exe = os.path.join(P, "bin", "budgetformer")
    p = subprocess.run([exe, "--help"], capture_output=True, text=True)
    check("P/bin/budgetformer --help works", p.returncode == 0 and "usage: budgetformer" in p.stdout, p.stderr)
    for cmd in ("prepare", "train", "eval", "predict", "inspect", "heads", "bench"):
        p = subprocess.run([exe, cmd, "--help"], capture_output=True, text=True)
        check("P/bin/budgetformer %s --help" % cmd, p.returncode == 0 and "usage:" in p.stdout, p.stderr)
    for f in ("bin/bf-mpirun.sh", "share/budgetformer/launch/slurm.sbatch", "share/budgetformer/launch/hostfile.example",
              "share/budgetformer/configs/wordnet-pos.ini", "share/doc/budgetformer/docs/MODEL.md",
              "lib/python3/dist-packages/budgetformer/model.py"):
        check("installed " + f, os.path.isfile(os.path.join(P, f)))

    # the wrapper runs the installed program
    data = os.path.join(work, "data")
    run([exe, "prepare", "--train", os.path.join(SRC, "tests/data/tiny/train.csv"),
         "--test", os.path.join(SRC, "tests/data/tiny/test.csv"), "--out", data, "--max-len", "24"])
    env = dict(os.environ)
    env.pop("BF_EXE", None)
    rd = os.path.join(work, "run")
    p = subprocess.run([os.path.join(P, "bin", "bf-mpirun.sh"), "-n", "2", "--", "train", "--config",
                        os.path.join(P, "share/budgetformer/configs/tiny.ini"), "--set", "data.train=%s/train.h5" % data,
                        "--set", "data.test=%s/test.h5" % data, "--set", "run.dir=" + rd, "--resume", "auto"],
                       capture_output=True, text=True, env=env, timeout=240)
    check("P/bin/bf-mpirun.sh -n 2 trains with P/bin/budgetformer", p.returncode == 0 and
          (" %s train " % exe) in p.stderr and glob.glob(os.path.join(rd, "checkpoints", "step-*.h5")),
          p.stderr[-1500:])

    # the Python package from the prefix
    ckpts = sorted(glob.glob(os.path.join(rd, "checkpoints", "step-*.h5")))
    code = ("import budgetformer, sys; m = budgetformer.load(sys.argv[1]); print(budgetformer.__file__); "
            "print(m.predict(['my phone battery'])[0]['label'])")
    penv = dict(os.environ, PYTHONPATH=os.path.join(P, "lib/python3/dist-packages"))
    p = subprocess.run([PY, "-c", code, ckpts[-1] if ckpts else "none"], capture_output=True, text=True, env=penv,
                       cwd=work)
    out = p.stdout.split("\n")
    check("the installed Python package imports from P and loads the checkpoint",
          p.returncode == 0 and out[0].startswith(P), p.stdout + p.stderr[-800:])

    # the Slurm template: same run directory after a resubmission, the installed program on PATH
    stub = os.path.join(work, "stub")
    os.makedirs(stub)
    with open(os.path.join(stub, "srun"), "w") as f:
        f.write('#!/bin/bash\nprintf "%s\\n" "$@" > "$SRUN_LOG"\n')
    os.chmod(os.path.join(stub, "srun"), 0o755)
    dirs = []
    for job in ("101", "202"):
        log = os.path.join(work, "srun-%s.log" % job)
        senv = dict(os.environ, PATH="%s:%s:%s" % (stub, os.path.join(P, "bin"), os.environ["PATH"]),
                    SLURM_JOB_ID=job, SLURM_JOB_NAME="pos", SRUN_LOG=log)
        senv.pop("BF_EXE", None)
        p = subprocess.run(["bash", os.path.join(P, "share/budgetformer/launch/slurm.sbatch")], capture_output=True,
                           text=True, env=senv, cwd=work, timeout=60)
        args = open(log).read().split("\n") if os.path.exists(log) else []
        dirs.append([a for a in args if a.startswith("run.dir=")])
        check("slurm.sbatch (job %s) runs the installed program with --resume auto" % job, p.returncode == 0 and
              exe in args and "auto" in args, p.stdout + p.stderr)
    check("slurm.sbatch: the same run.dir for a resubmitted job", dirs[0] == dirs[1] == ["run.dir=runs/pos-wordnet-pos"],
          str(dirs))
    finish(work)


if __name__ == "__main__":
    main()
