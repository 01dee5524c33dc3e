#!/usr/bin/python3
"""The results document of launch/reproduce.sh, computed from its output directory.

usage: results_table.py env    --out DIR [--exe BUDGETFORMER]
       results_table.py choose --out DIR --dataset NAME
       results_table.py choose-cost --out DIR --dataset NAME
       results_table.py report --out DIR --md FILE --plots DIR [--quick] [--seeds N] [--datasets LIST]
                               [--variants LIST]

env     writes DIR/env.json: machine (CPU model, cores, memory, OS) and software versions (gcc, Open MPI,
        OpenBLAS, HDF5, libinih, CMake, Python packages, git commit).
choose  prints the adaptive-exploration candidate of DIR/NAME/tune/ with the best validation accuracy
        (ties: fewer heads per layer, then the first listed).
choose-cost  prints the budget-cost candidate of DIR/NAME/tune-cost/ (c<cost>) with the best validation
        accuracy among those whose mean heads per layer on valid is at most half the heads (the claim's
        limit); if none is, the one with the fewest heads. Ties: fewer heads.
report  reads every run under DIR (DIR/<dataset>/<variant>/seed<N>/{job,valid,test}.json and
        test-records.h5, DIR/<dataset>/tune/, DIR/invocations.tsv, DIR/env.json) and writes the markdown
        document FILE, the PNG plots into the plots directory (linked relative to FILE) and DIR/results.json
        (the same numbers, for scripts and tests). Runs that are not finished are left out and the document
        says how many seeds each row has, so it can be regenerated at any time.
Needs Debian's python3 with python3-h5py, python3-matplotlib and numpy (Agg backend, no display).
"""
import argparse
import configparser
import datetime
import glob
import json
import math
import os
import platform
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = ["wordnet-pos", "wordnet-lex", "spam"]
DATASET_INFO = {
    "wordnet-pos": "WordNet gloss -> part of speech (4 classes: noun, verb, adj, adv)",
    "wordnet-lex": "WordNet gloss -> lexicographer file (45 classes)",
    "spam": "SpamAssassin message -> ham / hard_ham / spam (3 classes, 256 tokens)",
    "wordnet-lex-hint": "wordnet-lex, half of the glosses prefixed by their answer (a positive control, FIDELITY.md round 8)",
}
def variant_name(v):
    if v == "full":
        return "full multi-head attention"
    if v.startswith("fixed"):
        return "fixed budget k = %s" % v[5:]
    if v.startswith("target"):
        return "BudgetFormer, target r = %s" % v[6:]
    if v.startswith("layers"):
        return "fixed budget per layer (%s)" % ", ".join(v[6:].split("-"))
    return v


def is_learned(v):
    return v.startswith("target")


def fixed_k(v):
    return int(v[5:]) if v.startswith("fixed") and v[5:].isdigit() else None


CONTROLS = ["shuffle", "constant"]
BUCKETS = [(1, 8), (9, 16), (17, 32), (33, 64), (65, 128), (129, None)]
TOLERANCE_POINTS = 0.3


