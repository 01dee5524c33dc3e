"""`budgetformer heads` on a log.h5 and a records file written by hand with h5py (known numbers): the --json
numbers, rows of the text tables, and the errors (missing file, not HDF5, neither layout, wrong shape or
type, usage errors)."""
import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, check_quiet as check, report  # noqa: E402

WORK = os.path.join(os.environ["BF_WORK"], "test_heads_cli")


def close(a, b, tol=1e-6):
    """Nested lists / numbers equal within tol (None must match None)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(b, (list, tuple)):
        return isinstance(a, list) and len(a) == len(b) and all(close(x, y, tol) for x, y in zip(a, b))
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))


def run(*args):
    p = subprocess.run([EXE, "heads", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr


def has_row(text, pattern, what):
    ok = re.search(pattern, text, re.MULTILINE) is not None
    check(ok, "text output has the row %s (pattern %r)" % (what, pattern))


# ---- a log.h5: L = 2, H = 3, C = 2, S = 6 logged steps, R = 2 head records ----------------------------
def write_log(path):
    with h5py.File(path, "w") as f:
        f["/metrics/step"] = np.arange(1, 7, dtype="<i8")
        f["/metrics/loss"] = np.linspace(1.0, 0.5, 6).astype("<f4")
        f["/metrics/lr"] = np.full(6, 1e-3, dtype="<f4")
        f["/metrics/eps"] = np.array([1.0, 0.75, 0.5, 0.25, 0.0, 0.0], dtype="<f4")
        f["/metrics/mean_budget"] = np.array([[3, 2], [2.5, 2], [2, 2], [1.5, 1], [1, 1], [1, 1]], dtype="<f4")
        for extra in ("samples_per_s", "grad_norm", "comm_fraction"):
            f["/metrics/" + extra] = np.ones(6, dtype="<f4")
        f["/heads/step"] = np.array([2, 6], dtype="<i8")
        f["/heads/count"] = np.array([4, 6], dtype="<i8")
        f["/heads/class_count"] = np.array([[3, 1], [6, 0]], dtype="<i8")
        usage = np.array([[[0.5, 0.25, 1.0], [0.0, 0.75, 1.0]],
                          [[0.0, 1.0, 0.5], [1.0, 1.0, 0.0]]], dtype="<f4")
        f["/heads/usage"] = usage
        hist = np.zeros((2, 2, 3), dtype="<f4")
        hist[:, :, 1] = 1.0
        f["/heads/budget_hist"] = hist
        cu = np.zeros((2, 2, 2, 3), dtype="<f4")
        cu[0, 0] = [[0.5, 0.0, 1.0], [0.0, 1.0, 1.0]]
        cu[0, 1] = [[0.5, 1.0, 1.0], [0.0, 0.0, 1.0]]
        cu[1, 0] = usage[1]  # class 1 had no input in the last record: zeros
        f["/heads/class_usage"] = cu


# ---- a records file: N = 6, C = 3, L = 2, H = 4 -----------------------------------------------------------
LABEL = [0, 0, 1, 1, 2, 2]
PRED = [0, 1, 1, 1, 0, 2]          # correct: 0, 2, 3, 5
LENGTH = [3, 8, 9, 20, 200, 5]     # buckets 1-8: {0,1,5}, 9-16: {2}, 17-32: {3}, 129+: {4}
BUDGET0 = [1, 2, 3, 4, 1, 2]
MASK0 = [0b0001, 0b0011, 0b0111, 0b1111, 0b0001, 0b0011]
BUDGET1 = [2] * 6
MASK1 = [0b0110] * 6


def write_records(path, n_heads_attr=None):
    with h5py.File(path, "w") as f:
        f["/records/label"] = np.array(LABEL, dtype="<i4")
        f["/records/pred"] = np.array(PRED, dtype="<i4")
        f["/records/logits"] = np.zeros((6, 3), dtype="<f4")
        f["/records/length"] = np.array(LENGTH, dtype="<i4")
        f["/records/budget"] = np.array([BUDGET0, BUDGET1], dtype="<i4").T.copy()
        f["/records/head_mask"] = np.array([MASK0, MASK1], dtype="<u4").T.copy()
        if n_heads_attr is not None:
            f["/records"].attrs["n_heads"] = np.int64(n_heads_attr)


def write_dataset(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("/label_names", data=["alpha", "beta", "gamma"], dtype=h5py.string_dtype("utf-8"))


def test_log(path):
    rc, out, err = run(path, "--json")
    check(rc == 0, "heads --json on the log exits 0 (rc %d, stderr %s)" % (rc, err))
    if rc:
        return
    j = json.loads(out)
    check(j["kind"] == "log" and j["file"] == path, "kind log and the file name")
    check((j["n_layers"], j["n_heads"], j["n_classes"]) == (2, 3, 2), "L, H, C of the log")
    m = j["metrics"]
    check(m["n_steps"] == 6, "n_steps 6")
    check(m["first"]["step"] == 1 and close(m["first"]["eps"], 1.0) and close(m["first"]["mean_budget"], [3, 2]),
          "first logged step")
    check(m["middle"]["step"] == 3 and m["middle"]["row"] == 2 and close(m["middle"]["eps"], 0.5)
          and close(m["middle"]["mean_budget"], [2, 2]), "middle logged step (row (S-1)/2)")
    check(m["last"]["step"] == 6 and close(m["last"]["eps"], 0.0) and close(m["last"]["mean_budget"], [1, 1]),
          "last logged step")
    check(close(m["mean"]["mean_budget"], [11 / 6, 1.5]) and close(m["mean"]["eps"], 2.5 / 6), "means over all steps")
    h = j["heads"]
    check(h["n_records"] == 2, "2 head records")
    check(h["first"]["step"] == 2 and h["first"]["count"] == 4
          and close(h["first"]["usage"], [[0.5, 0.25, 1.0], [0.0, 0.75, 1.0]]), "first record usage")
    check(h["last"]["step"] == 6 and h["last"]["count"] == 6
          and close(h["last"]["usage"], [[0.0, 1.0, 0.5], [1.0, 1.0, 0.0]]), "last record usage")
    cb = h["class_budget"]
    check(len(cb) == 2 and cb[0]["class"] == 0 and cb[0]["count"] == 6 and close(cb[0]["mean_budget"], [1.5, 2.0]),
          "class 0 budget from the last class_usage: %s" % cb[0])
    check(cb[1]["count"] == 0 and cb[1]["mean_budget"] is None, "class 1 had no input: budget null")
    check(h["never"] == [[0], [2]] and h["always"] == [[1], [0, 1]],
          "never/always in the last record: %s %s" % (h["never"], h["always"]))
    check(j["class_names"] is None and cb[0]["name"] is None, "no --data: no class names")

    rc, out, err = run(path)
    check(rc == 0, "heads (text) on the log exits 0")
    has_row(out, r"^middle\s+3\s+0\.500\s+2\.000\s+2\.000$", "middle step")
    has_row(out, r"^mean of 6 steps\s+-\s+0\.417\s+1\.833\s+1\.500$", "mean of all steps")
    has_row(out, r"^\s*0\s+first\s+2\s+4\s+0\.500\s+0\.250\s+1\.000$", "layer 0 first record usage")
    has_row(out, r"^\s*1\s+last\s+6\s+6\s+1\.000\s+1\.000\s+0\.000$", "layer 1 last record usage")
    has_row(out, r"^0\s+6\s+1\.500\s+2\.000$", "class 0 budget")
    has_row(out, r"^1\s+0\s+-\s+-$", "class 1 without inputs")
    has_row(out, r"^\s*1\s+2\s+0,1$", "layer 1 never 2, always 0,1")
    return j


def test_records(path, data):
    rc, out, err = run(path, "--json", "--data", data)
    check(rc == 0, "heads --json on records exits 0 (rc %d, stderr %s)" % (rc, err))
    if rc:
        return
    j = json.loads(out)
    check(j["kind"] == "records" and j["n"] == 6 and j["n_layers"] == 2 and j["n_classes"] == 3, "records sizes")
    check(j["n_heads"] == 4 and j["n_heads_from"] == "inferred", "H inferred as 4: %s" % j["n_heads"])
    check(j["class_names"] == ["alpha", "beta", "gamma"], "class names from --data")
    check(close(j["accuracy"], 4 / 6), "accuracy 4/6")
    check(close(j["mean_budget"], [13 / 6, 2.0]), "overall mean budget")
    want_cls = [("alpha", 2, [1.5, 2]), ("beta", 2, [3.5, 2]), ("gamma", 2, [1.5, 2])]
    got_cls = [(c["name"], c["n"], c["mean_budget"]) for c in j["by_class"]]
    check(len(got_cls) == 3 and all(g[0] == w[0] and g[1] == w[1] and close(g[2], w[2])
                                    for g, w in zip(got_cls, want_cls)), "by class: %s" % got_cls)
    want_len = [("1-8", 1, 8, 3, [5 / 3, 2]), ("9-16", 9, 16, 1, [3, 2]), ("17-32", 17, 32, 1, [4, 2]),
                ("129+", 129, None, 1, [1, 2])]
    got_len = [(b["bucket"], b["min_tokens"], b["max_tokens"], b["n"], b["mean_budget"]) for b in j["by_length"]]
    check(len(got_len) == 4 and all(g[:4] == w[:4] and close(g[4], w[4]) for g, w in zip(got_len, want_len)),
          "by length, non-empty buckets only: %s" % got_len)
    bc = j["by_correct"]
    check(bc["correct"]["n"] == 4 and close(bc["correct"]["mean_budget"], [2.5, 2]), "correct predictions")
    check(bc["wrong"]["n"] == 2 and close(bc["wrong"]["mean_budget"], [1.5, 2]), "wrong predictions")
    check(close(j["usage"], [[1, 4 / 6, 2 / 6, 1 / 6], [0, 1, 1, 0]]), "head usage: %s" % j["usage"])
    check(j["never"] == [[], [0, 3]] and j["always"] == [[0], [1, 2]], "never/always: %s %s" % (j["never"], j["always"]))

    rc, out, err = run(path, "--data", data)
    check(rc == 0, "heads (text) on records exits 0")
    has_row(out, r"^all\s+6\s+2\.167\s+2\.000$", "all inputs")
    has_row(out, r"^beta\s+2\s+3\.500\s+2\.000$", "class beta")
    has_row(out, r"^1-8\s+3\s+1\.667\s+2\.000$", "length 1-8")
    has_row(out, r"^129\+\s+1\s+1\.000\s+2\.000$", "length 129+")
    check(re.search(r"^33-64", out, re.MULTILINE) is None, "empty length buckets are not printed")
    has_row(out, r"^wrong\s+2\s+1\.500\s+2\.000$", "wrong predictions")
    has_row(out, r"^\s*0\s+1\.000\s+0\.667\s+0\.333\s+0\.167$", "layer 0 head usage")
    has_row(out, r"^\s*1\s+0,3\s+1,2$", "layer 1 never 0,3 always 1,2")

    # No --data: class indices; --n-heads widens H (head 4 is then never selected).
    rc, out, err = run(path, "--json", "--n-heads", "5")
    j = json.loads(out) if rc == 0 else {}
    check(rc == 0 and j["n_heads"] == 5 and j["n_heads_from"] == "option" and j["class_names"] is None
          and j["never"] == [[4], [0, 3, 4]], "--n-heads 5: %s" % (j.get("never"),))
    rc, out, err = run(path)
    has_row(out, r"^2\s+2\s+1\.500\s+2\.000$", "class index 2 without --data")
    # --n-heads smaller than a selected head: a clear error.
    rc, out, err = run(path, "--n-heads", "3")
    check(rc == 1 and path in err and ("/records/budget" in err or "/records/head_mask" in err),
          "H = 3 contradicts the records: %s" % err.strip())


def test_errors(tmp):
    rec = os.path.join(tmp, "rec.h5")
    missing = os.path.join(tmp, "no-such-file.h5")
    rc, out, err = run(missing)
    check(rc == 1 and missing in err, "missing file: exit 1 naming it (%d, %s)" % (rc, err.strip()))
    text = os.path.join(tmp, "notes.txt")
    with open(text, "w") as f:
        f.write("not an HDF5 file\n")
    rc, out, err = run(text, "--json")
    check(rc == 1 and text in err and "HDF5" in err, "non-HDF5 file: exit 1 naming it (%d, %s)" % (rc, err.strip()))
    other = os.path.join(tmp, "other.h5")
    with h5py.File(other, "w") as f:
        f["/tokens"] = np.zeros((2, 3), dtype="<i4")
    rc, out, err = run(other)
    check(rc == 1 and other in err and "neither" in err, "neither layout: exit 1 naming it (%d, %s)" % (rc, err.strip()))
    # wrong shape: /metrics/eps one row short
    bad = os.path.join(tmp, "bad-shape.h5")
    write_log(bad)
    with h5py.File(bad, "a") as f:
        del f["/metrics/eps"]
        f["/metrics/eps"] = np.zeros(5, dtype="<f4")
    rc, out, err = run(bad)
    check(rc == 1 and bad in err and "/metrics/eps" in err, "short /metrics/eps: %s" % err.strip())
    # wrong type: /heads/count as float
    bad2 = os.path.join(tmp, "bad-type.h5")
    write_log(bad2)
    with h5py.File(bad2, "a") as f:
        del f["/heads/count"]
        f["/heads/count"] = np.zeros(2, dtype="<f4")
    rc, out, err = run(bad2)
    check(rc == 1 and bad2 in err and "/heads/count" in err, "float /heads/count: %s" % err.strip())
    # records whose budget has fewer rows than label
    bad3 = os.path.join(tmp, "bad-records.h5")
    write_records(bad3)
    with h5py.File(bad3, "a") as f:
        del f["/records/budget"]
        f["/records/budget"] = np.ones((5, 2), dtype="<i4")
    rc, out, err = run(bad3)
    check(rc == 1 and bad3 in err and "/records/budget" in err, "short /records/budget: %s" % err.strip())
    # --data with the wrong number of classes
    rc, out, err = run(os.path.join(tmp, "log.h5"), "--data", os.path.join(tmp, "data.h5"))
    check(rc == 1 and "/label_names" in err, "--data with 3 names for a 2-class log: %s" % err.strip())
    # usage errors exit 2
    for args in ([], [rec, rec], [rec, "--bogus"], [rec, "--n-heads", "0"], [rec, "--data"]):
        rc, out, err = run(*args)
        check(rc == 2 and "usage" in err, "usage error %s exits 2 (rc %d)" % (args, rc))
    rc, out, err = run("--help")
    check(rc == 0 and "usage" in out, "--help exits 0")


def test_empty_log(tmp):
    """A log flushed before any step was logged or any record made: zero rows, still readable."""
    path = os.path.join(tmp, "empty.h5")
    with h5py.File(path, "w") as f:
        f["/metrics/step"] = np.zeros(0, dtype="<i8")
        f["/metrics/eps"] = np.zeros(0, dtype="<f4")
        f["/metrics/mean_budget"] = np.zeros((0, 2), dtype="<f4")
        f["/heads/step"] = np.zeros(0, dtype="<i8")
        f["/heads/count"] = np.zeros(0, dtype="<i8")
        f["/heads/class_count"] = np.zeros((0, 3), dtype="<i8")
        f["/heads/usage"] = np.zeros((0, 2, 4), dtype="<f4")
        f["/heads/class_usage"] = np.zeros((0, 3, 2, 4), dtype="<f4")
    rc, out, err = run(path, "--json")
    j = json.loads(out) if rc == 0 else {}
    check(rc == 0 and j["metrics"]["n_steps"] == 0 and j["metrics"]["last"] is None
          and j["heads"]["n_records"] == 0, "empty log: exit 0 and zero counts (%d, %s)" % (rc, err.strip()))
    rc, out, err = run(path)
    check(rc == 0 and "No /heads records yet" in out, "empty log: text says so")


def test_diagnostics(tmp, old_log):
    """The budget diagnostics of a log with known histograms (H = 3: 8 k^ bins of 0.25 over [1, 3]), and null
    for a log written before them (old_log, without the datasets)."""
    rc, out, err = run(old_log, "--json")
    j = json.loads(out) if rc == 0 else {}
    check(rc == 0 and j.get("diagnostics", 0) is None and j.get("lambda", 0) is None,
          "a log without the diagnostics: diagnostics and lambda null (rc %d, %s)" % (rc, err))
    path = os.path.join(tmp, "diag.h5")
    write_log(path)
    with h5py.File(path, "r+") as f:
        f["/metrics/budget_lambda"] = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype="<f4")
        kh = np.zeros((2, 2, 8), dtype="<i8")
        kh[0, 0, 1] = 4           # record 0 layer 0: all 4 inputs in [1.25, 1.5)
        kh[0, 1, [0, 7]] = 2      # layer 1: 2 in [1, 1.25), 2 in [2.75, 3]
        kh[1, :, 4] = 6           # record 1: all in [2, 2.25)
        lg = np.zeros((2, 2, 24), dtype="<i8")
        lg[0, :, 12] = 4          # [0, 0.5)
        lg[1, :, 0] = 6           # underflow bin [-6, -5.5)
        ms = np.zeros((2, 2, 20), dtype="<i8")
        ms[0, :, 19] = 4          # [0.95, 1]
        ms[1, :, 10] = 3          # [0.5, 0.55)
        ms[1, :, 11] = 3          # [0.55, 0.6)
        f["/heads/khat_hist"], f["/heads/logit_hist"], f["/heads/mass_hist"] = kh, lg, ms
    rc, out, err = run(path, "--json")
    j = json.loads(out) if rc == 0 else {}
    d = j.get("diagnostics") or {}
    check(rc == 0 and d.get("first", {}).get("step") == 2 and d.get("last", {}).get("count") == 6,
          "diagnostics of the first and last record (rc %d, %s)" % (rc, err))
    if not d:
        return
    k0 = d["first"]["khat"][0]
    check(k0["n"] == 4 and close([k0["mean"], k0["q1"], k0["median"], k0["q3"]], [1.375, 1.3125, 1.375, 1.4375]),
          "k^ layer 0 first record: mean (bin centres) and quartiles (linear in the bin): %s" % k0)
    k1 = d["first"]["khat"][1]
    check(close([k1["mean"], k1["q1"], k1["median"], k1["q3"]], [2.0, 1.125, 1.25, 2.875]),
          "k^ layer 1 first record (two end bins): %s" % k1)
    lo = d["last"]["logit"][0]
    check(close([lo["mean"], lo["q1"], lo["median"]], [-5.75, -5.875, -5.75]), "budget logit in the underflow "
          "bin: %s" % lo)
    m = d["last"]["mass"][1]
    check(close([m["mean"], m["median"]], [0.55, 0.55]), "gate mass: %s" % m)
    check(close([j["lambda"]["first"], j["lambda"]["middle"], j["lambda"]["last"], j["lambda"]["mean"]],
                [0.1, 0.3, 0.6, 0.35]), "lambda first / middle / last / mean: %s" % j["lambda"])
    rc, out, err = run(path)
    has_row(out, r"^\s+0\s+first\s+2\s+k\^\s+1\.375\s+1\.312\s+1\.375\s+1\.438$", "k^ of layer 0, first record")
    has_row(out, r"^budget multiplier lambda .*first 0\.1, middle 0\.3, last 0\.6", "lambda")
    with h5py.File(path, "r+") as f:
        del f["/heads/mass_hist"]
    rc, out, err = run(path)
    check(rc == 1 and "mass_hist" in err and path in err, "only some diagnostics datasets: exit 1 naming them (%s)"
          % err.strip())
    with h5py.File(path, "r+") as f:
        f["/heads/mass_hist"] = np.zeros((2, 2, 19), dtype="<i8")
    rc, out, err = run(path)
    check(rc == 1 and "/heads/mass_hist" in err and "shape" in err, "mass_hist of the wrong shape: exit 1 (%s)"
          % err.strip())


def main():
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    log, rec, data = (os.path.join(WORK, n) for n in ("log.h5", "rec.h5", "data.h5"))
    write_log(log)
    write_records(rec)
    write_dataset(data)
    test_log(log)
    test_records(rec, data)
    # An n_heads attribute on /records is used when present.
    rec5 = os.path.join(WORK, "rec-attr.h5")
    write_records(rec5, n_heads_attr=5)
    rc, out, err = run(rec5, "--json")
    check(rc == 0 and json.loads(out)["n_heads"] == 5 and json.loads(out)["n_heads_from"] == "attribute",
          "n_heads attribute")
    test_errors(WORK)
    test_empty_log(WORK)
    test_diagnostics(WORK, log)
    report()


if __name__ == "__main__":
    main()
