"""The Python package python/budgetformer against the C program, on real text.

Data: a fixed subset of the WordNet part-of-speech corpus (every 20th training row, every 8th test row of
launch/make-wordnet-csv.sh; Debian's wordnet-base), or the tiny corpus of tests/data when wordnet-base is
absent. A model trained by budgetformer (configs/wordnet-pos.ini: 8 heads, 2 layers, at width 32; 400 updates
with exploration) is
loaded with budgetformer.load and must give, on every test input:
  - logits within 1e-4 of `eval --records`, the same budget and the same head set in every layer;
  - in training mode (exploration off), the same values; a backward pass runs;
  - the ids prepare wrote (tokenizer.encode of the row's text), also for a file of awkward texts (case,
    punctuation, digits, non-ASCII, control characters, empty and over-long texts);
  - predict's label, probability, budgets and heads as `budgetformer predict --json` prints them;
and save() must write checkpoints that budgetformer accepts: eval gives the same accuracy, predict the same
answers, `train --resume` continues from it; a model made in Python evaluates too. Options: gate_norm = 1
is the renormalised gate formula (checked against a hand computation, and against the C program when its
--help-config lists gate_norm); budget_hidden = 6 (random hidden-layer tensors added to the checkpoint) gives
eval --records' budgets and logits and survives save; a nonzero unknown /model attribute is refused, a zero
one accepted.
read_log and read_records give the layouts of docs/LOGS.md.
"""
import csv
import glob
import json
import os
import shutil
import subprocess
import sys
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, SRC, TINY, check, finish, run, work_dir  # noqa: E402

sys.path.insert(0, os.path.join(SRC, "python"))
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import budgetformer  # noqa: E402

LOGIT_TOL = 1e-4
# configs/wordnet-pos.ini's 8 heads and 2 layers at a quarter of its width and half its batch: a few seconds
# in the Release build, about a minute under the sanitizers; gates as in MODEL.md (the configuration ships
# gate_norm = 1), so that setting gate_norm = 1 below changes what the model computes; the linear budget logit
# (the configuration ships budget_hidden = 32, which check_budget_hidden adds by hand) and no budget
# supervision (a training option that load and predict need not know)
SMALL = ["--set", "model.d_model=32", "--set", "model.d_ff=64", "--set", "train.batch_size=32",
         "--set", "model.gate_norm=0", "--set", "model.budget_hidden=0", "--set", "train.supervise_rank=0",
         "--set", "train.supervise_center=0"]
WORDNET = "/usr/share/wordnet/data.noun"


def read_csv_rows(path):
    """(label, text) of every row of a header-less CSV, text = the other columns joined by one space."""
    with open(path, newline="", encoding="utf-8") as f:
        return [(r[0], " ".join(c.strip() for c in r[1:])) for r in csv.reader(f) if r]


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for r in rows:
            w.writerow(r)


def make_data(work):
    """(train.csv, test.csv, name) of the corpus the test uses."""
    if os.path.exists(WORDNET):
        full = os.path.join(work, "corpus")
        run(["bash", os.path.join(SRC, "launch", "make-wordnet-csv.sh"), full])
        train = read_csv_rows(os.path.join(full, "wordnet-pos", "train.csv"))[::20]
        test = read_csv_rows(os.path.join(full, "wordnet-pos", "test.csv"))[::8]
        shutil.rmtree(full)
        tr, te = os.path.join(work, "train.csv"), os.path.join(work, "test.csv")
        write_csv(tr, train)
        write_csv(te, test)
        return tr, te, "wordnet-pos subset (%d train, %d test rows)" % (len(train), len(test))
    return os.path.join(TINY, "train.csv"), os.path.join(TINY, "test.csv"), "tiny corpus (no wordnet-base)"


def records(path):
    with h5py.File(path, "r") as f:
        return {k: f["records"][k][()] for k in f["records"]}


def forward_all(model, tokens, lengths, batch=256):
    logits, budget, mask = [], [], []
    for s in range(0, len(tokens), batch):
        out = model(torch.from_numpy(tokens[s:s + batch]).long(), torch.from_numpy(lengths[s:s + batch]).long())
        logits.append(out["logits"].detach().numpy())
        budget.append(out["budget"].numpy())
        mask.append(out["head_mask"].numpy())
    return np.concatenate(logits), np.concatenate(budget), np.concatenate(mask)


