"""Writes the reference fixtures for tests/test_reference.c: python3 make_fixture.py OUTDIR

Each OUTDIR/<case>.h5 holds a small random model in the checkpoint layout of docs/MODEL.md (/model datasets and
integer attributes, /vocab, /label_names), one batch and its exploration draws, and what bf_reference.py
computes for them in float32:
    /input/tokens int32 [B,T] (PAD = 0 after the length), /input/lengths int32 [B], /input/labels int32 [B]
    /explore attributes eps, tau, ce_scale, cost_scale (float64); /explore/gumbel float32 [B,L,H],
        /explore/k_random int32 [B,L] (0 = exploit, else the budget; all ignored when eps = 0)
    /expect/logits float32 [B,C], /expect/khat float32 [B,L], /expect/budget int32 [B,L],
    /expect/head_mask uint32 [B,L], /expect/ce float32 [B], /expect/ce_sum float64 scalar,
    /expect/loss float64 scalar (ce_scale * ce_sum + cost_scale * budget cost),
    /expect/grad/<name> float32, d loss / d /model/<name> for every parameter (zeros where unused).
The weights are resampled until the fixture is robust: no two perturbed relevance logits of one (input,
layer) within GAP_MIN of each other, no k^ within KHAT_MARGIN of a rounding boundary x.5, and float64
agrees with float32 (same discrete choices, values to ~1e-5), so a correct float32 implementation that
sums in another order cannot flip a choice.
"""
import os
import sys

import h5py
import numpy as np
import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bf_reference import BudgetFormerRef, param_shapes  # noqa: E402

GAP_MIN = 0.02       # smallest allowed gap between two perturbed relevance logits of one (input, layer)
KHAT_MARGIN = 0.05   # smallest allowed distance of k^ from a rounding boundary x.5
SIZES = dict(vocab_size=50, max_len=12, d_model=16, n_heads=4, n_layers=2, d_ff=24, n_classes=3)
B = 6
LENGTHS = [1, 12, 5, 8, 3, 10]

CASES = [
    # name, full_heads, fixed_budget, eps, tau, cost_scale, random budgets[, added options]
    ("learned_explore", 0, 0, 0.7, 0.8, 0.1, True),
    ("learned_exploit", 0, 0, 0.0, 1.0, 0.1, False),
    ("full_heads", 1, 0, 0.0, 1.0, 0.1, False),
    # Gumbel noise also perturbs the fixed-budget selection (docs/MODEL.md: S chosen by r + eps G); k_random is
    # left 0, since docs/MODEL.md leaves it open whether a fixed-budget model draws random budgets.
    ("fixed_budget", 0, 2, 0.5, 1.0, 0.1, False),
    # Added options (docs/MODEL.md): renormalised gates; a forced budget with distillation targets (a sandwich
    # pass); budget supervision with distillation targets.
    ("gate_norm_explore", 0, 0, 0.7, 0.8, 0.1, True, dict(gate_norm=1)),
    ("gate_norm_fixed", 0, 2, 0.5, 1.0, 0.1, False, dict(gate_norm=1)),
    ("forced_k_distill", 0, 0, 0.5, 1.0, 0.1, False, dict(gate_norm=1, k_force=3, soft=True)),
    ("supervised_distill", 0, 0, 0.0, 0.9, 0.1, False, dict(gate_norm=1, soft=True, sup_scale=0.2)),
    # The budget predictor's hidden layer (budget_hidden = N), with exploration and without; appended last so
    # the cases above keep their seeds.
    ("budget_hidden_explore", 0, 0, 0.7, 0.8, 0.1, True, dict(gate_norm=1, budget_hidden=5)),
    ("budget_hidden_exploit", 0, 0, 0.0, 1.0, 0.1, False, dict(budget_hidden=5)),
    # Centred budget supervision (train.supervise_center): the reference differentiates through the means.
    ("supervised_center", 0, 0, 0.7, 0.8, 0.1, True, dict(gate_norm=1, budget_hidden=5, sup_scale=0.4,
                                                         sup_center=1)),
    # The budget spread (train.budget_spread) beside centred supervision: sigma 2 heads is above the draws'
    # spread, so the term acts; the reference differentiates through the variance and its mean.
    ("budget_spread", 0, 0, 0.7, 0.8, 0.1, True, dict(gate_norm=1, budget_hidden=5, sup_scale=0.4,
                                                     sup_center=1, spread_sd=2.0, spread_scale=0.3)),
    # A fixed budget per layer (model.layer_budgets = 3,1: /model fixed_budget = -1 and layer_budgets), with
    # exploration noise on the selection and renormalised gates.
    ("layer_budgets", 0, -1, 0.5, 1.0, 0.1, False, dict(gate_norm=1, layer_budgets=(3, 1))),
]


