"""PyTorch side of the speed benchmark (launch/bench-vs-pytorch.sh): the model of docs/MODEL.md written the way a
careful PyTorch user would (fused nn.functional ops, batched attention, torch.optim.AdamW), timed on one
thread on the same shape and batch as `budgetformer bench`. Prints one JSON object.

    /usr/bin/python3 tests/reference/bench_torch.py [--d-model 256 --heads 8 --layers 4 --d-ff 1024
                                                     --max-len 128 --batch 32 --vocab 16384 --repeats 10]
                                                    [--autocast]

--autocast times PyTorch's mixed precision: forward (and so backward) under
torch.autocast("cpu", dtype=torch.bfloat16), the way a PyTorch user asks for bf16 (linear layers and batched
products in bf16, parameters and AdamW in fp32).

Checked against tests/reference/bf_reference.py (the clear reference) on the same weights before timing.
"""
import argparse
import contextlib
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bf_reference  # noqa: E402


def forward(cfg, P, tokens, lengths, mode, eps=0.0, gumbel=None, k_random=None, tau=1.0):
    """Batched forward; returns logits and the continuous budgets (for the budget cost)."""
    B, T = tokens.shape
    D, H, L = cfg["d_model"], cfg["n_heads"], cfg["n_layers"]
    dh = D // H
    valid = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    vf = valid.unsqueeze(-1).to(torch.float32)
    n = lengths.to(torch.float32).unsqueeze(1)
    key_mask = torch.zeros(B, 1, 1, T).masked_fill(~valid[:, None, None, :], float("-inf"))
    x = F.embedding(tokens, P["tok_emb"]) + P["pos_emb"][:T]
    khats = []
    for l in range(L):
        p_ = f"layers/{l}/"
        u = F.layer_norm(x, (D,), P[p_ + "ln1/gamma"], P[p_ + "ln1/beta"], 1e-5)
        if mode == "full":
            g = None
        else:
            s = (u * vf).sum(1) / n
            r = torch.addmm(P[p_ + "router/b_rel"], s, P[p_ + "router/w_rel"])
            p = torch.softmax(r, -1)
            z = r + eps * gumbel[:, l] if eps > 0 else r
            rank = torch.argsort(torch.argsort(-z.detach(), dim=-1, stable=True), dim=-1)
            kh = 1.0 + (H - 1) * torch.sigmoid(s @ P[p_ + "router/w_bud"] + P[p_ + "router/b_bud"])
            k = torch.clamp(torch.floor(kh.detach() + 0.5), 1, H)
            if eps > 0:
                k = torch.where(k_random[:, l] > 0, k_random[:, l].to(k.dtype), k)
            m_hard = (rank < k.unsqueeze(1)).to(torch.float32)
            m_soft = torch.sigmoid((kh.unsqueeze(1) - rank - 0.5) / tau)
            g = H * p * (m_hard + m_soft - m_soft.detach())
            khats.append(kh)
        qkv = F.linear(u, P[p_ + "attn/w_qkv_t"], P[p_ + "attn/b_qkv"])
        q, kk, v = qkv.view(B, T, 3, H, dh).permute(2, 0, 3, 1, 4)
        att = torch.softmax(torch.baddbmm(key_mask.expand(B, H, 1, T).reshape(B * H, 1, T),
                                          q.reshape(B * H, T, dh), kk.reshape(B * H, T, dh).transpose(1, 2),
                                          alpha=1.0 / math.sqrt(dh)), -1)
        o = torch.bmm(att, v.reshape(B * H, T, dh)).view(B, H, T, dh)
        if g is not None:
            o = o * g[:, :, None, None]
        o = o.transpose(1, 2).reshape(B, T, D)
        x = x + F.linear(o, P[p_ + "attn/w_out_t"], P[p_ + "attn/b_out"])
        h2 = F.layer_norm(x, (D,), P[p_ + "ln2/gamma"], P[p_ + "ln2/beta"], 1e-5)
        x = x + F.linear(F.gelu(F.linear(h2, P[p_ + "ffn/w1_t"], P[p_ + "ffn/b1"]), approximate="tanh"),
                         P[p_ + "ffn/w2_t"], P[p_ + "ffn/b2"])
    z = F.layer_norm(x, (D,), P["ln_f/gamma"], P["ln_f/beta"], 1e-5)
    logits = F.linear((z * vf).sum(1) / n, P["classifier/w_t"], P["classifier/b"])
    return logits, (torch.stack(khats, 1) if khats else None)


def params_from(model):
    """The reference's parameters, with the matmul weights stored transposed ([out, in]) as F.linear wants."""
    P = {}
    for name, t in model.params.items():
        if name.endswith(("w_qkv", "w_out", "w1", "w2")) or name == "classifier/w":
            P[name + "_t"] = t.detach().t().contiguous().requires_grad_(True)
        else:
            P[name] = t.detach().clone().requires_grad_(True)
    return P


