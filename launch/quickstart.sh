#!/usr/bin/env bash
# One command from a fresh Debian machine to a trained model: installs the packages, builds, turns the
# WordNet glosses into a part-of-speech dataset, trains configs/wordnet-pos.ini and prints test accuracy.
#   usage: launch/quickstart.sh [CONFIG]      (default configs/wordnet-pos.ini)
# A CONFIG named after a dataset launch/prepare-data.sh makes (its --list) gets that dataset prepared; any
# other CONFIG must name data that is already prepared.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-configs/wordnet-pos.ini}

bash launch/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
[ -f "$config" ] || { echo "quickstart: no config file '$config'" >&2; exit 2; }
name=$(basename "$config" .ini)
if bash launch/prepare-data.sh --list | grep -qx -- "$name"; then
  bash launch/prepare-data.sh "$name"
else
  echo "quickstart: $config is not one of the datasets prepare-data.sh makes: its data.* files must be prepared already"
fi

run_dir="runs/$(basename "$config" .ini)-$(date +%Y%m%d-%H%M%S)"
OPENBLAS_NUM_THREADS=1 ./build/budgetformer train --config "$config" --set run.dir="$run_dir"
echo
echo "Run directory: $run_dir (config.ini, log.h5, checkpoints/)"
echo "Evaluate again with:"
echo "  ./build/budgetformer eval --checkpoint $run_dir/checkpoints/$(ls "$run_dir/checkpoints" | tail -n 1) \\"
echo "      --data $(sed -n 's/^test *= *//p' "$config") --records $run_dir/test-records.h5"
