"""The code examples of README.md and docs/*.md run against a run this test makes.

Every fenced block right after the line
    <!-- example: run by tests/test_docs_examples.py ... -->
is run (python blocks with Debian's python3, sh blocks with bash -e) in a work directory laid out as the
docs assume: build/budgetformer (this build), python/, tools/, configs/ (links to the source tree),
data/wordnet-pos/{train,test}.h5 (prepared from a WordNet subset, or the tiny corpus without wordnet-base) and
runs/wordnet-pos (configs/wordnet-pos.ini's run directory: a small model trained 3000 updates, so that its
last checkpoint is step-00003000.h5 as the docs write, and test-records.h5). Every python block of README.md
and docs/ must be such an example. The predict example's output must have the documented form.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, SRC, check, finish, run, work_dir  # noqa: E402
from test_python_package import make_data  # noqa: E402

MARK = "<!-- example: run by tests/test_docs_examples.py"
PY = os.environ.get("BF_PYTHON", "/usr/bin/python3")


def pages():
    docs = os.path.join(SRC, "docs")
    return [os.path.join(SRC, "README.md")] + sorted(os.path.join(docs, n) for n in os.listdir(docs)
                                                     if n.endswith(".md"))


def blocks(path):
    """(line, language, code, marked) of every fenced block of a page."""
    out = []
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            marked = i > 0 and lines[i - 1].startswith(MARK)
            out.append((i + 1, m.group(1), "\n".join(lines[i + 1:j]) + "\n", marked))
            i = j + 1
        else:
            i += 1
    return out


def setup(work):
    for name in ("python", "tools", "configs"):
        os.symlink(os.path.join(SRC, name), os.path.join(work, name))
    os.makedirs(os.path.join(work, "build"))
    os.symlink(EXE, os.path.join(work, "build", "budgetformer"))
    train_csv, test_csv, what = make_data(work)
    print("data:", what)
    data = os.path.join(work, "data", "wordnet-pos")
    run([EXE, "prepare", "--train", train_csv, "--test", test_csv, "--out", data, "--max-len", "48"])
    rd = os.path.join(work, "runs", "wordnet-pos")
    sets = ["data.train=data/wordnet-pos/train.h5", "data.test=data/wordnet-pos/test.h5", "data.valid=",
            "run.dir=runs/wordnet-pos", "model.d_model=32", "model.d_ff=64", "train.batch_size=16",
            "train.eval_every=0", "train.log_every=500", "checkpoint.every=1000", "heads.every=250"]
    args = [EXE, "train", "--config", os.path.join(SRC, "configs", "wordnet-pos.ini"), "--quiet"]
    for s in sets:
        args += ["--set", s]
    subprocess.run(args, check=True, cwd=work, capture_output=True, timeout=600)
    run([EXE, "eval", "--checkpoint", os.path.join(rd, "checkpoints", "step-00003000.h5"), "--data",
         os.path.join(data, "test.h5"), "--records", os.path.join(rd, "test-records.h5")])


def main():
    work = work_dir("docs_examples")
    setup(work)
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)
    n = 0
    for page in pages():
        rel = os.path.relpath(page, SRC)
        for line, lang, code, marked in blocks(page):
            if lang == "python":
                check_ok = marked
                if not check_ok:
                    check("%s:%d: python example is run by this test (marked)" % (rel, line), False,
                          "add the '%s' line before it" % MARK)
            if not marked:
                continue
            n += 1
            cmd = [PY, "-c", code] if lang == "python" else ["bash", "-e", "-o", "pipefail", "-c", code]
            p = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=600)
            check("%s:%d: %s example runs" % (rel, line, lang), p.returncode == 0 and p.stdout.strip() != "",
                  (p.stdout[-600:] + p.stderr[-1500:]).strip())
            if rel == "README.md" and "predict --checkpoint" in code:
                out = p.stdout.strip().split("\n")
                check("README.md:%d: predict prints LABEL<TAB>PROBABILITY<TAB>HEADS per line" % line,
                      len(out) == 2 and all(re.match(r"^(noun|verb|adj|adv)\t[01]\.\d{6}\tL0=[\d,]+ L1=[\d,]+$", o)
                                            for o in out), p.stdout)
    check("at least 7 marked examples ran", n >= 7, str(n))
    finish(work)


if __name__ == "__main__":
    main()
