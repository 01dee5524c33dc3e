"""`budgetformer eval --budget-control shuffle|constant|oracle` (README "Evaluating"): the same weights with
the model's own budgets moved between the inputs, or (oracle, a diagnostic) shared out by the labels.

A tiny model is trained, and its router's w_bud is replaced with h5py in two copies of the checkpoint (a
copy without a digest sidecar loads with a warning): N(0, 8) weights, so the budgets vary widely between
inputs, and zeros, so every input gets the same budget in each layer. On the test set:
  - shuffle: the control's records hold the model's own budgets (from a plain eval's records) permuted by
    the Fisher-Yates permutation of the seed recomputed here (bf_rng_key, stream 8), one permutation for all
    layers: the per-layer histogram of k is kept exactly, and some inputs got other budgets; another seed
    gives another permutation; the records carry the attributes budget_control and control_seed;
  - constant: every input gets per layer floor(mean + 1/2) of its layer's budgets (integer arithmetic);
  - the JSON's own numbers are those of the plain eval, the control's accuracy is that of its records and
    accuracy_difference = control - own;
  - with equal budgets both controls give exactly the plain accuracy (and logits);
  - mpirun -np 2 gives the 1-rank control budgets and accuracy;
  - oracle: every input has one k in all layers, the heads given are at most the model's own (summed over
    layers, divided by L, rounded) and at least one per input, its records say budget_control = oracle, and
    its loss is below the model's own (it picks, per input, budgets that lower the loss); refused on 2 ranks;
  - usage errors: an unknown control, a bad seed, --control-seed without shuffle;
  - the plain JSON holds exactly the keys of README's eval table, and a checkpoint path with a quote and a
    backslash comes back as the same string (the object still parses)."""
import json
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, MPIRUN2, SRC, TIMEOUT, check, finish, prepare, rng_key, run, train_args, work_dir  # noqa: E402

L, H = 2, 4
STREAM_CONTROL = 8


def control_perm(n, seed):
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng_key(seed, 0, i, 0, STREAM_CONTROL, 0) % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return np.array(perm)


def edited_checkpoint(src, dst, w_bud):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        for l in range(L):
            d = f["model/layers/%d/router/w_bud" % l]
            d[...] = w_bud(l, d.shape).astype(d.dtype)


def records(path):
    with h5py.File(path, "r") as f:
        r = f["records"]
        return {k: r[k][()] for k in r}, dict(r.attrs)


def evaluate(ckpt, data, rec, *extra, prefix=()):
    p = run(list(prefix) + [EXE, "eval", "--checkpoint", ckpt, "--data", data, "--json", "--records", rec] +
            list(extra))
    return json.loads(p.stdout.strip().splitlines()[-1])


def hist(b):
    return [np.bincount(b[:, l], minlength=H + 1).tolist() for l in range(b.shape[1])]


