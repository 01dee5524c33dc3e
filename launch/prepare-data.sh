#!/usr/bin/env bash
# Turns the real corpora into prepared datasets under data/<name>/{train,valid,test}.h5.
#   usage: launch/prepare-data.sh [wordnet-pos] [wordnet-lex] [spam] [wordnet-lex-hint]
#   (no argument: the first three; wordnet-lex-hint is the positive control of docs/FIDELITY.md round 8)
#   launch/prepare-data.sh --list   prints the names it knows, one per line
# The CSV files (fixed splits) go to data/csv/<name>/; a dataset already prepared is left as it is
# (delete data/<name> to make it again). Needs build/budgetformer (cmake --build build).
set -euo pipefail
cd "$(dirname "$0")/.."
known=(wordnet-pos wordnet-lex spam wordnet-lex-hint)
if [ "${1:-}" = --list ]; then printf '%s\n' "${known[@]}"; exit 0; fi
exe=${BF_EXE:-./build/budgetformer}
[ -x "$exe" ] || { echo "prepare-data: $exe not found: build first (cmake -S . -B build && cmake --build build)" >&2; exit 1; }
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(wordnet-pos wordnet-lex spam)

for name in "${names[@]}"; do
  case "$name" in
    wordnet-pos|wordnet-lex) csv_script=launch/make-wordnet-csv.sh; max_len=48 ;;
    spam) csv_script=launch/make-spam-csv.sh; max_len=256 ;;
    wordnet-lex-hint) csv_script=launch/make-hint-csv.sh; max_len=48 ;;
    *) echo "prepare-data: unknown dataset '$name' (known: ${known[*]})" >&2; exit 2 ;;
  esac
  out=data/$name
  if [ -f "$out/train.h5" ] && [ -f "$out/valid.h5" ] && [ -f "$out/test.h5" ]; then
    echo "prepare-data: $out already prepared"
    continue
  fi
  if [ ! -f "data/csv/$name/train.csv" ]; then
    bash "$csv_script" data/csv
  fi
  # Settings: vocabulary of 16384 (PAD and UNK included) from words seen at least twice in training;
  # 10% of the training file held out for validation (fixed hash rule, see docs/DATA.md).
  "$exe" prepare --train "data/csv/$name/train.csv" --test "data/csv/$name/test.csv" --out "$out" \
    --max-len "$max_len" --vocab-size 16384 --min-count 2 --valid-fraction 0.1
done
