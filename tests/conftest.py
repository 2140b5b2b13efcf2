"""Shared fixtures and helpers of the whole suite (tests/ is on sys.path through the ``pythonpath`` pytest
option in pyproject.toml, so a test file in any subfolder imports them with ``from conftest import ...``):
backends to parametrise over, small natural-looking test images, the two-camera store and private copies."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import shutil

import numpy as np
import pytest

from camid_gpu.selftest import spec

HAVE_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("pytorch_wavelets") is not None


def cuda_available() -> bool:
    if not HAVE_TORCH:
        return False
    import torch

    return torch.cuda.is_available()


requires_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch extra not installed")
requires_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA device")

#: (backend, device, dtype) triples every parity test runs over; CUDA ones skip without a GPU
TORCH_CONFIGS = [
    pytest.param(("torch", "cpu", "float32"), id="torch-cpu-f32", marks=requires_torch),
    pytest.param(("torch", "cpu", "float64"), id="torch-cpu-f64", marks=requires_torch),
    pytest.param(("torch", "cuda", "float32"), id="torch-cuda-f32", marks=[pytest.mark.gpu, requires_cuda]),
]


@pytest.fixture(params=TORCH_CONFIGS)
def torch_backend(request):
    from camid_gpu.backend import get_backend

    name, device, dtype = request.param
    return get_backend(name, device=device, dtype=dtype)


#: a natural-looking uint8 test image (shared with ``camid selftest``)
natural_image = spec.natural_image


@pytest.fixture(scope="session")
def two_camera_store(tmp_path_factory):
    """A factory of the small two-camera world most end-to-end tests start from: ``ROOT/data`` (two synthetic
    cameras, one per model, 3 references each, ``disputed_flat`` flat disputed images per camera) and ``ROOT/fp``
    (their PCE fingerprints, built by ``camid fingerprint --clip CLIP --refs 3 --method pce``). Built once per
    distinct set of arguments in a session; read-only: a test that changes files copies them first."""
    from camid_gpu.cli import main
    from camid_gpu.datasets.synthetic import make_dataset

    built = {}

    def make(seed: int = 5, disputed_flat: int = 1, size: tuple[int, int] = (160, 192), clip: str = "128",
             backend: str | None = None):
        key = (seed, disputed_flat, size, clip, backend)
        if key not in built:
            root = tmp_path_factory.mktemp("two-cameras")
            make_dataset(root / "data", cameras=2, per_model=1, refs=3, disputed_flat=disputed_flat,
                         disputed_natural=0, height=size[0], width=size[1], seed=seed)
            args = ["fingerprint", str(root / "data" / "refs"), "-o", str(root / "fp"), "--clip", clip, "--refs", "3",
                    "--method", "pce", "--quiet"] + (["--backend", backend] if backend else [])
            assert main(args) == 0
            built[key] = root
        return built[key]

    return make


#: fingerprint and run options of the tests that drive the CLI on the NumPy backend
FP_ARGS = ["--clip", "128", "--refs", "3", "--method", "pce", "--quiet", "--backend", "numpy"]
RUN_ARGS = ["--quiet", "--backend", "numpy"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, two_camera_store):
    """Two synthetic cameras (3 references each, 160x192), their PCE fingerprints (NumPy backend), and two flat
    disputed images per camera; a module's own copy (a module that defines its own ``world`` overrides it)."""
    root = tmp_path_factory.mktemp("forensic")
    shutil.copytree(two_camera_store(seed=11, disputed_flat=2, backend="numpy"), root, dirs_exist_ok=True)
    return root


def evidence(world, tmp_path, name="ev"):
    """A private copy of the disputed images (tests may change it)."""
    folder = tmp_path / name
    shutil.copytree(world / "data" / "disputed", folder)
    return folder


def copy_store(world, tmp_path, name="fpcopy"):
    """A private copy of the fingerprint store (tests may change it)."""
    folder = tmp_path / name
    shutil.copytree(world / "fp", folder)
    return folder


def rehash(json_path):
    """Recompute the arrays hash recorded in a fingerprint JSON (a tamperer would)."""
    meta = json.loads(json_path.read_text())
    npz = json_path.parent / meta["arrays_file"]
    meta["arrays_sha256"] = hashlib.sha256(npz.read_bytes()).hexdigest()
    json_path.write_text(json.dumps(meta))
    return meta


def write_npz(path, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def snapshot(folder):
    """Every regular file under ``folder`` and its bytes."""
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="session")
def video_world(tmp_path_factory):
    """A small synthetic video world (``camid_gpu.datasets.video``), built once per session: two cameras and an
    unknown one, 240x320 frames, 24 frames per video (GOP 3: 8 intra frames), CRF 23 and 30, the plain,
    stabilised and hybrid variants; ``fpv`` (fingerprints from the reference videos, frame-sized) and ``fps``
    (from the still flats of the larger sensor). Read-only."""
    pytest.importorskip("av")
    from camid_gpu.cli import main
    from camid_gpu.datasets.video import make_video_dataset

    root = tmp_path_factory.mktemp("videos")
    truth = make_video_dataset(root / "data", cameras=2, frame=(240, 320), frames=24, crfs=(23, 30), gops=(3,),
                               ref_frames=16, stills=10, seed=3)
    for refs, out in (("refs", "fpv"), ("stills", "fps")):
        assert main(["fingerprint", str(root / "data" / refs), "-o", str(root / out), "--method", "pce",
                     "--quiet", "--backend", "numpy"]) == 0
    return root, truth