def wait_for_start(start_at):
    """--start-at: begin timing at this wall-clock time, as the C benchmark started with it does."""
    while start_at and time.time() < start_at:
        time.sleep(min(0.05, start_at - time.time()) if start_at > time.time() else 0)


def timed(fn, warmup, repeats, seconds=0, start_at=0):
    """Median seconds of fn over `repeats` runs, or with seconds > 0 over as many as fit in that time (at least
    `repeats`), after `warmup` untimed ones; the first phase waits for start_at."""
    for _ in range(warmup):
        fn()
    wait_for_start(start_at)  # after the warm-up: the timed runs of both sides start together
    t = []
    t_start = time.perf_counter()
    while len(t) < repeats or (seconds > 0 and time.perf_counter() - t_start < seconds and len(t) < 4096):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return statistics.median(t)


def main():
    ap = argparse.ArgumentParser()
    for flag, default in (("d-model", 256), ("heads", 8), ("layers", 4), ("d-ff", 1024), ("max-len", 128),
                          ("batch", 32), ("vocab", 16384), ("classes", 4), ("repeats", 10), ("warmup", 2),
                          ("budget", 4)):
        ap.add_argument("--" + flag, type=int, default=default)
    ap.add_argument("--autocast", action="store_true", help="bf16 autocast (torch.autocast cpu, bfloat16)")
    ap.add_argument("--only", choices=("train", "infer"), help="time only training or only inference")
    ap.add_argument("--model", choices=("both", "full", "budgetformer"), default="both")
    ap.add_argument("--seconds", type=float, default=0, help="each timed phase runs this long (at least --repeats)")
    ap.add_argument("--start-at", type=float, default=0, help="wall-clock time (epoch seconds) to start timing")
    a = ap.parse_args()
    # bf16 autocast, or a context that does nothing
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.autocast else contextlib.nullcontext
    torch.set_num_threads(1)
    torch.manual_seed(0)
    B, T, H, L = a.batch, a.max_len, a.heads, a.layers
    tokens = torch.randint(2, a.vocab, (B, T))
    lengths = torch.full((B,), T, dtype=torch.long)
    labels = torch.arange(B) % a.classes
    out = {"impl": "pytorch", "torch": torch.__version__, "batch": B,
           "precision": "bf16-autocast" if a.autocast else "fp32"}
    for mode in ("full", "learned"):
        if a.model != "both" and (mode == "full") != (a.model == "full"):
            continue
        cfg = dict(vocab_size=a.vocab, max_len=T, d_model=a.d_model, n_heads=H, n_layers=L, d_ff=a.d_ff,
                   n_classes=a.classes, full_heads=int(mode == "full"), fixed_budget=0)
        ref = bf_reference.BudgetFormerRef(cfg)
        with torch.no_grad():
            for name, t in ref.params.items():
                t.normal_(0, 0.02) if t.dim() == 2 else t.zero_()
                if name.endswith("gamma"):
                    t.fill_(1.0)
                if name.endswith("router/w_rel"):
                    t.normal_(0, 0.5)
                if name.endswith("router/b_bud"):
                    target = (a.budget - 1) / (H - 1)
                    t.fill_(math.log(target / (1 - target)))
        P = params_from(ref)
        # the fast model computes what the clear reference computes
        with torch.no_grad():
            want = ref(tokens[:4], lengths[:4])["logits"]
            got, _ = forward(cfg, P, tokens[:4], lengths[:4], mode)
            if (want - got).abs().max() > 1e-4:
                sys.exit(f"bench_torch: fast model differs from bf_reference by {(want - got).abs().max():.3g}")
        opt = torch.optim.AdamW(list(P.values()), lr=1e-4, weight_decay=0.01)
        gumbel = -torch.log(-torch.log(torch.rand(B, L, H).clamp(1e-9, 1 - 1e-9)))
        k_random = torch.where(torch.rand(B, L) < 0.3, torch.randint(1, H + 1, (B, L)), torch.zeros(B, L, dtype=torch.long))
        eps = 0.0 if mode == "full" else 0.3

        def train_step():
            opt.zero_grad(set_to_none=True)
            with amp():
                logits, kh = forward(cfg, P, tokens, lengths, mode, eps, gumbel, k_random)
            loss = F.cross_entropy(logits.float(), labels)
            if kh is not None:
                loss = loss + 0.01 * ((kh.float() - 1) / (H - 1)).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(P.values()), 1.0)
            opt.step()

        def infer():
            with torch.no_grad(), amp():
                forward(cfg, P, tokens, lengths, mode)

        key = "full_heads" if mode == "full" else "budgetformer"
        ts = timed(train_step, a.warmup, a.repeats, a.seconds, a.start_at) if a.only != "infer" else None
        ti = timed(infer, a.warmup, a.repeats, a.seconds, a.start_at) if a.only != "train" else None
        out[key] = {"train_samples_per_s": B / ts if ts else None, "infer_all_samples_per_s": B / ti if ti else None}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
