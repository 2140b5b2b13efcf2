"""The library under the chain of custody (issue 23, items 1-3, 11 and 12): the tamper suite of the library.

Every edit of the catalogue (camera names swapped, metadata edited, the version edited or recomputed, a kept
store manifest edited), of a screening row and of a fingerprint's arrays is detected by every command that reads
it: ``library search`` (and ``--resume``), ``link``, ``info``, ``list``, ``add``, ``retire``, ``verify`` and
``camid verify`` of an earlier search run; a consistent forgery (names swapped, metadata, manifest copy and
version recomputed) is caught by the version kept outside the library and by ``verify`` of an earlier search.
Every clean copy or move of the library is accepted. A library on read-only media is listed and searched.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3

import numpy as np
import pytest

from camid_gpu.cli import EXIT_FAIL, EXIT_OK, EXIT_PARTIAL, EXIT_VERIFY_FAILED, main
from camid_gpu.config import Params, RunConfig
from camid_gpu.datasets.synthetic import make_dataset
from camid_gpu.engine.runner import fingerprint_folder
from camid_gpu.errors import LibraryError
from camid_gpu.library import add_stores, init_library, library_info, search_library, verify_library
from camid_gpu.library import catalogue as cat
from library_stores import decoy_store

CONFIG = RunConfig(backend="numpy", progress=False)
CLI = ["--backend", "numpy", "--quiet", "--workers", "1"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three cameras (128x160, 6 references each) and three decoys in a library ``LIB``, one flat image per
    camera, and a search run ``RUN`` of them made on ``LIB``."""
    root = tmp_path_factory.mktemp("libcustody")
    make_dataset(root / "data", cameras=3, per_model=2, refs=6, disputed_flat=1, disputed_natural=0, height=128,
                 width=160, jpeg_quality=92, seed=11)
    fingerprint_folder(str(root / "data" / "refs"), str(root / "fp"), ("pce",), Params(refs=6), CONFIG)
    decoy_store(str(root / "fp"), str(root / "decoys"), 3)
    init_library(str(root / "LIB"))
    add_stores(str(root / "LIB"), [str(root / "fp"), str(root / "decoys")])
    search_library(str(root / "LIB"), [str(root / "data" / "disputed")], str(root / "RUN"), Params(), CONFIG)
    return root


def _image(world, camera: str) -> str:
    return str(sorted((world / "data" / "disputed" / camera).glob("flat_*.jpg"))[0])


def _library(world, tmp_path, with_run: bool = False) -> str:
    """A private copy of the library (and of the search run made on it, re-made on the copy's path)."""
    lib = str(tmp_path / "LIB")
    shutil.copytree(world / "LIB", lib)
    if with_run:
        search_library(lib, [str(world / "data" / "disputed")], str(tmp_path / "RUN"), Params(), CONFIG)
    return lib


def _manifest_copy(lib: str, sha256: str) -> str:
    """Where the library keeps a copy of a source store's manifest (``LIB/manifests/<sha256>.json``)."""
    return os.path.join(lib, "manifests", f"{sha256}.json")


def _sql(lib: str, statement: str, *args) -> None:
    con = sqlite3.connect(cat.catalogue_path(lib), isolation_level=None)
    con.execute(statement, args)
    con.close()


def _recompute_version(lib: str) -> str:
    con = sqlite3.connect(cat.catalogue_path(lib), isolation_level=None)
    version = cat.content_version(con)
    con.execute("UPDATE meta SET value = ? WHERE key = 'version'", (version,))
    con.close()
    return version


def _swap_names(lib: str, a: str = "C01", b: str = "C02", recompute: bool = False) -> None:
    for old, new in ((a, "swap-tmp"), (b, a), ("swap-tmp", b)):  # names are unique: through a third one
        _sql(lib, "UPDATE cameras SET name = ? WHERE name = ?", new, old)
    if recompute:
        _recompute_version(lib)


def _row(lib: str, name: str) -> dict:
    con = sqlite3.connect(cat.catalogue_path(lib))
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM cameras WHERE name = ?", (name,)).fetchone())
    con.close()
    return row


