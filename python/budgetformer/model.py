"""The BudgetFormer model of docs/MODEL.md as a torch.nn.Module, and its checkpoint I/O.

    model = budgetformer.load("runs/x/checkpoints/step-00003000.h5")     # eval mode
    out = model(tokens, lengths)          # dict: logits [B,C], budget [B,L], head_mask [B,L], khat [B,L]
    model.predict(["move quickly on foot"])   # [{"label": "verb", "probability": ..., "budget": [...], ...}]
    model.save("copy.h5")                 # a checkpoint budgetformer eval / predict / train --resume accept

Every model option lives in this file: the hyperparameters and the options are the integer attributes of
/model; OPTIONS lists the options implemented here with their allowed values, and load refuses a checkpoint
with a nonzero /model attribute it does not know (it would compute another function). To add an option:
add it to OPTIONS and use self.options[name] in forward (the gates are computed in gates()).

Modes: in eval mode (model.eval(), what load returns) the forward pass is the C program's at eps = 0. In
training mode it computes the same values (exploration is off: no Gumbel noise, no random budgets) and its
gradients are the straight-through estimator of docs/MODEL.md (the hard mask forward, the sigmoid surrogate
with temperature model.tau backward), so the model can be fine-tuned in PyTorch; model.budget_cost(out)
is the mean of (k^ - 1)/(H - 1) over inputs and layers (0 for full-heads and fixed-budget models).
"""
import hashlib
import math
import os
import shutil
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .tokenizer import Tokenizer

# The hyperparameters: integer attributes of /model that every checkpoint has (docs/MODEL.md).
HYPERPARAMETERS = ("vocab_size", "max_len", "d_model", "n_heads", "n_layers", "d_ff", "n_classes")
# The model options: integer attributes of /model, 0 (or absent) for the default model, with their allowed
# values. full_heads and fixed_budget are always written; the others only when nonzero.
OPTIONS = {
    "full_heads": lambda v, c: v in (0, 1),
    # -1 (project-added): a fixed budget per layer, the /model array attribute layer_budgets
    "fixed_budget": lambda v, c: -1 <= v <= c["n_heads"],
    "gate_norm": lambda v, c: v in (0, 1),  # project-added: 1 = renormalised gates
    # project-added: N > 0 = a GELU hidden layer of width N in the budget logit (a learned budget only)
    "budget_hidden": lambda v, c: v == 0 or (1 <= v <= 4096 and not c.get("full_heads") and not c.get("fixed_budget")),
}
ALWAYS_WRITTEN = ("full_heads", "fixed_budget")
# Project-added: with fixed_budget = -1, the int64 array attribute /model layer_budgets holds layer l's k.
LAYER_BUDGETS = "layer_budgets"
LN_EPS = 1e-5


def param_shapes(cfg):
    """(stored name below /model/, shape) of every tensor, in docs/MODEL.md's order."""
    V, T, D, H = cfg["vocab_size"], cfg["max_len"], cfg["d_model"], cfg["n_heads"]
    Fd, C = cfg["d_ff"], cfg["n_classes"]
    out = [("tok_emb", (V, D)), ("pos_emb", (T, D))]
    for l in range(cfg["n_layers"]):
        p = "layers/%d/" % l
        out += [(p + "ln1/gamma", (D,)), (p + "ln1/beta", (D,)),
                (p + "attn/w_qkv", (D, 3 * D)), (p + "attn/b_qkv", (3 * D,)),
                (p + "attn/w_out", (D, D)), (p + "attn/b_out", (D,)),
                (p + "router/w_rel", (D, H)), (p + "router/b_rel", (H,)),
                (p + "router/w_bud", (D,)), (p + "router/b_bud", (1,))]
        N = int(cfg.get("budget_hidden", 0))
        if N:  # project-added: the budget predictor's hidden layer (docs/MODEL.md)
            out += [(p + "router/w_bud_h", (D, N)), (p + "router/b_bud_h", (N,)), (p + "router/w_bud_o", (N,))]
        out += [(p + "ln2/gamma", (D,)), (p + "ln2/beta", (D,)),
                (p + "ffn/w1", (D, Fd)), (p + "ffn/b1", (Fd,)),
                (p + "ffn/w2", (Fd, D)), (p + "ffn/b2", (D,))]
    out += [("ln_f/gamma", (D,)), ("ln_f/beta", (D,)), ("classifier/w", (D, C)), ("classifier/b", (C,))]
    return out


