"""The run directory: one training at a time, no empty path, nothing left by a failed start
(docs/FAILURES.md, "Shared run directories").

Checks, each named in the output:
  lock_foreign     a process holding run.dir/.lock (flock, as the trainer takes it) makes a training on that
                   run.dir fail with exit status 1 and a message naming the holder's pid and host; nothing in
                   run.dir changes (names, sizes, contents, modification times)
  lock_trainer     a second training (--resume auto) on the run.dir of a training that is running is refused
                   naming the first one's pid; the first continues, stops on SIGTERM with status 75 and a valid
                   checkpoint
  lock_released    after the holder is killed (SIGKILL) the lock is gone with it: the next training succeeds
  empty_run_dir    run.dir = "" is a configuration error (status 2) naming run.dir; nothing is written
  mkdir_undone     a run.dir whose creation fails part way (a component too long) leaves none of the
                   directories that were made before the failure
"""
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (EXE, Watched, check, checkpoint_names, finish, prepare, progress_step,  # noqa: E402
                    train_args, valid_steps, work_dir, TIMEOUT)

WORK = work_dir("faults_rundir")
EX_PREEMPTED = 75


def snapshot(root):
    """{relative path: (size, mtime_ns, bytes)} of every file and directory below root."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            data = open(p, "rb").read() if os.path.isfile(p) else b""
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, data)
    return out


def train(args, cwd=None):
    return subprocess.run([EXE] + args, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def part_foreign(data):
    run_dir = os.path.join(WORK, "foreign")
    p = train(train_args(data, run_dir, "train.steps=20"))
    check("lock_foreign: a first run completes", p.returncode == 0, p.stderr[-800:])
    holder = subprocess.Popen([sys.executable, "-c", """
import fcntl, os, socket, sys, time
f = open(sys.argv[1], "r+")
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
f.truncate(0); f.write("pid=%d host=%s\\n" % (os.getpid(), socket.gethostname())); f.flush()
print("locked", flush=True)
time.sleep(600)
""", os.path.join(run_dir, ".lock")], stdout=subprocess.PIPE, text=True)
    check("lock_foreign: the test holds the lock", holder.stdout.readline().strip() == "locked")
    before = snapshot(run_dir)
    p = train(train_args(data, run_dir, "train.steps=40") + ["--resume", "auto"])
    after = snapshot(run_dir)
    check("lock_foreign: refused with exit status 1", p.returncode == 1, p.stderr[-800:])
    check("lock_foreign: the message names the holder's pid and host and the lock file",
          "pid=%d" % holder.pid in p.stderr and socket.gethostname() in p.stderr and ".lock" in p.stderr and
          "in use by another training" in p.stderr, p.stderr[-800:])
    check("lock_foreign: nothing in run.dir changed", before == after,
          "changed: %s" % sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)))
    holder.kill()  # SIGKILL: the OS releases the flock with the process
    holder.wait()
    p = train(train_args(data, run_dir, "train.steps=40") + ["--resume", "auto"])
    check("lock_released: after SIGKILL of the holder the next training runs", p.returncode == 0 and
          "step-00000040.h5" in p.stderr, p.stderr[-800:])


def part_trainer(data):
    run_dir = os.path.join(WORK, "shared")
    first = Watched([EXE] + train_args(data, run_dir, "train.steps=1000000", "train.log_every=20"),
                    dict(os.environ))
    if not first.wait_for(lambda l: (progress_step(l) or 0) >= 20):
        rc, out = first.finish()
        check("lock_trainer", False, "no progress line (exit %s): %s" % (rc, out[-1500:]))
        return
    t0 = time.time()
    p = train(train_args(data, run_dir, "train.steps=1000000") + ["--resume", "auto"])
    check("lock_trainer: the second training is refused (exit 1) naming the first one's pid",
          p.returncode == 1 and "pid=%d" % first.p.pid in p.stderr, "exit %d: %s" % (p.returncode, p.stderr[-600:]))
    check("lock_trainer: refused at once (under 20 s)", time.time() - t0 < 20, "%.1f s" % (time.time() - t0))
    check("lock_trainer: the first one still runs", first.p.poll() is None)
    first.p.send_signal(signal.SIGTERM)
    rc, out = first.finish()
    steps, bad = valid_steps(run_dir)
    check("lock_trainer: the first stops on SIGTERM with status 75 and one valid checkpoint",
          rc == EX_PREEMPTED and len(steps) == 1 and not bad, "exit %s, %s %s" % (rc, steps, bad))


def part_empty(data):
    cwd = os.path.join(WORK, "empty-cwd")
    os.makedirs(cwd)
    p = train(train_args(data, ""), cwd=cwd)
    check("empty_run_dir: exit status 2 naming run.dir", p.returncode == 2 and "run.dir is empty" in p.stderr,
          p.stderr[-400:])
    check("empty_run_dir: nothing written", os.listdir(cwd) == [] and not os.path.exists("/config.ini"))


def part_mkdir(data):
    base = os.path.join(WORK, "new")
    run_dir = os.path.join(base, "a", "x" * 300, "b")  # NAME_MAX is 255: mkdir of the third part fails
    p = train(train_args(data, run_dir))
    check("mkdir_undone: exit status 1 naming run.dir and the directory", p.returncode == 1 and "run.dir = " in
          p.stderr and "cannot create directory" in p.stderr, p.stderr[-400:])
    check("mkdir_undone: the directories made before the failure are removed", not os.path.exists(base),
          str(os.listdir(WORK)))


def main():
    data = prepare(WORK)
    part_empty(data)
    part_mkdir(data)
    part_foreign(data)
    part_trainer(data)
    finish(WORK)


if __name__ == "__main__":
    main()
