"""Image input: formats, bit depths, modes, EXIF, hashing, clipping and the error paths."""
from __future__ import annotations

import hashlib
import os
import stat

import numpy as np
import pytest
import tifffile
from conftest import natural_image
from PIL import Image

from camid_gpu.config import parse_clip
from camid_gpu.errors import ImageDecodeError, ImageError, ImageNotFoundError, ImageTooSmallError, ImageUnreadableError
from camid_gpu.io.decode import read_image
from camid_gpu.io.geometry import center_clip, clip_window, green_channel
from camid_gpu.io.listing import list_images


@pytest.fixture
def rgb():
    return natural_image(30, 41, seed=1, channels=3)


@pytest.mark.parametrize("suffix,fmt", [(".png", "PNG"), (".bmp", "BMP"), (".tif", "TIFF")])
def test_lossless_round_trip(tmp_path, rgb, suffix, fmt):
    path = tmp_path / f"a{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, rgb)
    else:
        Image.fromarray(rgb).save(path)
    pixels, info = read_image(path)
    np.testing.assert_array_equal(pixels, rgb)
    assert info.format == fmt and (info.height, info.width, info.channels, info.bit_depth) == (30, 41, 3, 8)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.file_size == path.stat().st_size


def test_jpeg_with_exif(tmp_path, rgb):
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "Maker", "ModelZ", 6
    path = tmp_path / "a.jpg"
    Image.fromarray(rgb).save(path, quality=95, exif=exif)
    pixels, info = read_image(path)
    assert pixels.shape == (30, 41, 3) and pixels.dtype == np.uint8
    assert info.exif == {"make": "Maker", "model": "ModelZ", "orientation": 6}
    # the orientation is reported, never applied: pixels keep the stored grid
    assert info.height == 30 and info.width == 41


def test_sixteen_bit_png_and_tiff(tmp_path):
    data = (np.arange(20 * 24, dtype=np.uint16).reshape(20, 24) * 97)
    Image.fromarray(data).save(tmp_path / "g16.png")
    tifffile.imwrite(tmp_path / "g16.tif", data)
    rgb16 = np.stack([data, data // 2, data // 3], -1)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    for name, expected in (("g16.png", data), ("g16.tif", data), ("rgb16.tif", rgb16)):
        pixels, info = read_image(tmp_path / name)
        assert pixels.dtype == np.uint16 and info.bit_depth == 16, name
        np.testing.assert_array_equal(pixels, expected)


def test_modes_gray_rgba_palette(tmp_path, rgb):
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(tmp_path / "pal.png")
    gray, _ = read_image(tmp_path / "gray.png")
    assert gray.shape == (30, 41)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png")[0], rgb)  # alpha dropped
    pal, info = read_image(tmp_path / "pal.png")
    assert pal.shape == (30, 41, 3) and info.channels == 3


def test_green_and_clip_geometry(rgb):
    assert green_channel(rgb).shape == (30, 41)
    np.testing.assert_array_equal(green_channel(rgb), rgb[..., 1])
    # floor((size - clip) / 2), MATLAB centerCropWindow2d
    assert clip_window(30, 41, (10, 10)) == (10, 15)
    assert clip_window(31, 41, (10, 11)) == (10, 15)
    clipped = center_clip(rgb, (10, 12))
    np.testing.assert_array_equal(clipped, rgb[10:20, 14:26])
    assert center_clip(rgb, None) is rgb


def test_parse_clip():
    assert parse_clip("1000") == (1000, 1000)
    assert parse_clip("768x1024") == (768, 1024)
    assert parse_clip("full") is None and parse_clip(None) is None
    with pytest.raises(ValueError, match="at least 16x16"):
        parse_clip(8)
    with pytest.raises(ValueError, match="N, HxW or 'full'"):
        parse_clip("big")


def test_too_small_for_clip_names_the_file(rgb):
    with pytest.raises(ImageTooSmallError, match=r"x\.jpg: image is 30x41.*smaller than the 100x100 clipping"):
        center_clip(rgb, (100, 100), "x.jpg")


def _expect(path, exc_type, reason):
    with pytest.raises(exc_type) as info:
        read_image(path)
    assert info.value.path == os.fspath(path)
    assert reason in info.value.reason
    assert isinstance(info.value, ImageError)


def test_error_paths(tmp_path, rgb):
    _expect(tmp_path / "missing.jpg", ImageNotFoundError, "no such file")
    (tmp_path / "empty.jpg").write_bytes(b"")
    _expect(tmp_path / "empty.jpg", ImageDecodeError, "empty file")
    (tmp_path / "text.jpg").write_text("not an image at all")
    _expect(tmp_path / "text.jpg", ImageDecodeError, "not a recognised image format")
    Image.fromarray(rgb).save(tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    _expect(tmp_path / "cut.jpg", ImageDecodeError, "truncated or damaged")
    Image.fromarray(rgb).save(tmp_path / "full.png")
    png = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    _expect(tmp_path / "cut.png", ImageDecodeError, "truncated or damaged")
    os.mkdir(tmp_path / "dir.jpg")
    _expect(tmp_path / "dir.jpg", ImageUnreadableError, "is a directory")
    os.symlink(tmp_path / "loop_b.jpg", tmp_path / "loop_a.jpg")
    os.symlink(tmp_path / "loop_a.jpg", tmp_path / "loop_b.jpg")
    _expect(tmp_path / "loop_a.jpg", ImageUnreadableError, "symbolic link loop")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    _expect(tmp_path / "cmyk.jpg", ImageDecodeError, "CMYK")
    tifffile.imwrite(tmp_path / "nan.tif", np.full((8, 8), np.nan, np.float32))
    _expect(tmp_path / "nan.tif", ImageDecodeError, "NaN or Inf")
    tifffile.imwrite(tmp_path / "float.tif", np.ones((8, 8), np.float32))
    _expect(tmp_path / "float.tif", ImageDecodeError, "floating-point")


def test_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("L", (4000, 3000)).save(path)
    with pytest.raises(ImageDecodeError, match="exceeds the limit of 1000000 pixels"):
        read_image(path, max_pixels=1_000_000)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_permissions(tmp_path, rgb):
    path = tmp_path / "locked.png"
    Image.fromarray(rgb).save(path)
    path.chmod(0)
    try:
        _expect(path, ImageUnreadableError, "permission denied")
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_inputs_are_never_modified(tmp_path, rgb):
    path = tmp_path / "evidence.jpg"
    Image.fromarray(rgb).save(path, quality=90)
    path.chmod(0o444)
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    read_image(path)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_list_images(tmp_path, rgb):
    (tmp_path / "b").mkdir()
    for name in ("b/2.png", "1.JPG", "notes.txt", ".hidden.png"):
        (tmp_path / name).write_bytes(b"x")
    assert list_images(tmp_path) == [str(tmp_path / "1.JPG"), str(tmp_path / "b" / "2.png")]
    assert list_images(tmp_path / "notes.txt") == [str(tmp_path / "notes.txt")]
