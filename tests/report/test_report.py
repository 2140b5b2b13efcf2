"""The HTML report of a run folder: self-contained, complete, escaped, and robust to what is missing."""
from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import sys

import pytest

pytest.importorskip("matplotlib")

from camid_gpu import report  # noqa: E402
from camid_gpu.report import pce as pce_section  # noqa: E402
from camid_gpu.errors import CamidError, MissingExtraError  # noqa: E402

HOSTILE = "natural_<script>alert(1)<_script>&'\"x.jpg"  # no "/" in a file name


def _read(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _write(path: str, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for r in records:
            handle.write(json.dumps(r) + "\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run folders: with ground truth (both methods), PCE only, without truth, without manifest,
    without manifest and fingerprints. The disputed folder holds an empty file and a hostile name."""
    from camid_gpu.config import Params, RunConfig
    from camid_gpu.engine.runner import evaluate_dataset
    from camid_gpu.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("report")
    data = str(root / "data")
    make_dataset(data, cameras=2, refs=3, disputed_flat=1, disputed_natural=1, height=160, width=192, workers=1)
    with open(os.path.join(data, "disputed", "C01", "zz_broken.jpg"), "wb") as handle:
        handle.write(b"")
    shutil.copy(os.path.join(data, "disputed", "C02", "natural_000.jpg"),
                os.path.join(data, "disputed", "C02", HOSTILE))
    params, config = Params(clip=(128, 128), refs=3), RunConfig(backend="numpy")
    out = {"truth": str(root / "run"), "pce": str(root / "run_pce")}
    evaluate_dataset(data, out["truth"], ("pce", "mahalanobis"), params, config)
    evaluate_dataset(data, out["pce"], ("pce",), params, config)

    # the same run as an identify run would leave it: no truth, no evaluation.json (and a torn last line)
    out["notruth"] = str(root / "run_notruth")
    shutil.copytree(out["truth"], out["notruth"])
    records = _read(os.path.join(out["notruth"], "results.jsonl"))
    for r in records:
        r.pop("truth", None)
    _write(os.path.join(out["notruth"], "results.jsonl"), records)
    with open(os.path.join(out["notruth"], "results.jsonl"), "a", encoding="utf-8") as handle:
        handle.write('{"path": "half-written')
    os.remove(os.path.join(out["notruth"], "evaluation.json"))

    out["nomanifest"] = str(root / "run_nomanifest")
    shutil.copytree(out["truth"], out["nomanifest"])
    os.remove(os.path.join(out["nomanifest"], "manifest.json"))

    out["bare"] = str(root / "run_bare")
    os.makedirs(out["bare"])
    shutil.copy(os.path.join(out["truth"], "results.jsonl"), out["bare"])
    return out


@pytest.fixture(scope="module")
def rendered(runs):
    """Reports rendered once per module; ``charts=False`` draws one PCE heat-map instead of a chart per
    image (the per-image charts cost most of the time and are checked on the full run)."""
    cache: dict[tuple[str, bool], str] = {}

    def get(name: str, charts: bool = True) -> str:
        if (name, charts) not in cache:
            saved = pce_section.MAX_IMAGE_CHARTS
            pce_section.MAX_IMAGE_CHARTS = saved if charts else 0
            try:
                cache[name, charts] = report.render_report(runs[name])
            finally:
                pce_section.MAX_IMAGE_CHARTS = saved
        return cache[name, charts]

    return get


def _visible(text: str) -> str:
    """The page without its embedded images (base64 can spell any short word)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)


def _pngs(text: str) -> list[bytes]:
    """The sections' figures (not the casework thumbnails or diagnostics surfaces: ``<img class=... >``)."""
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)]


def test_self_contained_with_embedded_figures(rendered, runs):
    text = rendered("truth")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert 'src="http' not in text and "<link" not in text and "@import" not in text and "url(" not in text
    assert "<script" not in text.lower()
    # every src is an embedded image, every href an anchor within the page
    assert all(v.startswith("data:image/png;base64,") for v in re.findall(r'src="([^"]*)"', text))
    assert all(v.startswith("#") for v in re.findall(r'href="([^"]*)"', text))
    images = _pngs(text)
    ok = [r for r in _read(os.path.join(runs["truth"], "results.jsonl")) if not r.get("error")]
    # one PCE chart per image, one figure per camera, confusion, ROC
    assert len(images) == len(ok) + 2 + 2
    assert len(re.findall(r'<img class="thumb" src="data:image/png;base64,', text)) == len(ok)  # casework record
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in images)
    for needle in ("primary decision", "weaker evidence", "sha-256", "pairwise"):
        assert needle in _visible(text).lower()


