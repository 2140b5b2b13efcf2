"""Scale and crop search (Goljan & Fridrich) for resized and/or cropped disputed images.

Known answers on a synthetic K, the statistics' pieces, backend parity, input errors, and the
issue's acceptance runs on synthetic cameras (camid_gpu.datasets.synthetic): disputed images downscaled and/or
cropped, then JPEG-compressed at quality 75, against fingerprints from JPEG reference images.
Run ``pytest tests/prnu/test_search.py -m slow -s`` for the larger acceptance run and its PCE table.
"""
from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from camid_gpu.backend import get_backend
from camid_gpu.prnu.fingerprint import estimate_fingerprint
from camid_gpu.prnu.pce import log10_false_alarm, pce, pce_scores
from camid_gpu.prnu.residual import gray_intensity, pixels_to_device, residual_native, wiener_dft
from camid_gpu.prnu.search import (
    SearchResult,
    gaussian_transfer,
    pce_by_alignment,
    resample_fingerprint,
    scale_grid,
    scaled_size,
    search_record,
    search_scale_crop,
)
from camid_gpu.datasets.synthetic import make_dataset

THRESHOLD = 60.0


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    """Pixels after a JPEG round trip through Pillow (its default 4:2:0 chroma subsampling)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im)


def downscale(pixels: np.ndarray, scale: float) -> np.ndarray:
    """Pillow BICUBIC (anti-aliased) resize to ``scaled_size``: what an editor's "resize" does."""
    if scale == 1.0:
        return pixels
    h, w = scaled_size(pixels.shape[:2], scale)
    return np.asarray(Image.fromarray(pixels).resize((w, h), Image.Resampling.BICUBIC))


def crop(pixels: np.ndarray, offset: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    return np.ascontiguousarray(pixels[offset[0]:offset[0] + size[0], offset[1]:offset[1] + size[1]])


def synthetic_camera(shape=(256, 320), seed=0, strength=0.02):
    """A white PRNU K and a smooth scene carrying it (uint8 gray): the known-answer camera."""
    rng = np.random.default_rng(seed)
    k = (rng.standard_normal(shape) * strength).astype(np.float32)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    scene = 120 + 50 * np.sin(xx / 60.0) * np.cos(yy / 45.0)
    image = np.clip(np.round(scene * (1 + k) + rng.normal(0, 1.5, shape)), 0, 255).astype(np.uint8)
    return k, image


@pytest.fixture(scope="module")
def known():
    """Camera A's image downscaled by 0.75 (BICUBIC) and cropped at (20, 37); B an unrelated K."""
    k, image = synthetic_camera(seed=1)
    other, _ = synthetic_camera(seed=2)
    disputed = crop(downscale(image, 0.75), (20, 37), (140, 170))
    return {"k": k, "other": other, "image": image, "disputed": disputed, "scale": 0.75, "offset": (20, 37)}


GRID = scale_grid(0.5, 1.0, 0.05)


# ------------------------------------------------------------------------------------------------
# known answers
# ------------------------------------------------------------------------------------------------
def test_scale_grid_values():
    g = scale_grid()
    assert len(g) == 51 and g[0] == 0.5 and g[-1] == 1.0 and np.all(np.diff(g) > 0)
    assert 0.7 in g and 0.93 in g  # rounded, not 0.7000000000000001
    assert scale_grid(0.5, 1.0, 0.03)[-1] == 1.0  # hi included off the step
    assert scale_grid(0.5, 1.0, 0.03)[-2] == pytest.approx(0.98)
    assert scale_grid(1.0, 1.0, 0.1).tolist() == [1.0]
    assert GRID.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]


def test_resample_fingerprint_geometry():
    # pixel-area geometry: destination x samples the source at (x + 0.5) / s - 0.5
    ramp = np.tile(np.arange(200, dtype=np.float32), (60, 1))
    half = resample_fingerprint(ramp, 0.5)
    assert half.shape == (30, 100) and half.dtype == np.float32
    np.testing.assert_allclose(half[:, 2:-2], np.tile(2 * np.arange(100) + 0.5, (30, 1))[:, 2:-2], atol=1e-3)
    assert scaled_size((1000, 1200), 0.7) == (700, 840) and scaled_size((25, 25), 0.5) == (13, 13)
    constant = np.full((50, 70), 0.25, np.float32)
    np.testing.assert_allclose(resample_fingerprint(constant, 0.63), 0.25, atol=1e-6)
    k = np.random.default_rng(0).standard_normal((40, 48)).astype(np.float32)
    out = resample_fingerprint(k, 1.0)
    np.testing.assert_array_equal(out, k)
    assert out is not k


