"""prepare reads the same data as CSV, TSV and JSON Lines into identical datasets, picks columns by number or
by header name, and warns about or refuses the column mistakes of docs/DATA.md ("Columns and mistakes").

The data: the tiny corpus (tests/data/tiny) with awkward texts added (quotes, commas, non-ASCII), laid out as
Hugging Face does, `text,label` with the text first, plus an id column.
  - headerless CSV, TSV and JSONL (with --label-column 3 --text-columns 2 for CSV/TSV) give datasets equal in
    every dataset and attribute except /source (the file name), with --valid-fraction too;
  - with a header row and names (--header --label-column label --text-columns text) CSV and TSV give the same
    ids, labels and vocabulary; /source_line is one more (the header is line 1);
  - the mistakes: the default label-first reading of that file warns about many classes and singleton labels;
    a forgotten --header warns about a header-looking first row; a name without --header, a missing name, a
    column number beyond the row, a JSONL field that is missing or of the wrong type are errors naming the
    file (and line) and what was expected.
"""
import csv
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bftest import EXE, TINY, check, finish, work_dir  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402


def rows():
    out = []
    with open(os.path.join(TINY, "train.csv"), newline="") as f:
        for i, (label, text) in enumerate(csv.reader(f)):
            out.append(("id%d" % i, text, label))
    extra = ['he said "hello, world"', "naïve café, déjà vu", "commas, everywhere, here", "UPPER case 3.14!"]
    for i, t in enumerate(extra):
        out.append(("x%d" % i, t, out[i][2]))
    return out


