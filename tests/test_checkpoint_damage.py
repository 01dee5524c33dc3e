"""Damaged, foreign and half-written checkpoints are refused with a clear message; --resume auto falls back to
the newest valid one; nothing valid is overwritten or deleted; keep-N rotation never deletes the newest valid
checkpoint; `budgetformer inspect` reports each case.

A base run (1 rank, exploration on) stops at step 20 with checkpoints 5, 10, 15, 20 (keep 10). Each case works
on a copy of its run directory:
  truncated        step-20 cut to half its size
  flipped          one bit flipped inside the bytes of /model/layers/0/attn/w_qkv
  missing group    /optim deleted with h5py and the digest rewritten (so the structure check speaks)
  other shape      step-20 replaced by a valid checkpoint of a d_model=8 model
  missing digest   its digest file .step-00000020.h5.sha256 removed
  temporary        .step-00000025.h5.tmp (half a file) left as by a killed writer
For each: `--resume FILE` fails (exit 1) naming the problem; `--resume auto` warns, names the file, resumes
from step-00000015.h5 and trains; the valid checkpoints 5, 10, 15 keep their bytes."""
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys

import h5py

EXE = os.environ["BF_EXE"]
SRC = os.environ["BF_SOURCE_DIR"]
WORK = os.path.join(os.environ["BF_WORK"], "checkpoint_damage")
FAILURES = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        print("     " + detail.replace("\n", "\n     "))
        FAILURES.append(what)


def run(args, expect=0):
    p = subprocess.run(args, capture_output=True, text=True)
    if "Sanitizer" in p.stderr or "runtime error:" in p.stderr:
        sys.exit(f"sanitizer report from: {' '.join(args)}\n{p.stderr}")
    if expect is not None and p.returncode != expect:
        sys.exit(f"command exited {p.returncode}, expected {expect}: {' '.join(args)}\n{p.stdout}\n{p.stderr}")
    return p


def train(rundir, *sets, resume=None, expect=0):
    cmd = [EXE, "train", "--config", f"{SRC}/configs/tiny.ini"]
    for s in COMMON + list(sets) + [f"run.dir={rundir}"]:
        cmd += ["--set", s]
    if resume:
        cmd += ["--resume", resume]
    return run(cmd, expect=expect)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def sidecar(path):
    return os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".sha256")


def write_sidecar(path):
    with open(sidecar(path), "w") as f:
        f.write(f"{sha(path)}  {os.path.basename(path)}\n")


def ck(d, step):
    return f"{d}/checkpoints/step-{step:08d}.h5"


def valid_untouched(d, steps, what):
    same = all(os.path.exists(ck(d, s)) and sha(ck(d, s)) == BASE_SHA[s] for s in steps)
    check(same, f"{what}: the valid checkpoints {', '.join(map(str, steps))} are still there, byte for byte")


def case(name, damage, words, auto_words=None):
    d = f"{WORK}/{name}"
    shutil.copytree(BASE, d)
    target = damage(d)
    p = train(d, resume=target, expect=1)
    msg = p.stderr.lower()
    check(all(w.lower() in msg for w in words), f"{name}: --resume {os.path.basename(target)} refused naming "
          f"{', '.join(repr(w) for w in words)}", p.stderr)
    p = train(d, "train.stop_at=16", resume="auto")
    aw = [os.path.basename(target)] + (auto_words if auto_words is not None else words)
    text = p.stderr.lower()
    skipped = "step-00000025.h5.tmp" not in text if name == "temporary" else (
        "skipping" in text and all(w.lower() in text for w in aw))
    check(skipped, f"{name}: --resume auto {'ignores the temporary file' if name == 'temporary' else 'skips it with a warning naming it'}",
          p.stderr)
    want = "step-00000020.h5" if name == "temporary" else "step-00000015.h5"
    check(f"resuming from {d}/checkpoints/{want}" in p.stderr, f"{name}: --resume auto falls back to {want}", p.stderr)
    valid_untouched(d, [5, 10, 15] + ([20] if name == "temporary" else []), name)
    check(os.path.exists(target), f"{name}: the refused file is left in place (not deleted)")
    return d


