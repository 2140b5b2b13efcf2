"""``camid selftest``: the validation record, its verdict, and that a wrong engine fails it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from camid_gpu import selftest
from camid_gpu.cli import EXIT_FAIL, EXIT_OK, main

from conftest import HAVE_TORCH, cuda_available


def test_selftest_passes_and_writes_the_record(tmp_path, capsys):
    assert main(["selftest", "-o", str(tmp_path / "rec")]) == EXIT_OK
    out = capsys.readouterr().out
    assert "selftest PASSED" in out and "residual vs float64 spec" in out
    record = json.loads((tmp_path / "rec" / "selftest.json").read_text())
    assert record["format"] == "camid-selftest" and record["passed"] is True
    assert record["system"]["software"]["camid_gpu"] and record["system"]["cpu_count"] >= 1
    assert "driver" in record["system"] and "cuda_devices" in record["system"]
    rows = {(c["backend"], c["name"]): c for c in record["checks"]}
    for name in selftest.CHECK_NAMES[:4]:
        assert rows[("numpy float64", name)]["status"] == "pass"
    if HAVE_TORCH:
        for name in selftest.CHECK_NAMES:
            assert rows[("torch cpu float32", name)]["status"] == "pass"
    if not cuda_available():
        skipped = rows[("torch cuda float32 (fused kernels)", "all checks")]
        assert skipped["status"] == "skip" and skipped["detail"]
    assert record["seconds"] < 60
    page = (tmp_path / "rec" / "selftest.html").read_text()
    assert "camid selftest: PASSED" in page and "identification, known truth" in page


def test_a_wrong_engine_fails_the_selftest(tmp_path, monkeypatch, capsys):
    """A Mihcak shrink that is 1% off (a plausible porting bug) must fail the spec comparisons."""
    from camid_gpu.backend import host_kernels

    original = host_kernels.mihcak_shrink
    monkeypatch.setattr(host_kernels, "mihcak_shrink", lambda *args, **kw: original(*args, **kw) * 1.01)
    numpy_only = [case for case in selftest.backend_cases() if case.label == "numpy float64"]
    monkeypatch.setattr(selftest, "backend_cases", lambda: numpy_only)
    assert main(["selftest", "-o", str(tmp_path)]) == EXIT_FAIL
    assert "selftest FAILED" in capsys.readouterr().out
    record = json.loads((tmp_path / "selftest.json").read_text())
    assert record["passed"] is False
    status = {c["name"]: c["status"] for c in record["checks"]}
    assert status["residual vs float64 spec"] == "fail" and status["fingerprint vs float64 spec"] == "fail"
    assert status["PCE known answer"] == "pass"  # no wavelet shrink in it


def test_a_crashing_check_is_a_failed_row(monkeypatch):
    def boom(*args):
        raise RuntimeError("device lost")

    monkeypatch.setattr(selftest, "_check_pce_known_answer", boom)
    cases = [case for case in selftest.backend_cases() if case.label == "numpy float64"]
    report = selftest.run_selftest(cases)
    row = next(c for c in report.checks if c.name == "PCE known answer")
    assert row.status == "fail" and row.detail == "RuntimeError: device lost"
    assert not report.passed and "FAILED (1 check)" in selftest.format_table(report)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch extra not installed")
def test_fused_backend_rows_report_the_kernel_self_check(monkeypatch):
    """On a GPU the fused-kernel backend gets one row per kernel self-check: simulated here with a
    CPU backend that claims kernels and kernels that were checked (one of them failed)."""
    from camid_gpu._cuda import loader as cuda
    from camid_gpu.backend import TorchBackend

    monkeypatch.setattr(cuda, "_CHECKS", {("mihcak_shrink", "cpu"): cuda.KernelCheck("mihcak_shrink", "cpu", True),
                                          ("mahalanobis_counts", "cpu"): cuda.KernelCheck(
                                              "mahalanobis_counts", "cpu", False, "counts differ")})

    def make():
        bk = TorchBackend("cpu", "float32", use_kernels=False)
        bk.use_kernels = True  # the kernels then ask for CuPy, which is not here: twins run
        return bk

    report = selftest.run_selftest([selftest._Case("fake fused", make, False)])
    rows = {c.name: c for c in report.checks}
    assert rows["kernel self-check: mihcak_shrink"].status == "pass"
    bad = rows["kernel self-check: mahalanobis_counts"]
    assert bad.status == "fail" and bad.value == "fallback (counts differ)"
    assert rows["residual vs float64 spec"].status == "pass" and not report.passed
    assert np.isfinite(report.seconds)


def test_a_nan_in_any_output_fails_the_spec_checks(monkeypatch):
    """NaN never passes: Python's max()/min() skip a NaN that is not first, np.nanmax skips them all."""
    import dataclasses

    import camid_gpu.mahalanobis as maha
    from camid_gpu.backend import get_backend
    from camid_gpu.prnu import residual

    bk = get_backend("numpy", dtype="float64")
    data = selftest._Data()
    original = residual.extract_residual
    calls = []

    def second_is_nan(img, **kw):
        out = original(img, **kw)
        calls.append(1)
        if len(calls) == 2:  # the colour image, after a clean gray one
            out = out.copy()
            out[0, 0, 0] = np.nan
        return out

    monkeypatch.setattr(residual, "extract_residual", second_is_nan)
    assert selftest._check_residual(bk, data, True)[2] is False
    monkeypatch.setattr(residual, "extract_residual", original)

    reference = maha.pair_statistics(bk, data.traces, data.prints, data.mask)
    cov = reference.covariance.copy()
    cov.flat[1] = np.nan
    monkeypatch.setattr(maha, "pair_statistics", lambda *a, **k: dataclasses.replace(reference, covariance=cov))
    assert selftest._check_mahalanobis_parity(bk, data, True, reference)[2] is False
