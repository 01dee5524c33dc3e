"""More stop requests (docs/FAILURES.md, "Stopping a run"): SIGHUP and a closed stderr pipe (SIGPIPE) stop a run
like SIGTERM, and a stop request during an evaluation ends it at the next batch, not at the end of the set.

  sighup           1 process: SIGHUP while training gives exit status 75 and one valid checkpoint
  sigpipe          1 process whose stderr is a pipe the reader closes: exit status 75 and one valid checkpoint
  valid_interrupt  validation every 20 updates, each batch slowed (BF_FAULT=slow_eval:300, 10 batches = 3 s):
                   SIGTERM during the validation of update 20 stops within 2 s with status 75 and the checkpoint
                   of update 20
  final_interrupt  the same during the final test evaluation: status 75 within 2 s, the final checkpoint valid;
                   --resume auto then has nothing to train, evaluates and exits 0
  mpi_valid        2 ranks: SIGUSR1 to mpirun during a validation: status 75 within 3 s, checkpoint of update 20
"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (EXE, TIMEOUT, Watched, check, checkpoint_names, finish, mpirun, prepare,  # noqa: E402
                    progress_step, run, train_args, valid_steps, work_dir)

WORK = work_dir("faults_stop")
EX_PREEMPTED = 75


def stopped_once(name, run_dir, rc, out, step=None):
    steps, bad = valid_steps(run_dir)
    ok = rc == EX_PREEMPTED and len(steps) == 1 and not bad and (step is None or steps == [step])
    check("%s: exit status 75 and one valid checkpoint%s" % (name, "" if step is None else " (update %d)" % step),
          ok, "exit %s, %s %s\n%s" % (rc, steps, bad, out[-1200:]))


def part_sighup(data):
    d = os.path.join(WORK, "hup")
    w = Watched([EXE] + train_args(data, d, "train.steps=1000000", "train.log_every=20"), dict(os.environ))
    if not w.wait_for(lambda l: (progress_step(l) or 0) >= 20):
        check("sighup", False, "no progress line: %s" % w.finish()[1][-800:])
        return
    w.p.send_signal(signal.SIGHUP)
    rc, out = w.finish()
    stopped_once("sighup", d, rc, out)
    check("sighup: the message names SIGHUP", "SIGHUP" in out, out[-600:])


def part_sigpipe(data):
    d = os.path.join(WORK, "pipe")
    p = subprocess.Popen([EXE] + train_args(data, d, "train.steps=1000000", "train.log_every=20"),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = False
    for line in p.stderr:
        if (progress_step(line) or 0) >= 20:
            seen = True
            break
    p.stderr.close()  # the reader goes away: the next progress line raises SIGPIPE
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
    check("sigpipe: a progress line was read", seen)
    stopped_once("sigpipe", d, rc, "")


def slow(extra=""):
    return dict(os.environ, BF_FAULT="slow_eval:300" + extra)


def part_valid(data, ranks):
    name = "valid_interrupt" if ranks == 1 else "mpi_valid"
    d = os.path.join(WORK, name)
    args = train_args(data, d, "train.steps=1000", "train.log_every=20", "train.eval_every=20",
                      "data.valid=%s/test.h5" % data)
    w = Watched((mpirun(ranks) if ranks > 1 else []) + [EXE] + args, slow())
    if not w.wait_for(lambda l: progress_step(l) == 20):
        check(name, False, "no progress line: %s" % w.finish()[1][-800:])
        return
    time.sleep(0.5)  # inside the validation of update 20 (3 s long)
    t0 = time.time()
    w.p.send_signal(signal.SIGUSR1 if ranks > 1 else signal.SIGTERM)
    rc, out = w.finish()
    dt = time.time() - t0
    stopped_once(name, d, rc, out, 20)
    check("%s: stopped within %d s of the signal, the validation interrupted" % (name, 1 + ranks),
          dt < 1 + ranks and "evaluation interrupted by a stop request" in out, "%.1f s\n%s" % (dt, out[-800:]))


def part_final(data):
    d = os.path.join(WORK, "final")
    args = train_args(data, d, "train.steps=30", "train.log_every=10")
    w = Watched([EXE] + args, slow())
    if not w.wait_for(lambda l: "saved checkpoint" in l and "step-00000030.h5" in l):
        check("final_interrupt", False, "no final checkpoint: %s" % w.finish()[1][-800:])
        return
    time.sleep(0.5)
    t0 = time.time()
    w.p.send_signal(signal.SIGTERM)
    rc, out = w.finish()
    dt = time.time() - t0
    stopped_once("final_interrupt", d, rc, out, 30)
    check("final_interrupt: stopped within 2 s, the test evaluation not reported",
          dt < 2 and "test evaluation interrupted" in out and "test: accuracy" not in out, "%.1f s" % dt)
    p = run([EXE] + args + ["--resume", "auto"])
    check("final_interrupt: --resume auto evaluates and exits 0", "nothing to train" in p.stderr and
          "test: accuracy" in p.stderr, p.stderr[-600:])


def main():
    data = prepare(WORK)
    part_sighup(data)
    part_sigpipe(data)
    part_valid(data, 1)
    part_final(data)
    part_valid(data, 2)
    finish(WORK)


if __name__ == "__main__":
    main()