def compare(name, model, tokens, lengths, rec):
    logits, budget, mask = forward_all(model, tokens, lengths)
    diff = np.abs(logits - rec["logits"]).max()
    check(name + ": logits within 1e-4 of eval --records on every input", diff <= LOGIT_TOL, "max diff %.3g" % diff)
    nb = int((budget != rec["budget"]).any(axis=1).sum())
    nm = int((mask != rec["head_mask"].astype(np.int64)).any(axis=1).sum())
    check(name + ": same budgets on every input", nb == 0, "%d inputs differ" % nb)
    check(name + ": same head sets on every input", nm == 0, "%d inputs differ" % nm)


def eval_json(ckpt, data, rec=None):
    args = [EXE, "eval", "--checkpoint", ckpt, "--data", data, "--json"] + (["--records", rec] if rec else [])
    return json.loads(run(args).stdout)


def c_predict(ckpt, texts, work, *extra):
    inp = os.path.join(work, "predict-input.txt")
    with open(inp, "w", encoding="utf-8") as f:
        f.write("".join(t.replace("\n", " ").replace("\r", " ") + "\n" for t in texts))
    p = run([EXE, "predict", "--checkpoint", ckpt, "--input", inp, "--json"] + list(extra))
    return [json.loads(line) for line in p.stdout.splitlines()]


def awkward_texts():
    return ["Don't panic, it's 3.14!", "naïve CAFÉ déjà-vu", "x86_64 & ARMv8: 64-bit?", "", "   \t  ",
            "tabs\there\x01and\x7fcontrol", "UPPER lower MiXeD", "ünïcödé 日本語 текст", "a " * 80,
            "(parens) [brackets] {braces} <angle> \"quotes\" `tick` ~tilde^ |pipe| \\back/",
            "emoji 🙂 and 1,234.56 numbers", "--double--dash..dots"]


def check_tokenizer(work):
    """prepare's ids of a TSV of awkward texts equal Tokenizer.encode with that dataset's vocabulary."""
    tsv = os.path.join(work, "awkward.tsv")
    texts = awkward_texts()
    with open(tsv, "w", encoding="utf-8") as f:
        for i, t in enumerate(texts):
            f.write("%s\t%s\n" % ("ab"[i % 2], t))
    out = os.path.join(work, "awkward")
    run([EXE, "prepare", "--train", tsv, "--test", tsv, "--out", out, "--max-len", "40"])
    with h5py.File(os.path.join(out, "train.h5"), "r") as f:
        vocab = [s.decode() for s in f["vocab"][()]]
        tokens, lengths, lines = f["tokens"][()], f["lengths"][()], f["source_line"][()]
    tok = budgetformer.Tokenizer(vocab, 40)
    bad = [i for i in range(len(lines)) if tok.encode(texts[lines[i] - 1]) != tokens[i, :lengths[i]].tolist()]
    check("tokenizer: prepare's ids for %d awkward texts (truncation, empty, non-ASCII, control)" % len(lines),
          not bad and len(lines) == len(texts) - 0, "rows differ: %s" % bad[:5])
    check("tokenizer: tokens() as docs/DATA.md's example",
          tok.tokens("Don't panic, it's 3.14!") == "don ' t panic , it ' s 3 . 14 !".split())


def with_attr(src, dst, name, value):
    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        f["model"].attrs.create(name, np.int64(value), dtype="<i8")


