#!/usr/bin/python3
"""Writes an evenly spaced subset of a prepared dataset file (docs/DATA.md layout), for the --quick mode of
launch/reproduce.sh.

usage: results_subset.py SRC.h5 DST.h5 --max N

Keeps rows 0, s, 2s, ... (s = ceil(rows / N)) so that a file sorted by class (the WordNet files list nouns
first) keeps every class in proportion. /vocab, /label_names and the attributes of / are copied as they
are; /tokens, /lengths, /labels and /source_line are sliced. A file with at most N rows is copied whole.
DST is written to DST.tmp.PID and renamed, so a complete-looking DST is always complete.
Needs Debian's python3 with python3-h5py and numpy.
"""
import argparse
import math
import os
import sys

import h5py
import numpy as np

ROW_DATASETS = ("tokens", "lengths", "labels", "source_line")
WHOLE_DATASETS = ("vocab", "label_names")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--max", type=int, required=True, help="at most this many rows")
    a = ap.parse_args()
    if a.max < 1:
        ap.error("--max must be at least 1")
    tmp = "%s.tmp.%d" % (a.dst, os.getpid())
    try:
        with h5py.File(a.src, "r") as f, h5py.File(tmp, "w") as g:
            for name in ROW_DATASETS + WHOLE_DATASETS:
                if name not in f:
                    sys.exit("results_subset.py: %s: missing dataset /%s" % (a.src, name))
            n = f["labels"].shape[0]
            step = max(1, math.ceil(n / a.max))
            idx = np.arange(0, n, step)
            for name in ROW_DATASETS:
                g.create_dataset(name, data=f[name][()][idx])
            for name in WHOLE_DATASETS:
                f.copy(f[name], g, name=name)
            for k, v in f.attrs.items():
                g.attrs[k] = v
        os.replace(tmp, a.dst)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    print("results_subset.py: %s: %d of %d rows (every %d-th)" % (a.dst, len(idx), n, step))


if __name__ == "__main__":
    main()
