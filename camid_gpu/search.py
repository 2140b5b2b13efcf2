"""Search for resized and/or cropped images (draft)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from camid_gpu.backend import Backend, get_backend
from camid_gpu.io import gray_intensity
from camid_gpu.match import PCE_THRESHOLD, log10_false_alarm, pce
from camid_gpu.residual import residual_native, validate_images, wiener_dft

RESAMPLERS = ("bilinear", "bicubic", "lanczos", "box", "hamming", "zoom1", "zoom3", "nearest")


def resample_fingerprint(k: np.ndarray, scale: float, method: str = "bilinear") -> np.ndarray:
    H, W = k.shape
    hs, ws = max(1, round(scale * H)), max(1, round(scale * W))
    k = np.asarray(k, np.float32)
    blur = 0.0
    if "+g" in method:
        method, b = method.split("+g"); blur = float(b)
    if (hs, ws) == (H, W):
        out = k.copy()
    else:
        out = _resample(k, hs, ws, H, W, method)
    if blur:
        from scipy import ndimage
        out = ndimage.gaussian_filter(out, blur, mode="wrap")
    return out


def _resample(k, hs, ws, H, W, method):
    if method.startswith("zoom"):
        from scipy import ndimage
        order = int(method[4:])
        return ndimage.zoom(k, (hs / H, ws / W), order=order, mode="reflect", grid_mode=True).astype(np.float32)
    from PIL import Image
    f = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
         "lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX,
         "hamming": Image.Resampling.HAMMING, "nearest": Image.Resampling.NEAREST}[method]
    out = Image.fromarray(k).resize((ws, hs), resample=f)
    return np.asarray(out, dtype=np.float32)


@dataclass
class SearchResult:
    camera: str
    pce: float
    scale: float
    offset: tuple[int, int]
    log10_p_fa: float
    positions_searched: int
    per_scale: list[dict] = field(default_factory=list)


def scale_grid(lo: float = 0.5, hi: float = 1.0, step: float = 0.01) -> np.ndarray:
    n = int(math.floor((hi - lo) / step + 1e-9))
    g = lo + step * np.arange(n + 1)
    if g[-1] < hi - 1e-9:
        g = np.append(g, hi)
    return np.round(g, 10)


def search_scale_crop(bk, image, fingerprints, *, scales=None, sigma=2.0, wiener=True, threshold=PCE_THRESHOLD,
                      early_stop=False, resampler="bilinear", rewiener=False, camera_chunk=4):
    bk = get_backend(bk)
    if scales is None:
        scales = scale_grid()
    scales = np.sort(np.unique(np.asarray(scales, np.float64)))[::-1]
    img = validate_images(np.asarray(image)[None], "image")
    h, w = img.shape[1:3]
    res = residual_native(bk, img, sigma)
    res = (wiener_dft(bk, res) if wiener else res)[0]
    a = res * bk.asarray(gray_intensity(np.asarray(image)))
    a = a - bk.mean(a, (-2, -1))
    out = []
    for name, k in fingerprints:
        k = np.asarray(k, np.float32)
        per = []
        total = 0
        for s in scales:
            ks = resample_fingerprint(k, s, resampler)
            hs, ws = ks.shape
            if h > hs or w > ws:
                continue
            kb = bk.asarray(ks)[None]
            if rewiener:
                kb = wiener_dft(bk, kb)
            kb = kb - bk.mean(kb, (-2, -1))
            pad = bk.zeros_like(kb[0])
            pad[:h, :w] = a
            corr = bk.real(bk.ifft2(bk.fft2(pad).conj()[None] * bk.fft2(kb)))
            st = pce(bk, corr, (hs - h, ws - w))
            n = (hs - h + 1) * (ws - w + 1)
            total += n
            per.append({"scale": float(s), "pce": float(st["pce"][0]), "peak": float(st["peak"][0]),
                        "energy": float(st["energy"][0]), "offset": tuple(int(v) for v in st["peak_shift"][0]),
                        "positions": n})
        best = max(per, key=lambda d: d["pce"])
        out.append(SearchResult(name, best["pce"], best["scale"], best["offset"],
                                float(log10_false_alarm(best["peak"], best["energy"], total)), total, per))
    return out
