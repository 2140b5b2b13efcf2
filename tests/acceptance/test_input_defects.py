"""Hostile-input defects end to end: resource limits and peak memory, signals at pool
start-up, API edges, spreadsheet-safe CSV, and inputs chosen by content (HEIC, DNG, hidden)."""
from __future__ import annotations

import csv
import io
import os
import re

import numpy as np
import pytest

from camid_gpu.cli.output import write_csv


# -- 15.15: CSV cells a spreadsheet would run ----------------------------------------------------------
def test_csv_cells_that_look_like_formulas_are_neutralised(tmp_path):
    records = [
        {"path": "=HYPERLINK(\"http://x\").jpg", "error": {"kind": "decode", "reason": "+bad"}},
        {"path": "-2+3.jpg", "sha256": "ab", "rotation": 0,
         "pce": {"decision": "@cam", "scores": {"@cam": {"pce": 75.0, "ncc": 0.1, "log10_p_fa": -12.5}}}},
    ]
    out = tmp_path / "run.csv"
    write_csv(str(out), records)
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[1][0] == "'=HYPERLINK(\"http://x\").jpg"
    assert rows[1][10] == "'+bad"
    assert rows[2][0] == "'-2+3.jpg"
    assert rows[2][2] == "'@cam" and rows[2][6] == "'@cam"
    assert rows[2][5] == "-12.5"  # numbers stay numbers
    for row in rows:
        assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in row if not _number(cell))


def _number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


# -- 15.14: the API checks levels against the image size ---------------------------------------------
def test_extract_residual_checks_levels_before_allocating():
    from camid_gpu import extract_residual
    from camid_gpu.config import Params

    x = np.full((1, 64, 64), 100, np.uint8)
    with pytest.raises(ValueError, match="levels"):
        extract_residual(x, levels=20, backend="numpy")
    with pytest.raises(ValueError, match="at least 128 pixels"):
        extract_residual(x, levels=7, backend="numpy")
    with pytest.raises(ValueError, match="from 1 to 8"):
        Params(levels=9)
    assert extract_residual(x, levels=6, backend="numpy").shape == (1, 64, 64)


# -- 15.11: --workers capped by CPUs, memory and the number of files ----------------------------------
def test_workers_are_capped_by_cpus_and_memory(monkeypatch):
    from camid_gpu.config import InputLimits
    from camid_gpu.engine import scheduler

    monkeypatch.setattr(scheduler, "usable_cpus", lambda: 4)
    limits = InputLimits(max_file_bytes=1 << 20, max_decoded_bytes=1 << 20)
    count, note = scheduler.cap_workers(100000, 1 << 40, limits)
    assert count == 4 and "--workers 100000 capped to 4" in note and "4 usable CPUs" in note
    count, note = scheduler.cap_workers(4, 6 << 20, limits)  # 3 MiB per worker: two fit in 6 MiB
    assert count == 2 and "memory budget" in note
    assert scheduler.cap_workers(2, 1 << 40, limits) == (2, None)


def _double(x):
    return 2 * x


def test_no_more_workers_than_files(monkeypatch):
    from camid_gpu.engine import scheduler

    sizes = []
    real = scheduler._new_pool
    monkeypatch.setattr(scheduler, "_new_pool", lambda n: sizes.append(n) or real(n))
    monkeypatch.setattr(scheduler, "usable_cpus", lambda: 16)
    out = list(scheduler.ordered_map(_double, [(3,)], workers=6, prefetch=2))
    assert [r for _, r in out] == [6] and sizes == [1]


def test_cli_notes_the_workers_cap(tmp_path, capsys):
    from PIL import Image

    from camid_gpu.cli import main
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64), np.uint8)).save(tmp_path / "a.png")
    assert main(["residual", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--workers", "100000",
                 "--backend", "numpy"]) == 0
    assert re.search(r"camid: note: --workers 100000 capped to \d+: ", capsys.readouterr().err)


# -- a small world: two synthetic cameras, their fingerprints, disputed images -------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from camid_gpu.cli import main
    from camid_gpu.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("inputs")
    make_dataset(root / "data", cameras=2, per_model=1, refs=3, disputed_flat=2, disputed_natural=0,
                 height=160, width=192, seed=11)
    assert main(["fingerprint", str(root / "data" / "refs"), "-o", str(root / "fp"), "--refs", "3",
                 "--method", "pce", "--quiet", "--backend", "numpy"]) == 0
    return root


