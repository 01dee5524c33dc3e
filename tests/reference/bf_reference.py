"""PyTorch reference of the BudgetFormer model contract (docs/MODEL.md).

Written from docs/MODEL.md alone, independently of the C code, so that the C trainer can be checked against it:
forward on padded [B, T] token ids with lengths, the straight-through budget/selection estimator, the loss
the C backward differentiates, and checkpoint I/O under the stored names of docs/MODEL.md.

    cfg = dict(vocab_size=50, max_len=12, d_model=16, n_heads=4, n_layers=2, d_ff=24, n_classes=3,
               full_heads=0, fixed_budget=0)
    model = BudgetFormerRef(cfg)                 # parameters under the stored names, model.params[name]
    out = model(tokens, lengths, gumbel=g, k_random=kr, eps=0.7, tau=1.0)
    loss, ce_sum = model.loss(out, labels, ce_scale=1 / B, cost_scale=0.1)
    loss.backward()                              # model.params[name].grad

Run with Debian's python (/usr/bin/python3, torch 1.13). `python3 bf_reference.py` runs self-checks
(float64 gradcheck of the full-heads and fixed-budget paths, the straight-through formula of the learned
budget, padding invariance).
"""
import math

import torch

CONFIG_KEYS = ("vocab_size", "max_len", "d_model", "n_heads", "n_layers", "d_ff", "n_classes",
               "full_heads", "fixed_budget")
# Options the project added beside MODEL.md (docs/MODEL.md); absent = 0 = MODEL.md's function.
OPTION_KEYS = ("gate_norm", "budget_hidden")
LN_EPS = 1e-5


def param_shapes(cfg):
    """(stored name without the /model/ prefix, shape) in docs/MODEL.md order."""
    V, T, D, H = cfg["vocab_size"], cfg["max_len"], cfg["d_model"], cfg["n_heads"]
    F, C = cfg["d_ff"], cfg["n_classes"]
    out = [("tok_emb", (V, D)), ("pos_emb", (T, D))]
    for l in range(cfg["n_layers"]):
        p = "layers/%d/" % l
        out += [(p + "ln1/gamma", (D,)), (p + "ln1/beta", (D,)),
                (p + "attn/w_qkv", (D, 3 * D)), (p + "attn/b_qkv", (3 * D,)),
                (p + "attn/w_out", (D, D)), (p + "attn/b_out", (D,)),
                (p + "router/w_rel", (D, H)), (p + "router/b_rel", (H,)),
                (p + "router/w_bud", (D,)), (p + "router/b_bud", (1,))]
        N = int(cfg.get("budget_hidden", 0))
        if N:  # added option: the budget predictor's hidden layer, a += w_bud_o . gelu(s W_bud_h + b_bud_h)
            out += [(p + "router/w_bud_h", (D, N)), (p + "router/b_bud_h", (N,)), (p + "router/w_bud_o", (N,))]
        out += [(p + "ln2/gamma", (D,)), (p + "ln2/beta", (D,)),
                (p + "ffn/w1", (D, F)), (p + "ffn/b1", (F,)),
                (p + "ffn/w2", (F, D)), (p + "ffn/b2", (D,))]
    out += [("ln_f/gamma", (D,)), ("ln_f/beta", (D,)), ("classifier/w", (D, C)), ("classifier/b", (C,))]
    return out


def layer_norm(x, gamma, beta):
    """LayerNorm over the last dimension, eps 1e-5, biased variance."""
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + LN_EPS) * gamma + beta


def gelu_tanh(a):
    return 0.5 * a * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (a + 0.044715 * a ** 3)))


def masked_mean(x, valid):
    """Mean over valid t of x[b, t, :]; x [B,T,D], valid [B,T] bool."""
    w = valid.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim=1) / w.sum(dim=1)


def ranks_of(logits):
    """rank[b, h] = position of head h when sorted by decreasing logit (0 = best), ties: lower index first.
    The ranking passes no gradient."""
    order = torch.sort(logits.detach(), dim=-1, descending=True, stable=True).indices
    H = logits.shape[-1]
    ar = torch.arange(H, device=logits.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, ar)