def random_case(rs, cfg, eps, random_budgets):
    V, T, H, L = cfg["vocab_size"], cfg["max_len"], cfg["n_heads"], cfg["n_layers"]
    params = {}
    for name, shape in param_shapes(cfg):
        leaf = name.split("/")[-1]
        if name in ("tok_emb", "pos_emb"):
            a = rs.normal(0, 0.5, shape)
        elif leaf == "gamma":
            a = 1.0 + rs.normal(0, 0.2, shape)
        elif leaf == "w_rel":
            a = rs.normal(0, 1.0, shape)     # relevance logits spread over ~+-2: no near-ties
        elif leaf == "b_rel":
            a = rs.normal(0, 0.7, shape)
        elif leaf == "w_bud":
            a = rs.normal(0, 0.6, shape)     # k^ spread over [1, H]
        elif leaf == "b_bud":
            a = rs.normal(0, 0.5, shape)
        elif leaf in ("beta", "b_qkv", "b_out", "b1", "b2", "b"):
            a = rs.normal(0, 0.1, shape)
        else:
            a = rs.normal(0, 0.3, shape)     # matrices
        params[name] = a.astype(np.float32)
    tokens = np.zeros((B, T), np.int32)
    for b, n in enumerate(LENGTHS):
        tokens[b, :n] = rs.randint(1, V, n)  # ids 1..V-1 (UNK included), PAD after the length
    labels = rs.randint(0, cfg["n_classes"], B).astype(np.int32)
    if eps > 0:
        u = rs.uniform(0, 1, (B, L, H))
        u = np.clip(u, 1e-12, 1 - 1e-12)
        gumbel = (-np.log(-np.log(u))).astype(np.float32)
    else:
        gumbel = np.zeros((B, L, H), np.float32)
    k_random = np.zeros((B, L), np.int32)
    if random_budgets:
        coin = rs.uniform(0, 1, (B, L)) < eps
        k_random[coin] = rs.randint(1, H + 1, int(coin.sum()))
    return params, tokens, labels, gumbel, k_random


def extras_for(rs, cfg, opts):
    """The training-option inputs of a case: soft targets [B,C] and k* [B] (None when unused)."""
    soft = k_target = None
    if opts.get("soft"):
        a = rs.uniform(0.1, 1.0, (B, cfg["n_classes"]))
        soft = (a / a.sum(axis=1, keepdims=True)).astype(np.float32)
    if opts.get("sup_scale"):
        k_target = rs.randint(1, cfg["n_heads"] + 1, B).astype(np.float32)
    return soft, k_target