def check_config(cfg, where="model configuration"):
    """Raises ValueError naming the key when the hyperparameters or options describe no valid model."""
    for k in HYPERPARAMETERS:
        if k not in cfg:
            raise ValueError("%s: missing %s" % (where, k))
        if int(cfg[k]) < 1:
            raise ValueError("%s: %s = %d: expected a positive integer" % (where, k, cfg[k]))
    H, D = cfg["n_heads"], cfg["d_model"]
    if not (2 <= H <= 32 and D % H == 0):
        raise ValueError("%s: n_heads = %d: expected 2..32 dividing d_model = %d" % (where, H, D))
    for k, ok in OPTIONS.items():
        if not ok(int(cfg.get(k, 0)), cfg):
            raise ValueError("%s: %s = %d is not an allowed value (docs/MODEL.md, 'Model options')"
                             % (where, k, cfg.get(k, 0)))
    lb = cfg.get(LAYER_BUDGETS)
    if cfg.get("fixed_budget", 0) == -1:
        if lb is None or len(lb) != cfg["n_layers"] or not all(1 <= int(k) <= H for k in lb):
            raise ValueError("%s: fixed_budget = -1 needs layer_budgets: n_layers = %d integers in 1..n_heads = %d, "
                             "got %r" % (where, cfg["n_layers"], H, lb))
    elif lb:
        raise ValueError("%s: layer_budgets = %r needs fixed_budget = -1" % (where, lb))
    if cfg.get("full_heads", 0) and cfg.get("fixed_budget", 0):
        raise ValueError("%s: full_heads = 1 and fixed_budget = %d: expected at most one of them"
                         % (where, cfg["fixed_budget"]))


def _ranks(logits):
    """rank[b, h]: place of head h by decreasing logit (0 = best), ties: the lower index first."""
    order = torch.sort(logits.detach(), dim=-1, descending=True, stable=True).indices
    ar = torch.arange(logits.shape[-1], device=logits.device).expand_as(order)
    return torch.empty_like(order).scatter_(-1, order, ar)


def _masked_mean(x, valid):
    w = valid.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(dim=1) / w.sum(dim=1)