def test_gaussian_transfer_is_a_circular_gaussian_filter():
    x = np.random.default_rng(1).standard_normal((64, 80))
    gy, gx = gaussian_transfer(x.shape, 1.0)
    got = np.real(np.fft.ifft2(np.fft.fft2(x) * gy * gx))
    want = ndimage.gaussian_filter(x, 1.0, mode="wrap")
    # the continuous response differs from the sampled kernel only by its aliases (< 1 % at sigma 1)
    assert np.abs(got - want).max() < 1e-2 * np.abs(want).max()


@pytest.mark.parametrize("scale, offset, size", [(0.75, (20, 37), (140, 170)), (0.6, (5, 11), (120, 150)),
                                                 (1.0, (33, 44), (180, 200)), (0.5, (0, 0), (128, 160))])
def test_known_scale_and_offset(scale, offset, size):
    k, image = synthetic_camera(seed=1)
    other, _ = synthetic_camera(seed=2)
    disputed = crop(downscale(image, scale), offset, size)
    res = search_scale_crop("numpy", disputed, [("A", k), ("B", other)], scales=GRID)
    a, b = res
    assert (a.camera, b.camera) == ("A", "B")
    assert a.scale == scale and a.offset == offset
    assert a.size == scaled_size(k.shape, scale)
    assert a.pce > 1000 and b.pce < THRESHOLD
    assert a.log10_p_fa < -100 and b.log10_p_fa > -6
    # per-scale curve: every admissible scale once, ascending, the best one peaking there
    scales = [d["scale"] for d in a.per_scale]
    assert scales == [s for s in GRID.tolist() if _fits(k.shape, s, size)]
    assert max(a.per_scale, key=lambda d: d["pce"])["scale"] == scale
    record = search_record(res, THRESHOLD)
    assert record["decision"] == "A" and record["best"] == "A" and record["above_threshold"] == ["A"]
    json.dumps(record)


def _fits(shape, s, size):
    hs, ws = scaled_size(shape, s)
    return hs >= size[0] and ws >= size[1]


def test_off_grid_scale_is_found_within_a_step_and_refined(known):
    k, other = known["k"], known["other"]
    disputed = crop(downscale(known["image"], 0.78), (9, 14), (150, 180))
    coarse = search_scale_crop("numpy", disputed, [("A", k), ("B", other)], scales=GRID)[0]
    assert abs(coarse.scale - 0.78) <= 0.05 + 1e-9 and coarse.pce > THRESHOLD
    fine = search_scale_crop("numpy", disputed, [("A", k), ("B", other)], scales=GRID, refine_step=0.01)
    a, b = fine
    assert a.scale == pytest.approx(0.78) and abs(a.offset[0] - 9) <= 1 and abs(a.offset[1] - 14) <= 1
    assert a.pce > coarse.pce and b.pce < THRESHOLD
    # the refinement's scales are counted in the search size
    assert a.positions_searched == sum(d["positions"] for d in a.per_scale) > coarse.positions_searched
    refined = sorted(d["scale"] for d in a.per_scale if d["scale"] not in GRID.tolist())
    assert refined and all(0.75 < s < 0.85 for s in refined)