def fail(msg):
    print("results_table.py: " + msg, file=sys.stderr)
    sys.exit(1)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_text(path):
    """The stripped contents of a small text file, or "" when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# ---------------------------------------------------------------------------------------------- env
def cmd_env(a):
    def first_line(s):
        return s.splitlines()[0] if s else ""

    def dpkg(pattern):
        lines = sh("dpkg-query -W -f '${Package} ${Version}\\n' %s 2>/dev/null" % pattern).splitlines()
        return ", ".join(l for l in lines if len(l.split()) == 2)

    lscpu = sh("lscpu")
    field = lambda name: next((l.split(":", 1)[1].strip() for l in lscpu.splitlines()
                               if l.split(":", 1)[0].strip() == name), "")
    mem = sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2 / 1048576}' /proc/meminfo")
    os_name = sh(". /etc/os-release 2>/dev/null && echo \"$PRETTY_NAME\"") or platform.platform()
    try:
        import h5py
        h5py_v, hdf5_v = h5py.__version__, h5py.version.hdf5_version
    except ImportError:
        h5py_v = hdf5_v = ""
    try:
        import matplotlib
        mpl_v = matplotlib.__version__
    except ImportError:
        mpl_v = ""
    git = sh("git -C '%s' rev-parse HEAD" % ROOT)
    dirty = sh("git -C '%s' status --porcelain --untracked-files=no" % ROOT)
    env = {
        "written": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu_model": field("Model name"),
        "cpus": os.cpu_count(),
        "cores_per_socket": field("Core(s) per socket"),
        "threads_per_core": field("Thread(s) per core"),
        "sockets": field("Socket(s)"),
        "memory": mem,
        "os": os_name,
        "kernel": platform.release(),
        "load_average": " ".join("%.2f" % x for x in os.getloadavg()),
        "gcc": first_line(sh("gcc --version")),
        "open_mpi": first_line(sh("mpirun --version")),
        "openblas": dpkg("'libopenblas0*'"),
        "hdf5": dpkg("'libhdf5-dev' 'libhdf5-103*'") or hdf5_v,
        "libinih": dpkg("libinih-dev"),
        "cmake": first_line(sh("cmake --version")),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py_v + (" (HDF5 %s)" % hdf5_v if hdf5_v else ""),
        "matplotlib": mpl_v,
        "git_commit": git + (" (with uncommitted changes)" if dirty else ""),
        "budgetformer": a.exe or "",
        "budgetformer_sha256": sh("sha256sum '%s' | cut -d' ' -f1" % a.exe) if a.exe else "",
        "budgetformer_source": read_text(os.path.join(a.out, "bin", "budgetformer.source")),
    }
    with open(os.path.join(a.out, "env.json"), "w") as f:
        json.dump(env, f, indent=1)
        f.write("\n")


# ---------------------------------------------------------------------------------------------- runs
def mean_heads(ev):
    mb = ev.get("mean_budget") or []
    return float(np.mean(mb)) if mb else float("nan")


def load_job(jobdir):
    job = read_json(os.path.join(jobdir, "job.json"))
    if job is None:
        return None
    job["dir"] = jobdir
    job["valid"] = read_json(os.path.join(jobdir, "valid.json"))
    job["test"] = read_json(os.path.join(jobdir, "test.json"))
    job["records"] = os.path.join(jobdir, "test-records.h5")
    job["controls"] = {(sp, c): control_eval(jobdir, sp, c) for sp in ("valid", "test") for c in CONTROLS}
    return job


def control_eval(jobdir, split, ctl):
    """The control's numbers (accuracy, macro_f1, mean_budget) of DIR/<split>-<ctl>.json: the nested
    "budget_control" object when the file has one, else its top-level keys; "missing" when the program had no
    such option; None when not evaluated."""
    ev = read_json(os.path.join(jobdir, "%s-%s.json" % (split, ctl)))
    if ev is None:
        return "missing" if os.path.exists(os.path.join(jobdir, "%s-%s.missing" % (split, ctl))) else None
    c = ev.get("budget_control") if isinstance(ev.get("budget_control"), dict) else ev
    return {"accuracy": c.get("accuracy"), "macro_f1": c.get("macro_f1"), "heads": mean_heads(c),
            "own_accuracy": ev.get("accuracy")}


def stats(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return None, None
    m = float(np.mean(xs))
    s = float(np.std(xs, ddof=1)) if len(xs) > 1 else None
    return m, s


def collect(out, datasets, plan, nseeds):
    res = {}
    for ds in datasets:
        res[ds] = {}
        for v in plan[ds]:
            jobs = []
            for seed in range(1, nseeds + 1):
                job = load_job(os.path.join(out, ds, v, "seed%d" % seed))
                if job is not None and job["test"] is not None and job["valid"] is not None:
                    jobs.append(job)
            if not jobs:
                continue
            r = {"variant": v, "name": variant_name(v), "seeds": [j["seed"] for j in jobs], "jobs": jobs}
            r["n_heads"] = jobs[0]["test"]["n_heads"]
            r["n_layers"] = jobs[0]["test"]["n_layers"]
            for key, fn in [("test_accuracy", lambda j: j["test"]["accuracy"]),
                            ("test_macro_f1", lambda j: j["test"]["macro_f1"]),
                            ("valid_accuracy", lambda j: j["valid"]["accuracy"]),
                            ("heads", lambda j: mean_heads(j["test"])),
                            ("valid_heads", lambda j: mean_heads(j["valid"])),
                            ("attention_flops_ratio", lambda j: j["test"]["attention_flops_ratio"]),
                            ("flops_ratio", lambda j: j["test"]["flops_ratio"]),
                            ("train_wall_s", lambda j: j.get("train_wall_s")),
                            ("train_cpu_s", lambda j: j.get("train_cpu_s"))]:
                vals = [fn(j) for j in jobs]
                r[key + "_all"] = vals
                r[key], r[key + "_std"] = stats(vals)
            sps = [j["test"].get("samples_per_s") for j in jobs if j["test"].get("samples_per_s")]
            r["samples_per_s"] = float(np.median(sps)) if sps else None
            if is_learned(v):
                ctl = {}
                for sp in ("valid", "test"):
                    for c in CONTROLS:
                        vals = [j["controls"][(sp, c)] for j in jobs]
                        done = [(j[sp]["accuracy"], x) for j, x in zip(jobs, vals) if isinstance(x, dict)]
                        d = [100.0 * (own - x["accuracy"]) for own, x in done]
                        m, sd = stats(d)
                        ctl["%s_%s" % (sp, c)] = {
                            "n": len(done), "missing": sum(1 for x in vals if x == "missing"),
                            "accuracy": stats([x["accuracy"] for _, x in done])[0],
                            "heads": stats([x["heads"] for _, x in done])[0],
                            "own_accuracy": stats([own for own, _ in done])[0],
                            "diff_points": m, "diff_sd_points": sd}
                r["controls"] = ctl
            r["overrides"] = [o for o in jobs[0].get("overrides", []) if not o.startswith("train.seed=")]
            res[ds][v] = r
    return res


def pick_bf(rows):
    """The BudgetFormer of the claims, chosen on the validation split: among the target variants whose mean
    valid heads per layer is at most H/2, the best mean valid accuracy (ties: fewer heads); when none is,
    the one with the fewest valid heads (claim 1 then fails)."""
    cands = [r for v, r in rows.items() if is_learned(v)]
    if not cands:
        return None
    ok = [r for r in cands if r["valid_heads"] <= r["n_heads"] / 2.0 + 1e-9]
    if not ok:
        return min(cands, key=lambda r: r["valid_heads"])["variant"]
    return max(ok, key=lambda r: (round(r["valid_accuracy"], 9), -r["valid_heads"]))["variant"]


def criteria(rows, bf):
    """The claims of issue #13 for the learned row bf against the full, fixed-budget and control rows."""
    r = rows[bf]
    H = r["n_heads"]
    out = {"variant": bf, "accuracy": r["test_accuracy"], "heads": r["heads"], "n_heads": H}
    out["heads_ok"] = r["heads"] <= H / 2.0 + 1e-9
    full = rows.get("full")
    if full:
        d = 100.0 * (r["test_accuracy"] - full["test_accuracy"])
        out["full_accuracy"] = full["test_accuracy"]
        out["delta_full_points"] = d
        out["acc_ok"] = d >= -TOLERANCE_POINTS - 1e-9
    else:
        out["acc_ok"] = None
    fixed = [rows[v] for v in rows if fixed_k(v)]
    if fixed:
        near = min(fixed, key=lambda f: (round(abs(fixed_k(f["variant"]) - r["heads"]), 9), -f["test_accuracy"]))
        out["fixed_variant"] = near["variant"]
        out["fixed_k"] = fixed_k(near["variant"])
        out["fixed_accuracy"] = near["test_accuracy"]
        out["delta_fixed_points"] = 100.0 * (r["test_accuracy"] - near["test_accuracy"])
        out["fixed_ok"] = r["test_accuracy"] > near["test_accuracy"]
        sds = [x for x in (r["test_accuracy_std"], near["test_accuracy_std"]) if x is not None]
        out["fixed_spread_points"] = 100.0 * max(sds) if sds else None
    else:
        out["fixed_ok"] = None
    ctl_ok = []
    for c in CONTROLS:
        x = r["controls"]["test_" + c]
        out["control_" + c] = x
        if x["n"] == 0 or x["diff_sd_points"] is None:
            ctl_ok.append(None)
        else:
            ctl_ok.append(x["diff_points"] > x["diff_sd_points"])
    out["controls_ok"] = None if None in ctl_ok else all(ctl_ok)
    target = float(bf[6:])
    out["target"] = target
    out["valid_fraction"] = r["valid_heads"] / H
    out["target_ok"] = abs(out["valid_fraction"] - target) <= 0.05 + 1e-9
    out["all_ok"] = all(out[k] is True for k in ("heads_ok", "acc_ok", "fixed_ok", "controls_ok", "target_ok"))
    return out


