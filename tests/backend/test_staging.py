"""Double-buffered uploads (backend/staging.py): the same code on the host (no streams) and on CUDA (a copy
stream, page-locked buffers, events); the chunk look-ahead of the scheduler gives the same results."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import TORCH_CONFIGS, requires_cuda, requires_torch

from camid_gpu.backend import get_backend
from camid_gpu.backend.staging import UploadStager
from camid_gpu.prnu.residual import pixels_to_device

BACKENDS = [pytest.param(("numpy", None, None), id="numpy"), *TORCH_CONFIGS]


def _backend(spec):
    name, device, dtype = spec
    return get_backend(name, device=device, dtype=dtype)


def _chunks(dtype=np.uint8, count=5, shape=(3, 24, 20), seed=0):
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    return [[rng.integers(0, top, shape[1:], endpoint=True).astype(dtype) for _ in range(shape[0])]
            for _ in range(count)]


@pytest.mark.parametrize("spec", BACKENDS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_staged_pixels_equal_a_direct_upload(spec, dtype):
    bk = _backend(spec)
    stager = UploadStager(bk)
    chunks = _chunks(dtype)
    uploads = [stager.stage(chunk) for chunk in chunks[:2]]  # two in flight before either is used
    for chunk, upload in zip(chunks, uploads):
        direct = bk.to_numpy(pixels_to_device(bk, np.stack(chunk)))
        np.testing.assert_array_equal(bk.to_numpy(pixels_to_device(bk, upload)), direct)
    # the rest one at a time, as the scheduler does: each staged while the one before is in use
    for chunk in chunks[2:]:
        upload = stager.stage(chunk)
        np.testing.assert_array_equal(bk.to_numpy(pixels_to_device(bk, upload)),
                                      bk.to_numpy(pixels_to_device(bk, np.stack(chunk))))


@pytest.mark.parametrize("spec", BACKENDS)
def test_host_buffers_are_reused_not_reallocated(spec):
    bk = _backend(spec)
    stager = UploadStager(bk, slots=2)
    for chunk in _chunks(count=6):
        stager.stage(chunk)
    assert stager.allocations == 2  # one per slot, whatever the number of chunks
    for chunk in _chunks(count=4, shape=(2, 24, 20)):  # smaller chunks fit the buffers
        stager.stage(chunk)
    assert stager.allocations == 2
    stager.stage(_chunks(count=1, shape=(4, 30, 30))[0][:4])  # a larger one grows its slot
    assert stager.allocations == 3


def test_an_upload_is_not_overwritten_by_later_chunks():
    """On the host, the staged array is a copy: reusing the slot's buffer does not change it."""
    bk = get_backend("numpy")
    stager = UploadStager(bk, slots=1)
    first, second = _chunks(count=2)
    upload = stager.stage(first)
    stager.stage(second)  # the same (only) slot
    np.testing.assert_array_equal(upload.native(), np.stack(first))


def test_mixed_shapes_are_refused():
    stager = UploadStager(get_backend("numpy"))
    with pytest.raises(ValueError, match="same shape and dtype"):
        stager.stage([np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8)])
    with pytest.raises(ValueError, match="slots"):
        UploadStager(get_backend("numpy"), slots=0)
    with pytest.raises(ValueError, match="nothing to upload"):  # was an IndexError
        stager.stage([])


@pytest.mark.gpu
@requires_cuda
def test_cuda_upload_runs_on_the_copy_stream_from_pinned_memory():
    import torch

    bk = get_backend("torch", device="cuda")
    stager = UploadStager(bk)
    assert stager.stream is not None and stager.stream != torch.cuda.current_stream()
    chunk = _chunks(shape=(8, 512, 512))[0]
    upload = stager.stage(chunk)
    assert upload.event is not None and upload.array.device.type == "cuda"
    assert torch.from_numpy(stager._buffers[0]).is_pinned()
    # compute queued behind the event sees the whole copy
    total = pixels_to_device(bk, upload).sum().item()
    assert total == pytest.approx(float(np.stack(chunk).astype(np.float64).sum()), rel=1e-6)


@requires_torch
def test_identify_chunk_with_staged_uploads_matches_the_plain_path(tmp_path):
    from camid_gpu.config import Params, RunConfig
    from camid_gpu.datasets.synthetic import make_dataset
    from camid_gpu.engine.runner import fingerprint_folder
    from camid_gpu.pipeline import identify as ident
    from camid_gpu.pipeline.prepare import prepare_disputed
    from camid_gpu.store import load_store

    make_dataset(tmp_path / "data", cameras=2, per_model=2, refs=2, disputed_flat=2, disputed_natural=1,
                 height=96, width=128, seed=3, portrait=1)
    params = Params(clip=(64, 64), refs=2)
    fingerprint_folder(str(tmp_path / "data" / "refs"), str(tmp_path / "fp"), ("pce", "mahalanobis"), params,
                       RunConfig(backend="numpy", progress=False))
    store = load_store(str(tmp_path / "fp"))
    bk = get_backend("torch", device="cpu")
    paths = sorted(str(p) for p in (tmp_path / "data" / "disputed").rglob("*.jpg"))
    items = [prepare_disputed(p, params, store[0].source_shape) for p in paths]
    assert len(ident.clip_batches(items)) >= 1
    uploads = ident.stage_chunk(UploadStager(bk), items)
    staged = ident.identify_chunk(bk, store, items, params, ("pce", "mahalanobis"), uploads=uploads)
    plain = ident.identify_chunk(bk, store, items, params, ("pce", "mahalanobis"))
    assert staged == plain
