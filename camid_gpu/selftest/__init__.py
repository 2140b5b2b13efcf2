"""``camid selftest``: known-answer validation of every backend present, with a validation record.

Method validation is part of a lab's accreditation: this runs, on every backend this machine has
(NumPy float64; torch on the CPU; torch on CUDA with the generic twins; torch on CUDA with the fused
kernels), checks whose right answers are known independently of the engine:

* residual and fingerprint against the plain float64 spec implementation (:mod:`.spec`);
* PCE of a hand-built correlation plane (PCE = 100 at shift (2, 1));
* a small synthetic identification with known truth (three cameras and an unknown one);
* decision parity with the NumPy backend (identification decisions, PCE values, Mahalanobis pair
  statistics);
* the fused CUDA kernels' self-check against their twins (:func:`camid_gpu._cuda.loader.self_check`).

:func:`run_selftest` returns a :class:`SelftestReport`; :func:`write_record` writes it as JSON and
HTML with versions, devices and driver. Everything is small and deterministic: under a minute on a
CPU.
"""
from __future__ import annotations

import dataclasses
import html
import os
import platform
import shutil
import subprocess
import time
from typing import Any, Callable

import numpy as np

from camid_gpu._shared.jsonio import write_json
from camid_gpu.backend import Backend, TorchBackend, get_backend, torch_cuda_available
from camid_gpu.config import PCE_THRESHOLD, SIGMA_QUERY
from camid_gpu.selftest import spec

FORMAT = "camid-selftest"
VERSION = 1
PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclasses.dataclass(frozen=True)
class Check:
    """One row of the validation record: ``status`` is "pass", "fail" or "skip"; ``value`` what was
    measured and ``limit`` what it had to satisfy (both as text, for the table)."""

    backend: str
    name: str
    status: str
    value: str = ""
    limit: str = ""
    detail: str = ""


@dataclasses.dataclass
class SelftestReport:
    started: str
    finished: str
    seconds: float
    system: dict[str, Any]
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "passed": self.passed, "started": self.started,
                "finished": self.finished, "seconds": round(self.seconds, 3), "system": self.system,
                "checks": [dataclasses.asdict(c) for c in self.checks]}


# ---------------------------------------------------------------------------------------------
# system: versions, devices, driver
# ---------------------------------------------------------------------------------------------
def _nvidia_smi_driver() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        proc = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = proc.stdout.split()
    return lines[0] if proc.returncode == 0 and lines else None


def system_info() -> dict[str, Any]:
    """Software versions, CPU, CUDA devices, CUDA runtime and driver (what a validation record names)."""
    from camid_gpu._cuda import loader as cuda
    from camid_gpu.provenance import environment

    info: dict[str, Any] = {"software": environment(), "cpu": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "cuda_devices": [], "cuda_runtime": None,
                            "driver": _nvidia_smi_driver(), "cupy": None}
    if torch_cuda_available():
        import torch

        info["cuda_runtime"] = torch.version.cuda
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["cuda_devices"].append({"index": i, "name": props.name, "capability": f"{props.major}.{props.minor}",
                                         "memory_gib": round(props.total_memory / 2**30, 1)})
    if cuda.cupy_available():
        cp = cuda.require_cupy()
        info["cupy"] = cp.__version__
        try:
            version = cp.cuda.runtime.driverGetVersion()
            info["driver_cuda_api"] = f"{version // 1000}.{version % 1000 // 10}"
        except Exception as exc:  # noqa: BLE001 - no driver: say so in the record
            info["driver_cuda_api"] = f"unavailable ({type(exc).__name__})"
    return info


# ---------------------------------------------------------------------------------------------
# backends
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Case:
    label: str
    make: Callable[[], Backend] | None  # None: not present here
    float64: bool
    why_not: str = ""


