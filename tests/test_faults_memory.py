"""Memory limits (docs/FAILURES.md, "Memory limits"): under an address-space limit (ulimit -v, SGE h_vmem) the
trainer fails at once with a message naming what was being allocated, how much and the limit, instead of
hanging in OpenBLAS's buffer allocation (which retries for ever).

  blas_headroom    ulimit -v 150 MB: OpenBLAS's 128 MiB work buffer does not fit: exit 1 within 20 s, the
                   message names the limit and OpenBLAS's need (before: the first update hung)
  model_too_large  ulimit -v 1 GB and a 7 GB model: exit 1 at once naming "the model (model.d_model = 2048 ..."
                   and the MiB; no run.dir is created
  room_enough      ulimit -v 400 MB: the tiny model trains (exit 0)
Skipped in sanitizer builds (AddressSanitizer maps terabytes of shadow memory, so no limit can be set).
"""
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, check, finish, prepare, train_args, work_dir  # noqa: E402

with open(EXE, "rb") as _f:
    if b"__asan_init" in _f.read():
        print("skipped: sanitizer build (no address-space limit can be set under AddressSanitizer)")
        sys.exit(0)

WORK = work_dir("faults_memory")


def limited(args, kib):
    def lim():
        resource.setrlimit(resource.RLIMIT_AS, (kib * 1024, kib * 1024))
    t0 = time.time()
    p = subprocess.run([EXE] + args, capture_output=True, text=True, timeout=60, preexec_fn=lim,
                       env=dict(os.environ, OPENBLAS_NUM_THREADS="1"))
    return p, time.time() - t0


def main():
    data = prepare(WORK)
    p, dt = limited(train_args(data, os.path.join(WORK, "blas"), "train.steps=10"), 150000)
    check("blas_headroom: exit 1 within 20 s naming the limit and OpenBLAS's buffers",
          p.returncode == 1 and dt < 20 and "address-space limit" in p.stderr and "OpenBLAS needs 128 MiB" in
          p.stderr, "exit %d after %.1f s: %s" % (p.returncode, dt, p.stderr[-600:]))
    big = os.path.join(WORK, "big")
    p, dt = limited(train_args(data, big, "model.d_model=2048", "model.n_layers=16", "model.d_ff=8192",
                               "model.n_heads=8"), 1000000)
    check("model_too_large: exit 1 naming the model, the size and the limit",
          p.returncode == 1 and "out of memory: allocating" in p.stderr and "MiB for the model (model.d_model = 2048"
          in p.stderr and "address-space limit of" in p.stderr, "exit %d: %s" % (p.returncode, p.stderr[-600:]))
    check("model_too_large: no run.dir is created", not os.path.exists(big))
    p, dt = limited(train_args(data, os.path.join(WORK, "ok"), "train.steps=10"), 400000)
    check("room_enough: the tiny model trains under 400 MB", p.returncode == 0, p.stderr[-600:])
    finish(WORK)


if __name__ == "__main__":
    main()
