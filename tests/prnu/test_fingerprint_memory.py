"""A reference added to a fingerprint's sums within a working set of one colour plane, in place."""
from __future__ import annotations

import tracemalloc

import numpy as np


def test_adding_a_reference_holds_one_plane_at_a_time():
    from camid_gpu.backend import get_backend
    from camid_gpu.prnu.fingerprint import FingerprintAccumulator

    bk = get_backend("numpy", dtype="float32")
    pixels = (np.random.default_rng(0).random((1, 512, 640, 3)) * 255).astype(np.uint8)
    acc = FingerprintAccumulator(3.0, 4, "db4", bk)
    acc.add(pixels)
    first = acc._weighted
    tracemalloc.start()
    try:
        acc.add(pixels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # measured: 156 bytes per pixel when the three planes were denoised together and the sums added out of place,
    # 60 now (one plane's wavelet pyramid, float64 weights, the sums updated in place)
    assert peak / (512 * 640) < 90
    assert acc._weighted is first and acc.count == 2
    twice = FingerprintAccumulator(3.0, 4, "db4", bk)
    twice.add(np.concatenate([pixels, pixels]))
    np.testing.assert_array_equal(acc.channel_estimates(), twice.channel_estimates())