def backend_cases() -> list[_Case]:
    """Every backend camid has, with a factory where this machine has it (else why not)."""
    from camid_gpu._cuda import loader as cuda

    try:
        import torch  # noqa: F401

        from camid_gpu.backend import import_pytorch_wavelets

        import_pytorch_wavelets()
        have_torch, torch_why = True, ""
    except Exception as exc:  # noqa: BLE001 - a missing or broken extra means: skip, and say why
        have_torch, torch_why = False, f"torch extra not usable ({type(exc).__name__}: {exc})"
    have_cuda = have_torch and torch_cuda_available()
    cuda_why = torch_why or ("" if have_cuda else "no CUDA device visible to torch")
    kernels_why = cuda_why or ("" if cuda.cupy_available() else "CuPy not installed (extra 'cuda')")
    return [
        _Case("numpy float64", lambda: get_backend("numpy", dtype="float64"), True),
        _Case("numpy float32", lambda: get_backend("numpy", dtype="float32"), False),
        _Case("torch cpu float32", (lambda: TorchBackend("cpu", "float32")) if have_torch else None, False, torch_why),
        _Case("torch cpu float64", (lambda: TorchBackend("cpu", "float64")) if have_torch else None, True, torch_why),
        _Case("torch cuda float32 (twins)", (lambda: TorchBackend("cuda", "float32", use_kernels=False))
              if have_cuda else None, False, cuda_why),
        _Case("torch cuda float32 (fused kernels)", (lambda: TorchBackend("cuda", "float32"))
              if not kernels_why else None, False, kernels_why),
        _Case("torch cuda float64 (fused kernels)", (lambda: TorchBackend("cuda", "float64"))
              if not kernels_why else None, True, kernels_why),
    ]


# ---------------------------------------------------------------------------------------------
# the checks (each returns value text, limit text, ok)
# ---------------------------------------------------------------------------------------------
class _Data:
    """Inputs and spec answers, computed once and shared by every backend."""

    def __init__(self) -> None:
        self.gray = spec.natural_image(57, 83, seed=1)
        self.colour = spec.natural_image(37, 50, seed=3, channels=3)
        self.residuals = [spec.residual(self.gray), spec.residual(self.colour)]
        rng = np.random.default_rng(2)
        refs = spec.camera_images(rng.normal(0, 0.02, (40, 48)), 4, rng)
        refs[0, 5:8, 5:9] = 255  # a saturated patch
        self.refs = refs
        self.fingerprint = spec.fingerprint(refs)
        # identification: three cameras with fingerprints, one disputed image each, and one image
        # of a fourth camera that has no fingerprint (truth: none)
        rng = np.random.default_rng(4)
        ks = [rng.normal(0, 0.02, (128, 160)) for _ in range(4)]
        self.camera_refs = [spec.camera_images(k, 6, rng) for k in ks[:3]]
        self.disputed = np.concatenate([spec.camera_images(k, 1, rng, flat=False) for k in ks])
        self.truth = [0, 1, 2, -1]
        rng = np.random.default_rng(5)
        n_cameras, n_pixels = 4, 2001
        self.prints = rng.normal(size=(n_cameras, 2, n_pixels)) * [[[25.0], [1.0]]] + [[[120.0], [0.0]]]
        self.traces = rng.normal(size=(3, 2, n_pixels)) * 20.0 + 110.0
        self.traces[0] = self.prints[1] + rng.normal(size=(2, n_pixels)) * [[2.0], [0.1]]  # close to camera 1
        self.mask = rng.random((3, n_cameras, n_pixels)) < 0.8


def _check_residual(bk: Backend, data: _Data, float64: bool) -> tuple[str, str, bool]:
    from camid_gpu.prnu.residual import extract_residual

    errs, corrs = [], []
    for img, want in zip((data.gray, data.colour), data.residuals):
        got = extract_residual(img[None], backend=bk)[0].astype(np.float64)
        errs.append(float(np.abs(got - want).max()))
        corrs.append(float(np.corrcoef(got.ravel(), want.ravel())[0, 1]))
    # the public result is float32: a float64 engine is held to float32 rounding of 0..255 values
    limit = 1e-4 if float64 else 1e-3
    err, corr = float(np.max(errs)), float(np.min(corrs))  # NaN-propagating: max() would skip a later NaN
    ok = err <= limit and corr >= 0.99999
    return f"max |err| {err:.2e}, corr {corr:.7f}", f"<= {limit:g}, corr >= 0.99999", ok


