"""The backend seam for arrays that arrive without a backend (the GPU decoder's) and for the Gram products:
torch calls live in camid_gpu.backend only, and they agree with the NumPy path."""
from __future__ import annotations

import numpy as np
import pytest

from camid_gpu.backend import get_backend
from camid_gpu.backend.base import contiguous, rot90, to_host

from conftest import HAVE_TORCH


@pytest.mark.skipif(not HAVE_TORCH, reason="torch extra not installed")
def test_device_pixels_turn_and_come_back_as_numpy_does():
    import torch

    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    for k in (1, 2, 3):
        want = np.ascontiguousarray(np.rot90(pixels, k))
        got = contiguous(rot90(torch.from_numpy(pixels), k))
        assert got.is_contiguous() and np.array_equal(to_host(got), want)
        assert np.array_equal(contiguous(rot90(pixels, k)), want)
    assert to_host(pixels) is pixels


@pytest.mark.skipif(not HAVE_TORCH, reason="torch extra not installed")
def test_gram_products_agree_between_backends():
    rows = np.random.default_rng(3).normal(size=(6, 40)).astype(np.float32)
    host, dev = get_backend("numpy"), get_backend("torch", device="cpu", dtype="float64")
    want = host.gram_product(host.gram_upload(rows), host.gram_upload(rows[:4]))
    got = dev.gram_product(dev.gram_upload(rows), dev.gram_upload(rows[:4]))
    assert want.dtype == got.dtype == np.float32 and want.shape == (6, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="CUDA"):
        host.gram_upload(rows, half_scale=16.0)
