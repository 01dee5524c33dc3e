"""Preemption: a stop signal makes the run write one checkpoint and exit with status 75, and --resume auto
continues it exactly (docs/FAILURES.md).

Checks, each named in the output:
  wrapper_sigterm  2 ranks under launch/bf-mpirun.sh; SIGTERM to the wrapper (which passes SIGUSR1 to mpirun)
                   while training runs: exit status 75, exactly one checkpoint (checkpoint.every = 0), valid, at
                   the update where the ranks stopped; a second SIGTERM while that checkpoint is being written
                   (BF_FAULT=delay_in_save keeps the save open) is ignored and the save completes
  resume_exact     --resume auto on 2 ranks continues from that checkpoint: every rank's BF_TRACE lines after
                   the stop and log.h5 /metrics/loss over the whole run are bitwise those of an uninterrupted
                   2-rank run (both end at the same train.stop_at)
  provenance       the checkpoint written under mpirun names the MPI library in /provenance
  one_rank_sigint  1 rank without a launcher: SIGINT gives exit status 75 and a valid checkpoint; --resume auto
                   continues to the end with exit status 0
"""
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (EXE, SRC, Watched, check, checkpoint_names, finish, inspect, log_loss,  # noqa: E402
                    mpirun, prepare, progress_step, read_trace, run, sanitizer_clean, train_args, work_dir)

WRAPPER = os.path.join(SRC, "launch", "bf-mpirun.sh")
EX_PREEMPTED = 75
WORK = work_dir("faults_signal")


def part_wrapper(data):
    steps = "train.steps=4000"
    stopped = os.path.join(WORK, "stopped")
    env = dict(os.environ, BF_TRACE=os.path.join(WORK, "t-first"), BF_FAULT="delay_in_save:1500")
    w = Watched(["bash", WRAPPER, "-n", "2", "--bind", "none", "--exe", EXE, "--"] +
                train_args(data, stopped, steps, "train.log_every=50", "checkpoint.every=0"), env)
    seen = w.wait_for(lambda l: (progress_step(l) or 0) >= 100)
    if not seen:
        rc, out = w.finish()
        check("wrapper_sigterm", False, "no progress line at step >= 100 (exit %s):\n%s" % (rc, out[-2000:]))
        return None
    t0 = time.time()
    w.p.send_signal(signal.SIGTERM)
    saving = w.wait_for(lambda l: "stopping after update" in l, timeout=60)
    if saving:
        w.p.send_signal(signal.SIGTERM)  # while the save is held open by delay_in_save
    ignored = w.wait_for(lambda l: "another stop signal" in l, timeout=60)
    rc, out = w.finish()
    names = checkpoint_names(stopped)
    stop_step = int(saving.split("after update")[1].split()[0]) if saving else -1
    check("wrapper_sigterm: exit status 75 after SIGTERM to the wrapper", rc == EX_PREEMPTED,
          "exit %s after %.1f s" % (rc, time.time() - t0))
    check("wrapper_sigterm: the second SIGTERM during the save is ignored", saving is not None and ignored is not None,
          out[-1500:] if not (saving and ignored) else "")
    check("wrapper_sigterm: exactly one checkpoint, at the update where the ranks stopped",
          names == ["step-%08d.h5" % stop_step], "%s, stopped after update %d" % (names, stop_step))
    check("wrapper_sigterm: no sanitizer report", sanitizer_clean(out))
    if len(names) != 1:
        return None
    irc, j, ierr = inspect(os.path.join(stopped, "checkpoints", names[0]))
    check("wrapper_sigterm: the checkpoint is valid (inspect --json)",
          irc == 0 and j["checksum"]["status"] == "valid" and j["step"] == stop_step,
          ierr.strip() if irc else "")
    if j:
        mpi = j["provenance"].get("mpi_library_version", "")
        check("provenance: mpi_library_version names the MPI library", "MPI" in mpi and "not initialised" not in mpi,
              mpi)
    return stopped, stop_step


def part_resume(data, stopped, stop_step):
    end = "train.stop_at=%d" % (stop_step + 40)
    steps = "train.steps=4000"
    straight = os.path.join(WORK, "straight")
    env = dict(os.environ, BF_TRACE=os.path.join(WORK, "t-straight"))
    run(mpirun(2) + [EXE] + train_args(data, straight, steps, "train.log_every=50", end), env)
    env = dict(os.environ, BF_TRACE=os.path.join(WORK, "t-resumed"))
    p = run(mpirun(2) + [EXE] + train_args(data, stopped, steps, "train.log_every=50", end) + ["--resume", "auto"],
            env)
    check("resume_exact: --resume auto starts from the stop checkpoint",
          "resuming from %s/checkpoints/step-%08d.h5" % (stopped, stop_step) in p.stderr)
    full, first, resumed = (read_trace(os.path.join(WORK, t), 2) for t in ("t-straight", "t-first", "t-resumed"))
    for r in range(2):
        check("resume_exact: rank %d trace before the stop equals the uninterrupted run's" % r,
              first[r] == full[r][:len(first[r])] and len(first[r]) == stop_step,
              "%d lines, stopped at %d" % (len(first[r]), stop_step))
        check("resume_exact: rank %d trace after the resume is bitwise the uninterrupted run's (40 updates)" % r,
              resumed[r] == full[r][stop_step:] and len(resumed[r]) == 40)
    sa, la = log_loss(straight)
    sb, lb = log_loss(stopped)
    check("resume_exact: log.h5 /metrics/loss bitwise equal over all %d updates" % len(sa),
          np.array_equal(sa, sb) and np.array_equal(la.view(np.uint32), lb.view(np.uint32)),
          "steps %d vs %d" % (len(sa), len(sb)))


def part_one_rank(data):
    run_dir = os.path.join(WORK, "one")
    w = Watched([EXE] + train_args(data, run_dir, "train.steps=100000", "train.log_every=50"), dict(os.environ))
    if not w.wait_for(lambda l: (progress_step(l) or 0) >= 50):
        rc, out = w.finish()
        check("one_rank_sigint", False, "no progress line (exit %s): %s" % (rc, out[-1500:]))
        return
    w.p.send_signal(signal.SIGINT)
    rc, out = w.finish()
    names = checkpoint_names(run_dir)
    check("one_rank_sigint: exit status 75 and one checkpoint", rc == EX_PREEMPTED and len(names) == 1,
          "exit %s, %s" % (rc, names))
    if len(names) != 1:
        return
    step = int(names[0][5:-3])
    irc, j, _ = inspect(os.path.join(run_dir, "checkpoints", names[0]))
    check("one_rank_sigint: the checkpoint is valid and says MPI was not initialised",
          irc == 0 and j["checksum"]["status"] == "valid" and
          j["provenance"].get("mpi_library_version") == "MPI not initialised")
    p = run([EXE] + train_args(data, run_dir, "train.steps=%d" % (step + 20), "train.log_every=50") +
            ["--resume", "auto"])
    check("one_rank_sigint: --resume auto finishes the run (exit 0)",
          "resuming from" in p.stderr and "step-%08d.h5" % (step + 20) in p.stderr)


def main():
    data = prepare(WORK)
    got = part_wrapper(data)
    if got:
        part_resume(data, *got)
    part_one_rank(data)
    finish(WORK)


if __name__ == "__main__":
    main()