def run(cfg, params, tokens, lengths, labels, gumbel, k_random, eps, tau, ce_scale, cost_scale, dtype,
        opts=None, soft=None, k_target=None):
    opts = opts or {}
    model = BudgetFormerRef(cfg, dtype)
    with torch.no_grad():
        for name, a in params.items():
            model.params[name].copy_(torch.from_numpy(a).to(dtype))
    out = model(torch.from_numpy(tokens), torch.from_numpy(lengths), torch.from_numpy(gumbel),
                torch.from_numpy(k_random), eps, tau, k_force=opts.get("k_force", 0))
    loss, ce_sum, ce = model.loss(out, torch.from_numpy(labels), ce_scale, cost_scale,
                                  None if soft is None else torch.from_numpy(soft),
                                  None if k_target is None else torch.from_numpy(k_target),
                                  opts.get("sup_scale", 0.0), opts.get("sup_center", 0),
                                  opts.get("spread_sd", 0.0), opts.get("spread_scale", 0.0))
    model.zero_grad()
    loss.backward()
    grads = {}
    for name, p in model.params.items():
        grads[name] = np.zeros(p.shape) if p.grad is None else p.grad.double().numpy()
    return out, loss.item(), ce_sum.item(), ce.detach().double().numpy(), grads


def robust(cfg, case, data, r32, r64, eps):
    """Returns None when the fixture is robust, else the reason to resample."""
    out32, loss32, ce32, _, g32 = r32
    out64, loss64, ce64, _, g64 = r64
    k_random = data[4]
    for key in ("budget", "head_mask"):
        if not torch.equal(out32[key], out64[key]):
            return "float32 and float64 %s differ" % key
    if not cfg["full_heads"]:
        r = out64["ranked"].numpy()
        gaps = np.diff(np.sort(r, axis=-1), axis=-1)
        if gaps.min() < GAP_MIN:
            return "near-tie in relevance logits (gap %.3g)" % gaps.min()
    # a forced budget does not depend on k^ (and draws no random budgets): no margins to keep there
    if not cfg["full_heads"] and not cfg["fixed_budget"] and not case.startswith("forced"):
        kh = out64["khat"].numpy()
        dist = np.abs(kh - (np.floor(kh) + 0.5))  # distance from the nearest x.5
        if dist.min() < KHAT_MARGIN:
            return "k^ within %.3g of a rounding boundary" % dist.min()
        if len(np.unique(out64["budget"].numpy())) < 2:
            return "budgets not varied"
        if eps > 0 and (k_random > 0).sum() < 2:
            return "too few random budgets"
    # float32 values agree with float64
    d_logits = (out32["logits"].double() - out64["logits"]).abs().max().item()
    d_khat = (out32["khat"].double() - out64["khat"]).abs().max().item()
    if d_logits > 1e-5 or d_khat > 1e-5 or abs(ce32 - ce64) > 1e-5 * max(1, abs(ce64)) or \
            abs(loss32 - loss64) > 1e-5 * max(1, abs(loss64)):
        return "float32 vs float64 values differ (logits %.3g khat %.3g)" % (d_logits, d_khat)
    worst = 0.0
    for name in g64:
        scale = np.abs(g64[name]).max()
        d = np.abs(g32[name] - g64[name]).max()
        worst = max(worst, d / (1e-6 + scale))
        if d > 1e-6 + 1e-4 * scale:
            return "float32 vs float64 gradient of %s differs by %.3g (max %.3g)" % (name, d, scale)
    print("  %s: float32 vs float64: logits %.2g, khat %.2g, worst gradient rel %.2g"
          % (case, d_logits, d_khat, worst))
    return None


