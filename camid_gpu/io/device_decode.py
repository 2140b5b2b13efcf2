"""JPEG decoding on the GPU (nvJPEG through ``torchvision.io.decode_jpeg``), with the CPU decoder as fallback.

Which files go to the GPU is decided from the JPEG frame header (:func:`device_unsupported`): baseline or
extended sequential Huffman JPEGs with 8-bit samples and 1 (gray) or 3 (YCbCr) components. Everything else
(other formats, progressive, lossless, arithmetic-coded, 12-bit, CMYK/YCCK, Adobe RGB-coded) is decoded on
the CPU, and so is any file the GPU decoder rejects: each record says which decoder made its pixels
(``decoder: cpu|gpu``). The SHA-256 is always of the file's bytes, which both decoders read from memory.

GPU pixels are not bit-identical to Pillow's (libjpeg-turbo): the inverse DCT rounds differently and the
chroma planes of 4:2:0/4:2:2 files are upsampled differently, so a few values differ by one or more levels.
The PRNU decisions do not depend on that (tests/io/test_device_decode.py; README "GPU decoding").
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from camid_gpu._shared.optional import import_optional
from camid_gpu.backend import Backend
from camid_gpu.config import DECODE_CHOICES
from camid_gpu.errors import CamidError

#: start-of-frame markers: baseline and extended sequential Huffman (what the GPU path takes) ...
_SEQUENTIAL = {0xC0: "baseline", 0xC1: "extended sequential"}
#: ... and every other coding process (CPU)
_OTHER_SOF = {0xC2: "progressive", 0xC3: "lossless", 0xC5: "differential sequential",
              0xC6: "differential progressive", 0xC7: "differential lossless", 0xC9: "arithmetic sequential",
              0xCA: "arithmetic progressive", 0xCB: "arithmetic lossless", 0xCD: "differential arithmetic",
              0xCE: "differential arithmetic progressive", 0xCF: "differential arithmetic lossless"}


@dataclass(frozen=True)
class JpegFrame:
    """What the start-of-frame segment says: coding process, sample precision (bits), size, components,
    the Adobe APP14 colour transform (None without an Adobe segment), whether a JFIF APP0 segment came
    first, and the component identifiers (bytes of the frame header)."""

    process: str
    precision: int
    height: int
    width: int
    components: int
    adobe_transform: int | None
    jfif: bool = False
    component_ids: tuple[int, ...] = ()


def jpeg_frame(data: bytes) -> JpegFrame | None:
    """Parse the markers of a JPEG up to its start-of-frame; None when ``data`` is not a readable JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    pos, adobe, jfif = 2, None, False
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker == 0xD9:  # end of image before any frame header
            return None
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        body = data[pos + 4:pos + 2 + length]
        if length < 2 or len(body) != length - 2:
            return None
        if marker == 0xEE and body[:5] == b"Adobe" and len(body) >= 12:
            adobe = body[11]
        if marker == 0xE0 and body[:5] == b"JFIF\0":
            jfif = True
        if marker in _SEQUENTIAL or marker in _OTHER_SOF:
            if len(body) < 6:
                return None
            precision, height, width, components = struct.unpack(">BHHB", body[:6])
            ids = tuple(body[6 + 3 * c] for c in range(components) if 6 + 3 * c < len(body))
            return JpegFrame(_SEQUENTIAL.get(marker) or _OTHER_SOF[marker], precision, height, width, components,
                             adobe, jfif, ids)
        if marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def device_unsupported(data: bytes) -> str | None:
    """Why the GPU decoder does not take these bytes, or None when it does (see the module docstring)."""
    frame = jpeg_frame(data)
    if frame is None:
        return "not a JPEG"
    if frame.process not in _SEQUENTIAL.values():
        return f"{frame.process} JPEG"
    if frame.precision != 8:
        return f"{frame.precision}-bit JPEG"
    if frame.components not in (1, 3):
        return f"{frame.components}-component JPEG (CMYK/YCCK)"
    if frame.components == 3 and frame.adobe_transform == 0:
        return "RGB-coded JPEG (Adobe transform 0)"
    if (frame.components == 3 and frame.adobe_transform is None and not frame.jfif
            and frame.component_ids == tuple(b"RGB")):
        # libjpeg reads such a file as RGB from its component names alone; a decoder that assumes YCbCr
        # would turn its colours, so the CPU decodes it
        return "RGB-coded JPEG (components named R, G, B)"
    if frame.height == 0 or frame.width == 0:
        return "JPEG with the height defined later (DNL marker)"
    return None


