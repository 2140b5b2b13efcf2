#!/usr/bin/env bash
# One call on a machine with a GPU (no network needed): camid selftest, pytest -m gpu and every
# benchmark at the sizes that matter, within 9 minutes, written to bench/results/<device>-<date>.{md,json}.
#
#   bash bench/gpu_suite.sh                     # results in bench/results/
#   bash bench/gpu_suite.sh --out-dir "$OUT"    # elsewhere (e.g. a folder that is copied back)
#   bash bench/gpu_suite.sh --dry-run           # run nothing; write the record of what would run
#
# camid must import from THIS working tree: if it does not, it is installed here in editable mode
# without the network (pip --no-index). Its dependencies (numpy, scipy, PyWavelets, tifffile, Pillow,
# torch with CUDA, pytorch-wavelets, CuPy, pytest, hypothesis) must then already be installed, or be
# wheels in the folder named by CAMID_WHEELS (pip --find-links). PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
export CAMID_SUITE_START="${CAMID_SUITE_START:-$(date +%s)}"
PY="${PYTHON:-python3}"
here="$(pwd -P)"
where="$("$PY" -c 'import os, camid_gpu.kernels as k; print(os.path.dirname(os.path.dirname(os.path.realpath(k.__file__))))' 2>/dev/null || true)"
# kernels/ sits beside camid_gpu/ in the tree; an editable install maps camid_gpu.kernels to it
if [ "$where" != "$here" ]; then
    echo "gpu_suite: installing camid from $here (no network: pip --no-index)" >&2
    if [ -n "${CAMID_WHEELS:-}" ]; then
        "$PY" -m pip install -q --no-index --find-links "$CAMID_WHEELS" --no-build-isolation -e ".[torch,cuda,test]"
    else
        "$PY" -m pip install -q --no-index --no-build-isolation --no-deps -e .
    fi
fi
exec "$PY" bench/gpu_suite.py --python "$PY" "$@"
