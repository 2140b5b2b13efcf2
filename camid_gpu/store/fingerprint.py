"""The fingerprint store: one ``<camera>.npz`` of arrays plus one ``<camera>.json`` of metadata.

Format ``camid-fingerprint``, version 2. The JSON holds the camera name, the methods present, each
method's geometry (``geometry``: per method its centre ``clip`` [rows, columns] or null for the full
frame, and the ``shape`` of its arrays), the sensor size of the references (``source_shape``, rows x
columns as stored) and its orientation, every parameter that shaped the arrays, the software versions,
the reference files with their SHA-256, and the SHA-256 of the ``.npz``. Version 1 (one ``clip`` for
every method) is still read: its clip becomes every method's geometry. The ``.npz`` holds float32
arrays: ``k`` (method ``pce``: the PRNU fingerprint K) and ``mean_i0``, ``mean_prnu`` (method
``mahalanobis``: the pixel-wise means of I0 and PRNU over the R reference flats).

Files are written deterministically (fixed zip timestamps, sorted JSON keys), so the same inputs and
parameters give byte-identical stores. Loading checks the format, the version, every metadata field's
presence and type, the array hash, each array's declared shape (read from the ``.npy`` header before any
allocation), that arrays are finite and not degenerate (all zero or constant), the number of references,
that the ``camera`` field equals the file name and is unique in the store, and, when asked, that the
parameters equal the ones requested; anything else is refused by name. Saving checks the same arrays.

Loading a whole store, checked against its manifest, is :mod:`camid_gpu.store.loading`.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from camid_gpu._shared.files import read_regular, write_bytes_atomic
from camid_gpu._shared.jsonio import write_json
from camid_gpu._version import __version__
from camid_gpu.config import MAX_PIXELS, MIN_FINGERPRINT_STD, MIN_REFERENCES
from camid_gpu.errors import FingerprintError, FingerprintMismatchError

FORMAT = "camid-fingerprint"
VERSION = 2
#: versions this camid reads (1: one clip for every method)
READABLE_VERSIONS = (1, 2)
METHODS = ("pce", "mahalanobis")
_ARRAYS = {"pce": ("k",), "mahalanobis": ("mean_i0", "mean_prnu")}
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class CameraFingerprint:
    """A camera's fingerprint(s) and everything needed to reproduce and check them.

    Arrays are ``(h, w)`` float32 on each method's grid: the centre clipping ``clips[method]`` of the
    sensor frame, or the whole frame (``source_shape``, rows x columns as the references were stored)
    when that clip is None.
    """

    camera: str
    methods: tuple[str, ...]
    arrays: dict[str, np.ndarray]
    clips: dict[str, tuple[int, int] | None]
    source_shape: tuple[int, int]
    params: dict[str, Any]
    references: list[dict[str, Any]] = field(default_factory=list)
    software: dict[str, str] = field(default_factory=dict)
    arrays_sha256: str = ""  # of the .npz it was loaded from ("" when built in memory)

    def clip_of(self, method: str) -> tuple[int, int] | None:
        """The centre clipping of ``method``'s arrays, or None = the full sensor frame."""
        self._array(method, _ARRAYS[method][0])
        return self.clips.get(method)

    def shape_of(self, method: str) -> tuple[int, int]:
        """Shape (rows, columns) of ``method``'s arrays."""
        return tuple(self._array(method, _ARRAYS[method][0]).shape)  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        h, w = self.source_shape
        return "landscape" if w > h else "portrait" if h > w else "square"

    @property
    def k(self) -> np.ndarray:
        return self._array("pce", "k")

    @property
    def mean_i0(self) -> np.ndarray:
        return self._array("mahalanobis", "mean_i0")

    @property
    def mean_prnu(self) -> np.ndarray:
        return self._array("mahalanobis", "mean_prnu")

    def _array(self, method: str, name: str) -> np.ndarray:
        if method not in self.methods:
            raise FingerprintError(f"fingerprint of {self.camera!r} has no {method!r} method "
                                   f"(it has {', '.join(self.methods)}); rebuild it with --method {method} or both")
        return self.arrays[name]