class BudgetFormerRef(torch.nn.Module):
    def __init__(self, cfg, dtype=torch.float32):
        super().__init__()
        self.cfg = {k: int(cfg[k]) for k in CONFIG_KEYS}
        self.cfg.update({k: int(cfg.get(k, 0)) for k in OPTION_KEYS})
        c = self.cfg
        if not (2 <= c["n_heads"] <= 32 and c["d_model"] % c["n_heads"] == 0):
            raise ValueError("bad n_heads %d for d_model %d" % (c["n_heads"], c["d_model"]))
        if not -1 <= c["fixed_budget"] <= c["n_heads"]:
            raise ValueError("fixed_budget must be in 0..n_heads, or -1 (a fixed budget per layer)")
        if c["fixed_budget"] == -1:  # added option: model.layer_budgets, layer l's k
            c["layer_budgets"] = tuple(int(k) for k in cfg["layer_budgets"])
            if len(c["layer_budgets"]) != c["n_layers"] or not all(1 <= k <= c["n_heads"] for k in c["layer_budgets"]):
                raise ValueError("layer_budgets must hold n_layers budgets in 1..n_heads")
        self.params = torch.nn.ParameterDict(
            {n: torch.nn.Parameter(torch.zeros(s, dtype=dtype)) for n, s in param_shapes(c)})

    @property
    def mode(self):
        if self.cfg["full_heads"]:
            return "full"
        return "fixed" if self.cfg["fixed_budget"] != 0 else "learned"

    def forward(self, tokens, lengths, gumbel=None, k_random=None, eps=0.0, tau=1.0, k_force=0):
        """See bf_forward."""
        return bf_forward(self.cfg, self.params, tokens, lengths, gumbel, k_random, eps, tau, k_force)

    def loss(self, out, labels, ce_scale, cost_scale, soft_targets=None, k_target=None, sup_scale=0.0,
             sup_center=0, spread_sd=0.0, spread_scale=0.0):
        """See bf_loss."""
        return bf_loss(self.cfg, out, labels, ce_scale, cost_scale, soft_targets, k_target, sup_scale, sup_center,
                       spread_sd, spread_scale)