class BudgetFormer(torch.nn.Module):
    """The network of docs/MODEL.md. Parameters are in self.params under their stored names (without the
    /model/ prefix); self.config holds the hyperparameters and options; self.tokenizer and self.labels come
    from the checkpoint's /vocab and /label_names."""

    def __init__(self, config, vocab=None, labels=None, dtype=torch.float32):
        super().__init__()
        cfg = {k: (tuple(int(x) for x in v) if k == LAYER_BUDGETS else int(v)) for k, v in config.items()}
        for k in OPTIONS:
            cfg.setdefault(k, 0)
        check_config(cfg)
        self.config = cfg
        self.params = torch.nn.ParameterDict(
            {n: torch.nn.Parameter(torch.zeros(s, dtype=dtype)) for n, s in param_shapes(cfg)})
        with torch.no_grad():
            for n, _ in param_shapes(cfg):
                if n.endswith("gamma"):
                    self.params[n].fill_(1.0)
        if vocab is None:
            vocab = ["<pad>", "<unk>"] + ["w%d" % i for i in range(2, cfg["vocab_size"])]
        if len(vocab) != cfg["vocab_size"]:
            raise ValueError("vocabulary has %d words, vocab_size is %d" % (len(vocab), cfg["vocab_size"]))
        self.tokenizer = Tokenizer(vocab, cfg["max_len"])
        self.labels = list(labels) if labels is not None else [str(c) for c in range(cfg["n_classes"])]
        if len(self.labels) != cfg["n_classes"]:
            raise ValueError("%d label names for n_classes = %d" % (len(self.labels), cfg["n_classes"]))
        self.tau = 1.0          # temperature of the straight-through surrogate (training mode)
        self.source = None      # the checkpoint this model was loaded from (save copies its training state)

    @property
    def mode(self):
        if self.config["full_heads"]:
            return "full"
        return "fixed" if self.config["fixed_budget"] != 0 else "learned"

    # ---- the forward pass ------------------------------------------------------------------------------

    def gates(self, r, khat, k):
        """Gates g [B,H] of one layer from the relevance logits r [B,H], the continuous budget khat [B] (or
        None) and the budget k [B]; also the hard mask [B,H]. The options that change the gates are here."""
        H = self.config["n_heads"]
        p = torch.softmax(r, dim=-1)
        rank = _ranks(r)
        m_hard = (rank < k.unsqueeze(1)).to(r.dtype)
        m = m_hard
        if khat is not None and self.training and torch.is_grad_enabled():
            # straight-through: the hard mask forward, d/dk^ of sigmoid((k^ - rank - 0.5)/tau) backward
            m_soft = torch.sigmoid((khat.unsqueeze(1) - rank.to(r.dtype) - 0.5) / self.tau)
            m = m_hard + m_soft - m_soft.detach()
        if self.config["gate_norm"]:
            g = H * p * m / (p * m).sum(dim=1, keepdim=True)  # the surrogate in both, as docs/MODEL.md and the C code
        else:
            g = H * p * m
        return g, m_hard

    def forward(self, tokens, lengths=None, budgets=None):
        """tokens [B,T'] int ids (T' <= max_len, PAD = 0 after each input's length), lengths [B] (default: the
        non-PAD count of each row). Returns a dict: logits [B,C]; budget [B,L] int64 (k; H for full heads);
        head_mask [B,L] int64 (bit h set when head h is in S); khat [B,L] (the continuous budget, a tensor
        with gradient for a learned budget; k for the other models).
        budgets (optional): [L] or [B,L] integers that replace k, as `eval --budget-control` does in the C
        program: an entry in 1..H is that layer's (and input's) budget, the heads still chosen by relevance; 0
        keeps the model's own. Not for a full-heads model (it has no router). khat stays the router's own; in a
        layer whose budgets are given, no gradient reaches khat through the mask (as in a forced pass)."""
        c, P = self.config, self.params
        H, D, L = c["n_heads"], c["d_model"], c["n_layers"]
        dh = D // H
        dev = P["tok_emb"].device
        tokens = torch.as_tensor(tokens, dtype=torch.long, device=dev)
        if tokens.dim() != 2:
            raise ValueError("tokens: expected a [batch, length] tensor, got shape %s" % (tuple(tokens.shape),))
        B, T = tokens.shape
        if lengths is None:
            lengths = (tokens != 0).sum(dim=1)
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=dev)
        if T > c["max_len"] or B == 0 or int(lengths.min()) < 1 or int(lengths.max()) > T:
            raise ValueError("tokens [%d, %d], lengths in [%d, %d]: expected 1 <= length <= %d columns <= max_len %d"
                             % (B, T, int(lengths.min()) if B else 0, int(lengths.max()) if B else 0, T, c["max_len"]))
        if int(tokens.min()) < 0 or int(tokens.max()) >= c["vocab_size"]:
            raise ValueError("token ids must be in [0, %d)" % c["vocab_size"])
        valid = torch.arange(T, device=dev).unsqueeze(0) < lengths.unsqueeze(1)
        bits = (2 ** torch.arange(H, dtype=torch.long, device=dev)).unsqueeze(0)
        mode = self.mode
        override = None
        if budgets is not None:
            override = torch.as_tensor(budgets, dtype=torch.long, device=dev)
            if override.dim() == 1:
                override = override.unsqueeze(0).expand(B, -1)
            if mode == "full":
                raise ValueError("budgets: a full-heads model has no router whose budget could be set")
            if tuple(override.shape) != (B, L):
                raise ValueError("budgets: expected [%d] or [%d, %d] integers in 0..%d (0: the model's own), got "
                                 "shape %s" % (L, B, L, H, tuple(torch.as_tensor(budgets).shape)))
            if int(override.min()) < 0 or int(override.max()) > H:
                raise ValueError("budgets: expected integers in 0..%d (0: the model's own), got values %d..%d"
                                 % (H, int(override.min()), int(override.max())))
        x = P["tok_emb"][tokens] + P["pos_emb"][:T].unsqueeze(0)
        budgets, masks, khats = [], [], []
        for l in range(L):
            pre = "layers/%d/" % l
            u = F.layer_norm(x, (D,), P[pre + "ln1/gamma"], P[pre + "ln1/beta"], LN_EPS)
            if mode == "full":
                g = torch.ones(B, H, dtype=x.dtype, device=dev)
                k = torch.full((B,), H, dtype=torch.long, device=dev)
                m_hard = torch.ones(B, H, dtype=x.dtype, device=dev)
                khats.append(k.to(x.dtype))
            else:
                s = _masked_mean(u, valid)
                r = s @ P[pre + "router/w_rel"] + P[pre + "router/b_rel"]
                if mode == "learned":
                    a = s @ P[pre + "router/w_bud"] + P[pre + "router/b_bud"]
                    if c["budget_hidden"]:  # project-added: a += w_bud_o . gelu_tanh(s W_bud_h + b_bud_h)
                        hb = s @ P[pre + "router/w_bud_h"] + P[pre + "router/b_bud_h"]
                        a = a + F.gelu(hb, approximate="tanh") @ P[pre + "router/w_bud_o"]
                    kh = 1.0 + (H - 1) * torch.sigmoid(a)
                    k = torch.clamp(torch.floor(kh.detach() + 0.5), 1, H).to(torch.long)
                    khats.append(kh)
                else:
                    kh = None
                    kl = c[LAYER_BUDGETS][l] if c["fixed_budget"] == -1 else c["fixed_budget"]  # -1: per layer
                    k = torch.full((B,), kl, dtype=torch.long, device=dev)
                    khats.append(k.to(x.dtype))
                if override is not None:
                    # a set budget, as the C program's k_override: no gradient reaches k^ through the mask
                    k = torch.where(override[:, l] > 0, override[:, l], k)
                    kh = None
                g, m_hard = self.gates(r, kh, k)
            budgets.append(k)
            masks.append((m_hard.detach().to(torch.long) * bits).sum(dim=1))
            qkv = u @ P[pre + "attn/w_qkv"] + P[pre + "attn/b_qkv"]
            q, kk, v = (t.reshape(B, T, H, dh).transpose(1, 2) for t in qkv.split(D, dim=-1))
            scores = (q @ kk.transpose(-1, -2)) / math.sqrt(dh)
            scores = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
            o = (torch.softmax(scores, dim=-1) @ v) * g[:, :, None, None]
            x = x + o.transpose(1, 2).reshape(B, T, D) @ P[pre + "attn/w_out"] + P[pre + "attn/b_out"]
            h2 = F.layer_norm(x, (D,), P[pre + "ln2/gamma"], P[pre + "ln2/beta"], LN_EPS)
            x = x + F.gelu(h2 @ P[pre + "ffn/w1"] + P[pre + "ffn/b1"], approximate="tanh") @ P[pre + "ffn/w2"] \
                + P[pre + "ffn/b2"]
        z = F.layer_norm(x, (D,), P["ln_f/gamma"], P["ln_f/beta"], LN_EPS)
        logits = _masked_mean(z, valid) @ P["classifier/w"] + P["classifier/b"]
        return {"logits": logits, "budget": torch.stack(budgets, dim=1), "head_mask": torch.stack(masks, dim=1),
                "khat": torch.stack(khats, dim=1)}

    def budget_cost(self, out):
        """Mean over inputs and layers of (k^ - 1)/(H - 1) for a learned budget (the term train.budget_cost
        weighs), else 0."""
        if self.mode != "learned":
            return torch.zeros((), dtype=out["logits"].dtype, device=out["logits"].device)
        return ((out["khat"] - 1.0) / (self.config["n_heads"] - 1)).mean()

    # ---- text in, predictions out ----------------------------------------------------------------------

    def encode_batch(self, texts):
        """(tokens [B, longest] int64, lengths [B]) of texts, tokenised as prepare does."""
        ids = [self.tokenizer.encode(t) for t in texts]
        T = max(len(i) for i in ids)
        tokens = torch.zeros(len(ids), T, dtype=torch.long)
        for b, i in enumerate(ids):
            tokens[b, :len(i)] = torch.tensor(i, dtype=torch.long)
        return tokens, torch.tensor([len(i) for i in ids], dtype=torch.long)

    def predict(self, texts, top_k=1, batch_size=64):
        """One dict per text: label, class, probability (softmax of the logits, as budgetformer predict
        prints it), budget (k per layer), heads (the selected heads per layer) and, with top_k > 1, top: the
        top_k [(label, probability)] by decreasing probability. Runs in eval mode without gradients."""
        if isinstance(texts, (str, bytes)):
            raise TypeError("predict expects a list of texts, not one text")
        texts = list(texts)
        if not texts:
            return []
        H, L = self.config["n_heads"], self.config["n_layers"]
        top_k = max(1, min(int(top_k), self.config["n_classes"]))
        was_training = self.training
        self.eval()
        out = []
        try:
            with torch.no_grad():
                for s in range(0, len(texts), batch_size):
                    tokens, lengths = self.encode_batch(texts[s:s + batch_size])
                    r = self.forward(tokens, lengths)
                    logits = r["logits"].double().cpu().numpy()
                    for b in range(logits.shape[0]):
                        z = logits[b]
                        pr = np.exp(z - z.max())
                        pr /= pr.sum()
                        best = int(np.argmax(logits[b].astype(np.float32)))
                        masks = r["head_mask"][b].tolist()
                        d = {"label": self.labels[best], "class": best, "probability": float(pr[best]),
                             "budget": [int(v) for v in r["budget"][b].tolist()],
                             "heads": [[h for h in range(H) if masks[l] >> h & 1] for l in range(L)]}
                        if top_k > 1:
                            order = sorted(range(len(z)), key=lambda c: (-z[c], c))[:top_k]
                            d["top"] = [(self.labels[c], float(pr[c])) for c in order]
                        out.append(d)
        finally:
            self.train(was_training)
        return out

    # ---- saving ----------------------------------------------------------------------------------------

    def save(self, path):
        """Writes a checkpoint with this model's weights, atomically, with its SHA-256 digest file beside it
        (.NAME.sha256), so that budgetformer eval, predict and train --resume accept it. A model loaded from a
        checkpoint keeps that checkpoint's training state (optimiser moments, schedule, data position,
        configuration, provenance); a model made in Python writes a model-only file (eval and predict accept
        it; train --resume needs the training state)."""
        import h5py
        path = os.fspath(path)
        d, base = os.path.split(path)
        d = d or "."
        tmp = os.path.join(d, ".%s.tmp.%d" % (base, os.getpid()))
        side = os.path.join(d, ".%s.sha256" % base)
        side_tmp = side + ".tmp.%d" % os.getpid()
        src = self.source if self.source and os.path.isfile(self.source) else None
        if self.source and not src:
            warnings.warn("%s: the checkpoint this model was loaded from is gone: writing a model-only file"
                          % self.source)
        try:
            if src:
                shutil.copyfile(src, tmp)
                mode = "r+"
            else:
                mode = "w"
            with h5py.File(tmp, mode) as f:
                g = f.require_group("model")
                for k in HYPERPARAMETERS + ALWAYS_WRITTEN:
                    _set_int_attr(g, k, self.config[k])
                for k in OPTIONS:
                    if k not in ALWAYS_WRITTEN and (self.config[k] or k in g.attrs):
                        _set_int_attr(g, k, self.config[k])
                if LAYER_BUDGETS in g.attrs:
                    del g.attrs[LAYER_BUDGETS]
                if self.config["fixed_budget"] == -1:
                    g.attrs.create(LAYER_BUDGETS, np.asarray(self.config[LAYER_BUDGETS], dtype="<i8"))
                for name, shape in param_shapes(self.config):
                    a = self.params[name].detach().to(torch.float32).cpu().numpy()
                    if not np.isfinite(a).all():
                        raise ValueError("%s: /model/%s holds non-finite values: not saved" % (path, name))
                    if name in g:
                        g[name][...] = a
                    else:
                        g.create_dataset(name, data=a, dtype="<f4")
                if not src:
                    st = h5py.string_dtype("utf-8")
                    f.create_dataset("vocab", data=list(self.tokenizer.vocab), dtype=st)
                    f.create_dataset("label_names", data=self.labels, dtype=st)
            with open(tmp, "rb") as fh:
                data = fh.read()
            _fsync(tmp)
            with open(side_tmp, "w") as fh:
                fh.write("%s  %s\n" % (hashlib.sha256(data).hexdigest(), base))
            _fsync(side_tmp)
            os.replace(side_tmp, side)
            os.replace(tmp, path)
            _fsync(d)
        finally:
            for t in (tmp, side_tmp):
                if os.path.exists(t):
                    os.unlink(t)