def software_versions() -> dict[str, str]:
    import platform

    from camid_gpu._shared.versions import installed_version

    # the installed distributions' versions: a module attribute can lag them (pywt said 1.8.0 under 1.9.0)
    return {"camid_gpu": __version__, "numpy": installed_version("numpy"), "scipy": installed_version("scipy"),
            "pywavelets": installed_version("pywt"), "python": platform.python_version()}


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A .npz (loadable with numpy.load) with fixed timestamps, so equal arrays give equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(arrays[name], dtype=np.float32),
                                      allow_pickle=False)
            archive.writestr(info, payload.getvalue())
    return buffer.getvalue()


#: stems a camera may not take: its ``<camera>.json`` would be the store's run manifest (``manifest.json``),
#: which the fingerprint run writes after the cameras (the camera's metadata was silently replaced)
_RESERVED_NAMES = frozenset({"manifest"})


def check_camera_name(name: str) -> str:
    if not _NAME_OK.match(name):
        raise ValueError(f"camera name {name!r} must start with a letter or digit and contain only "
                         f"letters, digits, '.', '_' and '-'")
    if name.casefold() in _RESERVED_NAMES:
        raise ValueError(f"camera name {name!r} is reserved ({name}.json would be the fingerprint folder's "
                         f"manifest); rename the camera folder")
    return name


def save_fingerprint(fp: CameraFingerprint, directory: str | os.PathLike) -> str:
    """Write ``<camera>.npz`` and ``<camera>.json`` into ``directory``; returns the JSON path."""
    check_camera_name(fp.camera)
    for method in fp.methods:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
        for name in _ARRAYS[method]:
            if name not in fp.arrays:
                raise ValueError(f"method {method!r} needs array {name!r}")
        want = tuple(fp.clips.get(method) or fp.source_shape)
        for name in _ARRAYS[method]:
            if tuple(fp.arrays[name].shape) != want:
                raise ValueError(f"{fp.camera}: array {name!r} is {fp.arrays[name].shape}, but method {method!r} "
                                 f"has geometry {want} (clip {fp.clips.get(method)}, sensor {fp.source_shape})")
    check_arrays(fp.arrays, fp.camera)
    os.makedirs(directory, exist_ok=True)
    blob = _npz_bytes(fp.arrays)
    npz_path = os.path.join(directory, f"{fp.camera}.npz")
    write_bytes_atomic(npz_path, blob)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "camera": fp.camera,
        "methods": list(fp.methods),
        "arrays": {name: {"shape": list(a.shape), "dtype": "float32"} for name, a in sorted(fp.arrays.items())},
        "arrays_file": os.path.basename(npz_path),
        "arrays_sha256": hashlib.sha256(blob).hexdigest(),
        "geometry": {m: {"clip": list(fp.clips[m]) if fp.clips.get(m) else None,
                         "shape": list(fp.arrays[_ARRAYS[m][0]].shape)} for m in fp.methods},
        "source_shape": list(fp.source_shape),
        "orientation": fp.orientation,
        "params": fp.params,
        "references": fp.references,
        "software": fp.software or software_versions(),
    }
    json_path = os.path.join(directory, f"{fp.camera}.json")
    return write_json(json_path, meta)


def _is_pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x > 0
                                                       for x in v)


def _is_clip(v: Any) -> bool:
    return v is None or _is_pair(v)


def _is_sha256(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and not v.strip("0123456789abcdef")


#: field -> (what it must be, check) of every fingerprint metadata file; ``version`` 1 has ``clip`` instead of
#: ``geometry``. ``references`` and ``software`` may be absent (older files), never of another type.
_FIELDS: dict[str, tuple[str, Any]] = {
    "camera": ("a camera name (text)", lambda v: isinstance(v, str) and bool(v)),
    "methods": (f"a non-empty list of methods out of {list(METHODS)}",
                lambda v: isinstance(v, list) and bool(v) and all(m in METHODS for m in v) and len(set(v)) == len(v)),
    "source_shape": ("[rows, columns], two positive integers", _is_pair),
    "arrays_file": ("a file name (text)", lambda v: isinstance(v, str) and bool(v)),
    "arrays_sha256": ("a SHA-256 (64 lower-case hexadecimal digits)", _is_sha256),
    "arrays": ("an object: array name -> {shape, dtype}", lambda v: isinstance(v, dict) and all(
        isinstance(a, dict) and isinstance(a.get("shape"), list) for a in v.values())),
    "params": ("an object", lambda v: isinstance(v, dict)),
}
_OPTIONAL_FIELDS: dict[str, tuple[str, Any]] = {
    "references": ("a list", lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v)),
    "software": ("an object", lambda v: isinstance(v, dict)),
}