def truncate(d):
    p = ck(d, 20)
    os.truncate(p, os.path.getsize(p) // 2)
    return p


def flip_weight(d):
    p = ck(d, 20)
    with h5py.File(p, "r") as f:
        off = f["model/layers/0/attn/w_qkv"].id.get_offset()
    with open(p, "r+b") as f:
        f.seek(off + 4 * 13 + 2)
        b = f.read(1)
        f.seek(off + 4 * 13 + 2)
        f.write(bytes([b[0] ^ 0x08]))
    return p


def drop_optim(d):
    p = ck(d, 20)
    with h5py.File(p, "r+") as f:
        del f["optim"]
    write_sidecar(p)
    return p


def other_shape(d):
    shutil.copyfile(ck(OTHER, 20), ck(d, 20))
    shutil.copyfile(sidecar(ck(OTHER, 20)), sidecar(ck(d, 20)))
    return ck(d, 20)


def drop_digest(d):
    os.remove(sidecar(ck(d, 20)))
    return ck(d, 20)


def half_written(d):
    p = f"{d}/checkpoints/.step-00000025.h5.tmp"
    with open(ck(d, 20), "rb") as f, open(p, "wb") as g:
        g.write(f.read()[:40000])
    return p


def inspect(*args, expect=0):
    return run([EXE, "inspect", *args], expect=expect)


def main():
    global BASE, OTHER, COMMON, BASE_SHA
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    data = f"{WORK}/data"
    run([EXE, "prepare", "--train", f"{SRC}/tests/data/tiny/train.csv", "--test", f"{SRC}/tests/data/tiny/test.csv",
         "--out", data, "--max-len", "24"])
    COMMON = [f"data.train={data}/train.h5", "data.test=", "train.steps=30", "checkpoint.every=5",
              "checkpoint.keep=10", "explore.eps_start=0.8", "explore.eps_end=0.1", "explore.steps=30",
              "heads.every=4"]
    BASE, OTHER = f"{WORK}/base", f"{WORK}/other"
    train(BASE, "train.stop_at=20")
    train(OTHER, "train.stop_at=20", "model.d_model=8", "checkpoint.every=20")
    BASE_SHA = {s: sha(ck(BASE, s)) for s in (5, 10, 15, 20)}

    case("truncated", truncate, ["corrupt", "SHA-256", "does not match"])
    case("flipped", flip_weight, ["corrupt", "SHA-256"])
    case("missing-group", drop_optim, ["missing group /optim"])
    case("other-shape", other_shape, ["model.d_model = 16", "but 8"])
    case("missing-digest", drop_digest, ["digest file", "missing"])
    d = case("temporary", half_written, ["temporary file"], auto_words=[])

    # Continuing past a damaged checkpoint replaces it (it was not valid); the valid ones stay.
    d = f"{WORK}/truncated"
    p = train(d, "train.stop_at=20", resume="auto")
    check("replacing the invalid checkpoint" in p.stderr and inspect(ck(d, 20)).returncode == 0,
          "truncated: training on to step 20 replaces the invalid step-20 with a valid one", p.stderr)
    valid_untouched(d, [5, 10, 15], "truncated, after replacing step 20")

    # Model-altering configuration changes are refused; others are allowed (with a warning) or free.
    d = f"{WORK}/config"
    shutil.copytree(BASE, d)
    p = train(d, "model.n_heads=2", resume="auto", expect=1)
    check("model.n_heads = 2" in p.stderr and "but 4" in p.stderr and "cannot change the model" in p.stderr,
          "config: --resume auto with model.n_heads changed is refused naming the key and both values", p.stderr)
    p = train(d, "model.fixed_budget=2", resume=ck(d, 20), expect=1)
    check("model.fixed_budget = 2" in p.stderr and "but 0" in p.stderr,
          "config: --resume FILE with model.fixed_budget changed is refused", p.stderr)
    valid_untouched(d, [5, 10, 15, 20], "config (after refusals)")
    p = train(d, expect=1)
    check("already holds a run" in p.stderr, "config: without --resume an existing run.dir is still refused", p.stderr)
    p = train(d, resume=ck(d, 10), expect=1)
    check("newer valid checkpoint" in p.stderr,
          "config: --resume of an older checkpoint is refused while newer valid ones would be overwritten", p.stderr)
    p = train(d, "train.stop_at=22", "train.lr=0.002", "train.log_every=1", resume="auto")
    check("train.lr = 0.002 here but 0.003" in p.stderr and "resuming from" in p.stderr,
          "config: a changed train.lr is allowed with a warning naming both values", p.stderr)

    # Killed after step 27 with the newest checkpoint at 20: log.h5 already holds steps 21..27. The resumed run
    # makes them again: the log has every step exactly once, with the same losses.
    d = f"{WORK}/killed"
    shutil.copytree(BASE, d)
    train(d, "train.stop_at=27", "train.log_every=1", resume="auto")
    for s in (25, 27):
        os.remove(ck(d, s))
        os.remove(sidecar(ck(d, s)))
    with h5py.File(f"{d}/log.h5", "r") as f:
        before = dict(zip(f["metrics/step"][()].tolist(), f["metrics/loss"][()].tolist()))
    p = train(d, resume="auto")
    with h5py.File(f"{d}/log.h5", "r") as f:
        steps, loss = f["metrics/step"][()].tolist(), f["metrics/loss"][()].tolist()
    check("resuming from" in p.stderr and "step-00000020.h5" in p.stderr and steps == list(range(1, 31))
          and all(loss[s - 1] == before[s] for s in range(1, 28)),
          "killed: the log is cut back to the checkpoint and continues: steps 1..30 once, 21..27 redone identically",
          p.stderr + str(steps))

    # --resume auto in a run.dir without checkpoints starts a new run, saying so.
    p = train(f"{WORK}/fresh", "train.stop_at=3", resume="auto")
    check("starting a new run" in p.stderr and os.path.exists(ck(f"{WORK}/fresh", 3)),
          "fresh: --resume auto without checkpoints starts a new run and says so", p.stderr)

    # Rotation: keep=2 keeps the two newest valid ones; keep=1 with the newest damaged keeps the newest VALID.
    d = f"{WORK}/rotate"
    shutil.copytree(BASE, d)
    train(d, "train.stop_at=25", "checkpoint.keep=2", resume="auto")
    left = sorted(os.path.basename(x) for x in glob.glob(f"{d}/checkpoints/step-*.h5"))
    check(left == ["step-00000020.h5", "step-00000025.h5"], f"rotate: keep=2 leaves steps 20 and 25 ({left})")
    d = f"{WORK}/rotate-damaged"
    shutil.copytree(BASE, d)
    truncate(d)
    train(d, "train.stop_at=17", "checkpoint.keep=1", resume="auto")
    left = sorted(os.path.basename(x) for x in glob.glob(f"{d}/checkpoints/step-*.h5"))
    check(left == ["step-00000017.h5", "step-00000020.h5"],
          f"rotate: keep=1 keeps the newest valid (17), deletes the older valid ones, leaves the invalid 20 ({left})")

    # inspect
    p = inspect(ck(BASE, 20))
    check("valid" in p.stdout and "step          20" in p.stdout and "layers/0/attn/w_qkv" in p.stdout
          and "[16, 48]" in p.stdout and "d_model = 16" in p.stdout and "hdf5_version" in p.stdout,
          "inspect: step, checksum, tensor table, configuration and provenance", p.stdout)
    j = json.loads(inspect("--json", ck(BASE, 20)).stdout)
    w = {t["name"]: t for t in j["tensors"]}
    check(j["step"] == 20 and j["checksum"]["status"] == "valid" and j["world_size"] == 1
          and j["file_size"] == os.path.getsize(ck(BASE, 20)) and j["resumable"]
          and w["layers/0/attn/w_qkv"]["shape"] == [16, 48] == w["layers/0/attn/w_qkv"]["stored_shape"]
          and j["epoch_position"] == 20 * 16 % 480 and "budgetformer_version" in j["provenance"]
          and "[model]" in j["config"], "inspect --json: the same as one object", json.dumps(j)[:2000])
    p = inspect(ck(f"{WORK}/flipped", 20), expect=1)
    check("corrupt" in p.stderr, "inspect: a damaged file is reported corrupt, exit 1", p.stderr)
    p = inspect(ck(f"{WORK}/missing-digest", 20))
    check("missing" in p.stdout, "inspect: a checkpoint without its digest file says checksum missing", p.stdout)
    p = inspect(ck(f"{WORK}/missing-group", 20), expect=1)
    check("missing group /optim" in p.stderr, "inspect: an incomplete checkpoint exits 1 naming the group", p.stderr)
    p = inspect(f"{data}/train.h5", expect=1)
    check("not a budgetformer checkpoint" in p.stderr, "inspect: a dataset file is not a checkpoint, exit 1", p.stderr)
    p = inspect(f"{SRC}/configs/tiny.ini", expect=1)
    check("not an HDF5 file" in p.stderr, "inspect: a text file is refused, exit 1", p.stderr)

    print(f"{len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