def main():
    work = work_dir("test_budget_control")
    data = prepare(work)
    rd = os.path.join(work, "run")
    run([EXE] + train_args(data, rd, "train.steps=30"))
    base = os.path.join(rd, "checkpoints", "step-00000030.h5")
    test = os.path.join(data, "test.h5")
    rng = np.random.default_rng(5)
    varied, equal = os.path.join(work, "varied.h5"), os.path.join(work, "equal.h5")
    edited_checkpoint(base, varied, lambda l, s: rng.normal(0.0, 8.0, s))
    edited_checkpoint(base, equal, lambda l, s: np.zeros(s))

    own_j = evaluate(varied, test, os.path.join(work, "own.h5"))
    own, _ = records(os.path.join(work, "own.h5"))
    with open(os.path.join(SRC, "README.md")) as f:
        readme = f.read()
    table = readme[readme.index("`--json` prints one JSON object with\nthese keys:"):]
    table = table[:table.index("\n\n", table.index("| key |"))]
    documented = set(re.findall(r"`([a-z_0-9]+)`", "\n".join(r.split("|")[1] for r in table.splitlines()
                                                             if r.startswith("| `"))))
    check("plain eval JSON: exactly README's keys (budget_control only with a control)",
          set(own_j) == documented - {"budget_control"}, "%s vs %s" % (sorted(own_j), sorted(documented)))
    odd = os.path.join(work, 'we"ird\\name.h5')
    shutil.copyfile(varied, odd)
    odd_j = evaluate(odd, test, os.path.join(work, "odd.h5"))
    check("a checkpoint path with a quote and a backslash: JSON parses, same string, same accuracy",
          odd_j["checkpoint"] == odd and odd_j["accuracy"] == own_j["accuracy"], odd_j["checkpoint"])
    ob = own["budget"]
    n = ob.shape[0]
    check("the edited model's budgets vary (>= 3 distinct k in some layer)",
          max(len(np.unique(ob[:, l])) for l in range(L)) >= 3, str(hist(ob)))

    sh_j = evaluate(varied, test, os.path.join(work, "shuffle.h5"), "--budget-control", "shuffle")
    sh, attrs = records(os.path.join(work, "shuffle.h5"))
    perm = control_perm(n, 1)
    check("shuffle: control budgets = own budgets permuted by the seed-1 permutation (all layers alike)",
          np.array_equal(sh["budget"], ob[perm]))
    check("shuffle: per-layer histogram of k kept exactly", hist(sh["budget"]) == hist(ob),
          "%s vs %s" % (hist(sh["budget"]), hist(ob)))
    moved = float((sh["budget"] != ob).any(axis=1).mean())
    check("shuffle: inputs got other budgets (fraction %.2f)" % moved, moved > 0.2)
    pop = np.vectorize(lambda x: bin(int(x)).count("1"))(sh["head_mask"])
    check("shuffle: records' head_mask popcount = the overridden budget", np.array_equal(pop, sh["budget"]))
    check("shuffle: records attributes", attrs.get("budget_control") in ("shuffle", b"shuffle") and
          int(attrs.get("control_seed", -1)) == 1, str(attrs))
    c = sh_j.get("budget_control") or {}
    check("shuffle JSON: own numbers as in the plain eval",
          sh_j["accuracy"] == own_j["accuracy"] and sh_j["mean_budget"] == own_j["mean_budget"] and
          "budget_control" not in own_j)
    acc = float((sh["pred"] == sh["label"]).mean())
    check("shuffle JSON: kind, seed, accuracy of the control records, difference",
          c.get("kind") == "shuffle" and c.get("seed") == 1 and abs(c.get("accuracy", -1) - acc) < 1e-6 and
          abs(c["accuracy_difference"] - (c["accuracy"] - sh_j["accuracy"])) < 2e-6, json.dumps(c))
    check("shuffle JSON: the control's budget_hist = the own budget_hist", c.get("budget_hist") == sh_j["budget_hist"])

    evaluate(varied, test, os.path.join(work, "shuffle7.h5"), "--budget-control", "shuffle", "--control-seed", "7")
    s7, a7 = records(os.path.join(work, "shuffle7.h5"))
    check("shuffle --control-seed 7: the seed-7 permutation", np.array_equal(s7["budget"], ob[control_perm(n, 7)])
          and not np.array_equal(s7["budget"], sh["budget"]) and int(a7["control_seed"]) == 7)

    co_j = evaluate(varied, test, os.path.join(work, "constant.h5"), "--budget-control", "constant")
    co, attrs = records(os.path.join(work, "constant.h5"))
    want = [(2 * int(ob[:, l].sum()) + n) // (2 * n) for l in range(L)]
    check("constant: every input gets the rounded mean budget of its layer %s" % want,
          np.array_equal(co["budget"], np.tile(np.array(want, dtype=np.int32), (n, 1))),
          str(hist(co["budget"])))
    check("constant: JSON mean_budget of the control = the constants",
          co_j["budget_control"]["mean_budget"] == [float(k) for k in want] and
          co_j["budget_control"]["kind"] == "constant" and co_j["budget_control"]["seed"] is None and
          "control_seed" not in attrs)

    or_j = evaluate(varied, test, os.path.join(work, "oracle.h5"), "--budget-control", "oracle")
    orc, attrs = records(os.path.join(work, "oracle.h5"))
    given, own_total = int(orc["budget"][:, 0].sum()), (int(ob.sum()) + L // 2) // L
    check("oracle: one k per input in every layer, %d heads given of %d, at least one each" % (given, own_total),
          all(np.array_equal(orc["budget"][:, l], orc["budget"][:, 0]) for l in range(L)) and
          n <= given <= own_total and orc["budget"].min() >= 1, str(hist(orc["budget"])))
    check("oracle: records attribute and a lower loss than the own budgets (%.4f < %.4f)" %
          (or_j["budget_control"]["loss"], or_j["loss"]),
          attrs.get("budget_control") in ("oracle", b"oracle") and or_j["budget_control"]["loss"] < or_j["loss"])
    p = subprocess.run(MPIRUN2 + [EXE, "eval", "--checkpoint", varied, "--data", test, "--budget-control", "oracle"],
                       capture_output=True, text=True, timeout=TIMEOUT)
    check("oracle on 2 ranks: refused as a usage error (exit 2), naming one rank", p.returncode == 2 and
          "one rank" in p.stderr,
          p.stderr.strip()[-300:])

    eq_j = evaluate(equal, test, os.path.join(work, "eq.h5"))
    eq, _ = records(os.path.join(work, "eq.h5"))
    check("w_bud = 0: one budget per layer", all(len(np.unique(eq["budget"][:, l])) == 1 for l in range(L)),
          str(hist(eq["budget"])))
    for kind in ("shuffle", "constant"):
        j = evaluate(equal, test, os.path.join(work, "eq-%s.h5" % kind), "--budget-control", kind)
        r, _ = records(os.path.join(work, "eq-%s.h5" % kind))
        check("equal budgets, %s: control accuracy = plain accuracy, difference 0" % kind,
              j["budget_control"]["accuracy"] == eq_j["accuracy"] == j["accuracy"] and
              j["budget_control"]["accuracy_difference"] == 0.0, json.dumps(j["budget_control"]))
        check("equal budgets, %s: identical logits and budgets" % kind,
              np.array_equal(r["logits"], eq["logits"]) and np.array_equal(r["budget"], eq["budget"]))

    for kind in ("shuffle", "constant"):
        one = json.loads(json.dumps(sh_j if kind == "shuffle" else co_j))
        two = evaluate(varied, test, os.path.join(work, "two-%s.h5" % kind), "--budget-control", kind,
                       prefix=MPIRUN2)
        r2, _ = records(os.path.join(work, "two-%s.h5" % kind))
        r1 = sh if kind == "shuffle" else co
        check("2 ranks, %s: the control budgets of 1 rank" % kind, np.array_equal(r2["budget"], r1["budget"]))
        check("2 ranks, %s: the control accuracy and budgets of 1 rank" % kind,
              two["budget_control"]["accuracy"] == one["budget_control"]["accuracy"] and
              two["budget_control"]["budget_hist"] == one["budget_control"]["budget_hist"] and
              two["accuracy"] == one["accuracy"],
              "%s vs %s" % (two["budget_control"], one["budget_control"]))

    for args, what in ((["--budget-control", "random"], "shuffle, constant or oracle"),
                       (["--budget-control", "shuffle", "--control-seed", "-1"], "--control-seed"),
                       (["--budget-control", "shuffle", "--control-seed", "1x"], "--control-seed"),
                       (["--budget-control", "constant", "--control-seed", "3"], "shuffle only"),
                       (["--budget-control"], "needs a value")):
        p = subprocess.run([EXE, "eval", "--checkpoint", varied, "--data", test] + args, capture_output=True,
                           text=True, timeout=TIMEOUT)
        check("usage error for %s" % " ".join(args), p.returncode == 2 and what in p.stderr, p.stderr.strip())
    p = subprocess.run([EXE, "eval", "--help"], capture_output=True, text=True, timeout=TIMEOUT)
    check("eval --help documents the controls", p.returncode == 0 and "--budget-control" in p.stdout and
          "--control-seed" in p.stdout)
    finish(work)


if __name__ == "__main__":
    main()
