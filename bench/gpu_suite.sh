#!/usr/bin/env bash
# One call on a machine with a GPU (no network needed): camid selftest, pytest -m gpu and every
# benchmark at the sizes that matter, within 7 minutes, written to bench/results/<device>-<date>.{md,json}.
#
#   bash bench/gpu_suite.sh                     # results in bench/results/
#   bash bench/gpu_suite.sh --out-dir "$OUT"    # elsewhere (e.g. a folder that is copied back)
#   bash bench/gpu_suite.sh --dry-run           # run nothing; write the record of what would run
#
# camid must run from THIS working tree. When it does not import from here:
# - with CAMID_WHEELS=DIR, it is installed here in editable mode from the wheels in DIR
#   (pip --no-index --find-links DIR: no network), dependencies included;
# - otherwise it runs from the checkout without installing (PYTHONPATH=<tree>; the kernel sources are
#   read from camid_gpu/kernels/), and its dependencies (numpy, scipy, PyWavelets, tifffile, Pillow, torch with
#   CUDA, pytorch-wavelets, CuPy, pytest, hypothesis) must already be installed.
# PYTHON picks the interpreter.
# Wheels in .whl/ at the root of the tree (bench/gpu_wheels.sh fetches them, on a machine with the
# network, for the packages a GPU image usually lacks: PyWavelets, simplejpeg, pytorch-wavelets) are
# unpacked into a scratch site folder first and put on PYTHONPATH, without their dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
export CAMID_SUITE_START="${CAMID_SUITE_START:-$(date +%s)}"
PY="${PYTHON:-python3}"
here="$(pwd -P)"
if compgen -G ".whl/*.whl" >/dev/null; then
    site="${TMPDIR:-/tmp}/camid-suite-site"
    echo "gpu_suite: unpacking $(ls .whl/*.whl | wc -l) wheels from .whl/ into $site" >&2
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
camid_root() {
    "$PY" -c 'import os, camid_gpu; print(os.path.dirname(os.path.dirname(os.path.realpath(camid_gpu.__file__))))' \
        2>/dev/null || true
}
if [ "$(camid_root)" != "$here" ]; then
    if [ -n "${CAMID_WHEELS:-}" ]; then
        echo "gpu_suite: installing camid from $here with the wheels in $CAMID_WHEELS (pip --no-index)" >&2
        "$PY" -m pip install -q --no-index --find-links "$CAMID_WHEELS" -e ".[torch,cuda,test]"
    else
        echo "gpu_suite: running camid from the checkout $here (PYTHONPATH; not installed)" >&2
        export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
    fi
fi
if [ "$(camid_root)" != "$here" ]; then
    echo "gpu_suite: camid does not import from $here:" >&2
    "$PY" -c 'import camid_gpu' >&2 || true
    exit 1
fi
exec "$PY" bench/gpu_suite.py --python "$PY" "$@"
