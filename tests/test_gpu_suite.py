"""bench/gpu_suite.py without a GPU: the record of a dry run, the target verdicts, failed steps."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", ROOT / "bench" / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_suite"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_suite"]


def residual_result(twin: float, fused: float | None) -> dict:
    rows = [{"backend": "torch:cuda-twin", "mode": "batched", "batch": 32, "images_per_s": twin},
            {"backend": "torch:cuda-twin", "mode": "loop", "batch": 1, "images_per_s": twin * 40}]
    if fused is not None:
        rows.append({"backend": "torch:cuda+kernels", "mode": "batched", "batch": 64, "images_per_s": fused})
    return {"benchmark": "residual", "clip": [1000, 1000], "rows": rows}


def test_dry_run_writes_a_record_with_nothing_measured(suite, tmp_path, capsys):
    assert suite.main(["--dry-run", "--out-dir", str(tmp_path)]) == 0
    [json_path] = tmp_path.glob("*-dry-run.json")
    rec = json.loads(json_path.read_text())
    assert rec["format"] == "camid-gpu-suite" and rec["dry_run"] is True and rec["commit"]
    assert {s["name"] for s in rec["steps"]} >= {"selftest", "pytest-gpu", "residual-gpu", "mahalanobis-gpu",
                                                  "identify-12mp-10cams"}
    assert all(s["status"] == "not run" and s["reason"] == "dry run" for s in rec["steps"])
    assert [t["status"] for t in rec["targets"]] == ["not run"] * len(suite.TARGETS)
    assert all(t["measured"] is None for t in rec["targets"])
    md = json_path.with_suffix(".md").read_text()
    assert "Dry run: nothing was executed" in md and "pytest -m gpu" in md and "camid_gpu.cli selftest" in md
    assert "gpu_suite: wrote" in capsys.readouterr().out


def test_targets_met_not_met_and_not_run(suite):
    def done(name, result, status="ok"):
        step = suite.Step(name, ["true"], 10)
        step.status, step.result = status, result
        return step

    steps = {"residual-gpu": done("residual-gpu", residual_result(6000.0, 15000.0)),
             "identify-12mp-10cams": done("identify-12mp-10cams", {"rows": [{"mode": "scheduler", "images_per_s": 250}],
                                                                   "cameras": 4, "size": [3000, 4000]})}
    verdicts = {t["target"]: t for t in suite.evaluate_targets(steps)}
    twin, fused, e2e = (verdicts[t.what] for t in suite.TARGETS)
    assert twin["status"] == "met" and twin["measured"] == 6000.0 and "batch 32" in twin["note"]
    assert fused["status"] == "not met" and fused["measured"] == 15000.0
    assert e2e["status"] == "not run" and "4 cameras" in e2e["note"]  # not the target's conditions
    # no fused rows (no CuPy on the GPU machine): not run, and why
    steps["residual-gpu"] = done("residual-gpu", residual_result(6000.0, None))
    fused = suite.evaluate_targets(steps)[1]
    assert fused["status"] == "not run" and "CuPy" in fused["note"]
    # a failed step gives "not run" with the step's reason, never a figure
    failed = done("residual-gpu", None, "failed")
    failed.reason = "exit status 1"
    steps["residual-gpu"] = failed
    assert suite.evaluate_targets(steps)[0] == {
        "target": suite.TARGETS[0].what, "required": ">= 5000 img/s", "source": "residual-gpu",
        "status": "not run", "measured": None, "note": "residual-gpu: exit status 1"}


def test_steps_record_failures_and_the_budget(suite, tmp_path):
    out = tmp_path / "r.json"
    ok = suite.Step("residual-x", [sys.executable, "-c",
                                   f"import json; r={residual_result(1.0, 2.0)!r}; print(json.dumps(r, indent=1)); "
                                   f"print('TABLE LINE'); open({str(out)!r}, 'w').write(json.dumps(r))"],
                    60, json_out=str(out))
    suite.run_step(ok, 100)
    assert ok.status == "ok" and ok.rc == 0 and ok.result["clip"] == [1000, 1000]
    assert suite._table_of(ok) == "TABLE LINE"
    bad = suite.Step("x", [sys.executable, "-c", "import sys; sys.exit(3)"], 60)
    suite.run_step(bad, 100)
    assert bad.status == "failed" and bad.reason == "exit status 3"
    late = suite.Step("y", [sys.executable, "-c", "pass"], 60)
    suite.run_step(late, 5)  # less than the 20 s a step needs at least
    assert late.status == "not run" and late.reason == "time budget spent" and late.rc is None


def test_shell_wrapper_documents_the_offline_install():
    text = (ROOT / "bench" / "gpu_suite.sh").read_text()
    assert "--no-index" in text and "CAMID_WHEELS" in text and "PYTHONPATH" in text
    assert "exec \"$PY\" bench/gpu_suite.py" in text
    assert "bench/gpu_suite.sh" in (ROOT / "bench" / "README.md").read_text()