def test_false_alarm_counts_every_scale_and_shift(known):
    res = search_scale_crop("numpy", known["disputed"], [("A", known["k"]), ("B", known["other"])], scales=GRID)
    h, w = known["disputed"].shape
    n = 0
    for s in GRID:
        hs, ws = scaled_size(known["k"].shape, s)
        if hs >= h and ws >= w:
            n += (hs - h + 1) * (ws - w + 1)
    for r in res:
        assert r.positions_searched == r.positions_planned == n == sum(d["positions"] for d in r.per_scale)
        # P_FA = 1 - (1 - Q(peak / sqrt(energy)))^n with peak^2 / energy = PCE
        assert r.log10_p_fa == pytest.approx(float(log10_false_alarm(np.sqrt(r.pce), 1.0, n)), rel=1e-9, abs=1e-9)
    single = search_scale_crop("numpy", known["disputed"], [("B", known["other"])], scales=[0.75])[0]
    assert single.positions_searched == (scaled_size(known["k"].shape, 0.75)[0] - h + 1) * \
        (scaled_size(known["k"].shape, 0.75)[1] - w + 1)


def test_early_stop_finds_the_same_answer_with_fewer_positions(known):
    cams = [("A", known["k"]), ("B", known["other"])]
    full = search_scale_crop("numpy", known["disputed"], cams, scales=GRID)
    early = search_scale_crop("numpy", known["disputed"], cams, scales=GRID, early_stop=True)
    a_full, a_early = full[0], early[0]
    assert a_early.stopped_early and a_early.scale == a_full.scale and a_early.offset == a_full.offset
    assert a_early.pce == pytest.approx(a_full.pce)
    assert a_early.positions_searched < a_early.positions_planned == a_full.positions_searched
    assert a_early.log10_p_fa == pytest.approx(a_full.log10_p_fa)  # corrected for the planned search
    # scales evaluated from 1 down to one past the peak
    assert [d["scale"] for d in a_early.per_scale] == [0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0]
    # the unrelated camera never passes the threshold: searched completely
    assert not early[1].stopped_early and early[1].positions_searched == full[1].positions_searched


def test_colour_and_16_bit_images(known):
    rgb = np.stack([known["disputed"]] * 3, -1)
    res_rgb = search_scale_crop("numpy", rgb, [("A", known["k"])], scales=[0.7, 0.75, 0.8])[0]
    res16 = search_scale_crop("numpy", known["disputed"].astype(np.uint16) * 257, [("A", known["k"])],
                              scales=[0.7, 0.75, 0.8])[0]
    res8 = search_scale_crop("numpy", known["disputed"], [("A", known["k"])], scales=[0.7, 0.75, 0.8])[0]
    for r in (res_rgb, res16):
        assert r.scale == 0.75 and r.offset == (20, 37) and r.pce == pytest.approx(res8.pce, rel=1e-6)


# ------------------------------------------------------------------------------------------------
# alignment classes of the PCE
# ------------------------------------------------------------------------------------------------
def test_pce_by_alignment_ignores_a_grid_aligned_excess_of_variance():
    """Noise whose variance is 9x larger at shifts = 0 mod 8 (as where JPEG grids line up): the
    plain PCE finds a false peak there, the per-class energy finds the true one at (37, 29)."""
    bk = get_backend("numpy")
    rng = np.random.default_rng(5)
    c = rng.standard_normal((256, 256))
    c[::8, ::8] *= 3.0
    c[37, 29] = 5.0
    c[16, 40] = 11.0  # an aligned outlier: 11^2 / 9 ~ 13 against its class
    plain = pce(bk, c[None], (200, 200))
    assert plain["peak_shift"][0].tolist() == [16, 40] and plain["pce"][0] > 100
    aligned = pce_by_alignment(bk, c[None], (200, 200), 8)
    assert aligned["peak_shift"][0].tolist() == [37, 29]
    assert aligned["pce"][0] == pytest.approx(25.0, rel=0.1)
    assert int(aligned["shifts"]) == 201 * 201
    assert aligned["log10_p_fa"][0] == pytest.approx(
        float(log10_false_alarm(aligned["peak"], aligned["energy"], 201 * 201)[0]))
    # a small plane falls back to the plain PCE
    small = rng.standard_normal((1, 40, 40))
    np.testing.assert_allclose(pce_by_alignment(bk, small, (10, 10))["pce"], pce(bk, small, (10, 10))["pce"])


# ------------------------------------------------------------------------------------------------
# backends
# ------------------------------------------------------------------------------------------------
def _torch_backend():
    pytest.importorskip("torch")
    if importlib.util.find_spec("pytorch_wavelets") is None:
        pytest.skip("pytorch-wavelets (the torch extra) is not installed")
    return get_backend("torch", device="cpu", dtype="float32")