def _forge_swap(lib: str, a: str = "C01", b: str = "C02") -> None:
    """The careful forger: names swapped, each metadata JSON and its SHA-256 rewritten to match, the kept store
    manifest rewritten to list them (a new copy under its new hash), and the version recomputed. Every check of
    the library's own content passes; only the version kept outside it, and the runs made before, can tell."""
    rows = {n: _row(lib, n) for n in (a, b)}
    manifest_path = _manifest_copy(lib, rows[a]["source_manifest_sha256"])
    with open(manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    texts = {}
    for old, new in ((a, b), (b, a)):
        meta = json.loads(rows[old]["metadata_json"])
        meta["camera"] = new
        texts[new] = (json.dumps(meta, indent=1), rows[old]["arrays_sha256"])
    for entry in manifest["outputs"]:
        stem, suffix = os.path.splitext(os.path.basename(entry["path"]))
        if stem in texts:
            text, arrays = texts[stem]
            entry["sha256"] = hashlib.sha256(text.encode()).hexdigest() if suffix == ".json" else arrays
    blob = json.dumps(manifest, indent=1).encode()
    forged = hashlib.sha256(blob).hexdigest()
    with open(_manifest_copy(lib, forged), "wb") as handle:
        handle.write(blob)
    _sql(lib, "UPDATE cameras SET source_manifest_sha256 = ? WHERE source_manifest_sha256 = ?", forged,
         rows[a]["source_manifest_sha256"])
    _swap_names(lib, a, b)
    for name, (text, _) in texts.items():
        _sql(lib, "UPDATE cameras SET metadata_json = ?, metadata_sha256 = ? WHERE name = ?", text,
             hashlib.sha256(text.encode()).hexdigest(), name)
    _recompute_version(lib)


def _screen_row(lib: str, name: str) -> tuple[str, int, int]:
    row = _row(lib, name)
    width = row["rows"] * row["cols"] * 2
    return os.path.join(lib, "screen", row["screen_file"] + ".f16"), row["screen_row"] * width, width


def _write_at(path: str, offset: int, data: bytes) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _zero_row(lib: str, name: str = "C01") -> None:
    path, offset, width = _screen_row(lib, name)
    _write_at(path, offset, b"\0" * width)


def _replace_row(lib: str, name: str = "C01", by: str = "D000") -> None:
    path, offset, width = _screen_row(lib, name)
    source, at, _ = _screen_row(lib, by)
    with open(source, "rb") as handle:
        handle.seek(at)
        _write_at(path, offset, handle.read(width))


def _flip_array(lib: str, name: str = "C01") -> None:
    sha = _row(lib, name)["arrays_sha256"]
    path = os.path.join(lib, "arrays", sha[:2], sha + ".npz")
    _write_at(path, os.path.getsize(path) - 40, b"\x55\xaa")


def _edit_metadata(lib: str) -> None:
    text = _row(lib, "C01")["metadata_json"].replace('"refs"', '"refs" ', 1)
    _sql(lib, "UPDATE cameras SET metadata_json = ? WHERE name = 'C01'", text)
    _recompute_version(lib)


def _edit_manifest_copy(lib: str) -> None:
    path = _manifest_copy(lib, _row(lib, "C01")["source_manifest_sha256"])
    _write_at(path, 5, b" ")


def _edit_levels(lib: str) -> None:
    _sql(lib, "UPDATE meta SET value = '3' WHERE key = 'levels'")


def _edit_version(lib: str) -> None:
    _sql(lib, "UPDATE meta SET value = ? WHERE key = 'version'", "0" * 64)


#: catalogue edits (each refused by every command that reads the catalogue) and the words the refusal has
CATALOGUE_EDITS = {
    "names swapped": (lambda lib: _swap_names(lib), "is not the hash of its content"),
    "names swapped, version recomputed": (lambda lib: _swap_names(lib, recompute=True), "names changed"),
    "metadata edited, version recomputed": (_edit_metadata, "metadata differs from its recorded SHA-256"),
    "kept store manifest edited": (_edit_manifest_copy, "does not have the SHA-256"),
    "version edited": (_edit_version, "is not the hash of its content"),
    "residual levels edited": (_edit_levels, "the library records levels 3, its fingerprints were made with 4"),
}


def _readers(world, lib: str, tmp_path) -> dict[str, list[str]]:
    """Every command that reads the catalogue, as typed."""
    return {"search": ["library", "search", lib, _image(world, "C01"), "-o", str(tmp_path / "new"), *CLI],
            "search --resume": ["library", "search", lib, str(world / "data" / "disputed"), "-o",
                                str(tmp_path / "RUN"), "--resume", *CLI],
            "link": ["library", "link", lib], "info": ["library", "info", lib], "list": ["library", "list", lib],
            "add": ["library", "add", lib, str(world / "decoys")],
            "retire": ["library", "retire", lib, "D001", "--reason", "test"]}


@pytest.mark.parametrize("edit", sorted(CATALOGUE_EDITS))
def test_a_catalogue_edit_is_refused_by_every_command_that_reads_the_library(world, tmp_path, capsys, edit):
    lib = _library(world, tmp_path, with_run=True)
    change, words = CATALOGUE_EDITS[edit]
    change(lib)
    capsys.readouterr()
    for command, argv in _readers(world, lib, tmp_path).items():
        assert main(argv) == EXIT_FAIL, (edit, command)
        err = capsys.readouterr().err
        assert "catalogue.sqlite: the catalogue does not hold what it recorded" in err and words in err, (command, err)
    assert main(["library", "verify", lib]) == EXIT_VERIFY_FAILED
    assert words in capsys.readouterr().out
    assert not os.path.exists(tmp_path / "new" / "results.jsonl")


def test_swapped_names_never_name_the_wrong_camera(world, tmp_path):
    """The issue's case: two names swapped, the version left as it was: search named C02 for C01's image at
    PCE 2743 (rc 0) and stamped the records with the old version."""
    lib = _library(world, tmp_path)
    _swap_names(lib)
    with pytest.raises(LibraryError, match=r"camera 'C02': its own metadata names camera 'C01'"):
        search_library(lib, [_image(world, "C01")], str(tmp_path / "R"), Params(), CONFIG)


@pytest.mark.parametrize("edit", ["zeroed", "replaced"])
def test_a_changed_screening_row_refuses_its_camera_by_name(world, tmp_path, capsys, edit):
    lib = _library(world, tmp_path, with_run=True)
    (_zero_row if edit == "zeroed" else _replace_row)(lib)
    _, records = search_library(lib, [_image(world, "C01"), _image(world, "C02")], str(tmp_path / "S"), Params(),
                                CONFIG)
    for r in records:
        assert r["pce"]["decision"] != "C01" and "C01" in r["library"]["refused"], r["library"]
        assert "screening row" in r["library"]["refused"]["C01"]
    assert records[1]["pce"]["decision"] == "C02"  # the other cameras are still searched
    capsys.readouterr()
    assert main(["library", "search", lib, _image(world, "C01"), "-o", str(tmp_path / "T"), *CLI]) == EXIT_PARTIAL
    out, err = capsys.readouterr()
    assert "REFUSED, not compared: C01" in out and "library camera C01 was REFUSED" in err
    assert main(["report", str(tmp_path / "T"), "--quiet"]) == EXIT_OK
    assert "REFUSED, not compared: C01" in (tmp_path / "T" / "report.html").read_text()
    assert main(["library", "link", lib]) == EXIT_FAIL
    assert "'C01'" in capsys.readouterr().err
    assert main(["library", "verify", lib]) == EXIT_VERIFY_FAILED
    assert main(["verify", str(tmp_path / "RUN")]) == EXIT_VERIFY_FAILED  # the search made before the edit
    assert "camera 'C01': screening row" in capsys.readouterr().out


def test_damaged_arrays_refuse_their_camera_in_search_and_verify_of_a_search_run(world, tmp_path, capsys):
    lib = _library(world, tmp_path, with_run=True)
    _flip_array(lib)
    _, records = search_library(lib, [_image(world, "C01")], str(tmp_path / "S"), Params(), CONFIG)
    assert records[0]["pce"]["decision"] is None and "SHA-256 differs" in records[0]["library"]["refused"]["C01"]
    assert main(["library", "search", lib, _image(world, "C01"), "-o", str(tmp_path / "T"), *CLI]) == EXIT_PARTIAL
    assert main(["library", "verify", lib]) == EXIT_VERIFY_FAILED
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "RUN")]) == EXIT_VERIFY_FAILED
    assert "camera 'C01'" in capsys.readouterr().out


