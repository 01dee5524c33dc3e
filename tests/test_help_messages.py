"""Every command's --help lists each of its options on a line of its own; the common data mistakes name the
key (or option) and suggest the fix: a missing data.train file, a directory, a CSV, TSV, JSON Lines or other
text file where a prepared .h5 is expected (train and eval), an empty file."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import CONFIG, EXE, check, finish, prepare, work_dir  # noqa: E402

OPTIONS = {
    "prepare": ["--train", "--test", "--out", "--max-len", "--vocab-size", "--min-count", "--valid-fraction",
                "--format", "--header", "--label-column", "--text-columns", "--skip-bad-rows"],
    "train": ["--config", "--set", "--resume auto", "--resume FILE", "--quiet", "--help-config"],
    "eval": ["--checkpoint", "--data", "--records", "--json", "--batch"],
    "predict": ["--checkpoint", "--input", "--json", "--top-k", "--batch"],
    "inspect": ["--json", "--force"],
    "heads": ["--json", "--data", "--n-heads"],
    "bench": ["--d-model", "--heads", "--layers", "--d-ff", "--max-len", "--batch", "--vocab", "--classes",
              "--budget", "--repeats", "--warmup", "--only"],
}


def main():
    work = work_dir("help_messages")
    for cmd, opts in OPTIONS.items():
        p = subprocess.run([EXE, cmd, "--help"], capture_output=True, text=True)
        lines = p.stdout.splitlines()
        missing = [o for o in opts if not any(re.match(r"^\s+" + re.escape(o) + r"\b", l) for l in lines)]
        check("%s --help lists every option on its own line" % cmd, p.returncode == 0 and not missing,
              "missing: %s" % missing)

    data = prepare(work)
    texts = {"a.csv": '"a","x y"\n', "a.tsv": "a\tx y\n", "a.jsonl": '{"text": "x", "label": "a"}\n',
             "notes.h5": "just text\n", "empty.h5": ""}
    for name, body in texts.items():
        with open(os.path.join(work, name), "w") as f:
            f.write(body)
    run_dir = os.path.join(work, "run")

    def train(*sets):
        args = [EXE, "train", "--config", CONFIG, "--set", "run.dir=" + run_dir]
        for s in sets:
            args += ["--set", s]
        return subprocess.run(args, capture_output=True, text=True, cwd=work)

    test_ok = "data.test=%s/test.h5" % data
    p = train("data.train=nothere.h5", test_ok)
    check("a missing data.train file names the key", p.returncode == 1 and
          "data.train = nothere.h5: no such file: expected a prepared dataset (budgetformer prepare" in p.stderr,
          p.stderr.strip())
    p = train("data.train=%s/train.h5" % data, "data.valid=gone.h5", test_ok)
    check("a missing data.valid file names the key", p.returncode == 1 and "data.valid = gone.h5: no such file"
          in p.stderr, p.stderr.strip())
    p = train("data.train=" + data, test_ok)
    check("a directory as data.train names the key and the file in it", p.returncode == 1 and
          "data.train = %s is a directory: expected a prepared dataset file in it, such as %s/train.h5" % (data, data)
          in p.stderr, p.stderr.strip())
    for name, what in (("a.csv", "a CSV file"), ("a.tsv", "a TSV file"), ("a.jsonl", "a JSON Lines file"),
                       ("notes.h5", "text")):
        p = train("data.train=" + name, test_ok)
        check("train: %s as data.train suggests prepare" % name, p.returncode == 1 and
              ("data.train = %s: not a readable HDF5 file but %s" % (name, what)) in p.stderr and
              "budgetformer prepare --train FILE --test FILE --out DIR, then data.train = DIR/train.h5" in p.stderr,
              p.stderr.strip())
    check("no run directory was made", not os.path.exists(run_dir))
    for name, want in (("a.csv", "--data a.csv: not a readable HDF5 file but a CSV file"),
                       ("empty.h5", "--data empty.h5: not a readable HDF5 file (empty)"),
                       ("nothere.h5", "--data nothere.h5: no such file")):
        p = subprocess.run([EXE, "eval", "--checkpoint", "x.h5", "--data", name], capture_output=True, text=True,
                           cwd=work)
        check("eval: --data %s named with the fix" % name, p.returncode == 1 and want in p.stderr, p.stderr.strip())
    p = subprocess.run([EXE, "eval", "--checkpoint", "x.h5", "--data", "a.csv"], capture_output=True, text=True,
                       cwd=work)
    check("eval: the suggestion names DIR/test.h5", "then --data DIR/test.h5" in p.stderr, p.stderr.strip())

    # docs/CONFIG.md's error examples are the program's messages (its list of [model] keys goes stale otherwise)
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "CONFIG.md")) as f:
        doc = f.read()
    for arg, doc_line in (("model.d_modl=3", "unknown key 'model.d_modl'"), ("model.d_model=abc", "expected an integer"),
                          ("train.lr=0", "train.lr: 0 is out of range"), ("explore.shape=step", "explore.shape: expected")):
        p = train(arg)
        msg = p.stderr.strip().split("--set %s: " % arg, 1)[-1]
        shown = [ln.split(": ", 1)[1] for ln in doc.splitlines() if doc_line in ln and ": " in ln]
        check("CONFIG.md: the example for --set %s is the program's message" % arg, p.returncode == 2 and shown and
              any(msg == x or msg == x.split(": ", 1)[-1] for x in shown), "program: %s\nCONFIG.md: %s" % (msg, shown))
    finish(work)


if __name__ == "__main__":
    main()