def bf_forward(cfg, P, tokens, lengths, gumbel=None, k_random=None, eps=0.0, tau=1.0, k_force=0):
    """tokens [B,T] int (PAD after length), lengths [B] int >= 1; gumbel [B,L,H] float, k_random [B,L] int
    (0 = exploit, else the budget), both ignored when eps == 0.
    Returns a dict: logits [B,C]; khat_t [B,L] (differentiable continuous budget of a learned-budget model,
    None otherwise); khat [B,L] float (H for full heads, k for fixed budget); budget [B,L] int64;
    head_mask [B,L] int64 bitmask; gates: the gate tensors g [B,H] of each layer (for estimator tests); ranked [B,L,H]: the
    (perturbed) relevance logits the selection ranked, None for full heads.
    Added options (docs/MODEL.md): cfg["gate_norm"] = 1 divides the gates of the selected heads by their relevance
    mass, g_h = H p_h m_h / sum_j p_j m_j (the straight-through surrogate enters numerator and denominator alike);
    cfg["budget_hidden"] = N > 0 adds w_bud_o . gelu_tanh(s W_bud_h + b_bud_h) to the budget logit;
    k_force > 0 (a training pass of the sandwich rule or of budget supervision) uses k = min(k_force, H) for every
    input and layer and passes no gradient to k^ (khat_t is then detached); cfg["fixed_budget"] = -1 with
    cfg["layer_budgets"] = (k_1, ..., k_L) (model.layer_budgets) is a fixed budget of k_l heads in layer l."""
    c = cfg
    mode = "full" if c["full_heads"] else ("fixed" if c["fixed_budget"] != 0 else "learned")
    gate_norm = int(c.get("gate_norm", 0))
    budget_hidden = int(c.get("budget_hidden", 0))
    H, D, L = c["n_heads"], c["d_model"], c["n_layers"]
    dh = D // H
    dtype = P["tok_emb"].dtype
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    B, T = tokens.shape
    if T > c["max_len"] or int(lengths.min()) < 1 or int(lengths.max()) > T:
        raise ValueError("bad tokens/lengths shape")
    valid = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)  # [B,T]
    explore = eps != 0.0
    if explore:
        gumbel = torch.as_tensor(gumbel).to(dtype)
        k_random = torch.as_tensor(k_random, dtype=torch.long)

    x = P["tok_emb"][tokens] + P["pos_emb"][:T].unsqueeze(0)
    khat_t, khat_rep, budgets, masks, gates, ranked = [], [], [], [], [], []
    bits = (2 ** torch.arange(H, dtype=torch.long)).unsqueeze(0)
    for l in range(L):
        p_ = "layers/%d/" % l
        u = layer_norm(x, P[p_ + "ln1/gamma"], P[p_ + "ln1/beta"])
        s = masked_mean(u, valid)  # [B,D]
        if mode == "full":
            g = torch.ones(B, H, dtype=dtype)
            k = torch.full((B,), H, dtype=torch.long)
            m_hard = torch.ones(B, H, dtype=dtype)
            khat_rep.append(torch.full((B,), float(H), dtype=dtype))
        else:
            r = s @ P[p_ + "router/w_rel"] + P[p_ + "router/b_rel"]  # [B,H]
            p = torch.softmax(r, dim=-1)
            r_sel = r + eps * gumbel[:, l, :] if explore else r
            rank = ranks_of(r_sel)  # [B,H] int
            ranked.append(r_sel.detach())
            if mode == "learned":
                a = s @ P[p_ + "router/w_bud"] + P[p_ + "router/b_bud"]
                if budget_hidden:  # added option: a residual GELU hidden layer on the linear budget logit
                    a = a + gelu_tanh(s @ P[p_ + "router/w_bud_h"] + P[p_ + "router/b_bud_h"]) @ P[p_ + "router/w_bud_o"]
                kh = 1.0 + (H - 1) * torch.sigmoid(a)
                k = torch.clamp(torch.floor(kh.detach() + 0.5), 1, H).to(torch.long)
                if k_force > 0:
                    k = torch.full((B,), min(k_force, H), dtype=torch.long)
                    kh = kh.detach()  # the pass did not use k^: no gradient to it
                elif explore:
                    k = torch.where(k_random[:, l] > 0, k_random[:, l], k)
                m_hard = (rank < k.unsqueeze(1)).to(dtype)
                if k_force > 0:
                    m_st = m_hard
                else:
                    # straight-through: forward m_hard, backward d/dk^ of the surrogate sigmoid
                    m_soft = torch.sigmoid((kh.unsqueeze(1) - rank.to(dtype) - 0.5) / tau)
                    m_st = m_hard + m_soft - m_soft.detach()
                g = H * p * m_st
                if gate_norm:
                    g = g / (p * m_st).sum(dim=1, keepdim=True)
                khat_t.append(kh)
                khat_rep.append(kh.detach())
            else:
                k_layer = c["layer_budgets"][l] if c["fixed_budget"] == -1 else c["fixed_budget"]
                kf = min(k_force, H) if k_force > 0 else k_layer
                k = torch.full((B,), kf, dtype=torch.long)
                m_hard = (rank < k.unsqueeze(1)).to(dtype)
                g = H * p * m_hard
                if gate_norm:
                    g = g / (p * m_hard).sum(dim=1, keepdim=True)
                khat_rep.append(torch.full((B,), float(k_layer), dtype=dtype))
        gates.append(g)
        budgets.append(k)
        masks.append((m_hard.detach().to(torch.long) * bits).sum(dim=1))

        qkv = u @ P[p_ + "attn/w_qkv"] + P[p_ + "attn/b_qkv"]  # [B,T,3D]
        q, kk, v = qkv.split(D, dim=-1)
        q = q.reshape(B, T, H, dh).transpose(1, 2)  # [B,H,T,dh]
        kk = kk.reshape(B, T, H, dh).transpose(1, 2)
        v = v.reshape(B, T, H, dh).transpose(1, 2)
        scores = (q @ kk.transpose(-1, -2)) / math.sqrt(dh)  # [B,H,T,T]
        scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        att = torch.softmax(scores, dim=-1)
        o = (att @ v) * g[:, :, None, None]  # gate each head
        o = o.transpose(1, 2).reshape(B, T, D)
        x = x + o @ P[p_ + "attn/w_out"] + P[p_ + "attn/b_out"]
        h2 = layer_norm(x, P[p_ + "ln2/gamma"], P[p_ + "ln2/beta"])
        x = x + gelu_tanh(h2 @ P[p_ + "ffn/w1"] + P[p_ + "ffn/b1"]) @ P[p_ + "ffn/w2"] + P[p_ + "ffn/b2"]
    z = layer_norm(x, P["ln_f/gamma"], P["ln_f/beta"])
    logits = masked_mean(z, valid) @ P["classifier/w"] + P["classifier/b"]
    return {
        "logits": logits,
        "khat_t": torch.stack(khat_t, dim=1) if khat_t else None,
        "khat": torch.stack(khat_rep, dim=1),
        "budget": torch.stack(budgets, dim=1),
        "head_mask": torch.stack(masks, dim=1),
        "gates": gates,
        "ranked": torch.stack(ranked, dim=1) if ranked else None,
    }


