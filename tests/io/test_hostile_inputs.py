"""Hostile evidence files at input: damaged evidence, format allow-list, non-regular files, size limits, 16-bit colour
PNG, silent omissions, duplicates, non-UTF-8 and control-character file names, messages.

The hostile files are generated at test time by :mod:`hostile_inputs`."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import threading
import time
import warnings

import numpy as np
import pytest
from conftest import natural_image
from hostile_inputs import (
    eps_bytes,
    gif_bytes,
    jpeg_bytes,
    jpeg_cut_with_eoi,
    jpeg_declaring,
    png_bytes,
    png_with_flipped_bit,
)
from PIL import Image

from camid_gpu.cli import EXIT_PARTIAL, main
from camid_gpu.config import InputLimits, Params
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.errors import ImageDecodeError, ImageTooSmallError, ImageUnreadableError
from camid_gpu.io.decode import read_image
from camid_gpu.io.listing import printable, scan_inputs
from camid_gpu.pipeline.prepare import prepare_disputed


@pytest.fixture(scope="module")
def rgb():
    return natural_image(96, 128, seed=4, channels=3)


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


# -- 5: damaged evidence ------------------------------------------------------------------------------
@pytest.mark.parametrize("progressive", [False, True])
def test_jpeg_cut_with_end_marker_is_damaged(tmp_path, rgb, progressive):
    path = _write(tmp_path / "cut.jpg", jpeg_cut_with_eoi(jpeg_bytes(rgb, progressive=progressive)))
    with pytest.raises(ImageDecodeError) as info:
        read_image(path)
    assert info.value.path == str(path)
    assert "damaged JPEG" in info.value.reason and "premature end" in info.value.reason
    assert str(path) in str(info.value)


def test_jpeg_declaring_a_huge_size_with_little_data(tmp_path):
    data = jpeg_declaring(jpeg_bytes(np.full((64, 64), 128, np.uint8)), 12000, 12000)
    path = _write(tmp_path / "huge.jpg", data)
    t0 = time.perf_counter()
    with pytest.raises(ImageDecodeError) as info:
        read_image(path)
    assert "damaged JPEG" in info.value.reason
    assert time.perf_counter() - t0 < 5  # refused by the 1/8-scale check, before a full-size decode


def test_png_crc_errors_are_damage(tmp_path, rgb):
    good = png_bytes(rgb[:20, :24], filters=(0, 1, 2))
    idat = good.find(b"IDAT")
    length = int.from_bytes(good[idat - 4:idat], "big")
    crc_at = idat + 4 + length
    bad_crc = good[:crc_at] + bytes([good[crc_at] ^ 1]) + good[crc_at + 1:]
    pixels = np.asarray(Image.open(io.BytesIO(bad_crc)))  # Pillow alone accepts it
    np.testing.assert_array_equal(pixels, rgb[:20, :24])
    for name, data in (("crc.png", bad_crc), ("flip.png", png_with_flipped_bit(good, length // 2))):
        with pytest.raises(ImageDecodeError) as info:
            read_image(_write(tmp_path / name, data))
        assert "CRC mismatch in chunk 'IDAT'" in info.value.reason
    with pytest.raises(ImageDecodeError, match="IEND"):
        read_image(_write(tmp_path / "noend.png", good[:-12]))


def test_decoder_warnings_are_errors_naming_the_file(tmp_path, rgb, monkeypatch):
    from PIL import ImageFile

    path = _write(tmp_path / "warns.png", png_bytes(rgb[:8, :8]))
    original = ImageFile.ImageFile.load

    def load(self):
        warnings.warn("something odd in the data", UserWarning)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    with pytest.raises(ImageDecodeError) as info:
        read_image(path)
    assert str(path) in str(info.value) and "something odd" in info.value.reason


def test_tifffile_messages_carry_the_file_name(tmp_path, monkeypatch, caplog):
    import logging

    import tifffile

    path = tmp_path / "t.tif"
    tifffile.imwrite(path, np.zeros((8, 8), np.uint8))
    original = tifffile.TiffPage.asarray

    def asarray(self, *args, **kwargs):
        logging.getLogger("tifffile").warning("a tile could not be decoded")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffPage, "asarray", asarray)
    with caplog.at_level(logging.WARNING, logger="camid_gpu.io"), pytest.raises(ImageDecodeError) as info:
        read_image(path)
    assert "a tile could not be decoded" in info.value.reason and str(path) in str(info.value)
    assert any(str(path) in r.getMessage() for r in caplog.records if r.name == "camid_gpu.io")


def test_truncated_images_stay_errors_whatever_pillow_is_told(tmp_path, rgb, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = _write(tmp_path / "t.bmp", _bmp(rgb)[:-500])
    with pytest.raises(ImageDecodeError):
        read_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for the caller


def _bmp(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="BMP")
    return buffer.getvalue()


# -- 8: 16-bit colour PNG ----------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [3, 4])
def test_sixteen_bit_colour_png_keeps_sixteen_bits(tmp_path, channels):
    rng = np.random.default_rng(channels)
    data = rng.integers(0, 65536, (9, 11, channels), dtype=np.uint16)
    path = _write(tmp_path / "c16.png", png_bytes(data, filters=(0, 1, 2, 3, 4)))  # every filter type
    pixels, info = read_image(path)
    assert pixels.dtype == np.uint16 and info.bit_depth == 16 and info.format == "PNG"
    np.testing.assert_array_equal(pixels, data[..., :3])


def test_sixteen_bit_gray_alpha_png_is_refused_not_truncated(tmp_path):
    data = np.random.default_rng(0).integers(0, 65536, (6, 5, 2), dtype=np.uint16)
    with pytest.raises(ImageDecodeError, match="cannot keep its 16 bits"):
        read_image(_write(tmp_path / "la16.png", png_bytes(data)))


# -- 9: format allow-list -----------------------------------------------------------------------------
def test_only_allowed_formats_are_decoded(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    def no_ghostscript(*args, **kwargs):
        raise AssertionError("Ghostscript must never run on evidence")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_ghostscript)
    cases = {"eps.jpg": (eps_bytes(), "EPS"), "gif.png": (gif_bytes(), "GIF"),
             "pdf.tif": (b"%PDF-1.4\n%...", "PDF"), "avif.jpg": (b"\x00\x00\x00\x18ftypavif" + bytes(40), "AVIF")}
    for name, (data, label) in cases.items():
        with pytest.raises(ImageDecodeError) as info:
            read_image(_write(tmp_path / name, data))
        assert label in info.value.reason and "JPEG, PNG, TIFF, BMP" in info.value.reason, name


# -- 10: regular files only ---------------------------------------------------------------------------
def _in_thread(func, timeout=10):
    out = {}

    def run():
        try:
            out["value"] = func()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "hung"
    return out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_and_devices_are_refused_without_reading(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    os.symlink("/dev/zero", tmp_path / "zero.jpg")
    for name, what in (("pipe.jpg", "FIFO"), ("zero.jpg", "character device")):
        out = _in_thread(lambda: read_image(tmp_path / name))
        assert isinstance(out.get("error"), ImageUnreadableError), (name, out)
        assert what in out["error"].reason and "not a regular file" in out["error"].reason


def test_symlink_to_a_regular_file_is_fine(tmp_path, rgb):
    target = _write(tmp_path / "real.png", png_bytes(rgb[:10, :10]))
    os.symlink(target, tmp_path / "link.png")
    pixels, _ = read_image(tmp_path / "link.png")
    np.testing.assert_array_equal(pixels, rgb[:10, :10])


# -- 11: file-size and decoded-size limits ------------------------------------------------------------
def test_file_size_limit_is_checked_before_reading(tmp_path):
    sparse = tmp_path / "sparse.jpg"
    with open(sparse, "wb") as handle:
        handle.truncate(3 * 2**30)  # 3 GiB, sparse: nothing is written
    t0 = time.perf_counter()
    with pytest.raises(ImageDecodeError) as info:
        read_image(sparse)
    assert "file-size limit" in info.value.reason and time.perf_counter() - t0 < 2
    small = _write(tmp_path / "small.png", png_bytes(np.zeros((4, 4), np.uint8)))
    with pytest.raises(ImageDecodeError, match="file-size limit"):
        read_image(small, limits=InputLimits(max_file_bytes=20))


def test_decoded_size_limit_before_allocation(tmp_path, rgb):
    import tifffile

    tiled = tmp_path / "tiles.tif"
    tifffile.imwrite(tiled, np.zeros((512, 512), np.uint16), tile=(64, 64), compression="zlib")
    png = _write(tmp_path / "p.png", png_bytes(rgb[:40, :40]))
    limits = InputLimits(max_decoded_bytes=4000)
    for path in (tiled, png, _write(tmp_path / "j.jpg", jpeg_bytes(natural_image(200, 200, seed=1, channels=3)))):
        with pytest.raises(ImageDecodeError, match="decoded-size limit"):
            read_image(path, limits=limits)
    # the default allows them; a 13000 x 13000 16-bit RGBA header (1.35 GB decoded, fewer pixels than
    # Pillow's own bomb limit) is refused by default
    read_image(tiled)
    header = png_bytes(np.zeros((8, 8, 4), np.uint16))
    bomb = header[:16] + (13000).to_bytes(4, "big") * 2 + header[24:29]
    import zlib

    bomb = bomb + zlib.crc32(bomb[12:29]).to_bytes(4, "big") + header[33:]
    with pytest.raises(ImageDecodeError, match="decoded-size limit"):
        read_image(_write(tmp_path / "bomb.png", bomb))
    with pytest.raises(ValueError):
        InputLimits(max_file_bytes=0)


# -- 6 and 13: listing, omissions, duplicates ---------------------------------------------------------
def test_every_file_is_listed_or_skipped_with_a_reason(tmp_path, rgb):
    top = tmp_path / "evidence"
    (top / "sub").mkdir(parents=True)
    (top / ".hidden_dir").mkdir()
    _write(top / "a.png", png_bytes(rgb[:8, :8]))
    for name in ("b.gif", "c.heic", "d.DNG", ".e.jpg", "README", "sub/f.webp"):
        _write(top / name, b"x")
    _write(top / ".hidden_dir" / "g.jpg", b"x")
    os.symlink(top / "sub", top / "linked")
    os.symlink(top / "a.png", top / "sub" / "same.png")  # the same file again
    listing = scan_inputs(top, top / "a.png", str(top) + "/./a.png")
    # an image suffix makes an input whatever the content (c.heic, d.DNG: errors when decoded, never dropped)
    assert listing.images == [str(top / "a.png"), str(top / "c.heic"), str(top / "d.DNG")]
    reasons = [(os.path.relpath(s.path, top), s.reason) for s in listing.skipped]
    named = dict(reasons)
    assert {n for n, _ in reasons} == {"b.gif", ".e.jpg", "README", "sub/f.webp", ".hidden_dir",
                                       "linked", "sub/same.png", "a.png"}
    assert ".gif" in named["b.gif"] and "not an image camid reads" in named["b.gif"]
    assert "hidden" in named[".e.jpg"] and "hidden folder" in named[".hidden_dir"]
    assert "symbolic link to a folder already searched" in named["linked"]  # followed, but sub/ came first
    duplicates = [r for n, r in reasons if "duplicate" in r]
    assert len(duplicates) == 3 and all(str(top / "a.png") in r for r in duplicates)
    assert listing.counts() == {"found": 12, "images": 3, "skipped": 9}


def test_printable_escapes_what_a_terminal_would_obey():
    raw = os.fsdecode(b"caf\xe9\n\x1b[31mred\tx") + "\u2028y.jpg"
    shown = printable(raw)
    assert shown == "caf\\xe9\\n\\x1b[31mred\\tx\\u2028y.jpg"
    assert shown.isprintable() and printable("Größe/a b.jpg") == "Größe/a b.jpg"


# -- 16: the too-small message gives the stored size ---------------------------------------------------
def test_too_small_message_gives_the_stored_size(tmp_path):
    # an image too small for any comparison is an error; one smaller than a fingerprint's frame or clipping is
    # "not comparable" with it at identification (tests/acceptance/test_casework.py), with both sizes in the record
    path = _write(tmp_path / "portrait.png", png_bytes(natural_image(12, 8, seed=2)))
    with pytest.raises(ImageTooSmallError) as info:
        prepare_disputed(str(path), Params(clip=(80, 80)), (120, 160))
    assert "12x8 (rows x columns, as stored)" in info.value.reason and "16x16" in info.value.reason


# -- the command line: a mixed hostile folder ----------------------------------------------------------
@pytest.fixture(scope="module")
def fingerprints(tmp_path_factory, two_camera_store):
    root = tmp_path_factory.mktemp("h9io")
    shutil.copytree(two_camera_store(), root, dirs_exist_ok=True)
    return root


def test_identify_over_a_hostile_folder(fingerprints, tmp_path, capsys):
    root = fingerprints
    good = sorted((root / "data" / "disputed" / "C01").iterdir())[0]
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    rgb = natural_image(160, 192, seed=2, channels=3)
    weird = os.fsencode(str(evidence)) + b"/caf\xe9\n\x1b[2J fake row.jpg"  # not UTF-8, a newline, an escape
    with open(weird, "wb") as handle:
        handle.write(good.read_bytes())
    files = {
        "01_cut.jpg": jpeg_cut_with_eoi(jpeg_bytes(rgb)),
        "02_crc.png": png_with_flipped_bit(png_bytes(rgb[:40, :40], filters=(1,)), 3),
        "03_eps.jpg": eps_bytes(),
        "04_note.gif": gif_bytes(),
        ".05_hidden.jpg": good.read_bytes(),
    }
    for name, data in files.items():
        _write(evidence / name, data)
    os.mkfifo(evidence / "06_pipe.jpg")
    before = {p: _read(p) for p in (os.path.join(os.fsencode(evidence), n) for n in
                                                 os.listdir(os.fsencode(evidence))) if os.path.isfile(p)
              and not os.path.islink(p) and not p.endswith(b"pipe.jpg")}
    run, csv_path, json_path = tmp_path / "run", tmp_path / "out.csv", tmp_path / "out.json"
    out = _in_thread(lambda: main(["identify", str(root / "fp"), str(evidence), str(evidence / "01_cut.jpg"),
                                   "-o", str(run), "--csv", str(csv_path), "--json", str(json_path), "--quiet"]),
                     timeout=120)
    assert out.get("value") == EXIT_PARTIAL, out
    captured = capsys.readouterr()
    records = [json.loads(line) for line in (run / "results.jsonl").read_text(encoding="ascii").splitlines()]
    by_name = {os.path.basename(r["path"]): r for r in records}
    weird_name = os.fsdecode(os.path.basename(weird))
    assert by_name[weird_name]["error"] is None and by_name[weird_name]["pce"]["decision"] == "C01"
    assert os.fsencode(by_name[weird_name]["path"]) == weird  # the raw name, losslessly
    for name in ("01_cut.jpg", "02_crc.png", "03_eps.jpg"):
        assert by_name[name]["error"]["kind"] == "decode", name
    assert "FIFO" in by_name["06_pipe.jpg"]["error"]["reason"]
    assert len(records) == 5  # 01_cut.jpg given twice: analysed once
    manifest = json.loads((run / "manifest.json").read_text())
    skipped = {os.path.basename(s["path"]): s["reason"] for s in manifest["skipped_inputs"]}
    assert set(skipped) == {"04_note.gif", ".05_hidden.jpg", "01_cut.jpg"} and "duplicate" in skipped["01_cut.jpg"]
    assert manifest["inputs_found"] == {"found": 8, "images": 5, "skipped": 3}
    # the console: no raw control characters, the full path, the skipped files and the counts
    for text in (captured.out, captured.err):
        assert "\x1b" not in text and "\udce9" not in text
        assert not any(line.startswith(" fake row") for line in text.splitlines())
    assert "caf\\xe9\\n\\x1b[2J fake row.jpg" in captured.out and str(evidence) in captured.out
    assert captured.err.count("camid: skipped:") == 3
    assert "8 files found: 5 images, 3 skipped" in captured.out
    # CSV: valid UTF-8, the name escaped; JSON: the raw name kept
    rows = list(csv.reader(csv_path.read_text(encoding="utf-8").splitlines()))
    assert any(row[0].endswith("caf\\xe9\\n\\x1b[2J fake row.jpg") for row in rows)
    assert any(os.fsencode(r["path"]) == weird for r in json.loads(json_path.read_text())["images"])
    # the report lists the skipped files; the inputs are byte-identical
    assert main(["report", str(run), "-o", str(tmp_path / "report.html")]) == 0
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "04_note.gif" in html and "not analysed" in html.lower()
    for path, data in before.items():
        assert _read(path) == data


def _read(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def test_limit_options_reach_the_decoder(fingerprints, tmp_path):
    good = sorted((fingerprints / "data" / "disputed" / "C01").iterdir())[0]
    run = tmp_path / "run"
    rc = main(["identify", str(fingerprints / "fp"), str(good), "-o", str(run), "--quiet", "--max-decoded-size", "10K"])
    assert rc == EXIT_PARTIAL
    record = json.loads((run / "results.jsonl").read_text().splitlines()[0])
    assert "decoded-size limit" in record["error"]["reason"]
    assert main(["identify", str(fingerprints / "fp"), str(good), "-o", str(run), "--max-file-size", "banana"]) == 1


def test_fingerprint_lists_skipped_references(tmp_path, capsys):
    make_dataset(tmp_path / "data", cameras=1, per_model=1, refs=3, disputed_flat=0, disputed_natural=0,
                 height=96, width=112, seed=3)
    refs = tmp_path / "data" / "refs"
    camera = sorted(p for p in refs.iterdir() if p.is_dir())[0]
    _write(camera / "note.gif", gif_bytes())
    _write(camera / ".DS_Store", b"\0")
    assert main(["fingerprint", str(refs), "-o", str(tmp_path / "fp"), "--clip", "64", "--refs", "all",
                 "--method", "pce", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("camid: skipped:") == 2 and "note.gif" in err and ".DS_Store" in err
    manifest = json.loads((tmp_path / "fp" / "manifest.json").read_text())
    assert {os.path.basename(s["path"]) for s in manifest["skipped_inputs"]} == {"note.gif", ".DS_Store"}
