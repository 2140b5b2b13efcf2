"""The report within a bounded memory: diagnostics computed one file at a time and kept in the run folder (checked
against their own manifest before use), the store's arrays read one camera at a time."""
from __future__ import annotations

import json
import os
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from camid_gpu import report  # noqa: E402
from camid_gpu.report import kept_diagnostics  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from camid_gpu.config import Params, RunConfig
    from camid_gpu.datasets.synthetic import make_dataset
    from camid_gpu.engine.runner import evaluate_dataset

    root = tmp_path_factory.mktemp("report_memory")
    data = str(root / "data")
    make_dataset(data, cameras=2, refs=3, disputed_flat=1, disputed_natural=1, height=96, width=128, workers=1)
    out = str(root / "run")
    evaluate_dataset(data, out, ("pce",), Params(refs=3), RunConfig(backend="numpy"))
    return {"run": out, "data": data}


def _quality_part(text: str) -> str:
    return text[text.index('<section id="quality">'):]


def test_diagnostics_kept_then_read_back_not_recomputed(run, monkeypatch):
    first = report.render_report(run["run"])
    folder = os.path.join(run["run"], "diagnostics")
    assert sorted(os.listdir(folder)) == ["diagnostics.json", "manifest.json", "manifest.sha256"]
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert [os.path.basename(e["path"]) for e in manifest["outputs"]] == ["diagnostics.json"]
    assert '<img class="surface"' in first and "references used" in first

    def refuse(*_args, **_kwargs):
        raise AssertionError("recomputed although kept")

    monkeypatch.setattr(kept_diagnostics, "pce_surface", refuse)
    monkeypatch.setattr(kept_diagnostics, "fingerprint_quality", refuse)
    assert report.render_report(run["run"]) == first  # read back: the same bytes


def test_edited_kept_diagnostics_are_computed_again(run):
    first = report.render_report(run["run"])
    path = os.path.join(run["run"], "diagnostics", "diagnostics.json")
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    camera = sorted(data["quality"])[0]
    data["quality"][camera]["rows"][0]["pce_leave_one_out"] = 123456.0  # a forged quality figure
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)
    again = report.render_report(run["run"])
    assert "did not agree with its manifest" in again and "diagnostics.json differs from the manifest" in again
    assert "1.235e+05" not in again
    # the same figures as the first report (recomputed from the evidence), and kept again
    strip = lambda t: _quality_part(t).split("</p>", 1)[1]  # noqa: E731  (past the sentence saying where from)
    assert strip(again) == strip(first)
    third = report.render_report(run["run"])  # kept again, and read back
    assert "computed again" not in third and strip(third) == strip(first)


def test_the_store_arrays_are_read_on_use(run, monkeypatch):
    from camid_gpu.report import store_view
    from camid_gpu.report.load import load_run

    calls = []
    real = store_view.load_fingerprint
    monkeypatch.setattr(store_view, "load_fingerprint", lambda path: calls.append(path) or real(path))
    loaded = load_run(run["run"], None)
    assert [fp.camera for fp in loaded.store] == ["C01", "C02"] and calls == []  # metadata only
    assert loaded.store[0].k.shape == (96, 128) and loaded.store[0].k is loaded.store[0].k  # read once, held
    loaded.store[1].k
    assert len(calls) == 2  # and the first camera's arrays were let go for the second's


def _references(folder, count: int) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(5)
    pattern = rng.normal(0, 0.02, (256, 256))
    paths = []
    for n in range(count):
        scene = 120 + 40 * rng.random((256, 256))
        pixels = np.clip(scene * (1 + pattern) + rng.normal(0, 2, scene.shape), 0, 255).astype(np.uint8)
        paths.append(str(folder / f"ref_{n}.png"))
        Image.fromarray(np.stack([pixels] * 3, -1)).save(paths[-1])
    return paths


def test_fingerprint_quality_peak_does_not_grow_with_the_references(tmp_path):
    from camid_gpu.backend import get_backend
    from camid_gpu.config import Params
    from camid_gpu.evidence.diagnostics import _query, fingerprint_quality
    from camid_gpu.io.decode import read_image
    from camid_gpu.prnu.fingerprint import FingerprintAccumulator
    from camid_gpu.prnu.pce import pce_scores

    paths, params = _references(tmp_path, 9), Params()
    peaks = {}
    for count in (3, 9):
        tracemalloc.start()
        found = fingerprint_quality(paths[:count], params)
        peaks[count] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[9] < 1.2 * peaks[3], peaks  # all references held at once: about 3x
    # the leave-one-out PCE as the sums of the other references give it, merged one by one
    bk = get_backend("numpy", dtype="float32")
    for i in (0, 8):
        others = FingerprintAccumulator(params.sigma_fingerprint, params.levels, params.wavelet, bk)
        for j, path in enumerate(paths):
            if j != i:
                others.add(read_image(path)[0][None])
        res, inten = _query(bk, read_image(paths[i])[0], params)
        expected = float(pce_scores(bk, res, inten, [others.fingerprint()], params.shift_range).pce[0, 0])
        assert found[i]["pce_leave_one_out"] == pytest.approx(expected, rel=1e-3)
        assert expected > 100  # the references share a pattern: a real agreement, not noise
    assert [q["clip"] for q in found] == [[256, 256]] * 9  # smaller than QUALITY_CLIP: the whole frame


def test_report_within_its_host_budget(run, tmp_path):
    from camid_gpu.cli import main

    out = tmp_path / "small.html"
    assert main(["report", run["run"], "-o", str(out), "--quiet", "--max-host-memory", "1M"]) == 0
    text = out.read_text(encoding="utf-8")
    # a 96x128 frame needs ~1.3 MB to recompute: over 1 MiB, so no surface, and the report says why
    assert '<img class="surface"' not in text and "over the host memory budget of" in text
    assert "references used" in text  # the quality, on its small clips, still fits
    assert main(["report", run["run"], "-o", str(tmp_path / "b.html"), "--max-host-memory", "12"]) == 1


def test_kept_diagnostics_are_not_foreign_to_the_run_until_edited(run, tmp_path, capsys):
    """The kept diagnostics have a manifest of their own (the run's is never rewritten): ``camid verify`` of the
    run accepts the folder while that manifest accounts for it, and names its files foreign once one is edited."""
    import shutil

    from camid_gpu.cli import main

    copy = tmp_path / "run"
    shutil.copytree(run["run"], copy)
    report.render_report(str(copy))
    assert os.path.isfile(copy / "diagnostics" / "diagnostics.json")
    assert main(["verify", str(copy)]) == 0
    path = copy / "diagnostics" / "diagnostics.json"
    path.write_bytes(path.read_bytes().replace(b"{", b"{ ", 1))
    capsys.readouterr()
    assert main(["verify", str(copy)]) != 0
    assert "FOREIGN  diagnostics/diagnostics.json" in capsys.readouterr().out