def load_label_names(ds, out):
    import h5py
    for path in (os.path.join(ROOT, "data", ds, "test.h5"), os.path.join(out, "data", ds, "test.h5")):
        if os.path.exists(path):
            with h5py.File(path, "r") as f:
                return [s.decode() if isinstance(s, bytes) else str(s) for s in f["label_names"][()]]
    return None


def adaptivity(row, ds, out):
    """Budgets of the test inputs of every seed of a row, pooled: by length bucket, class, correct/wrong."""
    import h5py
    budget, label, pred, length = [], [], [], []
    for j in row["jobs"]:
        if not os.path.exists(j["records"]):
            continue
        with h5py.File(j["records"], "r") as f:
            r = f["records"]
            budget.append(r["budget"][()].astype(float))
            label.append(r["label"][()])
            pred.append(r["pred"][()])
            length.append(r["length"][()])
    if not budget:
        return None
    budget, label, pred, length = (np.concatenate(x) for x in (budget, label, pred, length))
    names = load_label_names(ds, out)
    L = budget.shape[1]
    res = {"n": int(len(label)), "n_layers": L, "n_heads": row["n_heads"], "seeds": len(row["jobs"])}

    def group(mask):
        n = int(mask.sum())
        return {"n": n, "mean_budget": budget[mask].mean(axis=0).tolist() if n else None,
                "accuracy": float((label[mask] == pred[mask]).mean()) if n else None}

    res["overall"] = group(np.ones(len(label), bool))
    res["by_length"] = []
    for lo, hi in BUCKETS:
        m = (length >= lo) & ((length <= hi) if hi else True)
        if m.sum():
            g = group(m)
            g["bucket"] = "%d-%d" % (lo, hi) if hi else "%d+" % lo
            res["by_length"].append(g)
    res["by_class"] = []
    for c in np.unique(label):
        g = group(label == c)
        g["class"] = int(c)
        g["name"] = names[c] if names and c < len(names) else "class %d" % c
        res["by_class"].append(g)
    res["by_class"].sort(key=lambda g: -g["n"])
    correct = label == pred
    res["by_correct"] = {"correct": group(correct), "wrong": group(~correct)}
    # does the budget follow length within the test set? Spearman-free: correlation of the mean budget
    # over layers with log length
    mb = budget.mean(axis=1)
    res["corr_log_length"] = float(np.corrcoef(np.log(length), mb)[0, 1]) if mb.std() > 0 else 0.0
    return res


