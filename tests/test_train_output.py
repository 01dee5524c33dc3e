"""What `train` prints on stderr, with and without --quiet (README: "Commands / train").

A tiny run with a validation file, train.steps = 60, train.log_every = 10 and train.eval_every = 30:
  - without --quiet: a progress line at steps 10, 20, ..., 60 (step, loss, samples/s, ETA), the periodic
    valid result at step 30, the final valid and test results once each (the step-60 evaluation is the
    final one, not printed twice), and info messages;
  - with --quiet: no progress line, no info message and no periodic evaluation; the final valid and test
    lines only, with the same numbers as without --quiet (the output changes, not the run)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, check, finish, prepare, progress_step, run, train_args, work_dir  # noqa: E402

SETS = ("train.steps=60", "train.log_every=10", "train.eval_every=30")


def lines(text, prefix):
    return [ln for ln in text.splitlines() if ln.startswith(prefix)]


def main():
    work = work_dir("test_train_output")
    data = prepare(work)
    valid = "data.valid=%s/test.h5" % data
    loud = run([EXE] + train_args(data, os.path.join(work, "loud"), valid, *SETS)).stderr
    quiet = run([EXE] + train_args(data, os.path.join(work, "quiet"), valid, *SETS) + ["--quiet"]).stderr

    steps = [progress_step(ln) for ln in loud.splitlines() if progress_step(ln) is not None]
    check("without --quiet: a progress line every 10 steps", steps == [10, 20, 30, 40, 50, 60], str(steps))
    prog = [ln for ln in loud.splitlines() if progress_step(ln) is not None]
    check("progress lines show loss, samples/s and ETA",
          all("loss " in ln and "samples/s" in ln and "ETA " in ln for ln in prog), "\n".join(prog[:2]))
    lv, lt = lines(loud, "budgetformer: valid: "), lines(loud, "budgetformer: test: ")
    check("without --quiet: valid at step 30 and at the end, not twice at step 60", len(lv) == 2, "\n".join(lv))
    check("without --quiet: one test result", len(lt) == 1, "\n".join(lt))

    qv, qt = lines(quiet, "budgetformer: valid: "), lines(quiet, "budgetformer: test: ")
    check("--quiet: no progress line", not any(progress_step(ln) is not None for ln in quiet.splitlines()),
          quiet[-500:])
    check("--quiet: nothing but the final valid and test results",
          quiet.splitlines() == qv + qt and len(qv) == 1 and len(qt) == 1, quiet[-500:])
    check("--quiet: the same results as the loud run", qv == lv[-1:] and qt == lt, "%s %s / %s %s" % (qv, qt, lv, lt))
    finish(work)


if __name__ == "__main__":
    main()
