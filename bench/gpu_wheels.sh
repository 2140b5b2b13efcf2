#!/usr/bin/env bash
# Fetch, on a machine with the network, the wheels that a GPU machine without one usually lacks, into
# .whl/ at the root of this tree; bench/gpu_suite.sh unpacks them there (no network, no dependencies
# resolved). The GPU image is assumed to hold numpy, scipy, Pillow, tifffile, torch with CUDA, CuPy,
# pytest, hypothesis, matplotlib and rich already; add any other missing package as NAME==VERSION.
#
#   bash bench/gpu_wheels.sh                 # for Python 3.12 on x86-64 Linux
#   PYVER=3.11 bash bench/gpu_wheels.sh EXTRA==1.0
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER="${PYVER:-3.12}"
mkdir -p .whl
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    "${platforms[@]}" -d .whl "PyWavelets>=1.5" "simplejpeg>=1.9" "pytorch-wavelets==1.3.0" "$@"
ls -l .whl
