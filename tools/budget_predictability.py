"""Could a better budget predictor, or a cascade, beat a constant budget on these weights? (a study, issue 13)

    /usr/bin/python3 tools/budget_predictability.py DATA.h5 CHECKPOINT...

For each learned-budget checkpoint, on one prepared split (the valid split: this is a study for choosing what to
build, not a result), the same weights are run with k heads in every layer for k = 1..H (the Python package's
forward(budgets=...)). The split is cut in two halves at random (seed 0). On the first half, ridge regressions
learn each input's cross-entropy at every k from features of the input; on the second half, round(m n) heads
are shared where the predicted cross-entropy falls most per head (greedily, as train.supervise_rank shares them
in training), for m = 2..H-1 heads per layer, and the inputs are answered at the k they got. Features:
  mean    the mean over tokens of layer 0's LN1 output (what the budget predictor reads);
  rich    that, with the maximum over tokens, the first token's row and the log of the length (what an
          attention-pooled predictor could reach, roughly);
  cheap   the log-probabilities and the entropy of the k = 1 pass (what a cascade knows after its cheap pass).
Beside them: the constant budget m in every layer, and the oracle that shares the heads by the true
cross-entropy (it reads the labels, so it also counts lucky answers: an optimistic ceiling, not a target).
Then a cascade: answer at k = lo, and rerun at k = hi the fraction f of inputs whose k = lo answer is least
confident, at the cost of lo + f hi heads per layer (the cheap pass is not reused), for lo = 1..3.
Prints one block per checkpoint. One thread, float32; minutes per checkpoint.
"""
import heapq
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import budgetformer  # noqa: E402
from budgetformer.model import LN_EPS, _masked_mean  # noqa: E402


def passes(model, tokens, lengths, labels, batch=1024):
    """Per k = 1..H: predictions [n], cross-entropy [n], log-probabilities [n, C]; and the layer-0 features."""
    import torch
    import torch.nn.functional as F
    H, L, D = model.config["n_heads"], model.config["n_layers"], model.config["d_model"]
    P = model.params
    preds, ces, lps = [[] for _ in range(H)], [[] for _ in range(H)], [[] for _ in range(H)]
    feats = []
    with torch.no_grad():
        for i in range(0, len(tokens), batch):
            ln = torch.from_numpy(lengths[i:i + batch])
            tk = torch.from_numpy(tokens[i:i + batch, :int(ln.max())])
            y = torch.from_numpy(labels[i:i + batch])
            T = tk.shape[1]
            valid = torch.arange(T).unsqueeze(0) < ln.unsqueeze(1)
            u = F.layer_norm(P["tok_emb"][tk] + P["pos_emb"][:T].unsqueeze(0), (D,), P["layers/0/ln1/gamma"],
                             P["layers/0/ln1/beta"], LN_EPS)
            feats.append(torch.cat([_masked_mean(u, valid), u.masked_fill(~valid[..., None], -1e9).max(1).values,
                                    u[:, 0], torch.log(ln.double()).float()[:, None]], dim=1).numpy())
            for k in range(1, H + 1):
                lg = model(tk, ln, budgets=[k] * L)["logits"]
                lp = torch.log_softmax(lg.double(), dim=1)
                preds[k - 1].append(lg.argmax(1).numpy())
                ces[k - 1].append((-lp.gather(1, y.long()[:, None])[:, 0]).numpy())
                lps[k - 1].append(lp.numpy())
    cat = np.concatenate
    return (np.stack([cat(p) for p in preds], 1), np.stack([cat(c) for c in ces], 1),
            [cat(lp) for lp in lps], cat(feats))


def ridge(xa, ya, xb, lam=10.0):
    mu, sd = xa.mean(0), xa.std(0) + 1e-6
    a = np.hstack([(xa - mu) / sd, np.ones((len(xa), 1))])
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ ya)
    return np.hstack([(xb - mu) / sd, np.ones((len(xb), 1))]) @ w


def allocate(cost, total):
    """k per input (1..H), sum = total where possible, greedily where cost [n, H] falls most per head."""
    n, H = cost.shape
    k = np.ones(n, dtype=np.int64)
    heap = [(-(cost[i, 0] - cost[i, 1]), i) for i in range(n)]
    heapq.heapify(heap)
    left = total - n
    while left > 0 and heap:
        _, i = heapq.heappop(heap)
        k[i] += 1
        left -= 1
        if k[i] < H:
            heapq.heappush(heap, (-(cost[i, k[i] - 1] - cost[i, k[i]]), i))
    return k


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    import torch
    from budget_layer_grid import read_split  # tools/: this script's directory (names the file on bad input)
    torch.set_num_threads(1)
    tokens, lengths, labels = read_split(sys.argv[1])
    for path in sys.argv[2:]:
        model = budgetformer.load(path)
        if model.mode != "learned":
            sys.exit("%s: a %s model, not a learned budget" % (path, model.mode))
        H = model.config["n_heads"]
        pred, ce, lps, feats = passes(model, tokens, lengths, labels)
        right = pred == labels[:, None]
        n = len(labels)
        print("%s\n  accuracy with k heads in every layer: %s" % (
            path, "  ".join("k=%d %.2f" % (k + 1, 100 * right[:, k].mean()) for k in range(H))))
        idx = np.random.RandomState(0).permutation(n)
        a, b = idx[: n // 2], idx[n // 2:]
        ent = -(np.exp(lps[0]) * lps[0]).sum(1, keepdims=True)
        D = model.config["d_model"]
        sets = {"mean": feats[:, :D], "rich": feats, "cheap": np.hstack([lps[0], ent])}
        for m in range(2, H):
            total = m * len(b)
            line = "  %d heads per layer on the second half: constant %.2f, oracle %.2f" % (
                m, 100 * right[b, m - 1].mean(), 100 * right[b][np.arange(len(b)), allocate(ce[b], total) - 1].mean())
            for name, x in sets.items():
                cost = np.stack([ridge(x[a], ce[a, j], x[b]) for j in range(H)], 1)
                line += ", %s %.2f" % (name, 100 * right[b][np.arange(len(b)), allocate(cost, total) - 1].mean())
            print(line)
        for lo in range(1, min(H - 1, 3) + 1):
            conf = np.exp(lps[lo - 1].max(1))  # the probability of the cheap pass's answer
            for hi in range(lo + 1, H + 1):
                cells = []
                for f in (0.1, 0.2, 0.3, 0.5):
                    esc = conf < np.quantile(conf, f)
                    acc = 100 * np.where(esc, right[:, hi - 1], right[:, lo - 1]).mean()
                    cells.append("f %.1f: %.2f heads %.2f" % (f, lo + f * hi, acc))
                print("  cascade %d -> %d: %s" % (lo, hi, "; ".join(cells)))


if __name__ == "__main__":
    main()