def check_options(work, ckpt, data, tokens, lengths):
    # an unknown nonzero option is refused, naming it; zero is accepted
    odd = os.path.join(work, "odd-option.h5")
    with_attr(ckpt, odd, "future_option", 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            budgetformer.load(odd)
        check("an unknown nonzero /model attribute is refused", False, "loaded")
    except ValueError as e:
        check("an unknown nonzero /model attribute is refused", "future_option = 2" in str(e), str(e))
    with_attr(ckpt, odd, "future_option", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m0 = budgetformer.load(odd)
    check("an unknown /model attribute equal to 0 is accepted", m0.config["gate_norm"] == 0)
    with_attr(ckpt, odd, "gate_norm", 7)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            budgetformer.load(odd)
        check("gate_norm = 7 is refused", False, "loaded")
    except ValueError as e:
        check("gate_norm = 7 is refused", "gate_norm" in str(e), str(e))

    # gate_norm = 1: g_h = H p_h / sum_{j in S} p_j on S, 0 elsewhere (hand computation of layer 0's gates)
    gn = os.path.join(work, "gate-norm.h5")
    with_attr(ckpt, gn, "gate_norm", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = budgetformer.load(gn)
    check("gate_norm = 1 is read from /model", model.config["gate_norm"] == 1)
    H = model.config["n_heads"]
    r = torch.randn(5, H, generator=torch.Generator().manual_seed(3))
    k = torch.tensor([1, 2, 3, H, 2])
    g, m = model.gates(r, None, k)
    p = torch.softmax(r, dim=-1)
    want = torch.zeros_like(p)
    for b in range(5):
        S = torch.argsort(-r[b])[:int(k[b])]
        want[b, S] = H * p[b, S] / p[b, S].sum()
    check("gate_norm = 1: gates H p_h / sum over S of p_j", torch.allclose(g, want, atol=1e-6, rtol=1e-5),
          "max diff %.3g" % (g - want).abs().max().item())
    base = budgetformer.load(ckpt)
    a = base(torch.from_numpy(tokens[:64]).long(), torch.from_numpy(lengths[:64]).long())["logits"]
    b2 = model(torch.from_numpy(tokens[:64]).long(), torch.from_numpy(lengths[:64]).long())["logits"]
    check("gate_norm = 1 changes the logits", (a - b2).abs().max().item() > 1e-4)
    saved = os.path.join(work, "gate-norm-saved.h5")
    model.save(saved)
    with h5py.File(saved, "r") as f:
        check("save keeps gate_norm = 1", int(f["model"].attrs["gate_norm"]) == 1)

    # the C program's gate_norm, when it has one
    help_cfg = subprocess.run([EXE, "train", "--help-config"], capture_output=True, text=True).stdout
    if "gate_norm" in help_cfg:
        rec = os.path.join(work, "gate-norm-records.h5")
        p = subprocess.run([EXE, "eval", "--checkpoint", gn, "--data", data, "--records", rec],
                           capture_output=True, text=True)
        if check("budgetformer eval accepts a gate_norm = 1 checkpoint", p.returncode == 0, p.stderr.strip()):
            compare("gate_norm = 1", model, tokens, lengths, records(rec))
    else:
        print("note: budgetformer's --help-config has no gate_norm: gate_norm checked against the formula only")
    check_budget_hidden(work, ckpt, data, tokens, lengths, help_cfg)


def check_budget_hidden(work, ckpt, data, tokens, lengths, help_cfg):
    """budget_hidden = N (project-added): the checkpoint gains /model attribute budget_hidden and the tensors
    router/w_bud_h [D,N], b_bud_h [N], w_bud_o [N] of each layer; load computes the budget logit
    s w_bud + b_bud + w_bud_o . gelu_tanh(s W_bud_h + b_bud_h), as budgetformer eval does."""
    N, bh = 6, os.path.join(work, "budget-hidden.h5")
    with_attr(ckpt, bh, "budget_hidden", N)
    rs = np.random.RandomState(5)
    with h5py.File(bh, "r+") as f:
        g = f["model"]
        D = int(g.attrs["d_model"])
        for l in range(int(g.attrs["n_layers"])):
            p = "layers/%d/router/" % l
            g.create_dataset(p + "w_bud_h", data=rs.normal(0, 1.0, (D, N)).astype(np.float32))
            g.create_dataset(p + "b_bud_h", data=rs.normal(0, 0.5, (N,)).astype(np.float32))
            g.create_dataset(p + "w_bud_o", data=rs.normal(0, 1.0, (N,)).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = budgetformer.load(bh)
        base = budgetformer.load(ckpt)
    check("budget_hidden = 6 is read from /model", model.config["budget_hidden"] == N)
    t, n = torch.from_numpy(tokens[:64]).long(), torch.from_numpy(lengths[:64]).long()
    check("budget_hidden = 6 changes the continuous budgets",
          (model(t, n)["khat"] - base(t, n)["khat"]).abs().max().item() > 1e-3)
    saved = os.path.join(work, "budget-hidden-saved.h5")
    model.save(saved)
    with h5py.File(saved, "r") as f:
        check("save keeps budget_hidden and its tensors", int(f["model"].attrs["budget_hidden"]) == N
              and f["model/layers/1/router/w_bud_h"].shape == (D, N))
    if "budget_hidden" not in help_cfg:
        print("note: budgetformer's --help-config has no budget_hidden: checked in Python only")
        return
    rec = os.path.join(work, "budget-hidden-records.h5")
    p = subprocess.run([EXE, "eval", "--checkpoint", bh, "--data", data, "--records", rec],
                       capture_output=True, text=True)
    if check("budgetformer eval accepts a budget_hidden = 6 checkpoint", p.returncode == 0, p.stderr.strip()):
        compare("budget_hidden = 6", model, tokens, lengths, records(rec))


def main():
    torch.set_num_threads(1)
    work = work_dir("python_package")
    train_csv, test_csv, what = make_data(work)
    print("data:", what)
    data = os.path.join(work, "data")
    run([EXE, "prepare", "--train", train_csv, "--test", test_csv, "--out", data, "--max-len", "48"])
    test_h5 = os.path.join(data, "test.h5")
    with h5py.File(test_h5, "r") as f:
        tokens, lengths, labels = f["tokens"][()], f["lengths"][()], f["labels"][()]
        lines = f["source_line"][()]

    run_dir = os.path.join(work, "run")
    run([EXE, "train", "--config", os.path.join(SRC, "configs", "wordnet-pos.ini"),
         "--set", "data.train=%s/train.h5" % data, "--set", "data.test=" + test_h5, "--set", "data.valid=",
         "--set", "run.dir=" + run_dir, "--set", "train.steps=400", "--set", "explore.steps=200",
         "--set", "train.eval_every=0", "--set", "checkpoint.every=0", "--set", "heads.every=100",
         "--set", "train.log_every=100", *SMALL])
    ckpt = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "step-*.h5")))[-1]
    rec_path = os.path.join(work, "test-records.h5")
    ev = eval_json(ckpt, test_h5, rec_path)
    rec = records(rec_path)

    # load: eval mode, then training mode without exploration
    model = budgetformer.load(ckpt)
    check("load returns a torch.nn.Module in eval mode", isinstance(model, torch.nn.Module) and not model.training)
    with torch.no_grad():
        compare("eval mode", model, tokens, lengths, rec)
    model.train()
    out = model(torch.from_numpy(tokens[:32]).long(), torch.from_numpy(lengths[:32]).long())
    loss = torch.nn.functional.cross_entropy(out["logits"], torch.from_numpy(labels[:32]).long()) \
        + 0.05 * model.budget_cost(out)
    loss.backward()
    g = model.params["layers/0/router/b_bud"].grad
    check("training mode: a backward pass reaches the budget (straight-through)",
          g is not None and torch.isfinite(g).all().item() and g.abs().sum().item() > 0)
    model.zero_grad()
    compare("training mode", model, tokens, lengths, rec)
    model.eval()

    # tokenizer: the ids prepare wrote for every test row
    texts = [t for _, t in read_csv_rows(test_csv)]
    bad = [i for i in range(len(lines)) if model.tokenizer.encode(texts[lines[i] - 1]) != tokens[i, :lengths[i]].tolist()]
    check("tokenizer: prepare's ids on every test row (%d)" % len(lines), not bad, "rows differ: %s" % bad[:5])
    check_tokenizer(work)

    # predict against budgetformer predict --json
    sample = [texts[lines[i] - 1] for i in range(0, len(lines), max(1, len(lines) // 200))] + awkward_texts()
    mine = model.predict(sample, top_k=3)
    theirs = c_predict(ckpt, sample, work)
    same = len(mine) == len(theirs) and all(
        a["label"] == b["label"] and abs(a["probability"] - b["probability"]) <= 2e-6 and a["budget"] == b["budget"]
        and a["heads"] == b["heads"] for a, b in zip(mine, theirs))
    check("predict: label, probability, budget and heads as budgetformer predict --json (%d texts)" % len(sample),
          same, "first: %s vs %s" % (mine[:1], theirs[:1]))
    check("predict top_k: sorted, first = the label", all(
        d["top"][0][0] == d["label"] and d["top"][0][1] >= d["top"][-1][1] and len(d["top"]) == 3 for d in mine))
    top3 = c_predict(ckpt, sample, work, "--top-k", "3")
    check("predict top_k = 3 as budgetformer predict --top-k 3 --json", all(
        [t["label"] for t in b["top"]] == [t[0] for t in a["top"]] and
        all(abs(t["probability"] - u[1]) <= 2e-6 for t, u in zip(b["top"], a["top"])) for a, b in zip(mine, top3)),
        "first: %s vs %s" % (mine[0].get("top"), top3[0].get("top")))
    txt = subprocess.run([EXE, "predict", "--checkpoint", ckpt, "--top-k", "2"], input="move quickly on foot\n",
                         capture_output=True, text=True)
    f = txt.stdout.rstrip("\n").split("\t")
    check("predict --top-k 2 text: LABEL PROB LABEL PROB HEADS", txt.returncode == 0 and len(f) == 5 and
          f[4].startswith("L0="), txt.stdout + txt.stderr)

    # save: eval, predict and --resume accept it
    saved = os.path.join(work, "saved", "from-python.h5")
    os.makedirs(os.path.dirname(saved))
    model.save(saved)
    ev2 = eval_json(saved, test_h5)
    check("save: budgetformer eval gives the same accuracy", ev2["accuracy"] == ev["accuracy"],
          "%s vs %s" % (ev2["accuracy"], ev["accuracy"]))
    rc, insp = subprocess.run([EXE, "inspect", "--json", saved], capture_output=True, text=True), None
    insp = json.loads(rc.stdout) if rc.returncode == 0 else {}
    check("save: inspect says the digest is valid", insp.get("checksum", {}).get("status") == "valid", rc.stderr)
    check("save: predict answers as before", c_predict(saved, sample, work) == theirs)
    with torch.no_grad():  # a changed model: its saved copy evaluates to what Python computes
        model.params["classifier/b"][0] += 0.5
    changed = os.path.join(work, "saved", "changed.h5")
    model.save(changed)
    rec3 = os.path.join(work, "changed-records.h5")
    eval_json(changed, test_h5, rec3)
    with torch.no_grad():
        compare("saved changed model", model, tokens, lengths, records(rec3))
        model.params["classifier/b"][0] -= 0.5
    p = subprocess.run([EXE, "train", "--config", os.path.join(SRC, "configs", "wordnet-pos.ini"),
                        "--set", "data.train=%s/train.h5" % data, "--set", "data.test=" + test_h5,
                        "--set", "data.valid=", "--set", "run.dir=" + os.path.join(work, "resumed"),
                        "--set", "train.steps=420", "--set", "explore.steps=200", "--set", "train.eval_every=0",
                        "--set", "checkpoint.every=0", "--resume", saved, *SMALL], capture_output=True, text=True)
    check("save: train --resume continues from the saved checkpoint", p.returncode == 0 and
          os.path.exists(os.path.join(work, "resumed", "checkpoints", "step-00000420.h5")), p.stderr[-2000:])

    # a model made in Python (no training state) evaluates and predicts
    fresh = budgetformer.BudgetFormer(model.config, model.tokenizer.vocab, model.labels)
    fresh.load_state_dict(model.state_dict())
    only = os.path.join(work, "saved", "model-only.h5")
    fresh.save(only)
    ev4 = eval_json(only, test_h5)
    check("a model-only file saved from Python evaluates to the same accuracy", ev4["accuracy"] == ev["accuracy"])
    p = subprocess.run([EXE, "train", "--config", os.path.join(SRC, "configs", "wordnet-pos.ini"),
                        "--set", "data.train=%s/train.h5" % data, "--set", "data.test=" + test_h5,
                        "--set", "data.valid=", "--set", "run.dir=" + os.path.join(work, "from-model-only"),
                        "--resume", only, *SMALL], capture_output=True, text=True)
    check("train --resume of a model-only file: exit 1, the file named as model-only, nothing trained",
          p.returncode == 1 and only in p.stderr and "model-only file" in p.stderr and "not resumed" in p.stderr
          and not os.path.exists(os.path.join(work, "from-model-only", "checkpoints")), p.stderr[-800:])

    check_options(work, ckpt, test_h5, tokens, lengths)

    # read_log and read_records
    logs = budgetformer.read_log(os.path.join(run_dir, "log.h5"))
    m = logs["metrics"]
    check("read_log: /metrics, one row per update", len(m) == 400 and list(m.index[:3]) == [1, 2, 3] and
          "loss" in m and "mean_budget_l1" in m, str(m.columns.tolist()))
    h = logs["heads"]
    L, H = model.config["n_layers"], model.config["n_heads"]
    check("read_log: /heads, one row per (record, layer, head)", len(h) == 4 * L * H and
          abs(h.groupby(["step", "layer"])["budget_hist"].sum() - 1).max() < 1e-5)
    r = budgetformer.read_records(rec_path, data=test_h5)
    check("read_records: one row per input, accuracy as eval's", len(r) == len(labels) and
          abs(r["correct"].mean() - ev["accuracy"]) < 1e-6 and "label_name" in r and "heads_l0" in r)
    finish(work)


if __name__ == "__main__":
    main()
