"""The gradient exchange in bf16 (dist.grad_precision = bf16) against the fp32 exchange, on the tiny corpus
(30 updates, exploration on, checkpoints every 10; a run takes about a second).

Checks, each named in the output:
  close_P        P = 2 and 3 ranks: every update's loss within 1e-2 relative of the fp32 exchange's, and the
                 runs are not bitwise equal (the rounding happens: a no-op option would pass "close" too)
  replicas_P     every rank holds bitwise identical weights after every update (BF_TRACE checksums): every
                 rank received the same bf16 sums
  one_rank       on 1 rank there is no exchange: bf16 and fp32 give the same trace bit for bit
  sharded_2      with the sharded optimiser on 2 ranks (reduce-scatter instead of allreduce) the trace is the
                 unsharded bf16 run's bit for bit: each sum is one addition of two values either way
  sharded_3      the same on 3 ranks within 1e-2 of the unsharded bf16 run (the grouping of three may differ)
  repeatable     two bf16 3-rank runs: bitwise identical traces and final checkpoints
  resume         a bf16 2-rank run stopped after update 15 and continued with --resume auto gives the
                 uninterrupted run's trace and final checkpoint bit for bit
  announced      the startup line says the exchange is bf16, the fp32 run's does not
  bad_value      dist.grad_precision = fp16 is refused before training (exit 2), naming the key and the words
"""
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import (EXE, check, checkpoint_arrays, finish, launcher, max_rel, prepare, read_trace, run,  # noqa: E402
                    train_args, work_dir)

WORK = work_dir("grad_bf16")
STEPS, STOP = 30, 15
COMMON = ["data.test=", "train.steps=%d" % STEPS, "train.batch_size=16", "train.micro_batch=0",
          "checkpoint.every=10", "checkpoint.keep=5", "explore.eps_start=0.9", "explore.eps_end=0.2",
          "explore.steps=30"]
BF16 = ["dist.grad_precision=bf16"]


class Run:
    def __init__(self, data, name, ranks, sets, resume=False):
        self.dir = os.path.join(WORK, name)
        self.trace = os.path.join(WORK, name + (".resumed" if resume else "") + ".trace")
        cmd = launcher(ranks) + [EXE] + train_args(data, self.dir, *(COMMON + sets))
        if resume:
            cmd += ["--resume", "auto"]
        p = run(cmd, dict(os.environ, BF_TRACE=self.trace))
        self.stderr = p.stderr
        self.lines = read_trace(self.trace, ranks)

    def losses(self):
        return np.array([float(line.split()[2]) for line in self.lines[0]])

    def final(self):
        return os.path.join(self.dir, "checkpoints", "step-%08d.h5" % STEPS)


def same_checkpoint(a, b):
    x, y = checkpoint_arrays(a), checkpoint_arrays(b)
    return set(x) == set(y) and all(np.array_equal(x[k], y[k]) for k in x)


def main():
    data = prepare(WORK)
    fp32, bf16 = {}, {}
    for p in (2, 3):
        fp32[p] = Run(data, "fp32_%d" % p, p, [])
        bf16[p] = Run(data, "bf16_%d" % p, p, BF16)
        a, b = bf16[p].losses(), fp32[p].losses()
        rel = max_rel(a, b)
        check("close_%d: %d bf16-exchange losses within 1e-2 relative of fp32's, not bitwise equal" % (p, STEPS),
              len(a) == STEPS and rel <= 1e-2 and not np.array_equal(a, b), "max %.2e" % rel)
        sums = [[line.split()[3] for line in r] for r in bf16[p].lines]
        check("replicas_%d: every rank's weights bitwise equal after every update" % p,
              all(c == sums[0] and len(c) == STEPS for c in sums))
    check("announced: the startup line names the bf16 exchange",
          "exchanged in bf16" in bf16[2].stderr and "exchanged in bf16" not in fp32[2].stderr)

    one_a, one_b = Run(data, "one_fp32", 1, []), Run(data, "one_bf16", 1, BF16)
    check("one_rank: 1 rank, bf16 and fp32 exchange give the same trace bit for bit", one_a.lines == one_b.lines)

    sh2 = Run(data, "sharded_2", 2, BF16 + ["dist.shard_optimizer=1"])
    check("sharded_2: sharded bf16 on 2 ranks is bitwise the unsharded bf16 run", sh2.lines[0] == bf16[2].lines[0],
          "max rel %.2e" % max_rel(sh2.losses(), bf16[2].losses()))
    sh3 = Run(data, "sharded_3", 3, BF16 + ["dist.shard_optimizer=1"])
    rel = max_rel(sh3.losses(), bf16[3].losses())
    check("sharded_3: sharded bf16 on 3 ranks within 1e-2 of unsharded bf16", rel <= 1e-2, "max %.2e" % rel)

    again = Run(data, "again_3", 3, BF16)
    check("repeatable: two bf16 3-rank runs are bitwise identical (trace, final checkpoint)",
          again.lines == bf16[3].lines and same_checkpoint(again.final(), bf16[3].final()))

    first = Run(data, "stopped_2", 2, BF16 + ["train.stop_at=%d" % STOP])
    shutil.copytree(first.dir, os.path.join(WORK, "stopped_2.copy"))
    second = Run(data, "stopped_2", 2, BF16, resume=True)
    check("resume: %d + %d bf16 updates are bitwise the uninterrupted run (trace, checkpoint)" % (STOP, STEPS - STOP),
          "resuming from" in second.stderr and
          all(first.lines[r] + second.lines[r] == bf16[2].lines[r] for r in range(2)) and
          same_checkpoint(second.final(), bf16[2].final()))

    p = subprocess.run([EXE] + train_args(data, os.path.join(WORK, "bad"), *(COMMON + ["dist.grad_precision=fp16"])),
                       capture_output=True, text=True, timeout=60)
    check("bad_value: dist.grad_precision = fp16 refused naming the key and fp32, bf16",
          p.returncode == 2 and "dist.grad_precision" in p.stderr and "fp32" in p.stderr and "bf16" in p.stderr
          and not os.path.exists(os.path.join(WORK, "bad", "checkpoints")), p.stderr.strip()[-300:])
    finish(WORK)


if __name__ == "__main__":
    main()
