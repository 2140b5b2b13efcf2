"""Method 1: the ML fingerprint against a float64 reference, PCE known answers, backend parity."""
from __future__ import annotations

import math

import numpy as np
import pytest

from camid_gpu.backend import get_backend
from camid_gpu.prnu.fingerprint import estimate_fingerprint, intensity_scale, saturation_map
from camid_gpu.prnu.pce import crosscorr, log10_false_alarm, pce, pce_scores
from camid_gpu.prnu.residual import extract_residual

from camid_gpu.selftest import spec
from conftest import requires_torch


ref_inten_scale, ref_saturation, ref_fingerprint, camera_images = (
    spec.intensity_scale, spec.saturation, spec.fingerprint, spec.camera_images)


def test_intensity_and_saturation_rules():
    bk = get_backend("numpy")
    x = np.array([[0.0, 126.0, 251.9, 252.0, 255.0]])
    np.testing.assert_allclose(intensity_scale(bk, x), ref_inten_scale(x))
    assert intensity_scale(bk, x)[0, 1] == pytest.approx(0.5)
    assert intensity_scale(bk, x)[0, 4] == pytest.approx(math.exp(-9 / 6))
    plane = np.full((5, 6), 100.0)
    plane[1, 1] = plane[1, 2] = 255.0  # two equal maxima next to each other: saturated
    plane[3, 4] = 255.0  # an isolated maximum: kept
    sat = saturation_map(bk, plane[None, None])[0, 0]
    np.testing.assert_array_equal(sat, ref_saturation(plane))
    assert sat[1, 1] == sat[1, 2] == 0 and sat[3, 4] == 1 and sat.sum() == 28
    # a maximum <= 250 never counts as saturated
    assert saturation_map(bk, np.full((1, 1, 4, 4), 250.0)).min() == 1


@pytest.mark.parametrize("backend", ["numpy", pytest.param("torch", marks=requires_torch)])
@pytest.mark.parametrize("color", [False, True])
def test_fingerprint_matches_float64_reference(backend, color):
    rng = np.random.default_rng(2)
    k = rng.normal(0, 0.02, (40, 48))
    imgs = camera_images(k, 4, rng)
    imgs[0, 5:8, 5:9] = 255  # a saturated patch
    if color:
        imgs = np.stack([imgs, imgs, (imgs * 0.9).astype(np.uint8)], -1)
    expected = ref_fingerprint(imgs)
    got = estimate_fingerprint(imgs, backend=backend, batch_size=3)
    assert got.shape == (40, 48) and got.dtype == np.float32
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 1e-4 * scale
    assert np.corrcoef(got.ravel(), expected.ravel())[0, 1] > 0.99999


def test_fingerprint_recovers_k():
    rng = np.random.default_rng(3)
    k = rng.normal(0, 0.01, (128, 128))
    got = estimate_fingerprint(camera_images(k, 12, rng), backend="numpy")
    assert np.corrcoef(got.ravel(), k.ravel())[0, 1] > 0.8


def test_pce_known_answer():
    """A hand-built correlation plane: peak 10 at a shift, +-1 elsewhere, zeros near the peak."""
    bk = get_backend("numpy")
    h, w = 40, 50
    c = np.where((np.add.outer(np.arange(h), np.arange(w)) % 2) == 0, 1.0, -1.0)
    c[0:3, 0:3] = 0.0
    c[38:40, 48:50] = 0.0
    c[2, 1] = 10.0  # peak at shift (2, 1); its 11x11 neighbourhood wraps around the corner
    rows = (np.arange(h)[:, None] - 2) % h
    cols = (np.arange(w)[None, :] - 1) % w
    near = (np.minimum(rows, h - rows) <= 5) & (np.minimum(cols, w - cols) <= 5)
    energy = (c[~near] ** 2).sum() / (h * w - 121)
    assert energy == pytest.approx(1.0)  # every entry outside the neighbourhood is +-1
    out = pce(bk, c[None], shift_range=(3, 3))
    assert out["peak_shift"][0].tolist() == [2, 1]
    assert out["pce"][0] == pytest.approx(100.0)
    assert int(out["shifts"]) == 16
    # without a shift search the peak is C[0, 0] = 0
    assert pce(bk, c[None])["peak"][0] == 0.0
    # a negative peak gives a negative PCE
    assert pce(bk, -c[None], shift_range=(0, 0))["pce"][0] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="within the correlation size"):
        pce(bk, c[None], shift_range=(40, 0))


def test_false_alarm_probability():
    # one shift: P_FA = Q(z)
    assert 10 ** log10_false_alarm(np.array([1.0]), np.array([1.0]), 1)[0] == pytest.approx(0.158655, rel=1e-4)
    # n shifts: 1 - (1 - p)^n
    p = 0.158655253931457
    assert 10 ** log10_false_alarm(np.array([1.0]), np.array([1.0]), 5)[0] == pytest.approx(1 - (1 - p) ** 5)
    # huge PCE: no underflow to -inf; log10 P_FA ~ log10(Q(sqrt(PCE)))
    assert log10_false_alarm(np.array([100.0]), np.array([1.0]), 1)[0] == pytest.approx(-2173.87, rel=1e-3)


def test_crosscorr_shift_convention():
    rng = np.random.default_rng(1)
    big = rng.normal(size=(32, 32))
    shifted = np.roll(big, (-3, -5), axis=(0, 1))  # shifted[x] = big[x + (3, 5)]
    c = crosscorr(get_backend("numpy"), shifted[None], big[None])[0]
    assert np.unravel_index(np.argmax(c), c.shape) == (3, 5)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("torch", marks=requires_torch)])
def test_pce_separates_cameras_and_backends_agree(backend):
    rng = np.random.default_rng(4)
    ks = [rng.normal(0, 0.01, (160, 192)) for _ in range(3)]
    fps = np.stack([estimate_fingerprint(camera_images(k, 8, rng), backend="numpy") for k in ks])
    disputed = np.concatenate([camera_images(k, 1, rng, flat=False) for k in ks])
    res = extract_residual(disputed, sigma=2.0, wiener=True, backend="numpy")
    bk = get_backend(backend, device="cpu" if backend == "torch" else None)
    s = pce_scores(bk, bk.asarray(res), bk.asarray(disputed.astype(np.float64)), bk.asarray(fps), camera_chunk=2)
    assert s.pce.shape == (3, 3)
    assert (np.diag(s.pce) > 60).all()
    assert (s.pce[~np.eye(3, dtype=bool)] < 60).all()
    assert (np.diag(s.log10_p_fa) < -10).all()
    assert (np.abs(s.ncc) <= 1).all()
    ref = pce_scores(get_backend("numpy"), res, disputed.astype(np.float64), fps)
    np.testing.assert_allclose(s.pce, ref.pce, rtol=1e-3, atol=1e-3)
