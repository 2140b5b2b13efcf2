"""Broken and hostile files: each gets a per-file error record with its reason, the run goes on,
and the exit code says "completed with errors". Plus a fuzz test on mutated JPEG bytes."""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib

import numpy as np
import pytest
import tifffile
from conftest import natural_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from camid_gpu.cli import EXIT_PARTIAL, main
from camid_gpu.config import Params
from camid_gpu.errors import ImageError
from camid_gpu.io.decode import read_image
from camid_gpu.pipeline.prepare import prepare_disputed


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb's header)."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[12:29])  # type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, two_camera_store):
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(two_camera_store(), root, dirs_exist_ok=True)
    bad = root / "bad"
    bad.mkdir()
    good = sorted((root / "data" / "disputed" / "C01").iterdir())[0]
    rgb = natural_image(160, 192, seed=2, channels=3)
    (bad / "00_good.jpg").write_bytes(good.read_bytes())
    (bad / "01_zero.jpg").write_bytes(b"")
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, format="JPEG", quality=90)
    (bad / "02_truncated.jpg").write_bytes(jpeg.getvalue()[:700])
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    (bad / "03_truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 3])
    tif = io.BytesIO()
    tifffile.imwrite(tif, rgb)
    (bad / "04_truncated.tif").write_bytes(tif.getvalue()[:400])
    (bad / "05_text_named.jpg").write_text("this is a note, not a photograph")
    (bad / "06_png_named.jpg").write_bytes(png.getvalue())  # wrong extension, valid content: decoded by content
    Image.new("RGB", (1, 1)).save(bad / "07_1x1.png")
    Image.new("RGB", (3, 3)).save(bad / "08_3x3.png")
    (bad / "09_bomb.png").write_bytes(png_with_declared_size(200_000, 200_000))
    Image.fromarray(rgb).convert("CMYK").save(bad / "10_cmyk.jpg")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(bad / "11_palette.png")
    tifffile.imwrite(bad / "12_sixteen.tif", (rgb.astype(np.uint16) * 257))
    nan = np.full((160, 192), 100.0, np.float32)
    nan[5, 5], nan[6, 6] = np.nan, np.inf
    tifffile.imwrite(bad / "13_nan.tif", nan)
    os.mkdir(bad / "14_folder.jpg")
    os.symlink(bad / "15_loop_b.jpg", bad / "15_loop_a.jpg")
    os.symlink(bad / "15_loop_a.jpg", bad / "15_loop_b.jpg")
    return root


EXPECTED = {  # file -> error kind (None: analysed)
    "00_good.jpg": None, "01_zero.jpg": "decode", "02_truncated.jpg": "decode", "03_truncated.png": "decode",
    "04_truncated.tif": "decode", "05_text_named.jpg": "decode", "06_png_named.jpg": None,
    "07_1x1.png": "too-small", "08_3x3.png": "too-small", "09_bomb.png": "decode", "10_cmyk.jpg": "decode",
    "11_palette.png": None, "12_sixteen.tif": None, "13_nan.tif": "decode", "15_loop_a.jpg": "unreadable",
    "15_loop_b.jpg": "unreadable",
}


def test_every_hostile_file_gets_a_record_and_the_run_completes(corpus, capsys):
    run = corpus / "run"
    files = [str(corpus / "bad" / name) for name in sorted(os.listdir(corpus / "bad"))]
    rc = main(["identify", str(corpus / "fp"), *files, "-o", str(run), "--quiet"])
    assert rc == EXIT_PARTIAL
    records = {os.path.basename(r["path"]): r for r in
               (json.loads(line) for line in (run / "results.jsonl").read_text().splitlines())}
    expected = dict(EXPECTED, **{"14_folder.jpg": "unreadable"})
    assert set(records) == set(expected)
    for name, kind in expected.items():
        error = records[name]["error"]
        if kind is None:
            assert error is None, (name, error)
            assert records[name]["pce"]["scores"]
        else:
            assert error["kind"] == kind, (name, error)
            assert error["reason"]
    assert "possible decompression bomb" in records["09_bomb.png"]["error"]["reason"]
    assert "CMYK" in records["10_cmyk.jpg"]["error"]["reason"]
    assert "symbolic link loop" in records["15_loop_a.jpg"]["error"]["reason"]
    assert "is a directory" in records["14_folder.jpg"]["error"]["reason"]
    assert records["06_png_named.jpg"]["format"] == "PNG"
    assert records["12_sixteen.tif"]["bit_depth"] == 16
    assert records["00_good.jpg"]["pce"]["decision"] == "C01"
    err = capsys.readouterr().err
    assert err.count("camid: error:") == sum(1 for k in expected.values() if k)


@pytest.fixture(scope="module")
def seed_jpeg():
    buffer = io.BytesIO()
    Image.fromarray(natural_image(48, 64, seed=9, channels=3)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@settings(max_examples=120, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_mutated_jpeg_never_crashes(tmp_path, seed_jpeg, data):
    """Mutated JPEG bytes: either decoded into a valid array or refused with an ImageError."""
    raw = bytearray(seed_jpeg)
    for _ in range(data.draw(st.integers(1, 12), label="mutations")):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "set"]), label="op")
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)), label="pos")
        if op == "flip" and raw:
            raw[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del raw[pos:pos + data.draw(st.integers(1, 64))]
        elif op == "insert":
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
        elif raw:
            raw[pos] = data.draw(st.sampled_from([0x00, 0xFF, 0xD8, 0xD9, 0xC0, 0xDA]))
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(bytes(raw))
    try:
        pixels, info = read_image(path)
    except ImageError as exc:
        assert exc.path == str(path) and exc.reason
        return
    assert pixels.dtype in (np.uint8, np.uint16) and pixels.ndim in (2, 3)
    assert info.height == pixels.shape[0] and info.width == pixels.shape[1]
    try:
        prepare_disputed(str(path), Params(clip=(16, 16)), (48, 64))
    except ImageError:
        pass