def write_all(work, data, header):
    h = [("id", "text", "label")] if header else []
    paths = {}
    p = paths["csv"] = os.path.join(work, "data%s.csv" % ("-h" if header else ""))
    with open(p, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(h + data)
    p = paths["tsv"] = os.path.join(work, "data%s.tsv" % ("-h" if header else ""))
    with open(p, "w", encoding="utf-8") as f:
        f.writelines("\t".join(r) + "\n" for r in h + data)
    if not header:
        p = paths["jsonl"] = os.path.join(work, "data.jsonl")
        with open(p, "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"id": i, "n": n, "text": t, "label": lab}, ensure_ascii=False) + "\n"
                         for n, (i, t, lab) in enumerate(data))
    return paths


def prepare(src, out, *extra, valid=True):
    p = subprocess.run([EXE, "prepare", "--train", src, "--test", src, "--out", out, "--max-len", "16"]
                       + (["--valid-fraction", "0.2"] if valid else []) + list(extra), capture_output=True, text=True)
    return p.returncode, p.stderr


def contents(d):
    out = {}
    for split in ("train", "valid", "test"):
        if not os.path.exists(os.path.join(d, split + ".h5")):
            continue
        with h5py.File(os.path.join(d, split + ".h5"), "r") as f:
            for k in f:
                out[split + "/" + k] = f[k][()]
            for k in f.attrs:
                if k != "source":
                    out[split + "@" + k] = f.attrs[k]
    return out


def same(a, b, skip=()):
    if set(a) != set(b):
        return False
    for k in a:
        if any(s in k for s in skip):
            continue
        x, y = np.asarray(a[k]), np.asarray(b[k])
        if x.shape != y.shape or not (x == y).all():
            return False
    return True


def main():
    work = work_dir("prepare_formats")
    data = rows()
    plain = write_all(work, data, header=False)
    headed = write_all(work, data, header=True)
    got = {}
    for fmt, src in plain.items():
        cols = [] if fmt == "jsonl" else ["--label-column", "3", "--text-columns", "2"]
        rc, err = prepare(src, os.path.join(work, "out-" + fmt), *cols)
        check("%s by column numbers / field names prepares" % fmt, rc == 0, err.strip()[-300:])
        got[fmt] = contents(os.path.join(work, "out-" + fmt))
    check("CSV and TSV prepare to identical datasets", same(got["csv"], got["tsv"]))
    check("CSV and JSON Lines prepare to identical datasets", same(got["csv"], got["jsonl"]))
    n_classes = int(got["csv"]["train@n_classes"])
    check("the labels are the label column (3 classes)", n_classes == 3, str(n_classes))

    # with a header (no validation split: it is a function of the source line, which the header moves)
    rc, err = prepare(plain["csv"], os.path.join(work, "out-nv"), "--label-column", "3", "--text-columns", "2",
                      valid=False)
    ref = contents(os.path.join(work, "out-nv"))
    for fmt, src in headed.items():
        out = os.path.join(work, "out-h-" + fmt)
        rc, err = prepare(src, out, "--header", "--label-column", "label", "--text-columns", "text", valid=False)
        check("%s with --header and column names prepares" % fmt, rc == 0 and "warning" not in err, err.strip()[-300:])
        if rc == 0:
            h = contents(out)
            check("%s with a header: the same ids, labels and vocabulary; source lines one more" % fmt,
                  same(h, ref, skip=("source_line",)) and
                  all((h[s + "/source_line"] == ref[s + "/source_line"] + 1).all() for s in ("train", "test")))
    rc, err = prepare(plain["jsonl"], os.path.join(work, "out-j2"), "--label-column", "label", "--text-columns",
                      "id,n,text")
    check("JSON Lines: an integer field as text is refused, naming the field and line",
          rc == 1 and 'data.jsonl:1: field "n" is an integer: expected the text as a string' in err, err.strip())

    # the mistakes
    rc, err = prepare(plain["csv"], os.path.join(work, "m1"))
    check("label-first reading of a text-first file: warns of many classes", rc == 0 and "classes for" in err and
          "rows per class): is the label column right?" in err, err.strip()[-400:])
    check("... and of labels that occur once", "labels occur only once in the training file" in err)
    rc, err = prepare(headed["csv"], os.path.join(work, "m2"), "--label-column", "3", "--text-columns", "2")
    check("a forgotten --header: warns that the first row looks like a header",
          rc == 0 and "data-h.csv:1: the first row ('label', 'text') looks like a header row" in err,
          err.strip()[-400:])
    rc, err = prepare(headed["tsv"], os.path.join(work, "m3"), "--label-column", "label")
    check("a column name without --header is an error saying so", rc == 1 and
          "data-h.tsv: --label-column 'label' is a column name: expected --header" in err, err.strip())
    rc, err = prepare(headed["csv"], os.path.join(work, "m4"), "--header", "--label-column", "class")
    check("a name missing from the header is an error listing the columns", rc == 1 and
          "--label-column 'class': no such column in the header row: expected one of 'id', 'text', 'label'" in err,
          err.strip())
    rc, err = prepare(plain["csv"], os.path.join(work, "m5"), "--label-column", "4")
    check("a column number beyond the row is an error", rc == 1 and
          "--label-column 4: expected a column number in 1..3" in err, err.strip())
    rc, err = prepare(plain["csv"], os.path.join(work, "m6"), "--label-column", "2", "--text-columns", "2")
    check("the label column among the text columns is an error", rc == 1 and "is the label column" in err,
          err.strip())
    rc, err = prepare(plain["jsonl"], os.path.join(work, "m7"), "--label-column", "category")
    check("JSON Lines: a missing label field is an error naming file, line and field", rc == 1 and
          'data.jsonl:1: no field "category": expected the label field' in err, err.strip())
    rc, err = prepare(plain["jsonl"], os.path.join(work, "m8"), "--header")
    check("JSON Lines with --header is an error", rc == 1 and "a JSON Lines file has no header row" in err,
          err.strip())
    bad = os.path.join(work, "bad.jsonl")
    with open(bad, "w") as f:
        f.write('{"text": "a b", "label": "x"}\n\n[1, 2]\n{"text": "c", "label": true}\n{"text": "d", "label": 2}\n'
                '{"text": "e", "label": "y"\n{"text": "f", "label": "x"}\n')
    p = subprocess.run([EXE, "prepare", "--train", bad, "--test", bad, "--out", os.path.join(work, "m9"),
                        "--skip-bad-rows"], capture_output=True, text=True)
    check("JSON Lines: bad rows are skipped and counted with --skip-bad-rows", p.returncode == 0 and
          "skipped 3 bad rows (first: " in p.stderr and "bad.jsonl:3: found an array" in p.stderr, p.stderr.strip())
    if p.returncode == 0:
        with h5py.File(os.path.join(work, "m9", "train.h5"), "r") as f:
            names = [s.decode() for s in f["label_names"][()]]
            lines = f["source_line"][()].tolist()
        check("JSON Lines: an integer label is its decimal text; blank lines count as lines",
              names == ["2", "x"] and lines == [1, 5, 7], "%s %s" % (names, lines))
    finish(work)


if __name__ == "__main__":
    main()
