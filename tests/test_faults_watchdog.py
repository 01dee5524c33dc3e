"""The watchdog (docs/FAILURES.md, "A rank that stops"): a rank that stops (SIGSTOP here; a frozen node or a stuck
file system alike) no longer hangs the job. With dist.timeout = 3 the other rank's collective gives up, a roll
call names the rank that did not arrive and the step, and the job ends with a non-zero status; a stop signal sent
while waiting is noted; the checkpoints written so far are valid and --resume auto continues.

  watchdog_fires   2 ranks, rank 1 SIGSTOPped after update 20: the job ends within 30 s, the message names
                   "rank 1 of 2 did not arrive" and the step
  stop_noted       SIGUSR1 to rank 0 while it waits: the note says the stop takes effect when the ranks arrive
  resume           the checkpoints are valid; --resume auto on 2 ranks continues from the newest
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (EXE, Watched, check, finish, mpirun, prepare, progress_step, rank_pids, run,  # noqa: E402
                    train_args, valid_steps, work_dir)

WORK = work_dir("faults_watchdog")


def main():
    data = prepare(WORK)
    d = os.path.join(WORK, "run")
    args = train_args(data, d, "train.steps=1000000", "train.log_every=20", "checkpoint.every=10",
                      "dist.timeout=3")
    w = Watched(mpirun(2) + [EXE] + args, dict(os.environ))
    if not w.wait_for(lambda l: (progress_step(l) or 0) >= 20):
        check("watchdog_fires", False, "no progress line: %s" % w.finish()[1][-800:])
        finish(WORK)
    pids = rank_pids(w.p.pid)
    if not check("the ranks' pids are found", sorted(pids) == [0, 1], str(pids)):
        w.p.kill()
        finish(WORK)
    os.kill(pids[1], signal.SIGSTOP)
    t0 = time.time()
    time.sleep(1.5)
    os.kill(pids[0], signal.SIGUSR1)
    rc, out = w.finish(timeout=60)
    dt = time.time() - t0
    try:
        os.kill(pids[1], signal.SIGKILL)  # in case the launcher left it stopped
    except ProcessLookupError:
        pass
    check("watchdog_fires: the job ends within 30 s with a non-zero status", rc != 0 and dt < 30,
          "exit %s after %.1f s" % (rc, dt))
    check("watchdog_fires: the message names the step and rank 1 as the one that did not arrive",
          "watchdog:" in out and "at step" in out and "rank 1 of 2 did not arrive" in out, out[-1500:])
    check("stop_noted: the stop request while waiting is noted",
          "a stop was requested while" in out and "takes effect when they arrive" in out, out[-1500:])
    steps, bad = valid_steps(d)
    check("resume: every checkpoint is valid", steps and not bad, "%s %s" % (steps, bad))
    p = run(mpirun(2) + [EXE] + train_args(data, d, "train.steps=1000000", "train.stop_at=%d" % (max(steps) + 5)) +
            ["--resume", "auto"])
    check("resume: --resume auto on 2 ranks continues from the newest checkpoint",
          "resuming from %s/checkpoints/step-%08d.h5" % (d, max(steps)) in p.stderr, p.stderr[-600:])
    finish(WORK)


if __name__ == "__main__":
    main()