def test_torch_cpu_matches_numpy_known_answer(known):
    tb = _torch_backend()
    cams = [("A", known["k"]), ("B", known["other"])]
    a = search_scale_crop("numpy", known["disputed"], cams, scales=GRID)
    b = search_scale_crop(tb, known["disputed"], cams, scales=GRID)
    assert [(r.camera, r.scale, r.offset) for r in a] == [(r.camera, r.scale, r.offset) for r in b]
    assert search_record(a)["decision"] == search_record(b)["decision"] == "A"
    for x, y in zip(a, b):
        assert y.pce == pytest.approx(x.pce, rel=2e-3, abs=0.05)
        assert y.positions_searched == x.positions_searched


# ------------------------------------------------------------------------------------------------
# input errors
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, match", [((0.0, 1.0, 0.1), "0 < lo"), ((0.6, 0.5, 0.1), "0 < lo <= hi"),
                                         ((0.5, 1.2, 0.1), "hi <= 1"), ((0.5, 1.0, 0.0), "step must be positive"),
                                         ((0.5, 1.0, -0.1), "step"), ((0.5, float("nan"), 0.1), "hi must be"),
                                         ((0.5, 1.0, 1e-9), "too many")])
def test_scale_grid_errors(args, match):
    with pytest.raises(ValueError, match=match):
        scale_grid(*args)