def _set_int_attr(g, name, value):
    if name in g.attrs:
        del g.attrs[name]
    g.attrs.create(name, np.int64(value), dtype="<i8")


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_verified(path):
    """The file's bytes, checked against its digest file as budgetformer does: a mismatch is an error, a
    missing digest file a warning (contents unverified)."""
    with open(path, "rb") as f:
        data = f.read()
    d, base = os.path.split(path)
    side = os.path.join(d, "." + base + ".sha256")
    if os.path.exists(side):
        with open(side) as f:
            want = f.read().split()
        if not want or hashlib.sha256(data).hexdigest() != want[0]:
            raise ValueError("%s: corrupt: its SHA-256 differs from the digest in %s" % (path, side))
    else:
        warnings.warn("%s: no digest file %s: contents unverified" % (path, side))
    return data


def _int_attr(g, name, path):
    v = g.attrs[name]
    a = np.asarray(v)
    if a.shape not in ((), (1,)) or not np.issubdtype(a.dtype, np.integer):
        raise ValueError("%s: /model attribute %s is %r: expected an integer" % (path, name, v))
    return int(a.reshape(()))


def config_from_attrs(g, path):
    """The hyperparameters and options of an open /model group. Refuses a missing hyperparameter and any
    nonzero attribute this file does not implement."""
    cfg = {}
    for k in HYPERPARAMETERS:
        if k not in g.attrs:
            raise ValueError("%s: /model has no attribute %s: not a budgetformer checkpoint" % (path, k))
        cfg[k] = _int_attr(g, k, path)
    for k in g.attrs:
        if k in HYPERPARAMETERS:
            continue
        if k == LAYER_BUDGETS:  # project-added, an array: read below
            a = np.asarray(g.attrs[k])
            if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
                raise ValueError("%s: /model attribute layer_budgets is %r: expected integers" % (path, a))
            cfg[k] = tuple(int(x) for x in a)
            continue
        v = _int_attr(g, k, path)
        if k in OPTIONS:
            cfg[k] = v
        elif v != 0:
            raise ValueError("%s: /model attribute %s = %d is a model option this Python package does not "
                             "implement (it implements %s): refusing to compute a different model"
                             % (path, k, v, ", ".join(OPTIONS)))
    for k in OPTIONS:
        cfg.setdefault(k, 0)
    check_config(cfg, path + ": /model")
    return cfg


