"""Shared fixtures: backends to parametrise over, small natural-looking test images."""
from __future__ import annotations

import importlib.util

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