def write(path, cfg, data, r32, eps, tau, ce_scale, cost_scale, opts=None, soft=None, k_target=None):
    opts = opts or {}
    params, tokens, labels, gumbel, k_random = data
    out, loss, ce_sum, ce, grads = r32
    with h5py.File(path, "w") as f:
        g = f.create_group("model")
        for k, v in cfg.items():
            g.attrs[k] = np.asarray(v, dtype=np.int64) if k == "layer_budgets" else np.int64(v)
        # the training options of the case (absent = off): /explore attributes k_force, sup_scale, sup_center,
        # spread_sd, spread_scale and the
        # datasets /explore/k_target [B], /input/soft_targets [B,C]
        if soft is not None:
            f.create_dataset("input/soft_targets", data=soft)
        if k_target is not None:
            f.create_dataset("explore/k_target", data=k_target)
        for name, _ in param_shapes(cfg):
            g.create_dataset(name, data=params[name].astype(np.float32))
        sdt = h5py.string_dtype("utf-8")
        vocab = ["<pad>", "<unk>"] + ["w%d" % i for i in range(2, cfg["vocab_size"])]
        f.create_dataset("vocab", data=np.array(vocab, dtype=object), dtype=sdt)
        f.create_dataset("label_names", data=np.array(["c%d" % i for i in range(cfg["n_classes"])],
                                                      dtype=object), dtype=sdt)
        f.create_dataset("input/tokens", data=tokens.astype(np.int32))
        f.create_dataset("input/lengths", data=np.array(LENGTHS, np.int32))
        f.create_dataset("input/labels", data=labels.astype(np.int32))
        e = f.require_group("explore")
        e.attrs["eps"] = float(eps)
        e.attrs["tau"] = float(tau)
        e.attrs["ce_scale"] = float(ce_scale)
        e.attrs["cost_scale"] = float(cost_scale)
        e.attrs["k_force"] = np.int64(opts.get("k_force", 0))
        e.attrs["sup_scale"] = float(opts.get("sup_scale", 0.0))
        e.attrs["sup_center"] = np.int64(opts.get("sup_center", 0))
        e.attrs["spread_sd"] = float(opts.get("spread_sd", 0.0))
        e.attrs["spread_scale"] = float(opts.get("spread_scale", 0.0))
        e.create_dataset("gumbel", data=gumbel.astype(np.float32))
        e.create_dataset("k_random", data=k_random.astype(np.int32))
        x = f.create_group("expect")
        x.create_dataset("logits", data=out["logits"].detach().numpy().astype(np.float32))
        x.create_dataset("khat", data=out["khat"].numpy().astype(np.float32))
        x.create_dataset("budget", data=out["budget"].numpy().astype(np.int32))
        x.create_dataset("head_mask", data=out["head_mask"].numpy().astype(np.uint32))
        x.create_dataset("ce", data=ce.astype(np.float32))
        x.create_dataset("ce_sum", data=np.float64(ce_sum))
        x.create_dataset("loss", data=np.float64(loss))
        for name, _ in param_shapes(cfg):
            x.create_dataset("grad/" + name, data=grads[name].astype(np.float32))


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_fixture.py OUTDIR")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)
    lengths = np.array(LENGTHS, np.int32)
    for ci, (case, full, fixed, eps, tau, cost_scale, random_budgets, *more) in enumerate(CASES):
        opts = more[0] if more else {}
        cfg = dict(SIZES, full_heads=full, fixed_budget=fixed)
        for k in ("gate_norm", "budget_hidden", "layer_budgets"):
            if k in opts:
                cfg[k] = opts[k]
        ce_scale = 1.0 / B
        for attempt in range(200):
            rs = np.random.RandomState(1000 * ci + attempt)
            data = random_case(rs, cfg, eps, random_budgets)
            params, tokens, labels, gumbel, k_random = data
            soft, k_target = extras_for(rs, cfg, opts)
            args = (cfg, params, tokens, lengths, labels, gumbel, k_random, eps, tau, ce_scale, cost_scale)
            r32 = run(*args, torch.float32, opts, soft, k_target)
            r64 = run(*args, torch.float64, opts, soft, k_target)
            why = robust(cfg, case, data, r32, r64, eps)
            if why is None:
                break
            print("  %s attempt %d resampled: %s" % (case, attempt, why))
        else:
            sys.exit("make_fixture: no robust draw for case %s" % case)
        path = os.path.join(outdir, case + ".h5")
        write(path, cfg, data, r32, eps, tau, ce_scale, cost_scale, opts, soft, k_target)
        out = r32[0]
        print("wrote %s (budgets %s, masks %s)" % (path, out["budget"].flatten().tolist(),
                                                   out["head_mask"].flatten().tolist()))


if __name__ == "__main__":
    main()