def _check_fingerprint(bk: Backend, data: _Data, float64: bool) -> tuple[str, str, bool]:
    from camid_gpu.prnu.fingerprint import estimate_fingerprint

    got = estimate_fingerprint(data.refs, backend=bk, batch_size=3).astype(np.float64)
    rel = float(np.abs(got - data.fingerprint).max() / np.abs(data.fingerprint).max())
    limit = 1e-6 if float64 else 1e-4
    return f"max rel err {rel:.2e}", f"<= {limit:g}", rel <= limit


def _check_pce_known_answer(bk: Backend, data: _Data, float64: bool) -> tuple[str, str, bool]:
    """A hand-built correlation plane: peak 10 at shift (2, 1), +-1 outside its 11x11 neighbourhood,
    so PCE = 10^2 / 1 = 100 exactly; without a shift search the peak is C[0, 0] = 0, so PCE 0."""
    from camid_gpu.prnu.pce import pce

    h, w = 40, 50
    c = np.where((np.add.outer(np.arange(h), np.arange(w)) % 2) == 0, 1.0, -1.0)
    c[0:3, 0:3] = 0.0
    c[38:40, 48:50] = 0.0
    c[2, 1] = 10.0  # its neighbourhood wraps around the corner
    out = pce(bk, bk.asarray(c[None]), shift_range=(3, 3))
    unshifted = pce(bk, bk.asarray(c[None]), shift_range=(0, 0))
    value = float(out["pce"][0])
    tol = 1e-9 if float64 else 1e-4
    ok = (abs(value - 100.0) <= tol * 100 and out["peak_shift"][0].tolist() == [2, 1] and int(out["shifts"]) == 16
          and float(unshifted["pce"][0]) == 0.0)
    return f"PCE {value:.6f} at {out['peak_shift'][0].tolist()}", f"100 at [2, 1] (rel {tol:g})", ok


def _identify(bk: Backend, data: _Data) -> tuple[list[int], np.ndarray]:
    from camid_gpu.prnu.decision import decide
    from camid_gpu.prnu.fingerprint import estimate_fingerprint
    from camid_gpu.prnu.pce import pce_scores
    from camid_gpu.prnu.residual import extract_residual

    fps = np.stack([estimate_fingerprint(refs, backend=bk) for refs in data.camera_refs])
    res = extract_residual(data.disputed, sigma=SIGMA_QUERY, wiener=True, backend=bk)
    scores = pce_scores(bk, bk.asarray(res), bk.asarray(data.disputed.astype(np.float64)), bk.asarray(fps))
    made = [decide(dict(enumerate(row.tolist())), PCE_THRESHOLD).decision for row in scores.pce]
    decisions = [-1 if d is None else int(d) for d in made]
    return decisions, scores.pce


def _identified(bk: Backend, data: _Data, cache: dict) -> tuple[list[int], np.ndarray]:
    if id(bk) not in cache:
        cache[id(bk)] = _identify(bk, data)
    return cache[id(bk)]


def _check_identification(bk: Backend, data: _Data, float64: bool, cache: dict) -> tuple[str, str, bool]:
    decisions, scores = _identified(bk, data, cache)
    ok = decisions == data.truth and _best_other(scores, data) < PCE_THRESHOLD
    own = [f"{scores[i, t]:.0f}" for i, t in enumerate(data.truth) if t >= 0]
    return (f"decisions {decisions}, own-camera PCE {', '.join(own)}, best other {_best_other(scores, data):.1f}",
            f"{data.truth} (-1: none), PCE > {PCE_THRESHOLD:g} only for the own camera", ok)