def _check_metadata(meta: dict[str, Any], json_path: str) -> None:
    """Raise FingerprintError naming the file and the first field that is missing or of the wrong type."""
    fields = dict(_FIELDS)
    if meta["version"] == 1:
        fields["clip"] = ("null (full frame) or [rows, columns]", _is_clip)
    else:
        methods = meta.get("methods") if isinstance(meta.get("methods"), list) else []
        fields["geometry"] = ("an object: method -> {clip: null or [rows, columns]}", lambda v: isinstance(v, dict)
                              and all(isinstance(v.get(m), dict) and "clip" in v[m] and _is_clip(v[m]["clip"])
                                      for m in methods if m in METHODS))
    for name, (what, ok) in fields.items():
        if name not in meta:
            raise FingerprintError(f"{json_path}: fingerprint metadata field {name!r} is missing (it must be {what}); "
                                   f"the file is incomplete or was edited: rebuild the fingerprint")
        if not ok(meta[name]):
            raise FingerprintError(f"{json_path}: fingerprint metadata field {name!r} is "
                                   f"{json.dumps(meta[name])[:80]}, but it must be {what}; the file is damaged or "
                                   f"was edited: rebuild the fingerprint")
    for name, (what, ok) in _OPTIONAL_FIELDS.items():
        if name in meta and not ok(meta[name]):
            raise FingerprintError(f"{json_path}: fingerprint metadata field {name!r} is "
                                   f"{json.dumps(meta[name])[:80]}, but it must be {what}; rebuild the fingerprint")


def _refuse_copies(references: list[dict[str, Any]], json_path: str) -> None:
    """A fingerprint whose references include one photo twice (the same bytes, or the same decoded pixels in
    another container, recorded as ``pixels_sha256``) is one photo's evidence counted twice: refused, naming both
    (a cluster of four containers of one photo made a "camera" at NCC 1.0)."""
    for key, what in (("sha256", "bytes"), ("pixels_sha256", "decoded pixels")):
        first: dict[Any, Any] = {}
        for ref in references:
            digest = ref.get(key)
            if key == "sha256" and isinstance(digest, str) and isinstance(ref.get("video_frame"), dict):
                # the frames of one reference video share its container's bytes: each frame is a reference once
                digest = (digest, ref["video_frame"].get("video_frame"))
            if isinstance(digest, (str, tuple)) and digest in first:
                raise FingerprintError(f"{json_path}: built from references with the same {what}, {first[digest]} "
                                       f"and {ref.get('path')} (one photo counted twice); rebuild it from distinct "
                                       f"images")
            if isinstance(digest, (str, tuple)):
                first[digest] = ref.get("path")


