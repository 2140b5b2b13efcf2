"""--decode auto|cpu|gpu: which files go to the GPU decoder, the per-file CPU fallback, and decisions that do not
depend on the decoder's rounding.

torchvision's PyPI wheel is built against CUDA torch and does not import beside the CPU build CI uses, so
these tests run the GPU path's logic with a stand-in for ``torchvision.io.decode_jpeg``: Pillow on the CPU,
returning ``(C, H, W)`` uint8 tensors as torchvision does. The real decoder is exercised by the ``gpu`` test.
"""
from __future__ import annotations

import io
import os
import shutil
import struct

import numpy as np
import pytest
from conftest import requires_cuda, requires_torch
from PIL import Image

from camid_gpu.config import Params, RunConfig
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.engine import context, runner
from camid_gpu.engine.scheduler import read_results
from camid_gpu.errors import CamidError
from camid_gpu.io.decode import decode_bytes, jpeg_header_info
from camid_gpu.io.device_decode import DeviceJpegDecoder, decoder_for, device_unsupported, jpeg_frame

CLIP = (128, 128)
REFS = 4
FAIL_MARK = b"stand-in: refuse on the GPU"


def _jpeg(pixels: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


RGB = (np.arange(48 * 64 * 3).reshape(48, 64, 3) % 251).astype(np.uint8)


# -- which files the GPU decoder takes --------------------------------------------------------------
def test_frame_header_is_parsed():
    frame = jpeg_frame(_jpeg(RGB))
    assert (frame.process, frame.precision, frame.height, frame.width, frame.components) == \
        ("baseline", 8, 48, 64, 3)
    assert jpeg_frame(_jpeg(RGB[..., 0])).components == 1


def test_what_the_gpu_does_not_take_is_named():
    assert device_unsupported(_jpeg(RGB)) is None
    assert device_unsupported(_jpeg(RGB[..., 1])) is None
    assert device_unsupported(_jpeg(RGB, progressive=True)) == "progressive JPEG"
    cmyk = io.BytesIO()
    Image.fromarray(RGB).convert("CMYK").save(cmyk, "JPEG")
    assert "CMYK" in device_unsupported(cmyk.getvalue())
    png = io.BytesIO()
    Image.fromarray(RGB).save(png, "PNG")
    assert device_unsupported(png.getvalue()) == "not a JPEG"
    assert device_unsupported(b"") == "not a JPEG"
    assert device_unsupported(_jpeg(RGB)[:20]) == "not a JPEG"  # cut before the frame header
    # a 12-bit frame header (Pillow writes none, so patch the precision byte of a baseline one)
    data = bytearray(_jpeg(RGB))
    sof = data.index(b"\xff\xc0")
    data[sof + 4] = 12
    assert device_unsupported(bytes(data)) == "12-bit JPEG"
    # an Adobe APP14 segment with colour transform 0: RGB-coded components
    app14 = b"\xff\xee" + struct.pack(">H", 14) + b"Adobe" + bytes([0, 100, 0, 0, 0, 0, 0])
    plain = _jpeg(RGB)
    assert device_unsupported(plain[:2] + app14 + plain[2:]) == "RGB-coded JPEG (Adobe transform 0)"


def test_rgb_named_components_go_to_the_cpu():
    """RGB components named R, G, B with no Adobe or JFIF segment: libjpeg decodes RGB from the names alone."""
    rgb = io.BytesIO()
    Image.fromarray(RGB).save(rgb, "JPEG", quality=90, keep_rgb=True)  # Pillow >= 10.2 writes RGB as is
    data = rgb.getvalue()
    if b"\xff\xee" not in data:
        pytest.skip("this Pillow has no keep_rgb")
    plain = _jpeg(RGB)
    at = data.index(b"\xff\xee")
    named = data[:at] + data[at + 2 + struct.unpack(">H", data[at + 2:at + 4])[0]:]
    assert jpeg_frame(named).adobe_transform is None and jpeg_frame(named).component_ids == tuple(b"RGB")
    assert device_unsupported(named) == "RGB-coded JPEG (components named R, G, B)"
    assert jpeg_frame(plain).jfif and device_unsupported(plain) is None  # YCbCr with JFIF: the GPU takes it


def test_header_info_matches_the_full_decode():
    for pixels in (RGB, RGB[..., 2]):
        data = _jpeg(pixels)
        assert jpeg_header_info("x.jpg", data) == decode_bytes("x.jpg", data)[1]


# -- choosing the decoder ---------------------------------------------------------------------------
def test_decoder_choice_without_cuda():
    from camid_gpu.backend import get_backend

    numpy_bk = get_backend("numpy")
    assert decoder_for("cpu", numpy_bk) is None
    assert decoder_for("auto", numpy_bk) is None  # no CUDA: the CPU decodes
    with pytest.raises(CamidError, match="needs the torch backend on a CUDA device"):
        decoder_for("gpu", numpy_bk)
    with pytest.raises(ValueError, match="decode must be one of"):
        decoder_for("nvjpeg", numpy_bk)


@requires_torch
def test_decoder_choice_torch_cpu():
    from camid_gpu.backend import get_backend

    bk = get_backend("torch", device="cpu")
    assert decoder_for("auto", bk) is None
    with pytest.raises(CamidError, match="use --decode cpu or auto"):
        decoder_for("gpu", bk)


def test_cli_decode_gpu_without_cuda_is_one_clear_error(tmp_path, capsys):
    from camid_gpu.cli import main

    make_dataset(tmp_path / "data", cameras=2, per_model=2, refs=2, disputed_flat=1, disputed_natural=0,
                 height=64, width=64, seed=1)  # 2 references: config.MIN_REFERENCES
    assert main(["fingerprint", str(tmp_path / "data" / "refs"), "-o", str(tmp_path / "fp"), "--clip", "32",
                 "--refs", "2", "--backend", "numpy", "--quiet"]) == 0
    code = main(["identify", str(tmp_path / "fp"), str(tmp_path / "data" / "disputed"), "-o", str(tmp_path / "run"),
                 "--backend", "numpy", "--decode", "gpu", "--quiet"])
    assert code == 1
    assert "--decode gpu needs the torch backend on a CUDA device" in capsys.readouterr().err


@requires_torch
def test_a_torchvision_that_does_not_load_is_named(monkeypatch):
    """The PyPI torchvision beside the CPU build of torch fails at import with a RuntimeError, not ImportError."""
    from camid_gpu.backend import get_backend
    from camid_gpu.io import device_decode

    real = device_decode.import_optional

    def broken(module, extra, feature):
        if module == "torchvision.io":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(module, extra, feature)

    monkeypatch.setattr(device_decode, "import_optional", broken)
    with pytest.raises(CamidError, match="torchvision is installed but does not load beside torch"):
        DeviceJpegDecoder(get_backend("torch", device="cpu"))


def test_decode_gpu_is_refused_with_cluster_or_search(tmp_path):
    cases = [(RunConfig(decode="gpu", dask="local"), Params(), "--dask"),
             (RunConfig(decode="gpu"), Params(clip=None, search_scales=(0.5, 1.0, 0.1)), "--search-scales")]
    for config, params, option in cases:
        with pytest.raises(CamidError, match=f"--decode gpu is not available with {option}"):
            runner.identify_files(str(tmp_path), [str(tmp_path)], str(tmp_path / "r.jsonl"), ("pce",), params, config)


# -- the GPU path's logic, with a CPU stand-in decoder ----------------------------------------------
def pillow_stand_in(perturb: int = 0):
    """A ``decode_jpeg(tensors, device)`` stand-in: Pillow's pixels as (C, H, W) uint8 tensors, optionally
    moved by up to ``perturb`` levels (seeded) as a decoder with other IDCT rounding would; it refuses the
    whole batch when one file carries :data:`FAIL_MARK`, as nvJPEG does with a file it cannot decode."""
    import torch

    rng = np.random.default_rng(11)

    def decode(tensors, device):
        out = []
        for tensor in tensors:
            data = tensor.numpy().tobytes()
            if FAIL_MARK in data:
                raise RuntimeError("stand-in decoder: unsupported file")
            pixels = np.asarray(Image.open(io.BytesIO(data)))
            if perturb:
                moved = pixels.astype(np.int16) + rng.integers(-perturb, perturb + 1, pixels.shape)
                pixels = np.clip(moved, 0, 255).astype(np.uint8)
            chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
            out.append(torch.from_numpy(np.array(chw, order="C", copy=True)).to(device))
        return out

    return decode


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two twin cameras (flat and natural disputed images, one portrait), fingerprints, and the extra files
    the GPU must leave to the CPU: progressive, PNG, and one the stand-in decoder refuses."""
    root = tmp_path_factory.mktemp("decode")
    make_dataset(root / "data", cameras=2, per_model=2, refs=REFS, disputed_flat=2, disputed_natural=1,
                 height=160, width=192, jpeg_quality=92, portrait=1, seed=5)
    runner.fingerprint_folder(str(root / "data" / "refs"), str(root / "fp"), ("pce", "mahalanobis"),
                              Params(clip=CLIP, refs=REFS), RunConfig(backend="numpy", progress=False))
    disputed = root / "data" / "disputed"
    source = sorted((disputed / "C01").iterdir())[0]
    pixels = np.asarray(Image.open(source))
    (disputed / "C01" / "progressive.jpg").write_bytes(_jpeg(pixels, progressive=True))
    Image.fromarray(pixels).save(disputed / "C01" / "lossless.png")
    (disputed / "C01" / "refused.jpg").write_bytes(_jpeg(pixels, comment=FAIL_MARK))
    return root


@pytest.fixture(scope="module")
def cpu_records(data, tmp_path_factory):
    return _identify(data, tmp_path_factory.mktemp("cpu"), "cpu", "cpu")


def _identify(data, tmp_path, name, decode, stand_in=None, monkeypatch=None, chunk=3):
    if stand_in is not None:
        monkeypatch.setattr(context, "decoder_for",
                            lambda choice, bk: None if choice == "cpu" else DeviceJpegDecoder(bk, stand_in))
    out = tmp_path / f"{name}.jsonl"
    runner.identify_files(str(data / "fp"), [str(data / "data" / "disputed")], str(out), ("pce", "mahalanobis"),
                          Params(clip=CLIP, rotations="auto"),
                          RunConfig(backend="torch", device="cpu", progress=False, chunk=chunk, decode=decode),
                          truth_root=str(data / "data" / "disputed"))
    return {os.path.basename(r["path"]) + r["truth"]: r for r in read_results(str(out))}


def _decisions(records):
    return {k: (r["pce"]["decision"], r["rotation"], r["kind"], tuple(r["mahalanobis"]["associated"]),
                r["sha256"]) for k, r in records.items()}


@requires_torch
def test_gpu_path_decodes_jpegs_and_falls_back_per_file(data, cpu_records, tmp_path, monkeypatch):
    cpu = cpu_records
    gpu = _identify(data, tmp_path, "gpu", "gpu", pillow_stand_in(), monkeypatch)
    assert set(cpu) == set(gpu) and not any(r["error"] for r in gpu.values())
    assert {r["decoder"] for r in cpu.values()} == {"cpu"} and not any("decoder_note" in r for r in cpu.values())
    notes = {k: r.get("decoder_note") for k, r in gpu.items() if r["decoder"] == "cpu"}
    assert notes == {"progressive.jpgC01": "progressive JPEG", "lossless.pngC01": "not a JPEG",
                     "refused.jpgC01": "GPU decoder failed (RuntimeError: stand-in decoder: unsupported file)"}
    assert sum(r["decoder"] == "gpu" for r in gpu.values()) == len(gpu) - 3
    assert any(r["rotation"] == 90 or len(r["rotations_tried"]) > 1 for r in gpu.values())  # the portrait one
    # same pixels, other path (device stacking, kind and clips from the decoder's arrays): same numbers
    assert _decisions(gpu) == _decisions(cpu)
    for key, record in cpu.items():
        for cam, score in record["pce"]["scores"].items():
            assert gpu[key]["pce"]["scores"][cam]["pce"] == pytest.approx(score["pce"], rel=1e-4, abs=1e-3)
        assert gpu[key]["mahalanobis"]["membership"] == record["mahalanobis"]["membership"]


@requires_torch
def test_decisions_do_not_depend_on_decoder_rounding(data, cpu_records, tmp_path, monkeypatch):
    """A decoder whose pixels differ from Pillow's by up to one level gives the same decisions (PCE and
    Mahalanobis, kinds, rotations). The stand-in moves every pixel by -1, 0 or +1 at random: harsher than IDCT
    rounding, which leaves most pixels equal; on these 128x128 clips it lowers the PCE of the true camera
    (about 580 -> 340 on one image) but not below the threshold."""
    cpu = cpu_records
    moved = _identify(data, tmp_path, "moved", "auto", pillow_stand_in(perturb=1), monkeypatch)
    assert sum(r["decoder"] == "gpu" for r in moved.values()) == len(moved) - 3
    assert _decisions(moved) == _decisions(cpu)
    assert any(r["pce"]["decision"] for r in cpu.values())  # not vacuous: some images are attributed


@requires_torch
def test_a_file_neither_decoder_can_use_is_an_error_record(data, tmp_path, monkeypatch):
    broken = tmp_path / "broken"
    shutil.copytree(data / "data" / "disputed" / "C02", broken / "C02")
    good = sorted((broken / "C02").iterdir())[0].read_bytes()
    (broken / "C02" / "cut.jpg").write_bytes(good[: len(good) // 3])  # header intact, scan cut short
    monkeypatch.setattr(context, "decoder_for", lambda choice, bk: DeviceJpegDecoder(bk, pillow_stand_in()))
    out = tmp_path / "broken.jsonl"
    runner.identify_files(str(data / "fp"), [str(broken)], str(out), ("pce",), Params(clip=CLIP),
                          RunConfig(backend="torch", device="cpu", progress=False, chunk=2, decode="gpu"))
    records = {os.path.basename(r["path"]): r for r in read_results(str(out))}
    assert records["cut.jpg"]["error"]["kind"] == "decode" and "cut.jpg" in records["cut.jpg"]["path"]
    assert all(r["decoder"] == "gpu" for k, r in records.items() if k != "cut.jpg")


@requires_torch
def test_decoder_isolates_a_failing_file_and_odd_outputs():
    import torch

    from camid_gpu.backend import get_backend

    plain, odd = _jpeg(RGB), _jpeg(RGB[..., 0])
    calls = []

    def stand_in(tensors, device):
        calls.append(len(tensors))
        out = pillow_stand_in()(tensors, device)  # raises for the whole batch on FAIL_MARK
        return [torch.zeros((4, 2, 2), dtype=torch.uint8) if t.numpy().tobytes() == odd else o  # no image's shape
                for t, o in zip(tensors, out)]

    decoder = DeviceJpegDecoder(get_backend("torch", device="cpu"), stand_in)
    out = decoder.decode([plain, _jpeg(RGB, comment=FAIL_MARK), odd])
    assert calls == [3, 1, 1, 1]  # the batch failed, then file by file
    assert tuple(out[0].shape) == RGB.shape and isinstance(out[1], RuntimeError) and isinstance(out[2], ValueError)
    assert decoder.decode([]) == []


@requires_torch
def test_fingerprints_with_the_gpu_path(data, tmp_path, monkeypatch):
    refs = tmp_path / "refs"
    shutil.copytree(data / "data" / "refs", refs)
    first = sorted((refs / "C02").iterdir())[0]
    pixels = np.asarray(Image.open(first))
    first.unlink()
    (refs / "C02" / (first.stem + ".jpg")).write_bytes(_jpeg(pixels, progressive=True))  # same name, progressive
    params = Params(clip=CLIP, refs=REFS)
    cpu_cfg = RunConfig(backend="torch", device="cpu", progress=False, decode="cpu")
    runner.fingerprint_folder(str(refs), str(tmp_path / "fp-cpu"), ("pce", "mahalanobis"), params, cpu_cfg)
    monkeypatch.setattr(context, "decoder_for", lambda choice, bk: DeviceJpegDecoder(bk, pillow_stand_in()))
    runner.fingerprint_folder(str(refs), str(tmp_path / "fp-gpu"), ("pce", "mahalanobis"), params,
                              RunConfig(backend="torch", device="cpu", progress=False, decode="gpu"))
    from camid_gpu.store import load_store

    cpu, gpu = load_store(str(tmp_path / "fp-cpu")), load_store(str(tmp_path / "fp-gpu"))
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(b.k, a.k, rtol=0, atol=1e-5)
        np.testing.assert_allclose(b.mean_prnu, a.mean_prnu, rtol=0, atol=1e-4)
        assert [r["sha256"] for r in b.references] == [r["sha256"] for r in a.references]
        assert all("decoder" not in r for r in a.references)
    decoders = {os.path.basename(r["path"]): (r["decoder"], r.get("decoder_note")) for fp in gpu for r in fp.references}
    assert decoders.pop(first.stem + ".jpg") == ("cpu", "progressive JPEG")
    assert set(decoders.values()) == {("gpu", None)}


@pytest.mark.gpu
@requires_cuda
def test_nvjpeg_matches_pillow_within_rounding(tmp_path):
    pytest.importorskip("torchvision")
    from camid_gpu.backend import get_backend

    bk = get_backend("torch", device="cuda")
    decoder = decoder_for("gpu", bk)
    pixels = np.asarray(Image.open(io.BytesIO(_jpeg(RGB))))
    decoded = decoder.decode([_jpeg(RGB), _jpeg(RGB, progressive=True), b"not a jpeg"])
    assert decoded[0].device.type == "cuda" and tuple(decoded[0].shape) == pixels.shape
    diff = np.abs(decoder.to_host(decoded[0]).astype(int) - pixels)
    assert diff.max() <= 8 and diff.mean() < 1.0  # IDCT and colour-conversion rounding
    assert isinstance(decoded[2], BaseException)