def _best_other(scores: np.ndarray, data: _Data) -> float:
    other = np.ones(scores.shape, bool)
    for i, t in enumerate(data.truth):
        if t >= 0:
            other[i, t] = False
    return float(scores[other].max())


def _check_decision_parity(bk: Backend, data: _Data, reference: tuple[list[int], np.ndarray],
                           cache: dict) -> tuple[str, str, bool]:
    decisions, scores = _identified(bk, data, cache)
    ref_decisions, ref_scores = reference
    rel = float(np.max(np.abs(scores - ref_scores) / np.maximum(np.abs(ref_scores), 1.0)))
    ok = decisions == ref_decisions and rel <= 1e-3
    return f"same decisions: {decisions == ref_decisions}, PCE max rel diff {rel:.2e}", "same, <= 1e-3", ok


def _check_mahalanobis_parity(bk: Backend, data: _Data, float64: bool,
                              reference: Any) -> tuple[str, str, bool]:
    from camid_gpu.mahalanobis import pair_statistics

    mask = data.mask
    if isinstance(bk, TorchBackend):
        mask = bk.torch.as_tensor(mask, device=bk.torch_device)
    got = pair_statistics(bk, bk.asarray(data.traces), bk.asarray(data.prints), mask)
    flips = int(np.abs(got.satisfied - reference.satisfied).max())
    # NaN only where the reference has 0/0 (a zero covariance term); a NaN the engine made is a failure
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.abs(got.covariance - reference.covariance) / np.abs(reference.covariance)
    made_nan = ~np.isfinite(got.covariance) & np.isfinite(reference.covariance)
    cov = float("nan") if made_nan.any() else float(np.nanmax(ratio))
    allowed = 0 if float64 else 5  # float32 distances may flip a near-tie
    ok = (np.array_equal(got.pixels, reference.pixels) and np.array_equal(got.valid, reference.valid)
          and flips <= allowed and cov <= (1e-9 if float64 else 1e-4))
    return f"count diffs {flips} px, covariance rel diff {cov:.1e}", f"<= {allowed} px, <= {1e-9 if float64 else 1e-4:g}", ok


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------
def _run(checks: list[Check], label: str, name: str, func: Callable[[], tuple[str, str, bool]]) -> None:
    try:
        value, limit, ok = func()
        checks.append(Check(label, name, PASS if ok else FAIL, value, limit))
    except Exception as exc:  # noqa: BLE001 - a crash is a failed check, recorded with its reason
        checks.append(Check(label, name, FAIL, "", "", f"{type(exc).__name__}: {exc}"))


CHECK_NAMES = ("residual vs float64 spec", "fingerprint vs float64 spec", "PCE known answer",
               "identification, known truth", "decisions = numpy's", "Mahalanobis statistics = numpy's")