def bf_loss(cfg, out, labels, ce_scale, cost_scale, soft_targets=None, k_target=None, sup_scale=0.0,
            sup_center=0, spread_sd=0.0, spread_scale=0.0):
    """loss = ce_scale * sum_b CE_b + cost_scale * sum_{b,l} (k^_bl - 1)/(H - 1) (cost: learned budget only).
    Added training options (docs/MODEL.md): with soft_targets q [B,C] the first term is ce_scale * sum_b of the
    cross-entropy against q (in-place distillation); with k_target [B] (budget supervision) the loss gains
    sup_scale * sum_{b,l} (k^_bl - k*_b)^2 / (H - 1)^2; with sup_center (train.supervise_center) both k^_.l and
    k* are first centred on their mean over the batch (the mean of k^ is differentiated too); with spread_sd
    sigma > 0 (train.budget_spread) it gains spread_scale * B * sum_l max(0, 1 - var_b(k^_bl)/sigma^2)^2, the
    biased variance over the batch, differentiated through its mean.
    Returns (loss, ce_sum, ce [B]); ce and ce_sum are always against the labels."""
    logits = out["logits"]
    labels = torch.as_tensor(labels, dtype=torch.long)
    lse = torch.logsumexp(logits, dim=-1)
    ce = lse - logits.gather(1, labels.unsqueeze(1)).squeeze(1)
    ce_sum = ce.sum()
    if soft_targets is not None:
        q = torch.as_tensor(soft_targets).to(logits.dtype)
        loss = ce_scale * (q * (lse.unsqueeze(1) - logits)).sum()
    else:
        loss = ce_scale * ce_sum
    if out["khat_t"] is not None:
        H = cfg["n_heads"]
        loss = loss + cost_scale * ((out["khat_t"] - 1.0) / (H - 1)).sum()
        if k_target is not None and sup_scale != 0.0:
            kt = torch.as_tensor(k_target).to(logits.dtype).unsqueeze(1)
            kh = out["khat_t"]
            if sup_center:
                kh = kh - kh.mean(dim=0, keepdim=True)
                kt = kt - kt.mean(dim=0, keepdim=True)
            loss = loss + sup_scale * ((kh - kt) ** 2).sum() / (H - 1) ** 2
        if spread_sd > 0.0:
            kh = out["khat_t"]
            var = kh.var(dim=0, unbiased=False)
            gap = torch.clamp(1.0 - var / (spread_sd * spread_sd), min=0.0)
            loss = loss + spread_scale * kh.shape[0] * (gap ** 2).sum()
    return loss, ce_sum, ce


def load_checkpoint(path, dtype=torch.float32):
    """Reads /model (attributes and datasets under the docs/MODEL.md names) of an HDF5 checkpoint."""
    import h5py
    with h5py.File(path, "r") as f:
        return model_from_group(f["model"], dtype)


