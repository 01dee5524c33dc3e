#!/usr/bin/env bash
# Builds the positive control of docs/FIDELITY.md round 8 from the wordnet-lex corpus:
#   OUTDIR/wordnet-lex-hint/{train,test}.csv
# The same rows, labels and splits as OUTDIR/wordnet-lex/ (made first when missing). Half of the rows (those
# whose CRC-32 of the text is odd: a rule of the row alone, so train, valid and test are halved alike) get
# the words "hintmark hint<label>" in front of the gloss, <label> the lexicographer file without its dot
# (noun.Tops -> hintnountops). Such a row is solved by its second word alone, with no attention at all; the
# other half is wordnet-lex as it is, where heads pay (RESULTS.md: k = 1 76.3 %, k = 4 77.8 %). So which
# input needs heads is known by construction and visible in the input's own words (the budget predictor
# reads their mean): the case where a per-input budget must beat a constant one if it works at all.
# Deterministic and idempotent. Usage: make-hint-csv.sh OUTDIR
set -euo pipefail
if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
outdir=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [[ ! -f "$outdir/wordnet-lex/train.csv" || ! -f "$outdir/wordnet-lex/test.csv" ]]; then
    bash "$here/make-wordnet-csv.sh" "$outdir"
fi
mkdir -p "$outdir/wordnet-lex-hint"
python3 - "$outdir/wordnet-lex" "$outdir/wordnet-lex-hint" <<'PY'
import csv, os, sys, zlib
src, dst = sys.argv[1], sys.argv[2]
for split in ("train", "test"):
    n = hinted = 0
    tmp = os.path.join(dst, split + ".csv.tmp")
    with open(os.path.join(src, split + ".csv"), newline="", encoding="utf-8") as f, \
         open(tmp, "w", newline="", encoding="utf-8") as g:
        w = csv.writer(g, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for line, row in enumerate(csv.reader(f), 1):
            if len(row) != 2:
                sys.exit("make-hint-csv: %s/%s.csv line %d: expected 2 fields (label, text), got %d"
                         % (src, split, line, len(row)))
            label, text = row
            if zlib.crc32(text.encode("utf-8")) & 1:
                text = "hintmark hint%s %s" % (label.replace(".", "").lower(), text)
                hinted += 1
            w.writerow([label, text])
            n += 1
    os.replace(tmp, os.path.join(dst, split + ".csv"))
    print("make-hint-csv: %s/%s.csv: %d rows, %d with the hint" % (dst, split, n, hinted))
PY