def test_a_consistent_forgery_is_caught_by_the_kept_version_and_by_verify_of_an_earlier_search(world, tmp_path,
                                                                                              capsys):
    lib = _library(world, tmp_path, with_run=True)
    kept = library_info(lib)["version"]
    assert main(["verify", str(tmp_path / "RUN")]) == EXIT_OK
    assert main(["library", "verify", lib, "--expect-version", kept]) == EXIT_OK
    _forge_swap(lib)
    assert verify_library(lib)["ok"]  # consistent: nothing inside the library can tell
    capsys.readouterr()
    assert main(["library", "verify", lib, "--expect-version", kept]) == EXIT_VERIFY_FAILED
    assert f"expected {kept}" in capsys.readouterr().out
    for argv in (["library", "search", lib, _image(world, "C01"), "-o", str(tmp_path / "S"), *CLI],
                 ["library", "link", lib], ["library", "list", lib], ["library", "info", lib]):
        assert main(argv + ["--expect-version", kept]) == EXIT_FAIL, argv
        assert f"expected {kept}" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "RUN")]) == EXIT_VERIFY_FAILED
    out = capsys.readouterr().out
    assert "camera 'C01' compared by the run has another" in out and "camera 'C02'" in out
    manifest = json.loads((tmp_path / "RUN" / "manifest.json").read_text())
    assert any(e["path"] == "library.jsonl" for e in manifest["outputs"])