def run_selftest(cases: list[_Case] | None = None) -> SelftestReport:
    """Run every check on every backend present; backends that are absent give "skip" rows."""
    import warnings

    from camid_gpu._cuda import loader as cuda
    from camid_gpu.mahalanobis import pair_statistics
    from camid_gpu.pipeline.kernels import fused_kernels
    from camid_gpu.provenance import utc_now

    started, t0 = utc_now(), time.perf_counter()
    cases = backend_cases() if cases is None else cases
    data = _Data()
    numpy_bk = get_backend("numpy", dtype="float64")
    reference = _identify(numpy_bk, data)
    maha_reference = pair_statistics(numpy_bk, data.traces, data.prints, data.mask)
    checks: list[Check] = []
    cache: dict = {id(numpy_bk): reference}
    for case in cases:
        if case.make is None:
            checks.append(Check(case.label, "all checks", SKIP, detail=case.why_not))
            continue
        try:
            bk = case.make()
        except Exception as exc:  # noqa: BLE001
            checks.append(Check(case.label, "backend starts", FAIL, detail=f"{type(exc).__name__}: {exc}"))
            continue
        if bk.name == "torch" and bk.use_kernels:
            with warnings.catch_warnings(record=True):  # the fallback is reported as a failed row
                warnings.simplefilter("always")
                for kernel in fused_kernels():
                    check = cuda.self_check(kernel, bk.torch_device)
                    checks.append(Check(case.label, f"kernel self-check: {kernel.name}",
                                        PASS if check.verified else FAIL, str(check), "verified"))
        _run(checks, case.label, CHECK_NAMES[0], lambda: _check_residual(bk, data, case.float64))
        _run(checks, case.label, CHECK_NAMES[1], lambda: _check_fingerprint(bk, data, case.float64))
        _run(checks, case.label, CHECK_NAMES[2], lambda: _check_pce_known_answer(bk, data, case.float64))
        _run(checks, case.label, CHECK_NAMES[3], lambda: _check_identification(bk, data, case.float64, cache))
        if bk is not numpy_bk:
            _run(checks, case.label, CHECK_NAMES[4], lambda: _check_decision_parity(bk, data, reference, cache))
            _run(checks, case.label, CHECK_NAMES[5],
                 lambda: _check_mahalanobis_parity(bk, data, case.float64, maha_reference))
    return SelftestReport(started, utc_now(), time.perf_counter() - t0, system_info(), checks)


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------
def format_table(report: SelftestReport) -> str:
    """The checks as a fixed-width text table, then the verdict."""
    header = ("backend", "check", "result", "measured", "required")
    rows = [(c.backend, c.name, c.status.upper(), c.value or c.detail, c.limit) for c in report.checks]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r[:4], widths)) + ("  " + r[4] if r[4] else "")
             for r in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    failed = sum(c.status == FAIL for c in report.checks)
    verdict = "PASSED" if report.passed else f"FAILED ({failed} check{'s' if failed != 1 else ''})"
    lines.append(f"\nselftest {verdict} in {report.seconds:.1f} s")
    return "\n".join(lines)


def _html(report: SelftestReport) -> str:
    e = html.escape
    sysinfo = report.system
    facts = [("result", "PASSED" if report.passed else "FAILED"), ("started", report.started),
             ("finished", report.finished), ("camid_gpu", sysinfo["software"].get("camid_gpu", "")),
             ("platform", sysinfo["software"].get("platform", "")), ("cpu", f"{sysinfo['cpu']} ({sysinfo['cpu_count']} cores)"),
             ("CUDA devices", "; ".join(f"{d['name']} (cc {d['capability']}, {d['memory_gib']} GiB)"
                                        for d in sysinfo["cuda_devices"]) or "none"),
             ("CUDA runtime", sysinfo.get("cuda_runtime") or "none"), ("driver", sysinfo.get("driver") or "none"),
             ("software", ", ".join(f"{k} {v}" for k, v in sorted(sysinfo["software"].items()) if k != "platform"))]
    rows = "\n".join(f"<tr class='{c.status}'><td>{e(c.backend)}</td><td>{e(c.name)}</td><td>{c.status.upper()}</td>"
                     f"<td>{e(c.value or c.detail)}</td><td>{e(c.limit)}</td></tr>" for c in report.checks)
    fact_rows = "\n".join(f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in facts)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>camid selftest {e(report.started)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}} tr.fail td{{background:#fdd}}
tr.skip td{{color:#777}} tr.pass td:nth-child(3){{color:#060}}</style></head>
<body><h1>camid selftest: {"PASSED" if report.passed else "FAILED"}</h1>
<table>{fact_rows}</table>
<h2>Checks</h2>
<table><tr><th>backend</th><th>check</th><th>result</th><th>measured</th><th>required</th></tr>
{rows}
</table></body></html>
"""


def write_record(report: SelftestReport, out_dir: str) -> tuple[str, str]:
    """Write ``out_dir/selftest.json`` and ``out_dir/selftest.html``; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    json_path = write_json(os.path.join(out_dir, "selftest.json"), report.to_dict())
    html_path = os.path.join(out_dir, "selftest.html")
    with open(html_path, "w", encoding="utf-8") as handle:
        handle.write(_html(report))
    return json_path, html_path