def model_from_group(g, dtype=torch.float32):
    cfg = {k: int(g.attrs[k]) for k in CONFIG_KEYS}
    cfg.update({k: int(g.attrs.get(k, 0)) for k in OPTION_KEYS})
    model = BudgetFormerRef(cfg, dtype)
    with torch.no_grad():
        for name, shape in param_shapes(cfg):
            a = g[name][()]
            if tuple(a.shape) != tuple(shape):
                raise ValueError("/model/%s has shape %s, expected %s" % (name, a.shape, shape))
            model.params[name].copy_(torch.from_numpy(a).to(dtype))
    return model


def save_model(f, model):
    """Writes /model (float32 datasets and integer attributes) into an open h5py file."""
    import numpy as np
    g = f.require_group("model")
    for k in CONFIG_KEYS + OPTION_KEYS:
        g.attrs[k] = np.int64(model.cfg[k])
    for name, _ in param_shapes(model.cfg):
        g.create_dataset(name, data=model.params[name].detach().to(torch.float32).numpy())



# --------------------------------------------------------------------------------------------- self-checks

def _small_cfg(**kw):
    cfg = dict(vocab_size=20, max_len=7, d_model=8, n_heads=4, n_layers=2, d_ff=12, n_classes=3,
               full_heads=0, fixed_budget=0)
    cfg.update(kw)
    return cfg


def _randomize(model, gen, std=0.3):
    with torch.no_grad():
        for name, p in model.params.items():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype) * std)
            if name.endswith("gamma"):
                p.add_(1.0)