def load_fingerprint(json_path: str | os.PathLike, expect: dict[str, Any] | None = None) -> CameraFingerprint:
    """Load one camera's fingerprint from its JSON file (the .npz beside it).

    ``expect``: parameters that must equal the stored ones (e.g. ``{"clip": [1000, 1000]}`` or any
    key of ``params``); a difference raises :class:`FingerprintMismatchError` naming each one.
    """
    json_path = os.fspath(json_path)
    try:
        meta = json.loads(read_regular(json_path).decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise FingerprintError(f"{json_path}: cannot read fingerprint metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FingerprintError(f"{json_path}: not a camid fingerprint (format "
                               f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") not in READABLE_VERSIONS:
        raise FingerprintMismatchError(f"{json_path}: fingerprint format version {meta.get('version')!r}, "
                                       f"this camid reads versions {', '.join(map(str, READABLE_VERSIONS))}; "
                                       f"rebuild the fingerprint")
    _check_metadata(meta, json_path)
    methods = tuple(meta["methods"])
    source_shape = (int(meta["source_shape"][0]), int(meta["source_shape"][1]))
    if meta["version"] == 1:  # one clip for every method
        clips = {m: tuple(meta["clip"]) if meta["clip"] else None for m in methods}
    else:
        clips = {m: tuple(meta["geometry"][m]["clip"]) if meta["geometry"][m]["clip"] else None for m in methods}
    arrays_file = meta["arrays_file"]
    if os.path.basename(arrays_file) != arrays_file:
        raise FingerprintError(f"{json_path}: fingerprint metadata field 'arrays_file' {arrays_file!r} is not a plain "
                               f"file name; rebuild the fingerprint")
    npz_path = os.path.join(os.path.dirname(json_path), arrays_file)
    stem = os.path.splitext(os.path.basename(json_path))[0]
    if meta.get("camera") != stem:
        raise FingerprintError(f"{json_path}: its 'camera' field is {meta.get('camera')!r} but the file is named "
                               f"{stem!r}; a fingerprint's camera must equal its file name (edited or renamed file)")
    if arrays_file != f"{stem}.npz":  # C01.json pointing at C02.npz (with C02's hash) scored C02's K as C01's
        raise FingerprintError(f"{json_path}: its arrays file is {arrays_file!r}; camera {stem!r} keeps its arrays "
                               f"in {stem}.npz (another camera's arrays, or an edited file)")
    try:
        blob = read_regular(npz_path)
    except OSError as exc:
        raise FingerprintError(f"{npz_path}: cannot read fingerprint arrays ({exc.strerror or exc})") from None
    if hashlib.sha256(blob).hexdigest() != meta["arrays_sha256"]:
        raise FingerprintError(f"{npz_path}: SHA-256 differs from the one recorded in {json_path} "
                               f"(the arrays were changed or damaged)")
    arrays = _read_arrays(blob, meta, npz_path)
    for method in methods:
        for name in _ARRAYS.get(method, ()):
            if name not in arrays:
                raise FingerprintError(f"{npz_path}: method {method!r} needs array {name!r}, which is missing")
    check_arrays(arrays, f"{npz_path}")
    refs = meta["params"].get("refs", len(meta.get("references", [])))
    if not isinstance(refs, int) or refs < MIN_REFERENCES:
        raise FingerprintError(f"{json_path}: built from {refs!r} reference(s); at least {MIN_REFERENCES} are "
                               f"needed (config.MIN_REFERENCES)")
    _refuse_copies(meta.get("references") or [], json_path)
    fp = CameraFingerprint(camera=meta["camera"], methods=methods, arrays=arrays, clips=clips,
                           source_shape=source_shape, params=meta["params"],
                           references=meta.get("references", []), software=meta.get("software", {}),
                           arrays_sha256=meta["arrays_sha256"])
    for method in methods:
        want = clips[method] or source_shape
        for name in _ARRAYS.get(method, ()):
            if name not in arrays or tuple(arrays[name].shape) != tuple(want):
                got = tuple(arrays[name].shape) if name in arrays else "missing"
                raise FingerprintError(f"{npz_path}: array {name!r} of method {method!r} is {got}, expected "
                                       f"{tuple(want)} (clip {clips[method]}, sensor {source_shape})")
    if expect:
        check_params(fp, expect, json_path)
    return fp


def _read_arrays(blob: bytes, meta: dict[str, Any], where: str) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz``, each checked against the metadata's declared shape from its ``.npy`` header
    before it is allocated (a tampered header declaring 40000x40000 is refused, not loaded)."""
    declared = meta.get("arrays") if isinstance(meta.get("arrays"), dict) else {}
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            for member in archive.namelist():
                name = member[:-4] if member.endswith(".npy") else member
                want = declared.get(name) if isinstance(declared.get(name), dict) else None
                if want is None:
                    raise FingerprintError(f"{where}: array {name!r} is not declared in the metadata")
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                              else np.lib.format.read_array_header_2_0)(handle)
                    shape, fortran, dtype = header
                    if list(shape) != want.get("shape") or dtype != np.dtype(np.float32) or len(shape) != 2:
                        raise FingerprintError(f"{where}: array {name!r} is {dtype} {list(shape)}, the metadata "
                                               f"declares float32 {want.get('shape')}")
                    count = int(np.prod(shape))
                    if count > MAX_PIXELS:  # consistent metadata too: a deflated bomb would be inflated whole
                        raise FingerprintError(f"{where}: array {name!r} declares {list(shape)} = {count} samples, "
                                               f"over the {MAX_PIXELS}-pixel limit of any image (config.MAX_PIXELS); "
                                               f"not read")
                    data = handle.read(count * 4 + 1)
                    if len(data) != count * 4:
                        raise FingerprintError(f"{where}: array {name!r} has {len(data)} bytes of data, "
                                               f"{count * 4} expected")
                    arrays[name] = np.frombuffer(data, dtype=np.float32).reshape(shape, order="F" if fortran else "C")
    except FingerprintError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise FingerprintError(f"{where}: damaged fingerprint arrays ({exc})") from None
    return {k: np.ascontiguousarray(v) for k, v in arrays.items()}


def check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """Refuse arrays that hold NaN or infinities, or are degenerate (all zero or constant)."""
    for name, a in sorted(arrays.items()):
        if a.size == 0 or a.ndim != 2:
            raise FingerprintError(f"{where}: fingerprint array {name!r} has shape {a.shape}; a 2-D array is needed")
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise FingerprintError(f"{where}: fingerprint array {name!r} has {bad} non-finite values (NaN or "
                                   f"infinite); refused")
        if float(np.std(a, dtype=np.float64)) < MIN_FINGERPRINT_STD:
            raise FingerprintError(f"{where}: fingerprint array {name!r} is degenerate (constant "
                                   f"{float(a.flat[0]):g} everywhere: no usable reference content); refused")


def check_params(fp: CameraFingerprint, expect: dict[str, Any], where: str = "") -> None:
    """Raise FingerprintMismatchError listing every expected parameter that differs.

    ``pce_clip`` / ``mahalanobis_clip`` are compared with the geometry of those methods (when present).
    """
    stored = dict(fp.params)
    for method in fp.methods:
        stored[f"{method}_clip"] = list(fp.clips[method]) if fp.clips.get(method) else None
    diffs = []
    for key, value in expect.items():
        want = list(value) if isinstance(value, tuple) else value
        if key not in stored:
            diffs.append(f"{key}: not recorded (expected {want!r})")
        elif stored[key] != want:
            diffs.append(f"{key}: stored {stored[key]!r}, requested {want!r}")
    if diffs:
        raise FingerprintMismatchError(f"{where or fp.camera}: fingerprint of {fp.camera!r} was made with other "
                                       f"parameters: " + "; ".join(diffs))


def check_geometry(store: list[CameraFingerprint], where: str = "") -> None:
    """Raise FingerprintMismatchError when two fingerprints of a store use different geometries (clips) for
    one method, or have one camera name twice; sensor sizes may differ."""
    names = [fp.camera for fp in store]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise FingerprintMismatchError(f"{where}: camera name(s) {twice} appear more than once")
    for method in METHODS:
        having = [fp for fp in store if method in fp.methods]
        clips = {fp.clips.get(method) for fp in having}
        if len(clips) > 1:
            first = having[0]
            other = next(fp for fp in having if fp.clips.get(method) != first.clips.get(method))
            show = lambda c: "full frame" if c is None else f"{c[0]}x{c[1]} clip"  # noqa: E731
            raise FingerprintMismatchError(
                f"{where}: the {method} fingerprints of {first.camera!r} ({show(first.clips.get(method))}) and "
                f"{other.camera!r} ({show(other.clips.get(method))}) have different geometries; rebuild them with "
                f"one --{method}-clip")
