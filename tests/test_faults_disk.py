"""Disk full during a checkpoint save: the save fails cleanly, the previous checkpoint stays valid, and the run
stops or goes on as checkpoint.on_error says (docs/FAILURES.md).

Checks, each named in the output:
  enospc_stop      BF_FAULT=enospc_in_save:20 (the data write of the save of update 20 fails with ENOSPC half
                   way), checkpoint.on_error = stop: exit status 1, the message names the file, "No space left on
                   device", checkpoint.on_error and the intact checkpoint; step-00000010.h5 is valid, nothing of
                   the failed save is left; --resume auto continues from step 10 to the end
  enospc_continue  the same with checkpoint.on_error = continue: a warning, training goes on, the checkpoints of
                   updates 10 and 30 are written and valid, exit status 0
  tmpfs_full       a real full disk: run.dir on a small tmpfs (mount -t tmpfs -o size=...; skipped with a note
                   when mounting is not allowed): the save that does not fit fails with "No space left on
                   device", exit status 1; every step-*.h5 there is valid, no temporary file is left, and a copy
                   of the run directory continues with --resume auto from the newest one
"""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (EXE, check, checkpoint_files, finish, prepare, run, train_args, valid_steps,  # noqa: E402
                    work_dir)

WORK = work_dir("faults_disk")
SETS = ("train.steps=30", "checkpoint.every=10", "checkpoint.keep=5")


def part_enospc_stop(data):
    run_dir = os.path.join(WORK, "stop")
    p = run([EXE] + train_args(data, run_dir, *SETS), dict(os.environ, BF_FAULT="enospc_in_save:20"), expect=1)
    err = p.stderr
    check("enospc_stop: exit status 1 with the reason",
          "No space left on device" in err and ".step-00000020.h5.tmp" in err and
          "checkpoint.on_error = stop" in err and "step-00000010.h5, is intact" in err, err.strip()[-600:])
    steps, bad = valid_steps(run_dir)
    check("enospc_stop: step-00000010.h5 is valid and nothing of the failed save is left",
          steps == [10] and not bad and checkpoint_files(run_dir) == [".step-00000010.h5.sha256", "step-00000010.h5"],
          str(checkpoint_files(run_dir)))
    p = run([EXE] + train_args(data, run_dir, *SETS) + ["--resume", "auto"])
    check("enospc_stop: --resume auto continues from step 10 to the end",
          "resuming from %s/checkpoints/step-00000010.h5" % run_dir in p.stderr and valid_steps(run_dir)[0][-1] == 30)


def part_enospc_continue(data):
    run_dir = os.path.join(WORK, "continue")
    p = run([EXE] + train_args(data, run_dir, *SETS, "checkpoint.on_error=continue"),
            dict(os.environ, BF_FAULT="enospc_in_save:20"), expect=0)
    check("enospc_continue: a warning naming the cause, and training goes on",
          "warning: the periodic checkpoint failed" in p.stderr and "No space left on device" in p.stderr and
          "checkpoint.on_error = continue" in p.stderr and "trained 30 steps" in p.stderr, p.stderr.strip()[-600:])
    steps, bad = valid_steps(run_dir)
    check("enospc_continue: checkpoints 10 and 30 are valid, 20 was not written", steps == [10, 30] and not bad,
          str(checkpoint_files(run_dir)))


def part_tmpfs(data):
    # Size: the configuration, the log and three checkpoints (with room for one being written), not more.
    ref = os.path.join(WORK, "ref")
    run([EXE] + train_args(data, ref, "train.steps=10"))
    size = 3 * os.path.getsize(os.path.join(ref, "checkpoints", "step-00000010.h5")) + 64 * 1024
    mnt = os.path.join(WORK, "tmpfs")
    os.makedirs(mnt)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % size, "tmpfs", mnt], capture_output=True, text=True)
    if m.returncode != 0:
        print("note tmpfs_full skipped: cannot mount a tmpfs here (%s); enospc_* cover the same path by injection"
              % m.stderr.strip())
        return
    try:
        run_dir = os.path.join(mnt, "run")
        p = run([EXE] + train_args(data, run_dir, "train.steps=200", "checkpoint.every=10", "checkpoint.keep=100"),
                expect=1)
        check("tmpfs_full: the run stops with 'No space left on device'",
              "No space left on device" in p.stderr or "disk full" in p.stderr, p.stderr.strip()[-600:])
        steps, bad = valid_steps(run_dir)
        check("tmpfs_full: every step-*.h5 on the full disk is valid, no temporary file is left",
              steps and not bad and not [n for n in checkpoint_files(run_dir) if n.endswith(".tmp")],
              "valid %s, others %s, files %s" % (steps, bad, checkpoint_files(run_dir)))
        copy = os.path.join(WORK, "tmpfs-copy")
        shutil.copytree(run_dir, copy)
    finally:
        subprocess.run(["umount", mnt], capture_output=True)
    if steps:
        p = run([EXE] + train_args(data, copy, "train.steps=200", "train.stop_at=%d" % (steps[-1] + 10),
                                   "checkpoint.every=10") + ["--resume", "auto"])
        check("tmpfs_full: a copy of the run directory continues from the newest checkpoint (step %d)" % steps[-1],
              "resuming from %s/checkpoints/step-%08d.h5" % (copy, steps[-1]) in p.stderr)


def main():
    data = prepare(WORK)
    part_enospc_stop(data)
    part_enospc_continue(data)
    part_tmpfs(data)
    finish(WORK)


if __name__ == "__main__":
    main()