def _self_check():
    gen = torch.Generator().manual_seed(1234)
    tokens = torch.tensor([[3, 4, 5, 0, 0, 0, 0], [7, 0, 0, 0, 0, 0, 0], [2, 9, 11, 12, 13, 14, 15]])
    lengths = torch.tensor([3, 1, 7])
    labels = torch.tensor([0, 2, 1])
    B, L, H = 3, 2, 4
    gumbel = -torch.log(-torch.log(torch.rand(B, L, H, generator=gen, dtype=torch.float64)))
    k_random = torch.tensor([[0, 3], [1, 0], [0, 0]])

    # 1. float64 gradcheck of the paths without a surrogate (exact derivatives while no ranking flips
    #    within the gradcheck step): full heads, fixed budget (with and without Gumbel noise).
    for kw, eps in ((dict(full_heads=1), 0.0), (dict(fixed_budget=2), 0.0), (dict(fixed_budget=3), 0.6)):
        cfg = _small_cfg(**kw)
        model = BudgetFormerRef(cfg, torch.float64)
        _randomize(model, gen)
        names = list(model.params.keys())

        def functional(*ps, cfg=cfg, names=names, eps=eps):
            out = bf_forward(cfg, dict(zip(names, ps)), tokens, lengths, gumbel, k_random, eps, 1.0)
            return bf_loss(cfg, out, labels, 1.0 / B, 0.1)[0]

        inputs = tuple(model.params[n].detach().clone().requires_grad_(True) for n in names)
        ok = torch.autograd.gradcheck(functional, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
        print("gradcheck float64 %s eps=%g: %s" % (model.mode, eps, ok))

    # 2. learned budget: autograd's d loss/d b_bud equals the straight-through formula written out by hand,
    #    d loss/d k^ = cost/(H-1) + sum_h dL/dg_h * H p_h * sig'((k^ - rank_h - 0.5)/tau)/tau,
    #    d k^/d b_bud = (k^ - 1)(H - k^)/(H - 1); and d loss/d W_rel sees d g_h/d p_h = H m_h (hard mask).
    model = BudgetFormerRef(_small_cfg(), torch.float64)
    _randomize(model, gen)
    eps, tau, ce_scale, cost_scale = 0.7, 0.8, 1.0 / B, 0.05
    out = model(tokens, lengths, gumbel, k_random, eps, tau)
    for g in out["gates"]:
        g.retain_grad()
    loss, _, _ = model.loss(out, labels, ce_scale, cost_scale)
    loss.backward()
    worst = 0.0
    for l in range(L):
        pre = "layers/%d/router/" % l
        kh = out["khat"][:, l]
        # s, r, p and the ranks of layer l, by a partial forward that reuses the recorded gates
        P = model.params
        T = tokens.shape[1]
        valid = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
        with torch.no_grad():
            x = P["tok_emb"][tokens] + P["pos_emb"][:T].unsqueeze(0)
            for j in range(l + 1):
                pj = "layers/%d/" % j
                u = layer_norm(x, P[pj + "ln1/gamma"], P[pj + "ln1/beta"])
                s = masked_mean(u, valid)
                if j < l:  # advance x through layer j with the recorded gates
                    D, dh = model.cfg["d_model"], model.cfg["d_model"] // H
                    qkv = u @ P[pj + "attn/w_qkv"] + P[pj + "attn/b_qkv"]
                    q, kk, v = [t.reshape(B, T, H, dh).transpose(1, 2) for t in qkv.split(D, dim=-1)]
                    sc = (q @ kk.transpose(-1, -2)) / math.sqrt(dh)
                    att = torch.softmax(sc.masked_fill(~valid[:, None, None, :], float("-inf")), dim=-1)
                    o = ((att @ v) * out["gates"][j][:, :, None, None]).transpose(1, 2).reshape(B, T, D)
                    x = x + o @ P[pj + "attn/w_out"] + P[pj + "attn/b_out"]
                    h2 = layer_norm(x, P[pj + "ln2/gamma"], P[pj + "ln2/beta"])
                    x = x + gelu_tanh(h2 @ P[pj + "ffn/w1"] + P[pj + "ffn/b1"]) @ P[pj + "ffn/w2"] + P[pj + "ffn/b2"]
            r = s @ P[pre + "w_rel"] + P[pre + "b_rel"]
            p = torch.softmax(r, dim=-1)
            rank = ranks_of(r + eps * gumbel[:, l, :]).to(torch.float64)
            a = (kh.unsqueeze(1) - rank - 0.5) / tau
            dsig = torch.sigmoid(a) * (1 - torch.sigmoid(a)) / tau
            dkhat = cost_scale / (H - 1) + (out["gates"][l].grad * H * p * dsig).sum(dim=1)
            want = (dkhat * (kh - 1) * (H - kh) / (H - 1)).sum()
            got = P[pre + "b_bud"].grad[0]
            worst = max(worst, abs(want - got).item() / max(1e-12, abs(want).item()))
            print("layer %d d loss/d b_bud: autograd %.9f hand %.9f" % (l, got.item(), want.item()))
    assert worst < 1e-9, worst

    # 3. padding and batch composition change nothing.
    model = BudgetFormerRef(_small_cfg(), torch.float64)
    _randomize(model, gen)
    t2 = tokens.clone()
    t2[0, 3:] = 5
    t2[1, 1:] = 6
    a = model(tokens, lengths)["logits"]
    b = model(t2, lengths)["logits"]
    c = model(tokens[1:2, :1], lengths[1:2])["logits"]
    err = max((a - b).abs().max().item(), (a[1] - c[0]).abs().max().item())
    print("padding invariance max diff %.3g" % err)
    assert err < 1e-12

    # 4. W_rel = 0, b_rel = 0, k = H equals full heads (exactly, H a power of two).
    model = BudgetFormerRef(_small_cfg(fixed_budget=4))
    _randomize(model, gen)
    with torch.no_grad():
        for l in range(L):
            model.params["layers/%d/router/w_rel" % l].zero_()
            model.params["layers/%d/router/b_rel" % l].zero_()
    full = BudgetFormerRef(_small_cfg(full_heads=1))
    full.load_state_dict(model.state_dict())
    d = (model(tokens, lengths)["logits"] - full(tokens, lengths)["logits"]).abs().max().item()
    print("k = H, W_rel = 0 vs full heads max diff %.3g" % d)
    assert d == 0.0
    print("self-check passed")


if __name__ == "__main__":
    _self_check()