def test_every_clean_copy_or_move_of_the_library_is_accepted(world, tmp_path, capsys):
    lib = _library(world, tmp_path, with_run=True)
    kept = library_info(lib)["version"]
    moved = str(tmp_path / "elsewhere" / "LIB2")
    os.makedirs(os.path.dirname(moved))
    os.rename(lib, moved)
    for where in (moved, str(tmp_path / "COPY")):
        if where != moved:
            shutil.copytree(moved, where)
        for command, argv in _readers(world, where, tmp_path).items():
            if command == "search --resume":
                continue  # the run's spec names the library's path: another path is another run (refused)
            if command == "search":
                argv = ["library", "search", where, _image(world, "C01"), "-o", str(tmp_path / f"new{len(where)}"),
                        *CLI, "--expect-version", kept]
            if command == "retire":
                continue  # changes the version (tested as a writer elsewhere)
            assert main(argv) == EXIT_OK, (where, command, capsys.readouterr())
        assert main(["library", "verify", where, "--expect-version", kept]) == EXIT_OK
        assert main(["verify", str(tmp_path / "RUN"), "--library", where]) == EXIT_OK
    (tmp_path / "COPY" / "screen" / "notes.txt").write_text("put there by hand")
    capsys.readouterr()
    assert main(["library", "verify", str(tmp_path / "COPY")]) == EXIT_OK  # a foreign file is listed, never read
    assert "notes.txt is in no catalogue entry" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "RUN")]) == EXIT_VERIFY_FAILED  # not where it was: said, never skipped
    assert "give its place now" in capsys.readouterr().out


def test_a_library_on_read_only_media_is_listed_and_searched(world, tmp_path, capsys, monkeypatch):
    lib = _library(world, tmp_path)
    before = {f: os.path.getmtime(os.path.join(d, f)) for d, _, fs in os.walk(lib) for f in fs}
    for d, dirs, files in os.walk(lib, topdown=False):
        for f in files:
            os.chmod(os.path.join(d, f), 0o444)
        os.chmod(d, 0o555)
    if os.geteuid() == 0:  # root writes through permissions: the media is read-only as far as camid can tell
        monkeypatch.setattr(cat, "writable", lambda library: False)
    try:
        assert main(["library", "list", lib]) == EXIT_OK
        assert main(["library", "search", lib, _image(world, "C03"), "-o", str(tmp_path / "RUN"), *CLI]) == EXIT_OK
        assert "C03 (best C03 PCE" in capsys.readouterr().out
        assert main(["library", "verify", lib]) == EXIT_OK
        assert main(["library", "retire", lib, "C01", "--reason", "x"]) == EXIT_FAIL
        assert "catalogue.sqlite: the library is read-only here" in capsys.readouterr().err
        after = {f: os.path.getmtime(os.path.join(d, f)) for d, _, fs in os.walk(lib) for f in fs}
        assert after == before  # nothing written there: no -shm, no -wal, no migration
        wal = cat.catalogue_path(lib) + "-wal"
        os.chmod(lib, 0o755)
        with open(wal, "wb") as handle:
            handle.write(b"x" * 100)
        assert main(["library", "list", lib]) == EXIT_FAIL
        assert f"{wal}: the library is read-only here" in capsys.readouterr().err
    finally:
        for d, dirs, files in os.walk(lib):
            os.chmod(d, 0o755)


