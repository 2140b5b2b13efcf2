"""Shared fixtures: backends to parametrise over, small natural-looking test images."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

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


def natural_image(height: int, width: int, seed: int = 0, channels: int = 0) -> np.ndarray:
    """A natural-looking uint8 image: smooth shading, hard-edged shapes, fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    img = 90 + 60 * np.sin(3 * xx + 2 * yy + rng.uniform(0, 6)) + 30 * yy
    for _ in range(6):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        img = np.where((yy - cy) ** 2 + (xx - cx) ** 2 < r * r, img + rng.uniform(-70, 70), img)
    img = img + rng.normal(0, 6, img.shape)
    if channels:
        img = np.stack([img * g for g in (0.9, 1.0, 1.1)[:channels]], axis=-1)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)
