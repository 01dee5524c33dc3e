"""Scheduler stop semantics (docs/FAILURES.md, "SIGTERM to every process of the job"): PBS, SGE and LSF stop a
job by sending SIGTERM to all of its processes at once: launcher, mpirun and ranks. Under launch/bf-mpirun.sh
that gives one agreed checkpoint and exit status 75, even when the checkpoint takes longer than Open MPI's
default 1 s kill timeout (BF_FAULT=delay_in_save:2500 holds the save open 2.5 s).

  jobterm          2 ranks under bf-mpirun.sh; SIGTERM to the wrapper, mpirun and both ranks together: exit
                   status 75 within 30 s, exactly one checkpoint, valid, at the update where the ranks stopped
  jobterm_resume   --resume auto continues from it
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (EXE, SRC, Watched, check, checkpoint_names, descendants, finish, prepare,  # noqa: E402
                    progress_step, rank_pids, run, train_args, valid_steps, work_dir)

WORK = work_dir("faults_jobterm")
WRAPPER = os.path.join(SRC, "launch", "bf-mpirun.sh")


def main():
    data = prepare(WORK)
    d = os.path.join(WORK, "run")
    args = train_args(data, d, "train.steps=1000000", "train.log_every=20", "data.test=")
    w = Watched(["bash", WRAPPER, "-n", "2", "--bind", "none", "--exe", EXE, "--"] + args,
                dict(os.environ, BF_FAULT="delay_in_save:2500"))
    if not w.wait_for(lambda l: (progress_step(l) or 0) >= 40):
        check("jobterm", False, "no progress line: %s" % w.finish()[1][-800:])
        finish(WORK)
    job = [w.p.pid] + descendants(w.p.pid)
    ranks = rank_pids(w.p.pid)
    check("jobterm: found the 2 ranks among %d processes" % len(job), sorted(ranks) == [0, 1], str(ranks))
    t0 = time.time()
    for pid in job:  # as the scheduler does: every process of the job, at once
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    rc, out = w.finish(timeout=120)
    dt = time.time() - t0
    steps, bad = valid_steps(d)
    check("jobterm: exit status 75 within 30 s", rc == 75 and dt < 30, "exit %s after %.1f s\n%s" % (rc, dt, out[-1500:]))
    check("jobterm: exactly one checkpoint, valid", len(steps) == 1 and not bad and len(checkpoint_names(d)) == 1,
          "%s %s" % (steps, bad))
    if steps:
        p = run(["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", EXE] +
                train_args(data, d, "train.steps=1000000", "train.stop_at=%d" % (steps[0] + 5), "data.test=") +
                ["--resume", "auto"])
        check("jobterm_resume: --resume auto continues from it",
              "resuming from %s/checkpoints/step-%08d.h5" % (d, steps[0]) in p.stderr, p.stderr[-500:])
    finish(WORK)


if __name__ == "__main__":
    main()