# -- 15.12: a signal while the worker pool starts -----------------------------------------------------
SIGNAL_AT_FIRST_FORK = (
    "import os, runpy, signal, sys\n"
    "import camid_gpu.engine.scheduler as s; s.usable_cpus = lambda: 2\n"
    "fired = []\n"
    "def hook():\n"
    "    if not fired:\n"
    "        fired.append(1); os.kill(os.getpid(), signal.{sig})\n"
    "os.register_at_fork(before=hook)\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "sys.argv[0] = 'camid'; runpy.run_module('camid_gpu.cli', run_name='__main__')\n")


@pytest.mark.parametrize("sig,code,word", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_signal_while_the_pool_starts_is_not_lost(world, tmp_path, sig, code, word):
    """The handler ran inside fork's at-fork hooks (logging's lock), where its exception was dropped: a
    traceback, then the run went on and exited 0."""
    import subprocess
    import sys

    from camid_gpu.engine.scheduler import read_results

    run = tmp_path / "run"
    args = ["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(run), "--quiet",
            "--backend", "numpy"]
    proc = subprocess.run([sys.executable, "-c", SIGNAL_AT_FIRST_FORK.format(sig=sig), *args, "--workers", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr and word in proc.stderr
    resumed = subprocess.run([sys.executable, "-m", "camid_gpu.cli", *args, "--resume"], capture_output=True,
                             text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert len(read_results(run / "results.jsonl")) == 4


# -- 15.5: PNG image data altered with the chunk CRC recomputed ----------------------------------------
def _png_flip_with_good_crc(data: bytes, offset: int) -> bytes:
    import struct
    import zlib

    raw = bytearray(data)
    idat = raw.find(b"IDAT")
    length = int.from_bytes(raw[idat - 4:idat], "big")
    raw[idat + 4 + offset] ^= 0x10
    crc = zlib.crc32(bytes(raw[idat:idat + 4 + length])) & 0xFFFFFFFF
    raw[idat + 4 + length:idat + 8 + length] = struct.pack(">I", crc)
    return bytes(raw)


def test_png_with_altered_data_and_recomputed_crc_is_damage(tmp_path):
    from hostile_inputs import png_bytes

    from camid_gpu.errors import ImageDecodeError
    from camid_gpu.io.decode import read_image

    pixels = np.random.default_rng(3).integers(0, 255, (20, 24, 3), np.uint8)
    good = png_bytes(pixels, level=0)  # stored: a flipped bit leaves a valid deflate stream
    bad = _png_flip_with_good_crc(good, 200)
    np.testing.assert_array_equal(read_image(_save(tmp_path / "good.png", good))[0], pixels)
    with pytest.raises(ImageDecodeError, match="Adler-32"):
        read_image(_save(tmp_path / "bad.png", bad))
    with pytest.raises(ImageDecodeError, match="ends early"):  # a zlib stream cut short, CRC recomputed
        short = png_bytes(pixels, level=6)
        idat = short.find(b"IDAT")
        length = int.from_bytes(short[idat - 4:idat], "big")
        body = short[idat + 4:idat + 4 + length - 40]
        import struct
        import zlib
        chunk = struct.pack(">I", len(body)) + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body))
        read_image(_save(tmp_path / "short.png", short[:idat - 4] + chunk + short[idat + 8 + length:]))


def _save(path, data: bytes):
    path.write_bytes(data)
    return path


# -- 15.8: byte-identical references under two cameras -------------------------------------------------
@pytest.mark.parametrize("layout", ["copied-camera", "nested"])
def test_identical_references_under_two_cameras_are_refused(world, tmp_path, capsys, layout):
    import shutil

    from camid_gpu.cli import main

    refs = tmp_path / "refs"
    shutil.copytree(world / "data" / "refs", refs)
    cameras = sorted(p.name for p in refs.iterdir())
    if layout == "copied-camera":
        shutil.copytree(refs / cameras[0], refs / "copy")
        first, second = refs / cameras[0], refs / "copy"
    else:  # another camera's references nested in a folder
        shutil.copytree(refs / cameras[1], refs / cameras[0] / "old")
        first, second = refs / cameras[0] / "old", refs / cameras[1]
    assert main(["fingerprint", str(refs), "-o", str(tmp_path / "fp"), "--refs", "all", "--method", "pce",
                 "--quiet", "--backend", "numpy"]) == 1
    err = capsys.readouterr().err
    assert "byte-identical reference files" in err
    named = re.search(r"reference files (\S+) and (\S+) \(SHA-256", err)
    assert named and os.path.dirname(named[1]) == str(first) and os.path.dirname(named[2]) == str(second)
    assert os.path.basename(named[1]) == os.path.basename(named[2])
    assert not (tmp_path / "fp").exists() or not list((tmp_path / "fp").glob("*.npz"))


# -- 15.7: the usable-content check on the pixels actually compared ----------------------------------
@pytest.fixture(scope="module")
def clipped_store(world, tmp_path_factory):
    """Both methods on 96x96 centre clips of the 160x192 frames."""
    from camid_gpu.cli import main

    out = tmp_path_factory.mktemp("clipped") / "fp"
    assert main(["fingerprint", str(world / "data" / "refs"), "-o", str(out), "--clip", "96", "--refs", "3",
                 "--method", "both", "--quiet", "--backend", "numpy"]) == 0
    return out


def _disputed_with_centre(world, tmp_path, value: int, side: int = 96, fraction: float = 1.0):
    from PIL import Image

    source = sorted((world / "data" / "disputed").rglob("*.*"))[0]
    pixels = np.array(Image.open(source).convert("RGB"))
    h, w = pixels.shape[:2]
    top, left = (h - side) // 2, (w - side) // 2
    centre = pixels[top:top + side, left:left + side]
    centre[np.random.default_rng(0).random(centre.shape[:2]) < fraction] = value
    folder = tmp_path / "ev"
    folder.mkdir(exist_ok=True)
    path = folder / f"centre{value}.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("value", [128, 255])
def test_image_unusable_inside_the_compared_clip_gets_no_score(world, clipped_store, tmp_path, value):
    from camid_gpu.cli import main
    from camid_gpu.engine.scheduler import read_results

    path = _disputed_with_centre(world, tmp_path, value)
    assert main(["identify", str(clipped_store), str(path), "-o", str(tmp_path / "run"), "--method", "both",
                 "--quiet", "--backend", "numpy"]) == 3
    (record,) = read_results(tmp_path / "run" / "results.jsonl")
    assert record["error"]["kind"] == "no-usable-content"
    assert "insufficient content in the 96x96 centre region PCE compares" in record["error"]["reason"]


def test_mahalanobis_region_saturated_is_insufficient_content(world, tmp_path):
    """PCE on the full frame (usable), the Mahalanobis method on a 64x64 centre that is blown out."""
    from camid_gpu.cli import main
    from camid_gpu.engine.scheduler import read_results

    store = tmp_path / "fp"
    assert main(["fingerprint", str(world / "data" / "refs"), "-o", str(store), "--mahalanobis-clip", "64",
                 "--refs", "3", "--method", "both", "--quiet", "--backend", "numpy"]) == 0
    path = _disputed_with_centre(world, tmp_path, 255, side=72, fraction=0.8)
    assert main(["identify", str(store), str(path), "-o", str(tmp_path / "run"), "--method", "both",
                 "--quiet", "--backend", "numpy"]) == 0
    (record,) = read_results(tmp_path / "run" / "results.jsonl")
    assert record["pce"]["scores"]  # the full frame is usable
    maha = record["mahalanobis"]
    assert maha["membership"] == {} and maha["associated"] == []
    assert "insufficient content in the 64x64 region the Mahalanobis method compares" in maha["insufficient_content"]
    assert re.search(r"(79|80|81)% of samples at the top value", maha["insufficient_content"])


# -- 18.8: formats by content; HEIC/HEIF; DNG; hidden files --------------------------------------------
def _jpeg(pixels) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _heic(pixels) -> bytes:
    pillow_heif = pytest.importorskip("pillow_heif")
    heif = pillow_heif.from_bytes("RGB", (pixels.shape[1], pixels.shape[0]), pixels.tobytes())
    buffer = io.BytesIO()
    heif.save(buffer, quality=95)
    return buffer.getvalue()


def _dng(rows: int = 64, cols: int = 80) -> bytes:
    """A minimal DNG (a CFA TIFF with the DNG tags LibRaw needs), written here."""
    import tifffile

    cfa = np.random.default_rng(0).integers(200, 3000, (rows, cols)).astype(np.uint16)
    tags = [(271, "s", 0, "TestMake", True), (272, "s", 0, "TestModel", True), (50706, "B", 4, (1, 4, 0, 0), True),
            (50708, "s", 0, "Test Cam", True), (33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True),
            (50717, "I", 1, 4095, True), (50721, "f", 9, (1, 0, 0, 0, 1, 0, 0, 0, 1), True),
            (50778, "H", 1, 21, True), (50727, "f", 3, (1, 1, 1), True)]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, cfa, photometric=32803, extratags=tags)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pixels():
    from conftest import natural_image

    return natural_image(64, 80, seed=4, channels=3)


def test_formats_are_detected_by_content_not_suffix(tmp_path, pixels):
    from camid_gpu.io.decode import read_image
    from camid_gpu.io.listing import scan_inputs

    _save(tmp_path / "renamed.heic", _jpeg(pixels))
    _save(tmp_path / "no_suffix", _jpeg(pixels))
    _save(tmp_path / "photo.dat", _jpeg(pixels))
    _save(tmp_path / "notes.txt", b"not an image")
    listing = scan_inputs(tmp_path)
    assert listing.images == [str(tmp_path / n) for n in ("no_suffix", "photo.dat", "renamed.heic")]
    (skipped,) = listing.skipped
    assert skipped.path == str(tmp_path / "notes.txt") and "not an image camid reads" in skipped.reason
    for path in listing.images:
        array, info = read_image(path)
        assert info.format == "JPEG" and array.shape == (64, 80, 3)


def test_heic_is_read_by_content(tmp_path, pixels):
    from camid_gpu.io.decode import read_image
    from camid_gpu.io.listing import scan_inputs

    data = _heic(pixels)
    _save(tmp_path / "IMG_0001.HEIC", data)
    _save(tmp_path / "named_as.jpg", data)
    _save(tmp_path / "IMG_0002", data)
    assert len(scan_inputs(tmp_path).images) == 3
    for path in scan_inputs(tmp_path).images:
        array, info = read_image(path)
        assert info.format == "HEIF" and array.shape == (64, 80, 3) and array.dtype == np.uint8
        assert np.abs(array.astype(int) - pixels).mean() < 6  # lossy, but the same picture


def test_heic_and_dng_without_their_extra_name_it(tmp_path, pixels, monkeypatch):
    import sys

    from camid_gpu.errors import ImageDecodeError
    from camid_gpu.io.decode import read_image

    heic, dng = _save(tmp_path / "a.heic", _heic(pixels)), _save(tmp_path / "b.dng", _dng())
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    monkeypatch.setitem(sys.modules, "rawpy", None)
    with pytest.raises(ImageDecodeError, match=r"optional extra 'heif'.*camid_gpu\[heif\]"):
        read_image(heic)
    with pytest.raises(ImageDecodeError, match=r"optional extra 'raw'.*camid_gpu\[raw\]"):
        read_image(dng)


def test_dng_is_read_demosaiced(tmp_path):
    pytest.importorskip("rawpy")
    from camid_gpu.io.decode import read_image

    array, info = read_image(_save(tmp_path / "raw_no_suffix", _dng(64, 80)))
    assert info.format == "DNG" and array.shape == (64, 80, 3) and array.dtype == np.uint16
    assert info.exif.get("make") == "TestMake"


def test_hidden_files_are_read_with_include_hidden(tmp_path, pixels, capsys):
    from camid_gpu.cli import main
    from camid_gpu.io.listing import including_hidden, scan_inputs

    evidence = tmp_path / "ev"
    (evidence / ".cache").mkdir(parents=True)
    _save(evidence / ".hidden.jpg", _jpeg(pixels))
    _save(evidence / ".cache" / "x.jpg", _jpeg(pixels))
    listing = scan_inputs(evidence)
    assert listing.images == [] and all("--include-hidden" in s.reason for s in listing.skipped)
    with including_hidden():
        assert scan_inputs(evidence).images == [str(evidence / ".hidden.jpg"), str(evidence / ".cache" / "x.jpg")]
    assert scan_inputs(evidence).images == []  # the setting ends with the block
    assert main(["residual", str(evidence), "-o", str(tmp_path / "out"), "--include-hidden", "--backend",
                 "numpy"]) == 0
    assert len((tmp_path / "out" / "residuals.jsonl").read_text().splitlines()) == 2


# -- 15.6: multi-page TIFF: the largest frame, and the record says which --------------------------------
def _tiff_pages(thumb, full, subifd: bool) -> bytes:
    import tifffile

    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        if subifd:  # the thumbnail as the main IFD, the full frame in its SubIFD (as DNG-like writers do)
            tif.write(thumb, photometric="rgb", subifds=1)
            tif.write(full, photometric="rgb", subfiletype=0)
        else:
            tif.write(thumb, photometric="rgb")
            tif.write(full, photometric="rgb")
    return buffer.getvalue()


@pytest.mark.parametrize("subifd", [False, True])
def test_multi_page_tiff_analyses_the_largest_frame(tmp_path, pixels, subifd):
    from camid_gpu.io.decode import read_image

    thumb = pixels[::4, ::4].copy()
    array, info = read_image(_save(tmp_path / "two.tif", _tiff_pages(thumb, pixels, subifd)))
    np.testing.assert_array_equal(array, pixels)
    analysed = {"page": 1, "subifd": 1, "size": [64, 80]} if subifd else {"page": 2, "size": [64, 80]}
    assert info.frame["analysed"] == analysed and len(info.frame["frames"]) == 2
    assert info.frame["frames"][0]["size"] == [16, 20]


def test_multi_page_tiff_record_names_the_page(world, tmp_path):
    from PIL import Image

    from camid_gpu.cli import main
    from camid_gpu.engine.scheduler import read_results

    source = sorted((world / "data" / "disputed").rglob("*.*"))[0]
    full = np.array(Image.open(source).convert("RGB"))
    path = _save(tmp_path / "exported.tif", _tiff_pages(full[::8, ::8].copy(), full, subifd=False))
    assert main(["identify", str(world / "fp"), str(path), "-o", str(tmp_path / "run"), "--quiet",
                 "--backend", "numpy"]) == 0
    (record,) = read_results(tmp_path / "run" / "results.jsonl")
    assert record["size"] == list(full.shape[:2]) and record["frame"]["analysed"]["page"] == 2
    assert record["pce"]["decision"] == source.parent.name  # the full frame matches its camera


# -- 15.9: memory bounded by the image, not by the file ------------------------------------------------
# VmHWM, the process's own peak RSS in KiB (ru_maxrss would carry the parent's peak over fork and exec)
PEAK_PROBE = (
    "import sys\n"
    "from camid_gpu.pipeline.prepare import prepare_disputed\n"
    "from camid_gpu.config import Params\n"
    "def peak():\n"
    "    with open('/proc/self/status') as f:\n"
    "        return next(int(line.split()[1]) for line in f if line.startswith('VmHWM:'))\n"
    "base = peak()\n"
    "item = prepare_disputed(sys.argv[1], Params(), (96, 128))\n"
    "print(peak() - base, item.info.file_size, item.info.sha256)\n")


@pytest.mark.parametrize("kind", ["jpg", "png"])
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux) to read the peak RSS")
def test_peak_memory_follows_the_image_not_a_padded_file(tmp_path, kind):
    """A small image with 32 MB of padding after its end: the padding is hashed, never held (it cost 2.3x the
    file); the recorded size and SHA-256 are the whole file's."""
    import hashlib
    import subprocess
    import sys

    from PIL import Image

    pad = 32 << 20
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (96, 128, 3), np.uint8)).save(
        buffer, format="JPEG" if kind == "jpg" else "PNG")
    path = tmp_path / f"padded.{kind}"
    with open(path, "wb") as handle:
        handle.write(buffer.getvalue())
        handle.write(b"\x00" * pad)
    out = subprocess.run([sys.executable, "-c", PEAK_PROBE, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    growth_kib, size, digest = out.stdout.split()
    assert int(size) == path.stat().st_size and digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert int(growth_kib) * 1024 < pad // 4, f"peak RSS grew by {int(growth_kib) >> 10} MiB for a {pad >> 20} MiB pad"


def test_image_bytes_kept_up_to_the_end_marker(tmp_path):
    from camid_gpu.io.decode import read_file_bytes, read_image

    data = _jpeg(np.random.default_rng(1).integers(0, 255, (40, 48, 3), np.uint8))
    path = _save(tmp_path / "a.jpg", data + b"TRAILER" * 1000)
    kept = read_file_bytes(path)
    assert bytes(kept) == data and kept.trailing == 7000 and kept.file_size == len(data) + 7000
    np.testing.assert_array_equal(read_image(path)[0], read_image(_save(tmp_path / "b.jpg", data))[0])


def test_reference_unusable_inside_the_clip_is_left_out(world, tmp_path, capsys):
    import shutil

    from PIL import Image

    from camid_gpu.cli import main

    refs = tmp_path / "refs"
    shutil.copytree(world / "data" / "refs", refs)
    first = sorted((refs / "C01").iterdir())[0]
    pixels = np.array(Image.open(first).convert("RGB"))
    pixels[32:128, 48:144] = 255  # the 96x96 centre blown out; the frame as a whole is not
    first.unlink()
    Image.fromarray(pixels).save(first.with_suffix(".png"))
    code = main(["fingerprint", str(refs), "-o", str(tmp_path / "fp"), "--clip", "96", "--refs", "all",
                 "--method", "both", "--quiet", "--backend", "numpy"])
    err = capsys.readouterr().err
    assert code == 3 and "ref_000.png: in the 96x96 centre clip a method compares: constant image" in err
    assert str(first.with_suffix(".png")) in err