# ---------------------------------------------------------------------------------------------- plots
def plot_pareto(rows, ds, path):
    """Test accuracy against mean heads per layer on one dataset: full, the fixed-k curve, the learned targets."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for v, r in rows.items():
        mk, col = ("*", "k") if v == "full" else (("D", "C2") if fixed_k(v) else ("o", "C0"))
        ax.errorbar(r["heads"], 100 * r["test_accuracy"],
                    yerr=100 * r["test_accuracy_std"] if r["test_accuracy_std"] else None,
                    fmt=mk, color=col, ms=11 if v == "full" else 6, capsize=3)
        label = "full" if v == "full" else ("k=%d" % fixed_k(v) if fixed_k(v) else "r=" + v[6:])
        ax.annotate(label, (r["heads"], 100 * r["test_accuracy"]), textcoords="offset points", xytext=(5, 4),
                    fontsize=7)
    fk = sorted((r["heads"], 100 * r["test_accuracy"]) for v, r in rows.items() if fixed_k(v))
    if len(fk) > 1:
        ax.plot(*zip(*fk), color="C2", lw=0.8, alpha=0.6)
    H = next(iter(rows.values()))["n_heads"]
    ax.axvline(H / 2, color="grey", lw=0.6, ls=":")
    ax.set_xlim(0.5, H + 0.5)
    ax.set_title(ds, fontsize=10)
    ax.set_xlabel("mean heads per layer (of %d)" % H)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def config_value(ds, section, key, default=None):
    """A value of configs/<ds>.ini as text (the trainer's INI: ';' starts a comment); default when absent."""
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    try:
        cp.read(os.path.join(ROOT, "configs", ds + ".ini"), encoding="utf-8")
    except configparser.Error:
        return default
    return cp.get(section, key, fallback=default)


def method_summary(datasets):
    """The shipped configurations' training options of the learned budget, in words."""
    parts = []
    for ds in datasets:
        gn = config_value(ds, "model", "gate_norm", "0")
        e0, e1 = config_value(ds, "explore", "eps_start", "?"), config_value(ds, "explore", "eps_end", "?")
        ramp = config_value(ds, "train", "budget_ramp", "explore.steps")
        words = "%s: `model.gate_norm = %s`, `explore.eps_start = %s`, `eps_end = %s`, `train.budget_ramp = %s`" % (
            ds, gn, e0, e1, ramp)
        # the added training options a configuration sets (docs/MODEL.md), named only where they are on
        for section, key in (("model", "budget_hidden"), ("train", "sandwich"), ("train", "budget_supervise"),
                             ("train", "supervise_rank"), ("train", "supervise_weight"),
                             ("train", "supervise_center"), ("train", "budget_spread"),
                             ("train", "spread_weight")):
            v = config_value(ds, section, key)
            if v is not None and v.strip() not in ("0", "0.0"):
                words += ", `%s.%s = %s`" % (section, key, v.strip())
        parts.append(words)
    return "; ".join(parts)


def job_ranks(out):
    """The MPI rank counts the finished runs of DIR were trained with (from their job.json)."""
    ranks = set()
    for p in glob.glob(os.path.join(out, "*", "*", "seed*", "job.json")):
        j = read_json(p)
        if j and "ranks" in j:
            ranks.add(int(j["ranks"]))
    return sorted(ranks)


def config_heads(ds):
    try:
        return int(config_value(ds, "model", "n_heads", "4"))
    except ValueError:
        return 4


def default_plan(ds, quick):
    """The variants reproduce.sh trains by default (used when no --plan is given)."""
    H = config_heads(ds)
    ks = sorted({1, H // 2}) if quick else range(1, H + 1)
    ts = ["0.5"] if quick else (["0.25", "0.5"] if H == 8 else ["0.375", "0.5"])
    return ["full"] + ["fixed%d" % k for k in ks] + ["target" + t for t in ts]


def plot_adaptivity(ad, ds, variant, path, top_classes=8):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    L = ad["n_layers"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), gridspec_kw={"width_ratios": [1.2, 1.6, 0.7]})
    # by length
    ax = axes[0]
    xs = [g["bucket"] for g in ad["by_length"]]
    for l in range(L):
        ax.plot(range(len(xs)), [g["mean_budget"][l] for g in ad["by_length"]], "o-", label="layer %d" % l)
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels(xs, fontsize=8)
    ax.set_xlabel("input length (tokens)")
    ax.set_ylabel("mean budget k")
    ax.set_title("by input length", fontsize=10)
    ax.legend(fontsize=7)
    # by class (most frequent classes)
    ax = axes[1]
    cls = ad["by_class"][:top_classes]
    w = 0.8 / L
    for l in range(L):
        ax.bar(np.arange(len(cls)) + l * w, [g["mean_budget"][l] for g in cls], w, label="layer %d" % l)
    ax.set_xticks(np.arange(len(cls)) + w * (L - 1) / 2)
    ax.set_xticklabels([g["name"] for g in cls], rotation=30, ha="right", fontsize=7)
    more = len(ad["by_class"]) - len(cls)
    ax.set_title("by true class" + (" (the %d most frequent of %d)" % (len(cls), len(ad["by_class"])) if more else ""),
                 fontsize=10)
    # correct vs wrong
    ax = axes[2]
    for l in range(L):
        vals = [ad["by_correct"][k]["mean_budget"][l] if ad["by_correct"][k]["mean_budget"] else 0
                for k in ("correct", "wrong")]
        ax.bar(np.arange(2) + l * w, vals, w, label="layer %d" % l)
    ax.set_xticks(np.arange(2) + w * (L - 1) / 2)
    ax.set_xticklabels(["correct (%d)" % ad["by_correct"]["correct"]["n"], "wrong (%d)" % ad["by_correct"]["wrong"]["n"]],
                       fontsize=8)
    ax.set_title("by prediction", fontsize=10)
    H = ad["n_heads"]
    for ax in axes:
        ax.set_ylim(0, H + 0.3)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("%s: %s, test inputs of %d seed(s) pooled" % (ds, variant_name(variant), ad["seeds"]), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- report
def pct(m, s=None, nd=2):
    if m is None:
        return "-"
    return ("%.*f" % (nd, 100 * m)) + (" ± %.*f" % (nd, 100 * s) if s is not None else "")


def fmt_s(sec):
    if sec is None:
        return "-"
    sec = float(sec)
    if sec >= 3600:
        return "%.1f h" % (sec / 3600)
    if sec >= 60:
        return "%.1f min" % (sec / 60)
    return "%.0f s" % sec


def delta(d):
    """A difference in points; three decimals where two would hide which side of the tolerance it is on."""
    if d is None:
        return "-"
    if abs(abs(round(d, 2)) - TOLERANCE_POINTS) < 1e-9 and abs(abs(d) - TOLERANCE_POINTS) > 1e-9:
        return "%+.3f" % d
    return "%+.2f" % d


def yesno(b):
    return "-" if b is None else ("yes" if b else "**no**")


def budgets_str(mb):
    return " / ".join("%.2f" % x for x in mb) if mb else "-"


def dataset_sizes(ds, out, quick):
    import h5py
    sizes = {}
    for split in ("train", "valid", "test"):
        p = os.path.join(ROOT, "data", ds, split + ".h5")
        if split != "train" and quick and os.path.exists(os.path.join(out, "data", ds, split + ".h5")):
            p = os.path.join(out, "data", ds, split + ".h5")
        try:
            with h5py.File(p, "r") as f:
                sizes[split] = int(f["labels"].shape[0])
        except OSError:
            sizes[split] = None
    return sizes


def invocations(out):
    rows = []
    try:
        with open(os.path.join(out, "invocations.tsv")) as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) >= 5:
                    rows.append({"start": int(p[0]), "end": int(p[1]), "rc": int(p[2]), "quick": p[3] == "1",
                                 "command": p[4]})
    except (OSError, ValueError):
        pass
    return rows


def eval_seconds(out):
    tot = 0.0
    for p in glob.glob(os.path.join(out, "*", "*", "*", "seed*", "*.time")) + \
            glob.glob(os.path.join(out, "*", "*", "seed*", "*.time")):
        if p.endswith("train.time"):
            continue
        try:
            with open(p) as f:
                for line in f:
                    tot += float(line.split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return tot


def cmd_report(a):
    out = os.path.abspath(a.out)
    datasets = [d for d in (a.datasets.replace(",", " ").split() if a.datasets else DATASETS)]
    plan = {}
    for item in (a.plan or "").split():
        ds, _, vs = item.partition(":")
        plan[ds] = [v for v in vs.split(",") if v]
    for ds in datasets:
        plan.setdefault(ds, default_plan(ds, a.quick))
    md_path = os.path.abspath(a.md)
    plots = os.path.abspath(a.plots)
    os.makedirs(plots, exist_ok=True)
    os.makedirs(os.path.dirname(md_path), exist_ok=True)
    rel = lambda p: os.path.relpath(p, os.path.dirname(md_path))
    env = read_json(os.path.join(out, "env.json")) or {}
    res = collect(out, datasets, plan, a.seeds)
    inv = [i for i in invocations(out) if i["quick"] == a.quick]
    if a.running_since:
        # the invocation writing this document is not in invocations.tsv yet (it is logged when it exits)
        inv.append({"start": a.running_since, "end": int(datetime.datetime.now().timestamp()), "rc": 0,
                    "quick": a.quick, "command": a.command or ""})

    summary = {"quick": a.quick, "seeds_requested": a.seeds, "datasets": {}, "generated":
               datetime.datetime.now().isoformat(timespec="seconds")}
    L = []
    w = L.append
    title = "Results: BudgetFormer against full multi-head attention and fixed budgets"
    w("# " + title + (" (QUICK SMOKE RUN)" if a.quick else ""))
    w("")
    w("<!-- Generated by tools/results_table.py from the outputs of launch/reproduce.sh; do not edit by hand "
      "(edit the generator). -->")
    w("")
    if a.quick:
        w("> **This is the output of `launch/reproduce.sh --quick`**: %s. Every number below is a smoke test of "
          "the pipeline, not a result." % "a few dozen updates per run, 1 seed, evaluation on subsets of the "
          "valid and test files, 2 adaptive candidates")
        w("")
    train_cmds = [i["command"] for i in inv if i["command"] and "--report-only" not in i["command"]]
    distinct = list(dict.fromkeys(train_cmds))
    if not distinct:
        distinct = ["launch/reproduce.sh --quick" if a.quick else "launch/reproduce.sh"]
    if len(distinct) > 3:
        produced = "`%s` and %d other invocations (all of them in `invocations.tsv` of the output directory)" % (
            distinct[-1], len(distinct) - 1)
    else:
        produced = " and ".join("`%s`" % c for c in distinct)
    w("Regenerate (from the repository root of a fresh clone, Debian 12, after `bash launch/install-deps.sh`):")
    w("")
    w("```sh")
    w("bash launch/reproduce.sh                 # prepare data, train, evaluate, write docs/RESULTS.md (hours)")
    w("bash launch/reproduce.sh --quick --out /tmp/repro   # the CI smoke version (< 10 min), writes /tmp/repro/RESULTS.md")
    w("```")
    w("")
    w("This document was produced by %s (output directory `%s`); rerunning the same commands continues an "
      "interrupted reproduction, and `launch/reproduce.sh --report-only` rewrites this file from the runs "
      "that are finished." % (produced, os.path.relpath(out, ROOT) if out.startswith(ROOT) else out))
    w("")

    # ---- protocol
    rk = job_ranks(out)
    if not rk:
        rank_words = "on the ranks of `--ranks`"
    elif rk == [1]:
        rank_words = "in one process (`--ranks 1`: one MPI rank)"
    else:
        rank_words = "data-parallel on %s MPI ranks (`launch/bf-mpirun.sh --bind none`)" % " or ".join(map(str, rk))
    w("## Protocol")
    w("")
    w("| dataset | task | train / valid / test inputs | configuration | heads per layer H |")
    w("|---|---|---|---|---|")
    for ds in datasets:
        sz = dataset_sizes(ds, out, a.quick)
        H = next(iter(res[ds].values()))["n_heads"] if res.get(ds) else "-"
        w("| %s | %s | %s / %s / %s | [configs/%s.ini](../configs/%s.ini) | %s |" % (
            ds, DATASET_INFO.get(ds, ""), sz["train"], sz["valid"], sz["test"], ds, ds, H))
    w("")
    w("- Every model is the shipped configuration of its dataset (settings chosen on the validation split, "
      "[docs/TUNING.md](TUNING.md)) with the `--set` overrides of its variant, trained %s, one OpenBLAS thread "
      "per rank, with seeds 1..%d (`train.seed`; seeds change initialisation, data order and exploration)." % (
          rank_words, a.seeds))
    w("- Variants: **full multi-head attention** (`model.full_heads=1 model.gate_norm=0`: every head, gates 1); **fixed budgets** `model.fixed_budget` "
      "= k for every k = 1..H (every input uses exactly k heads per layer, chosen by the learned relevance; no "
      "learned budget; k = H keeps the relevance-weighted gates, so it is not the full baseline); **BudgetFormer, "
      "target r**: learned per-input budget with `train.budget_target=r` (the coordinator's multiplier drives the "
      "mean fraction of heads k/H to r), with the shipped configuration's own training options (%s)%s. The "
      "fixed budgets share the configuration's gates, so they differ from the learned budget only in how k is "
      "chosen." % (method_summary(datasets), " plus `%s`" % " ".join(a.method_set.split()) if a.method_set else ""))
    w("- During training `data.test` is cleared: the test file is read by `budgetformer eval --json --records` "
      "on the final checkpoint and, for learned budgets, by its two budget controls. The BudgetFormer of the "
      "claims is chosen on the validation split only.")
    w("- Heads per layer: the mean budget over layers and test inputs (H for the full model). FLOPs ratios are "
      "those `budgetformer eval` reports for head-skipping inference, relative to computing every head. "
      "Samples/s: single-process, one-thread inference on the test file (median over seeds) on a shared "
      "machine, so treat it as indicative.")
    w("")

    # ---- the table
    w("## Results (test split)")
    w("")
    w("Accuracy and macro-F1 in percent, mean ± sample standard deviation over the seeds (no ± with one seed).")
    w("")
    missing = []
    for ds in datasets:
        rows = res.get(ds, {})
        w("### %s" % ds)
        w("")
        w("| variant | seeds | test accuracy | test macro-F1 | heads per layer | attention FLOPs | total FLOPs | "
          "inference samples/s | valid accuracy | training wall / CPU per run |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for v in plan[ds]:
            r = rows.get(v)
            if r is None:
                w("| %s | 0 | (not run yet) | | | | | | | |" % variant_name(v))
                missing.append("%s / %s: no seed finished" % (ds, v))
                continue
            if len(r["seeds"]) < a.seeds:
                missing.append("%s / %s: %d of %d seeds" % (ds, v, len(r["seeds"]), a.seeds))
            w("| %s | %d | %s | %s | %.2f of %d | %.3f | %.3f | %.0f | %s | %s / %s |" % (
                variant_name(v), len(r["seeds"]), pct(r["test_accuracy"], r["test_accuracy_std"]),
                pct(r["test_macro_f1"], r["test_macro_f1_std"]), r["heads"], r["n_heads"],
                r["attention_flops_ratio"], r["flops_ratio"], r["samples_per_s"] or 0,
                pct(r["valid_accuracy"], r["valid_accuracy_std"]), fmt_s(r["train_wall_s"]), fmt_s(r["train_cpu_s"])))
        w("")
    if missing:
        w("**Not every row has all %d seeds** (time, or the run is still going): %s." % (a.seeds, "; ".join(missing)))
        w("")
    # ---- budget controls
    w("## Budget controls (test split, the same weights)")
    w("")
    w("Each learned-budget run evaluated with its own per-input budgets, with the budgets shuffled between inputs "
      "(`--budget-control shuffle`, same histogram of k per layer) and with a constant budget per layer "
      "(`--budget-control constant`, the rounded mean). Differences in points, own minus control, mean ± seed sd "
      "of the per-seed differences; valid in brackets.")
    w("")
    w("| dataset | variant | seeds | own accuracy | shuffle | own - shuffle | constant | own - constant |")
    w("|---|---|---|---|---|---|---|---|")
    for ds in datasets:
        for v in plan[ds]:
            r = res.get(ds, {}).get(v)
            if not is_learned(v) or r is None:
                continue
            cells = []
            for c in CONTROLS:
                x, xv = r["controls"]["test_" + c], r["controls"]["valid_" + c]
                if x["n"] == 0:
                    cells += ["not run" + (" (program has no --budget-control)" if x["missing"] else ""), "-"]
                    continue
                dv = ("%+.2f" % xv["diff_points"]) if xv["n"] else "-"
                cells += ["%s (%.2f heads)" % (pct(x["accuracy"]), x["heads"]),
                          "%+.2f%s [%s]" % (x["diff_points"], " ± %.2f" % x["diff_sd_points"]
                                            if x["diff_sd_points"] is not None else "", dv)]
            w("| %s | %s | %d | %s | %s |" % (ds, variant_name(v), len(r["seeds"]), pct(r["test_accuracy"]),
                                             " | ".join(cells)))
    w("")
    for ds in datasets:
        if not res.get(ds):
            continue
        p = os.path.join(plots, "pareto_%s.png" % ds)
        if plot_pareto(res[ds], ds, p):
            w("![%s: test accuracy against mean heads per layer](%s)" % (ds, rel(p)))
            w("")
    w("Pareto plots: test accuracy against mean heads per layer (error bars: seed sd; line: fixed budgets "
      "k = 1..H; star: full heads; circles: learned targets; dotted: H/2).")
    w("")

    # ---- criteria
    w("## The claims, checked")
    w("")
    w("For each dataset, on the BudgetFormer chosen on the validation split (among the target variants whose mean "
      "valid heads per layer is at most H/2, the best mean valid accuracy): (1) at most half the heads per layer "
      "on average (test); (2) mean test accuracy at least that of full multi-head attention minus %.1f points; "
      "(3) mean test accuracy above the fixed budget whose k is nearest its mean heads per layer; (4) its own "
      "per-input budgets beat both controls (shuffle, constant) on test by more than the seed sd of the "
      "difference (\"-\" with one seed or a control not run); (5) mean valid fraction of heads within 0.05 of "
      "the target r. Computed by the generator, not written by hand." % TOLERANCE_POINTS)
    w("")
    w("| dataset | chosen on valid | heads per layer | (1) | acc. - full (points) | (2) | nearest fixed budget | "
      "acc. - fixed (points) | (3) | - shuffle / - constant (points) | (4) | valid k/H vs r | (5) | all hold |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    verdicts = {}
    for ds in datasets:
        rows = res.get(ds, {})
        chosen = pick_bf(rows)
        summary["datasets"][ds] = {"rows": {v: {k: r[k] for k in r if k not in ("jobs",)} for v, r in rows.items()},
                                   "bf_chosen": chosen, "plan": plan[ds]}
        if chosen is None:
            continue
        c = criteria(rows, chosen)
        summary["datasets"][ds]["criteria"] = c
        verdicts[ds] = c
        cd = []
        for k in CONTROLS:
            x = c["control_" + k]
            cd.append("not run" if x["n"] == 0 else "%+.2f%s" % (x["diff_points"], " ± %.2f" % x["diff_sd_points"]
                                                                  if x["diff_sd_points"] is not None else ""))
        w("| %s | %s | %.2f of %d | %s | %s | %s | %s | %s | %s | %s | %s | %.3f vs %g | %s | %s |" % (
            ds, variant_name(chosen), c["heads"], c["n_heads"], yesno(c["heads_ok"]),
            delta(c.get("delta_full_points")), yesno(c["acc_ok"]),
            "k = %d" % c["fixed_k"] if c.get("fixed_variant") else "-",
            ("%+.2f" % c["delta_fixed_points"]) + (" (seed sd %.2f)" % c["fixed_spread_points"]
                                                   if c.get("fixed_spread_points") is not None else "")
            if c.get("delta_fixed_points") is not None else "-",
            yesno(c["fixed_ok"]), " / ".join(cd), yesno(c["controls_ok"]), c["valid_fraction"], c["target"],
            yesno(c["target_ok"]), "**yes**" if c["all_ok"] else "**no**"))
    w("")
    for ds in datasets:
        c = verdicts.get(ds)
        if c is None:
            w("- **%s**: no learned-budget run has finished yet." % ds)
            continue
        w("- **%s**: %s uses %.2f of %d heads per layer (valid k/H %.3f for target %g), %s points against full "
          "heads and %+.2f against k = %s; claims %s." % (
              ds, variant_name(c["variant"]), c["heads"], c["n_heads"], c["valid_fraction"], c["target"],
              delta(c.get("delta_full_points")), c.get("delta_fixed_points") or 0.0, c.get("fixed_k", "-"),
              "**all hold**" if c["all_ok"] else "**do not all hold**"))
    w("")

    # ---- adaptivity
    w("## Adaptivity: how the budget depends on the input")
    w("")
    w("From the evaluation records of the test split (`eval --records`, one row per input; the model runs at "
      "eps = 0), all seeds of the validation-chosen BudgetFormer schedule pooled. Mean budget k per layer "
      "(layer 0 / layer 1 ...).")
    w("")
    for ds in datasets:
        rows = res.get(ds, {})
        bf = pick_bf(rows)
        if bf is None:
            continue
        ad = adaptivity(rows[bf], ds, out)
        if ad is None:
            continue
        summary["datasets"][ds]["adaptivity"] = ad
        p = os.path.join(plots, "adaptivity_%s.png" % ds)
        plot_adaptivity(ad, ds, bf, p)
        w("### %s (%s)" % (ds, variant_name(bf)))
        w("")
        w("![budget by length, class and correctness, %s](%s)" % (ds, rel(p)))
        w("")
        w("| group | inputs | accuracy | mean budget per layer |")
        w("|---|---|---|---|")
        w("| all | %d | %s | %s |" % (ad["overall"]["n"], pct(ad["overall"]["accuracy"]), budgets_str(ad["overall"]["mean_budget"])))
        for g in ad["by_length"]:
            w("| length %s | %d | %s | %s |" % (g["bucket"], g["n"], pct(g["accuracy"]), budgets_str(g["mean_budget"])))
        ncls = 8 if len(ad["by_class"]) > 10 else len(ad["by_class"])
        for g in ad["by_class"][:ncls]:
            w("| class %s | %d | %s | %s |" % (g["name"], g["n"], pct(g["accuracy"]), budgets_str(g["mean_budget"])))
        if ncls < len(ad["by_class"]):
            rest = ad["by_class"][ncls:]
            hi = max(rest, key=lambda g: np.mean(g["mean_budget"]))
            lo = min(rest, key=lambda g: np.mean(g["mean_budget"]))
            w("| (other %d classes: highest mean %s, %s; lowest %s, %s) | %d | | |" % (
                len(rest), hi["name"], budgets_str(hi["mean_budget"]), lo["name"], budgets_str(lo["mean_budget"]),
                sum(g["n"] for g in rest)))
        for k in ("correct", "wrong"):
            g = ad["by_correct"][k]
            w("| %s predictions | %d | | %s |" % (k, g["n"], budgets_str(g["mean_budget"])))
        w("")
        lm = lambda g: float(np.mean(g["mean_budget"]))
        bl = [g for g in ad["by_length"] if g["n"] >= 20] or ad["by_length"]
        cl = [g for g in ad["by_class"] if g["n"] >= 20] or ad["by_class"]
        hi, lo = max(cl, key=lm), min(cl, key=lm)
        cw = ad["by_correct"]
        text = ("In short (heads per layer averaged over layers): %.2f for inputs of %s tokens, %.2f for %s tokens "
                "(correlation with log length %.2f); by class from %.2f (%s) to %.2f (%s)" % (
                    lm(bl[0]), bl[0]["bucket"], lm(bl[-1]), bl[-1]["bucket"], ad["corr_log_length"],
                    lm(lo), lo["name"], lm(hi), hi["name"]))
        if cw["wrong"]["n"] and cw["correct"]["n"]:
            text += "; %.2f for wrong predictions against %.2f for correct ones" % (lm(cw["wrong"]), lm(cw["correct"]))
        w(text + ". Groups of fewer than 20 inputs are left out of this sentence.")
        w("")

    # ---- cost and environment
    w("## Machine, software and cost")
    w("")
    if env:
        w("| | |")
        w("|---|---|")
        for k, name in [("cpu_model", "CPU"), ("cpus", "logical CPUs"), ("cores_per_socket", "cores per socket"),
                        ("memory", "memory"), ("os", "OS"), ("kernel", "kernel"), ("gcc", "compiler"),
                        ("open_mpi", "MPI"), ("openblas", "OpenBLAS"), ("hdf5", "HDF5"), ("libinih", "libinih"),
                        ("cmake", "CMake"), ("python", "Python (plots, tables)"), ("numpy", "NumPy"),
                        ("h5py", "h5py"), ("matplotlib", "Matplotlib"), ("git_commit", "commit"), ("budgetformer_sha256", "budgetformer executable (SHA-256)"), ("budgetformer_source", "budgetformer built from commit"),
                        ("load_average", "load average when the last invocation started")]:
            if env.get(k) not in (None, ""):
                w("| %s | %s |" % (name, env[k]))
        w("")
        w("The machine was shared with other work while these runs trained, so wall-clock times are longer "
          "than the CPU times suggest; CPU seconds are the fairer cost figure.")
        w("")
    train_wall = sum(sum(x for x in r["train_wall_s_all"] if x) for rows in res.values() for r in rows.values())
    train_cpu = sum(sum(x for x in r["train_cpu_s_all"] if x) for rows in res.values() for r in rows.values())
    tune_wall = 0
    total = sum(i["end"] - i["start"] for i in inv)
    w("| cost | |")
    w("|---|---|")
    w("| wall-clock of all invocations of the script (data preparation, training, evaluation, this document) | %s |"
      % (fmt_s(total) if inv else "(not recorded yet: the reproduction is still running)"))
    w("| training wall-clock / CPU, the runs in the table | %s / %s |" % (fmt_s(train_wall), fmt_s(train_cpu)))
    w("| evaluation wall-clock (valid and test, every run) | %s |" % fmt_s(eval_seconds(out)))
    w("")
    summary["cost"] = {"total_wall_s": total, "train_wall_s": train_wall, "train_cpu_s": train_cpu,
                       "tune_wall_s": tune_wall}

    # ---- discussion
    w("## Discussion")
    w("")
    w("### Notes")
    w("")
    w("<!-- Written by the generator from the numbers above, like the rest of this file. -->")
    w("")
    src, head = env.get("budgetformer_source") or "", (env.get("git_commit") or "").split(" ")[0]
    if src and head and not head.startswith(src.split(" ")[0]):
        w("**Which program.** Every run used one executable, built from commit %s (its SHA-256 is in the table "
          "above); this document was written at commit %s. Changes to the program in between (`git log %s..%s "
          "-- src include`) are not reflected in the numbers; a rerun with a newer build differs at least in "
          "float rounding and in the inference samples/s." % (src, head[:12], src.split(" ")[0], head[:12]))
        w("")
    wins = [ds for ds, c in verdicts.items() if c["all_ok"]]
    losses = [ds for ds, c in verdicts.items() if not c["all_ok"]]
    if a.quick:
        w("This is a quick smoke run: the models are barely trained, so nothing here says where BudgetFormer "
          "wins or loses; run the full reproduction for that.")
        w("")
    else:
        if wins:
            detail = []
            for ds in wins:
                c = verdicts[ds]
                sp = c.get("fixed_spread_points")
                detail.append("%s: %s points against full heads with %.2f of %d heads, %+.2f points against "
                              "k = %d%s" % (ds, delta(c["delta_full_points"]), c["heads"], c["n_heads"],
                                            c["delta_fixed_points"], c["fixed_k"],
                                            (" (%s the seed spread of %.2f)" % (
                                                "larger than" if abs(c["delta_fixed_points"]) > sp else "within", sp))
                                            if sp is not None else " (one seed)"))
            w("**Where BudgetFormer wins.** On %s it keeps the accuracy of full multi-head attention within "
              "%.1f points while using at most half the heads, and it is more accurate than the fixed budget "
              "with about as many heads (%s). Where that last margin is within the seed spread, the learned "
              "budget is not shown to beat a fixed one, only to match it while choosing per input." % (
                  ", ".join(wins), TOLERANCE_POINTS, "; ".join(detail)))
            w("")
        if losses:
            reasons = []
            for ds in losses:
                c = verdicts[ds]
                why = []
                if c["acc_ok"] is False:
                    why.append("it is %s points below full heads (the tolerance is %.1f)" % (
                        delta(c["delta_full_points"]).lstrip("-"), TOLERANCE_POINTS))
                if c["heads_ok"] is False:
                    why.append("it uses more than half the heads")
                if c["fixed_ok"] is False:
                    why.append("the fixed budget k = %d, with about as many heads, is as accurate or more "
                               "(BudgetFormer %+.2f points)" % (c["fixed_k"], c["delta_fixed_points"]))
                reasons.append("on %s %s" % (ds, " and ".join(why) if why else "a row is missing"))
            text = "; ".join(reasons)
            w("**Where it loses.** %s." % (text[:1].upper() + text[1:]))
            w("")
        speed = []
        for ds, c in verdicts.items():
            r, f = res[ds][c["variant"]], res[ds].get("full")
            if f and f.get("samples_per_s") and r.get("samples_per_s"):
                speed.append((r["samples_per_s"] / f["samples_per_s"], ds, r["flops_ratio"]))
        text = ("**Cost.** The saving is at inference only: training computes every head (the straight-through "
                "budget gradient needs their outputs), so a BudgetFormer run costs about what the full model "
                "costs to train (see the training columns).")
        if speed:
            speed.sort(reverse=True)
            text += (" At inference, skipping the unselected heads gives %s." % "; ".join(
                "%.2fx the samples/s of full heads on %s (total FLOPs %.2f)" % x for x in speed))
        w(text)
        w("")
    w("### Closing note: what was tried")
    w("")
    tried = ["the shipped configurations (docs/TUNING.md), including their learned-budget method options, used "
             "unchanged; the budget is set by a target fraction r per variant (%s), not tuned on test" % "; ".join(
                 "%s: %s" % (ds, ", ".join(v[6:] for v in plan[ds] if is_learned(v))) for ds in datasets),
             "every fixed budget k = 1..H and full heads, for the Pareto comparison",
             "two budget controls on the same weights (shuffled and constant budgets), to test whether per-input "
             "budgets matter"]
    w("- " + "\n- ".join(tried))
    if losses and not a.quick:
        w("- Where a criterion does not hold (%s), no setting was changed after looking at the test split; "
          "the comparison stands as measured." % ", ".join(losses))
    if missing:
        w("- Incomplete rows (listed under the table) are reported with the seeds that finished.")
    w("")

    with open(md_path + ".tmp", "w") as f:
        f.write("\n".join(L))
    os.replace(md_path + ".tmp", md_path)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(summary, f, indent=1, default=lambda x: None)
        f.write("\n")
    print("results_table.py: wrote %s, %s and plots in %s" % (md_path, os.path.join(out, "results.json"), plots))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("env")
    p.add_argument("--out", required=True)
    p.add_argument("--exe")
    p = sub.add_parser("report")
    p.add_argument("--out", required=True)
    p.add_argument("--md", required=True)
    p.add_argument("--plots", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--datasets")
    p.add_argument("--method-set", help="the --method-set of reproduce.sh, for the protocol text")
    p.add_argument("--plan", help="per dataset its variants: 'DS:v,v,... DS:v,...' (default: reproduce.sh's)")
    p.add_argument("--running-since", type=int, help="start (epoch seconds) of the invocation calling this")
    p.add_argument("--command", help="the command line of that invocation")
    a = ap.parse_args()
    if not os.path.isdir(a.out):
        fail("%s: no such directory" % a.out)
    {"env": cmd_env, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