def test_search_errors(known):
    k, img = known["k"], known["disputed"]
    cams = [("A", k)]
    with pytest.raises(ValueError, match="scales is empty"):
        search_scale_crop("numpy", img, cams, scales=[])
    with pytest.raises(ValueError, match=r"scales must lie in \(0, 1\]"):
        search_scale_crop("numpy", img, cams, scales=[0.8, 1.2])
    with pytest.raises(ValueError, match=r"scales must lie in \(0, 1\]"):
        search_scale_crop("numpy", img, cams, scales=[0.0])
    with pytest.raises(ValueError, match="scales must lie"):
        search_scale_crop("numpy", img, cams, scales=[float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        search_scale_crop("numpy", img, cams, scales=[[0.5, 1.0]])
    # the image does not fit inside the fingerprint at any scale of the grid
    big = np.zeros((300, 330), np.uint8)
    with pytest.raises(ValueError, match=r"image 300x330 is larger than fingerprint 'A' \(256x320\)"):
        search_scale_crop("numpy", big, cams, scales=GRID)
    with pytest.raises(ValueError, match="larger than fingerprint 'A'.*0.5: 128x160"):
        search_scale_crop("numpy", img[:130], cams, scales=[0.5])  # fits at 0.75, not at 0.5
    with pytest.raises(ValueError, match=r"expected one image \(h, w\) or \(h, w, 3\), got shape \(140, 170, 4\)"):
        search_scale_crop("numpy", np.zeros((140, 170, 4), np.uint8), cams)
    with pytest.raises(ValueError, match="at least 16 pixels"):
        search_scale_crop("numpy", np.zeros((8, 170), np.uint8), cams)
    with pytest.raises(TypeError, match="dtype"):
        search_scale_crop("numpy", img.astype(np.int32), cams, scales=GRID)
    with pytest.raises(ValueError, match="non-empty sequence"):
        search_scale_crop("numpy", img, [], scales=GRID)
    with pytest.raises(ValueError, match="appears twice"):
        search_scale_crop("numpy", img, [("A", k), ("A", k)], scales=GRID)
    with pytest.raises(ValueError, match=r"fingerprint 'A': expected a 2-D \(H, W\) array"):
        search_scale_crop("numpy", img, [("A", k[None])], scales=GRID)
    bad = k.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        search_scale_crop("numpy", img, [("A", bad)], scales=GRID)
    with pytest.raises(ValueError, match="floating-point"):
        search_scale_crop("numpy", img, [("A", (k * 100).astype(np.int16))], scales=GRID)
    for kwargs, match in [({"sigma": 0}, "sigma"), ({"threshold": float("inf")}, "threshold"),
                          ({"refine_step": 0}, "refine_step"), ({"template_blur": -1}, "template_blur"),
                          ({"camera_chunk": 0}, "camera_chunk"), ({"grid_period": -8}, "grid_period"),
                          ({"early_stop": "yes"}, "early_stop")]:
        with pytest.raises(ValueError, match=match):
            search_scale_crop("numpy", img, cams, scales=GRID, **kwargs)
    with pytest.raises(ValueError, match="non-empty list"):
        search_record([])


def test_search_record_decision_rules():
    def result(name, value):
        return SearchResult(camera=name, pce=value, scale=0.8, offset=(1, 2), log10_p_fa=-3.0, positions_searched=10)

    rec = search_record([result("A", 70.0), result("B", 250.0), result("C", 5.0)], 60.0)
    assert rec["best"] == "B" and rec["decision"] == "B" and rec["above_threshold"] == ["B", "A"]
    assert rec["scores"]["A"] == {"pce": 70.0, "scale": 0.8, "offset": [1, 2], "size": [0, 0], "log10_p_fa": -3.0,
                                  "positions_searched": 10}
    none = search_record([result("A", 40.0), result("B", 59.9)], 60.0)
    assert none["decision"] is None and none["best"] == "B" and none["above_threshold"] == []
    json.dumps(rec)
    json.dumps(result("A", 1.0).to_dict())


# ------------------------------------------------------------------------------------------------
# acceptance on synthetic cameras
# ------------------------------------------------------------------------------------------------
CROP_OFFSET = (23, 41)  # not a multiple of 8: the disputed JPEG's blocks do not line up with the refs'


def build_fingerprints(root: Path, cameras: list[str]) -> list[tuple[str, np.ndarray]]:
    """Full-frame fingerprints from the flat references, stored as camera JPEGs (quality 92)."""
    fps = []
    for cam in cameras:
        refs = [jpeg(np.asarray(Image.open(p)), 92) for p in sorted((root / "refs" / cam).glob("*.png"))]
        fps.append((cam, estimate_fingerprint(np.stack(refs), backend="numpy")))
    return fps


def disputed_variant(pixels: np.ndarray, scale: float, cropped: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """Downscale (BICUBIC), optionally crop 80 % x 80 % at CROP_OFFSET, then JPEG quality 75."""
    out, offset = downscale(pixels, scale), (0, 0)
    if cropped:
        h, w = out.shape[:2]
        offset = CROP_OFFSET
        out = crop(out, offset, (int(0.8 * h), int(0.8 * w)))
    return jpeg(out, 75), offset


def baseline_pce(bk, pixels: np.ndarray, fps) -> dict[str, float]:
    """The same image, not resized nor cropped (JPEG 75), scored as camid identify does (no shift)."""
    j = jpeg(pixels, 75)
    pixels = pixels_to_device(bk, j[None])
    res = wiener_dft(bk, residual_native(bk, pixels, 2.0))
    scores = pce_scores(bk, res, gray_intensity(bk, pixels), bk.asarray(np.stack([k for _, k in fps])))
    return {cam: float(scores.pce[0, i]) for i, (cam, _) in enumerate(fps)}


def run_acceptance(root: Path, cameras: int, refs: int, height: int, width: int, seed: int, variants, step=0.05):
    make_dataset(root, cameras=cameras, per_model=2, refs=refs, disputed_flat=1, disputed_natural=1, height=height,
                 width=width, fmt="png", seed=seed)
    names = [f"C{i + 1:02d}" for i in range(cameras)]
    fps = build_fingerprints(root, names)
    bk = get_backend("numpy")
    grid = scale_grid(0.5, 1.0, step)
    rows = []
    for cam in names:
        for kind in ("flat", "natural"):
            pixels = np.asarray(Image.open(root / "disputed" / cam / f"{kind}_000.png"))
            base = baseline_pce(bk, pixels, fps)
            for scale, cropped in variants:
                image, offset = disputed_variant(pixels, scale, cropped)
                results = search_scale_crop(bk, image, fps, scales=grid)
                own = next(r for r in results if r.camera == cam)
                rows.append({"camera": cam, "kind": kind, "scale": scale, "cropped": cropped, "offset": offset,
                             "image": image, "base": base[cam], "pce": own.pce, "found_scale": own.scale,
                             "found_offset": own.offset, "log10_p_fa": own.log10_p_fa,
                             "others": max(r.pce for r in results if r.camera != cam),
                             "decision": search_record(results, THRESHOLD)["decision"]})
    return {"fps": fps, "rows": rows, "step": step}


def report(rows) -> str:
    lines = [f"{'camera':6} {'kind':7} {'scale':>5} {'crop':4} {'base':>7} {'PCE':>7} {'others':>6} "
             f"{'found':>5} {'offset':>10} {'log10 Pfa':>9}"]
    for r in rows:
        lines.append(f"{r['camera']:6} {r['kind']:7} {r['scale']:5.2f} {'yes' if r['cropped'] else 'no':4} "
                     f"{r['base']:7.1f} {r['pce']:7.1f} {r['others']:6.1f} {r['found_scale']:5.2f} "
                     f"{str(tuple(r['found_offset'])):>10} {r['log10_p_fa']:9.1f}")
    return "\n".join(lines)


def check_rows(rows, step):
    """The issue's rule: identified (PCE > 60, right decision, scale within a step, offset +-1)
    whenever the unresized image is; unrelated cameras below 60 always."""
    failures = []
    for r in rows:
        label = f"{r['camera']} {r['kind']} scale {r['scale']} {'cropped' if r['cropped'] else ''}"
        if r["others"] >= THRESHOLD:
            failures.append(f"{label}: an unrelated camera reached PCE {r['others']:.1f}")
        if r["base"] > THRESHOLD:
            if not (r["pce"] > THRESHOLD and r["decision"] == r["camera"]):
                failures.append(f"{label}: PCE {r['pce']:.1f} (unresized: {r['base']:.1f}), decision {r['decision']}")
            elif abs(r["found_scale"] - r["scale"]) > step + 1e-9 or \
                    max(abs(a - b) for a, b in zip(r["found_offset"], r["offset"])) > 1:
                failures.append(f"{label}: found scale {r['found_scale']} offset {r['found_offset']}, "
                                f"true {r['scale']} {r['offset']}")
    return failures


FAST_VARIANTS = [(1.0, True), (0.9, False), (0.8, True)]


@pytest.fixture(scope="module")
def small_acceptance(tmp_path_factory):
    """3 cameras (C01/C02 twins, C03) of 384 x 512, 10 flat JPEG references each."""
    return run_acceptance(tmp_path_factory.mktemp("search-accept"), cameras=3, refs=10, height=384, width=512,
                          seed=11, variants=FAST_VARIANTS)


def test_acceptance_small_frames(small_acceptance):
    rows = small_acceptance["rows"]
    print("\n" + report(rows))
    flats = [r for r in rows if r["kind"] == "flat"]
    assert check_rows(flats, small_acceptance["step"]) == []
    # the rule is not vacuous here: every flat image is identified unresized and after each change
    assert len(flats) == 9 and all(r["base"] > THRESHOLD and r["pce"] > THRESHOLD for r in flats)
    # natural images of 0.2 MP keep too little PRNU once resized or cropped and JPEG-compressed again (the
    # README's known limitations; test_acceptance_natural_images measures it on larger frames): never a
    # false attribution, and a natural image found above the threshold is found at its scale
    assert all(r["others"] < THRESHOLD for r in rows)
    for r in rows:
        if r["kind"] == "natural" and r["pce"] > THRESHOLD:
            assert r["decision"] == r["camera"] and abs(r["found_scale"] - r["scale"]) <= small_acceptance["step"] + 1e-9


def test_torch_cpu_matches_numpy_on_a_camera_image(small_acceptance):
    tb = _torch_backend()
    row = next(r for r in small_acceptance["rows"] if r["kind"] == "flat" and r["scale"] == 0.8)
    fps = small_acceptance["fps"]
    a = search_scale_crop("numpy", row["image"], fps, scales=GRID)
    b = search_scale_crop(tb, row["image"], fps, scales=GRID)
    own = [r.camera for r in a].index(row["camera"])
    assert (a[own].scale, a[own].offset) == (b[own].scale, b[own].offset) == (row["found_scale"], row["found_offset"])
    assert search_record(a)["decision"] == search_record(b)["decision"] == row["camera"]
    for x, y in zip(a, b):
        assert y.pce == pytest.approx(x.pce, rel=1e-2, abs=0.5)


SLOW_VARIANTS = [(1.0, True), (0.9, False), (0.8, True), (0.7, True), (0.6, False), (0.5, False), (0.5, True)]


@pytest.fixture(scope="module")
def large_acceptance(tmp_path_factory):
    """4 cameras (two models, two twins each) of 768 x 1024, 12 flat JPEG references each."""
    return run_acceptance(tmp_path_factory.mktemp("search-accept-large"), cameras=4, refs=12, height=768,
                          width=1024, seed=5, variants=SLOW_VARIANTS)


#: downscaled to 0.5 and cropped 80 % x 80 %: 16 % of the frame's pixels, where the weakest flat reaches the limit
HALF_SCALE_CROPPED = (0.5, True)


@pytest.mark.slow
def test_acceptance_flat_images(large_acceptance):
    rows = large_acceptance["rows"]
    print("\n" + report(rows))
    flats = [r for r in rows if r["kind"] == "flat"]
    assert check_rows([r for r in flats if (r["scale"], r["cropped"]) != HALF_SCALE_CROPPED],
                      large_acceptance["step"]) == []
    assert all(r["base"] > THRESHOLD for r in flats)  # not vacuous
    # at the limit too: never an unrelated camera, every flat placed at its true scale and offset, most above 60
    limit = [r for r in flats if (r["scale"], r["cropped"]) == HALF_SCALE_CROPPED]
    assert len(limit) == 4 and all(r["others"] < THRESHOLD and r["decision"] in (r["camera"], None) for r in limit)
    assert all(r["found_scale"] == r["scale"] and max(abs(a - b) for a, b in zip(r["found_offset"], r["offset"])) <= 1
               for r in limit)
    assert sum(r["pce"] > THRESHOLD for r in limit) >= 3


@pytest.mark.slow
@pytest.mark.xfail(reason="at the limit of the evidence: a flat downscaled to 0.5 and cropped 80 % x 80 % keeps 16 % "
                          "of the frame's pixels; measured on these four 768x1024 flats (JPEG q75): PCE 82, 50, 106, "
                          "111 (C02 at 50; 62 before the wavelet-grid correction, which raised the three others by "
                          "9-16 %), unresized at scale 0.5 C02 reaches 62 and cropped at 0.6 it reaches 46 (50 before the "
                          "correction); unrelated cameras 21-31 (README, Known limitations, 'Scale search'); strict: "
                          "a pass means the README's limit is out of date", strict=True)
def test_acceptance_flat_images_half_scale_cropped(large_acceptance):
    flats = [r for r in large_acceptance["rows"] if r["kind"] == "flat"
             and (r["scale"], r["cropped"]) == HALF_SCALE_CROPPED]
    assert check_rows(flats, large_acceptance["step"]) == []


@pytest.mark.slow
def test_acceptance_natural_images_never_false_positive(large_acceptance):
    naturals = [r for r in large_acceptance["rows"] if r["kind"] == "natural"]
    assert all(r["others"] < THRESHOLD for r in naturals)
    # identified with the right scale and offset whenever PCE > 60 (none wrongly)
    for r in naturals:
        if r["pce"] > THRESHOLD:
            assert r["decision"] == r["camera"] and abs(r["found_scale"] - r["scale"]) <= large_acceptance["step"]


@pytest.mark.slow
@pytest.mark.xfail(reason="beyond the PRNU left in these images: natural scenes (synthetic PRNU 0.8 %) downscaled "
                          "to 0.8 or less and JPEG-compressed at quality 75 keep PCE 20-46, as unrelated cameras reach "
                          "15-31 over the search; at 0.9 three of four and cropped 80 % at scale 1 two of four pass "
                          "(measured; see the module notes of camid_gpu.prnu.search); strict: a pass means the README's "
                          "limitation is out of date", strict=True)
def test_acceptance_natural_images(large_acceptance):
    naturals = [r for r in large_acceptance["rows"] if r["kind"] == "natural"]
    assert check_rows(naturals, large_acceptance["step"]) == []