def load(path, verify=True, dtype=torch.float32):
    """The model of a budgetformer checkpoint (or a file with its /model, /vocab and /label_names), in eval
    mode. verify: check the digest file first, as budgetformer does."""
    import io
    import h5py
    path = os.fspath(path)
    data = _read_verified(path) if verify else open(path, "rb").read()
    try:
        f = h5py.File(io.BytesIO(data), "r")
    except OSError as e:
        raise ValueError("%s: not a readable HDF5 file (%s)" % (path, e)) from None
    with f:
        if "model" not in f:
            raise ValueError("%s: no /model group: not a budgetformer checkpoint" % path)
        g = f["model"]
        cfg = config_from_attrs(g, path)
        for name in ("vocab", "label_names"):
            if name not in f:
                raise ValueError("%s: no /%s dataset" % (path, name))
        vocab = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in f["vocab"][()]]
        labels = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in f["label_names"][()]]
        model = BudgetFormer(cfg, vocab, labels, dtype)
        with torch.no_grad():
            for name, shape in param_shapes(cfg):
                if name not in g:
                    raise ValueError("%s: missing dataset /model/%s" % (path, name))
                a = g[name][()]
                if tuple(a.shape) != tuple(shape):
                    raise ValueError("%s: /model/%s has shape %s, expected %s" % (path, name, a.shape, shape))
                model.params[name].copy_(torch.from_numpy(np.ascontiguousarray(a)).to(dtype))
    model.source = os.path.abspath(path)
    model.eval()
    return model
