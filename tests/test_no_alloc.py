"""The training step allocates nothing after the first (performance issue): with BF_CHECK_ALLOC=1 the trainer
compares bf_alloc_count() (every bf_xmalloc, bf_xcalloc, bf_xrealloc, bf_xstrdup) before and after each update
after the first of the process, outside checkpoint saves, evaluation and log writes, and fails the run naming
the update if it changed.

Checks, each named in the output:
  ranks_N     the tiny configuration on N = 1 and 2 ranks with exploration on, micro-batching
              (train.micro_batch = 3), head records every 7 updates, a validation set evaluated every 10,
              checkpoints every 10 and 80 updates (three epochs: the sampler's two permutation slots are both
              used): exit status 0 and the trainer's confirmation line
  bf16        the same on 2 ranks with the bf16 gradient exchange (dist.grad_precision = bf16), unsharded and
              sharded (bf16_sharded): its conversion buffers are made before the first update
  resumed     a run resumed at update 40 (another epoch parity first) under the same check: exit status 0
  caught      BF_FAULT=alloc_in_step:7 (one stray bf_xmalloc inside update 7) fails the run on 2 ranks with a
              message naming update 7: the check can fail
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, check, finish, launcher, prepare, run, train_args, work_dir  # noqa: E402

CONFIRM = "BF_CHECK_ALLOC: no update after the first allocated"
WORK = work_dir("no_alloc")


def train(data, run_dir, ranks, *extra, fault=None, resume=None):
    """The run under BF_CHECK_ALLOC=1; any exit status (the caller checks it), but never a sanitizer report."""
    cmd = launcher(ranks) + [EXE] + train_args(
        data, run_dir, "data.valid=%s/test.h5" % data, "train.steps=80", "train.micro_batch=3", "heads.every=7",
        "train.eval_every=10", "checkpoint.every=10", "train.log_every=5", "explore.steps=60", *extra)
    if resume:
        cmd += ["--resume", resume]
    env = dict(os.environ, BF_CHECK_ALLOC="1")
    if fault:
        env["BF_FAULT"] = fault
    return run(cmd, env, expect=None)


def main():
    data = prepare(WORK)
    for ranks in (1, 2):
        p = train(data, os.path.join(WORK, "r%d" % ranks), ranks)
        check("ranks_%d: no update after the first allocates (exit 0)" % ranks, p.returncode == 0 and CONFIRM in p.stderr,
              "exit %d: %s" % (p.returncode, p.stderr.strip()[-600:]))
    # The bf16 gradient exchange (dist.grad_precision) converts into buffers made at the start, sharded or not.
    for name, extra in (("bf16", ()), ("bf16_sharded", ("dist.shard_optimizer=1",))):
        p = train(data, os.path.join(WORK, name), 2, "dist.grad_precision=bf16", *extra)
        check("%s: 2 ranks with the bf16 exchange%s allocate nothing after the first update"
              % (name, ", sharded" if extra else ""), p.returncode == 0 and CONFIRM in p.stderr,
              "exit %d: %s" % (p.returncode, p.stderr.strip()[-600:]))
    run_dir = os.path.join(WORK, "resumed")
    p = train(data, run_dir, 2, "train.stop_at=40")
    p2 = train(data, run_dir, 2, resume="auto")
    check("resumed: a run resumed at update 40 allocates nothing after its first update",
          p.returncode == 0 and p2.returncode == 0 and CONFIRM in p2.stderr and "resuming from" in p2.stderr,
          "exit %d, %d: %s" % (p.returncode, p2.returncode, p2.stderr.strip()[-600:]))
    p = train(data, os.path.join(WORK, "caught"), 2, fault="alloc_in_step:7")
    check("caught: a stray allocation in update 7 fails the run, naming the update",
          p.returncode == 1 and "BF_CHECK_ALLOC: update 7 allocated 1 time" in p.stderr,
          "exit %d: %s" % (p.returncode, p.stderr.strip()[-600:]))
    finish(WORK)


if __name__ == "__main__":
    main()