class DeviceJpegDecoder:
    """Batched JPEG decoding onto the backend's device.

    ``decode(encoded)`` takes file bytes and returns, per file, a native ``(H, W)`` or ``(H, W, 3)`` uint8
    array on the device, or the exception that decoding it raised (the caller decodes those on the CPU).
    ``decode_fn(list of 1-D uint8 tensors, device) -> list of (C, H, W) uint8 tensors`` defaults to
    ``torchvision.io.decode_jpeg``; tests pass a CPU stand-in.
    """

    name = "gpu"

    def __init__(self, bk: Backend, decode_fn: Callable[[list, Any], list] | None = None):
        self.torch = import_optional("torch", "torch", "GPU JPEG decoding")
        self.bk = bk
        self.device = bk.torch_device  # type: ignore[attr-defined]
        if decode_fn is None:
            try:
                tv_io = import_optional("torchvision.io", "gpu-decode", "GPU JPEG decoding (--decode gpu)")
            except ImportError:
                raise
            except Exception as exc:  # e.g. a torchvision built for another torch: its operators do not register
                raise CamidError(f"torchvision is installed but does not load beside torch {self.torch.__version__} "
                                 f"({type(exc).__name__}: {exc}); install the torchvision release made for this "
                                 f"torch") from exc
            decode_fn = lambda tensors, device: tv_io.decode_jpeg(  # noqa: E731
                tensors, mode=tv_io.ImageReadMode.UNCHANGED, device=device)
        self.decode_fn = decode_fn

    def decode(self, encoded: Sequence[bytes]) -> list[Any]:
        if not encoded:
            return []
        tensors = [self.torch.frombuffer(bytearray(data), dtype=self.torch.uint8) for data in encoded]
        try:
            planes = list(self.decode_fn(tensors, self.device))
        except Exception:  # one bad file fails the whole batch: decode one by one to find it
            planes = []
            for tensor in tensors:
                try:
                    planes.append(self.decode_fn([tensor], self.device)[0])
                except Exception as exc:
                    planes.append(exc)
        return [self._layout(p) for p in planes]

    def _layout(self, chw):
        """(C, H, W) -> (H, W) for gray, (H, W, 3) for colour: the host decoder's layout (errors pass through)."""
        if isinstance(chw, BaseException):
            return chw
        if chw.ndim != 3 or chw.shape[0] not in (1, 3) or chw.dtype != self.torch.uint8:
            return ValueError(f"GPU decoder returned {chw.dtype} of shape {tuple(chw.shape)}")
        return chw[0] if chw.shape[0] == 1 else chw.permute(1, 2, 0)

    # host-side helpers on decoded arrays, so that callers need not know the array library -------------
    def rot90(self, pixels, k: int):
        """Quarter turns of (H, W[, C]) pixels, as ``numpy.rot90``."""
        return self.torch.rot90(pixels, k, dims=(0, 1)) if k % 4 else pixels

    def contiguous(self, pixels):
        return pixels.contiguous()

    def block_means(self, green, f: int) -> np.ndarray:
        """Means of the f x f blocks of an (H, W) plane (the rest cropped), as a float64 host array."""
        h, w = green.shape
        blocks = green[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f)
        return blocks.to(self.torch.float64).mean(dim=(1, 3)).cpu().numpy()

    def to_host(self, pixels) -> np.ndarray:
        return pixels.cpu().numpy()


def decoder_for(choice: str, bk: Backend, decode_fn: Callable[[list, Any], list] | None = None
                ) -> DeviceJpegDecoder | None:
    """The GPU decoder for ``--decode choice`` on ``bk``, or None for the CPU decoder.

    "cpu": None. "gpu": a :class:`DeviceJpegDecoder`; raises ValueError when ``bk`` is not torch on a CUDA
    device (a ``decode_fn`` stand-in lifts that, for tests) and MissingExtraError without torchvision.
    "auto": the GPU decoder when ``bk`` is torch on CUDA and torchvision imports, else None.
    """
    if choice not in DECODE_CHOICES:
        raise ValueError(f"decode must be one of {DECODE_CHOICES}, got {choice!r}")
    on_cuda = getattr(bk, "name", "") == "torch" and str(bk.device).startswith("cuda")
    if choice == "cpu":
        return None
    if choice == "gpu":
        if not on_cuda and decode_fn is None:
            raise CamidError(f"--decode gpu needs the torch backend on a CUDA device, but the backend is "
                             f"{bk.describe()}; use --decode cpu or auto")
        return DeviceJpegDecoder(bk, decode_fn)
    if not on_cuda:
        return None
    try:
        return DeviceJpegDecoder(bk, decode_fn)
    except (ImportError, CamidError):  # torchvision absent or unusable: the CPU decodes
        return None