def test_every_image_listed_with_errors_and_reasons(rendered, runs):
    text = rendered("truth")
    records = _read(os.path.join(runs["truth"], "results.jsonl"))
    errors = [r for r in records if r.get("error")]
    assert len(errors) == 1 and errors[0]["path"].endswith("zz_broken.jpg")
    decisions = text.split('id="decisions"', 1)[1].split("</section>", 1)[0]
    for r in records:
        assert html.escape(r["path"], quote=True) in decisions
    assert html.escape(errors[0]["error"]["reason"], quote=True) in decisions
    assert decisions.count('id="row-') == len(records)
    for r in records:
        if not r.get("error"):
            assert r["sha256"][:12] in decisions


def test_hostile_file_name_only_escaped(rendered, runs):
    text = rendered("truth")
    paths = [r["path"] for r in _read(os.path.join(runs["truth"], "results.jsonl"))]
    hostile = [p for p in paths if HOSTILE in p]
    assert hostile, "the hostile file should be in the run"
    assert "<script>" not in text and "&'" not in text
    assert html.escape(hostile[0], quote=True) in text


def test_ground_truth_sections(rendered, runs):
    text = rendered("truth")
    with open(os.path.join(runs["truth"], "evaluation.json"), encoding="utf-8") as handle:
        evaluation = json.load(handle)
    assert 'id="truth"' in text and "Confusion matrices" in text and "PCE ROC" in text
    assert format(evaluation["pce"]["roc"]["auc"], ".4g") in text
    assert "Effectiveness per camera" in text and "mean membership of the images of C01" in text
    assert "What drove the votes" in text and "0.5 means a coin flip" in text
    assert "q (claimed)" in text  # the pairwise tables


def test_without_ground_truth_sections_are_left_out(rendered, runs):
    text = _visible(rendered("notruth", charts=False))
    assert 'id="truth"' not in text and "Confusion matrices" not in text and "ROC" not in text
    assert "Effectiveness per camera" not in text and "<th>truth</th>" not in text
    for r in _read(os.path.join(runs["truth"], "results.jsonl")):
        assert html.escape(r["path"], quote=True) in text
    assert "not complete result records" in text  # the torn last line is said, not fatal
    # the heat-map and the per-camera figures (fingerprints from the manifest; images grouped by PCE decision)
    assert len(_pngs(rendered("notruth", charts=False))) == 1 + 2


def test_pce_only_run(rendered, runs):
    text = rendered("pce")
    records = _read(os.path.join(runs["pce"], "results.jsonl"))
    assert not any("mahalanobis" in r for r in records)
    assert "no Mahalanobis results" in text and "hold no Mahalanobis arrays" in text
    assert "q (claimed)" not in text
    assert 'id="truth"' in text and "PCE ROC" in text
    for r in records:
        assert html.escape(r["path"], quote=True) in text
    assert len(_pngs(text)) == sum(1 for r in records if not r.get("error")) + 2


def test_without_manifest(rendered, runs):
    text = rendered("nomanifest", charts=False)
    assert "No manifest.json" in text
    assert "Not recorded by a manifest" in text  # fingerprints listed from run_dir/fingerprints, hashed now
    assert 'id="cameras"' in text and "Camera C01" in text
    assert 'id="truth"' in text


def test_without_manifest_or_fingerprints(rendered, runs):
    text = rendered("bare", charts=False)
    assert "No manifest.json" in text and "per-camera figures are left out" in text
    assert "Camera C01" not in text
    for r in _read(os.path.join(runs["bare"], "results.jsonl")):
        assert html.escape(r["path"], quote=True) in text
    # the ground truth is scored from the records when evaluation.json is missing
    assert 'id="truth"' in text and "computed from the records" in text


def test_many_images_use_heat_maps(rendered, runs):
    text = rendered("pce", charts=False)
    assert "heat-maps" in text
    assert len(_pngs(text)) == 1 + 2  # one heat-map, confusion, ROC
    for r in _read(os.path.join(runs["pce"], "results.jsonl")):
        assert html.escape(r["path"], quote=True) in text


def test_cli_writes_the_same_report(runs, rendered, tmp_path):
    from camid_gpu.cli import main

    out = tmp_path / "sub" / "r.html"
    assert main(["report", runs["pce"], "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == rendered("pce")  # deterministic
    assert not os.path.exists(str(out) + ".tmp")


def test_explicit_fingerprints_folder(runs, monkeypatch):
    monkeypatch.setattr(pce_section, "MAX_IMAGE_CHARTS", 0)
    fp_dir = os.path.join(runs["pce"], "fingerprints")
    text = report.render_report(runs["bare"], fingerprints_dir=fp_dir)
    assert "per-camera figures are left out" not in text and "hold no Mahalanobis arrays" in text
    assert html.escape(fp_dir) in text


def test_not_a_run_folder(tmp_path):
    with pytest.raises(CamidError, match="results.jsonl"):
        report.write_report(str(tmp_path), str(tmp_path / "r.html"))


def test_missing_matplotlib(runs, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match="matplotlib"):
        report.render_report(runs["truth"])