def test_search_says_not_comparable_prints_each_answer_once_and_a_retired_re_add_stays_retired(world, tmp_path,
                                                                                               capsys):
    from PIL import Image

    lib = _library(world, tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(other / "x.png")
    capsys.readouterr()
    assert main(["library", "search", lib, str(other / "x.png"), _image(world, "C02"), "-o", str(tmp_path / "R"),
                 "--backend", "numpy", "--workers", "1"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "x.png: not comparable" in out and "no camera" not in out
    assert out.count(_image(world, "C02")) == 1 and out.count("x.png") == 1  # each answer once
    assert "C02 (best C02 PCE" in out and "compared" in out
    assert main(["report", str(tmp_path / "R"), "--quiet"]) == EXIT_OK
    page = (tmp_path / "R" / "report.html").read_text()
    assert "not comparable</span> <span class=\"muted\">(no library camera of its geometry)" in page
    assert "no camera" not in page
    assert main(["library", "retire", lib, "C03", "--reason", "returned"]) == EXIT_OK
    capsys.readouterr()
    assert main(["library", "add", lib, str(world / "fp")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "unchanged C03" in out and "stays retired" in out and "returned" in out
    assert "unchanged C01 (the same fingerprint is in the library already)" in out


def test_a_library_without_kept_manifests_says_what_it_could_not_check(world, tmp_path, capsys):
    """A library made before the store manifests were kept: each row is checked against the source store's
    manifest where it was; when that is gone too, a note says the name was checked against its metadata only
    (never silent), and swapped names are still refused."""
    store = str(tmp_path / "fp")
    shutil.copytree(world / "fp", store)
    lib = str(tmp_path / "OLD")
    init_library(lib)
    add_stores(lib, [store])
    shutil.rmtree(os.path.join(lib, "manifests"))
    assert main(["library", "list", lib]) == EXIT_OK
    assert "note:" not in capsys.readouterr().err  # the store's own manifest, where it was, has the recorded hash
    shutil.rmtree(store)
    assert main(["library", "list", lib]) == EXIT_OK
    err = capsys.readouterr().err
    assert "camera 'C01': not kept" in err and "checked against its own metadata only" in err
    assert main(["library", "search", lib, _image(world, "C01"), "-o", str(tmp_path / "R"), *CLI]) == EXIT_OK
    assert "camera 'C01': not kept" in capsys.readouterr().err
    assert "not kept" in json.loads((tmp_path / "R" / "manifest.json").read_text())["library"]["unchecked"][0]
    _swap_names(lib, recompute=True)
    assert main(["library", "list", lib]) == EXIT_FAIL
    assert "names changed" in capsys.readouterr().err


def test_a_screening_tile_checks_each_row_as_it_is_read(world, tmp_path):
    """The tile of a Dask worker (screen.tile_task) hashes its rows as the local screen does: a row that differs
    from its catalogue SHA-256 is named by position and zeroed (it scores nothing)."""
    from camid_gpu.library import arrays as arr
    from camid_gpu.library import screen as scr

    lib = _library(world, tmp_path)
    rows = sorted((_row(lib, n) for n in ("C01", "C02", "C03")), key=lambda r: r["screen_row"])
    path = arr.screen_path(lib, rows[0]["screen_file"])
    pixels = rows[0]["rows"] * rows[0]["cols"]
    index = [r["screen_row"] for r in rows]
    rng = np.random.default_rng(0)
    first, squares, _ = scr.query_rows(rng.standard_normal((2, pixels)), 100 + rng.random((2, pixels)))
    hashes = [r["screen_sha256"] for r in rows]
    a, _, bad = scr.tile_task(path, pixels, index, first, squares, "numpy", None, hashes)
    assert bad == [] and np.all(a[:, 1] != 0)
    _zero_row(lib, rows[1]["name"])
    a, _, bad = scr.tile_task(path, pixels, index, first, squares, "numpy", None, hashes)
    assert bad == [1] and np.all(a[:, 1] == 0) and np.all(a[:, 0] != 0)
    _replace_row(lib, rows[0]["name"], by=rows[2]["name"])
    assert scr.tile_task(path, pixels, index, first, squares, "numpy", None, hashes)[2] == [0, 1]
