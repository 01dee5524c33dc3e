#!/usr/bin/env bash
# Builds two classification corpora from Debian's wordnet-base (docs/DATA.md):
#   OUTDIR/wordnet-pos/{train,test}.csv   label = part of speech of the synset (noun, verb, adj, adv)
#   OUTDIR/wordnet-lex/{train,test}.csv   label = lexicographer file (45 classes: noun.artifact, ...)
# text = the synset's gloss; test = the 20% of synsets whose MD5 of "pos:offset" falls there.
# Deterministic and idempotent (rerunning rewrites identical files). Usage: make-wordnet-csv.sh OUTDIR
set -euo pipefail
if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
outdir=$1
wndir=${WORDNET_DIR:-/usr/share/wordnet}
for pos in noun verb adj adv; do
    if [[ ! -r "$wndir/data.$pos" ]]; then
        echo "$0: $wndir/data.$pos not found: install the Debian package wordnet-base" >&2
        exit 1
    fi
done
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$outdir"
python3 "$here/make_corpus.py" wordnet "$outdir" "$wndir"
