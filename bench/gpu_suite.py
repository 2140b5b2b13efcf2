"""Everything a lent GPU should run, in one call, within a time budget (default 7 minutes).

Started by ``bench/gpu_suite.sh`` (which first installs camid from the working tree if needed). Runs,
in order, each in a subprocess with its own time limit cut to what is left of the budget:

1. ``camid selftest`` (known answers on every backend, the fused kernels' self-check);
2. ``pytest -m gpu`` (fused kernels vs twins, torch CUDA parity, ...);
3. every benchmark at the sizes that matter (bench/README.md: residuals of 1000x1000 clippings on the
   GPU, with the fused kernels and with the torch twins; the same against the CPU backends; the
   Mahalanobis grids; end-to-end identification of 12 MP JPEGs against 10 cameras).

and writes ``<out-dir>/<device>-<date>.json`` and ``.md``: the commands with their exit status and time,
commit, device, driver, CUDA, versions, the tables as printed, and one line per target: met, not met
or not run (with the reason). A step that fails or times out is recorded and the suite goes on.
``--dry-run`` runs nothing and writes the record of what would run (every target "not run").
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
FORMAT = "camid-gpu-suite"
#: seconds kept back at the end for writing the record
RESERVE_S = 15
#: the whole suite: a GPU lent for 15 minutes must also pay its start and leave room to run the failed
#: steps again (--only) after a fix
DEFAULT_BUDGET_S = 420.0


@dataclass
class Step:
    """One command of the suite; ``budget_s`` is its own limit (cut to what the suite has left)."""

    name: str
    argv: list[str]
    budget_s: int
    needs_gpu: bool = True
    json_out: str | None = None  # the --json-out file the command writes, if any
    # filled in by the run
    status: str = "not run"  # ok | failed | timeout | not run
    reason: str = ""
    rc: int | None = None
    seconds: float = 0.0
    output: str = ""
    result: Any = None

    def command(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv)


@dataclass(frozen=True)
class Target:
    """A line of bench/README's target table and how to read it off the results."""

    what: str
    required: float
    unit: str
    source: str  # the step whose result holds the figure
    measure: Callable[[Any], tuple[float | None, str]] = field(compare=False)


def steps(work: Path, python: str) -> list[Step]:
    bench = lambda name: [python, str(ROOT / "bench" / name)]  # noqa: E731
    camid = [python, "-m", "camid_gpu.cli"]
    return [
        Step("selftest", camid + ["selftest", "-o", str(work / "selftest")], 120, needs_gpu=False,
             json_out=str(work / "selftest" / "selftest.json")),
        Step("pytest-gpu", [python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-rs",
                            str(ROOT / "tests")], 150),
        Step("residual-gpu", bench("bench_residual.py") + [
            "--backends", "torch:cuda", "--batches", "1", "8", "32", "64", "--images", "256", "--repeat", "3",
            "--json-out", str(work / "residual-gpu.json")], 120, json_out=str(work / "residual-gpu.json")),
        Step("residual-gpu-wiener", bench("bench_residual.py") + [
            "--backends", "torch:cuda", "--wiener", "--batches", "32", "--images", "256", "--repeat", "3",
            "--no-loop", "--json-out", str(work / "residual-gpu-wiener.json")], 90,
            json_out=str(work / "residual-gpu-wiener.json")),
        Step("residual-vs-cpu", bench("bench_residual.py") + [
            "--batches", "8", "--images", "8", "--repeat", "1", "--no-loop", "--threads", str(os.cpu_count() or 1),
            "--json-out", str(work / "residual-vs-cpu.json")], 120, json_out=str(work / "residual-vs-cpu.json")),
        Step("mahalanobis-gpu", bench("bench_mahalanobis.py") + [
            "--backends", "torch:cuda", "--json-out", str(work / "mahalanobis-gpu.json")], 90,
            json_out=str(work / "mahalanobis-gpu.json")),
        Step("identify-12mp-10cams", bench("bench_identify.py") + [
            "--images", "40", "--cameras", "10", "--refs", "2", "--chunk", "8", "--modes", "scheduler", "--clip", "0",
            "--workers", str(max(1, (os.cpu_count() or 2) - 2)), "--data", str(work / "identify-data"),
            "--json-out", str(work / "identify.json")], 240, json_out=str(work / "identify.json")),
        Step("cluster-gram-gpu", bench("bench_cluster.py") + [
            "--backends", "torch:cuda", "--n", "500", "2000", "10000", "--budget", "40G", "--run-images", "0",
            "--json-out", str(work / "cluster-gram-gpu.json")], 90, json_out=str(work / "cluster-gram-gpu.json")),
    ]


# ---------------------------------------------------------------------------------------------
# targets (bench/README.md, "The targets")
# ---------------------------------------------------------------------------------------------
def _best_residual_rate(result: Any, backend: str) -> tuple[float | None, str]:
    rows = [r for r in (result or {}).get("rows", []) if r.get("backend") == backend and r.get("mode") == "batched"]
    if not rows:
        return None, f"no {backend} rows (CuPy missing?)" if "kernels" in backend else f"no {backend} rows"
    if list((result or {}).get("clip", [])) != [1000, 1000]:
        return None, f"measured at {result.get('clip')}, the target is for 1000x1000"
    best = max(rows, key=lambda r: r["images_per_s"])
    return float(best["images_per_s"]), f"best batch {best['batch']}"


def _identify_rate(result: Any) -> tuple[float | None, str]:
    rows = [r for r in (result or {}).get("rows", []) if r.get("mode") == "scheduler"]
    if not rows:
        return None, "no scheduler row"
    size = (result or {}).get("size")
    if result.get("cameras", 0) < 10 or list(size or []) != [3000, 4000]:
        return None, f"measured with {result.get('cameras')} cameras at {size}, the target is 10 at 12 MP"
    # the target is with GPU decoding: the scheduler/gpu row when the GPU decoder ran, else the CPU-decoded one
    row = max(rows, key=lambda r: (r.get("decode") == "gpu", r["images_per_s"]))
    decode = row.get("decode") or result.get("decode") or "cpu"
    clip = result.get("clip")
    return float(row["images_per_s"]), (f"{result.get('images')} images, decode {decode}"
                                        + (f", {row.get('gpu_decoded')} decoded on the GPU" if decode == "gpu" else "")
                                        + (f", clip {clip} (the target is full frame)" if clip else ""))


TARGETS = [
    Target("residuals of 1000x1000 clippings, torch path (torch:cuda-twin)", 5000, "img/s", "residual-gpu",
           lambda r: _best_residual_rate(r, "torch:cuda-twin")),
    Target("residuals of 1000x1000 clippings, fused kernels (torch:cuda+kernels)", 20000, "img/s", "residual-gpu",
           lambda r: _best_residual_rate(r, "torch:cuda+kernels")),
    Target("end-to-end identification of 12 MP JPEGs against 10 cameras", 200, "img/s", "identify-12mp-10cams",
           _identify_rate),
]


def evaluate_targets(done: dict[str, Step]) -> list[dict[str, Any]]:
    """One entry per target: met / not met / not run, with the figure and where it comes from."""
    out = []
    for target in TARGETS:
        entry = {"target": target.what, "required": f">= {target.required:g} {target.unit}", "source": target.source}
        step = done.get(target.source)
        if step is None or step.status != "ok" or step.result is None:
            why = "step missing" if step is None else (step.reason or step.status)
            out.append({**entry, "status": "not run", "measured": None, "note": f"{target.source}: {why}"})
            continue
        try:
            value, note = target.measure(step.result)
        except Exception as exc:  # noqa: BLE001 - a result in an unexpected shape is "not run", said so
            value, note = None, f"unreadable result ({type(exc).__name__}: {exc})"
        if value is None:
            out.append({**entry, "status": "not run", "measured": None, "note": note})
        else:
            out.append({**entry, "status": "met" if value >= target.required else "not met",
                        "measured": round(value, 3), "note": note})
    return out


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def gpu_present(python: str) -> tuple[bool, str]:
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"cannot ask torch for CUDA ({exc})"
    if proc.returncode == 0:
        return True, ""
    return False, "torch sees no CUDA device" if proc.returncode == 3 else "torch does not import"


def run_step(step: Step, left_s: float) -> None:
    limit = min(step.budget_s, left_s)
    if limit < 20:
        step.status, step.reason = "not run", "time budget spent"
        return
    start = time.monotonic()
    try:
        proc = subprocess.run(step.argv, capture_output=True, text=True, timeout=limit, cwd=ROOT)
        step.rc, step.output = proc.returncode, proc.stdout + (("\n[stderr]\n" + proc.stderr[-4000:])
                                                               if proc.returncode else "")
        step.status = "ok" if proc.returncode == 0 else "failed"
        if proc.returncode != 0:
            step.reason = f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        step.status, step.reason, step.output = "timeout", f"killed after {limit:.0f} s", out
    step.seconds = time.monotonic() - start
    if step.json_out and os.path.exists(step.json_out):
        try:
            with open(step.json_out, encoding="utf-8") as handle:
                step.result = json.load(handle)
        except (OSError, ValueError) as exc:
            step.reason = (step.reason + "; " if step.reason else "") + f"unreadable JSON ({exc})"


def device_facts(python: str) -> dict[str, Any]:
    """GPU name, driver, CUDA, versions, commit: from a subprocess with camid installed."""
    code = ("import json; from camid_gpu.selftest import system_info; print(json.dumps(system_info()))")
    facts: dict[str, Any] = {}
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
        facts = json.loads(proc.stdout) if proc.returncode == 0 else {"error": proc.stderr[-2000:]}
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        facts = {"error": str(exc)}
    return facts


def git_commit() -> str:
    try:
        commit = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                         stderr=subprocess.DEVNULL).strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--"], cwd=ROOT, stderr=subprocess.DEVNULL).returncode
        return commit + ("-dirty" if dirty == 1 else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git checkout)"


def device_label(facts: dict[str, Any]) -> str:
    devices = facts.get("cuda_devices") or []
    name = devices[0]["name"] if devices else f"no-gpu-{platform.node() or 'host'}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


# ---------------------------------------------------------------------------------------------
# the record
# ---------------------------------------------------------------------------------------------
def _table_of(step: Step) -> str:
    """What a step printed for people: a bench's table after its JSON object, pytest's summary, the
    selftest table."""
    text = step.output.split("\n[stderr]\n")[0]
    if step.name.startswith(("residual", "mahalanobis", "identify")):
        try:
            _, end = json.JSONDecoder().raw_decode(text.lstrip())
            return text.lstrip()[end:].strip()
        except ValueError:
            return text.strip()[-3000:]
    if step.name == "pytest-gpu":
        return "\n".join(text.strip().splitlines()[-25:])
    return text.strip()


def record(steps_run: list[Step], facts: dict[str, Any], started: str, seconds: float, dry_run: bool,
           budget_s: float) -> dict[str, Any]:
    done = {s.name: s for s in steps_run}
    return {"format": FORMAT, "version": 1, "dry_run": dry_run, "started": started,
            "date": started[:10], "seconds": round(seconds, 1), "budget_s": budget_s, "commit": git_commit(),
            "device": device_label(facts), "system": facts,
            "steps": [{k: v for k, v in asdict(s).items() if k not in ("output", "result")} | {"command": s.command()}
                      for s in steps_run],
            "results": {s.name: s.result for s in steps_run if s.result is not None},
            "targets": evaluate_targets(done)}


def markdown(rec: dict[str, Any], steps_run: list[Step]) -> str:
    sysinfo = rec["system"]
    gpus = "; ".join(f"{d['name']} (cc {d['capability']}, {d['memory_gib']} GiB)"
                     for d in sysinfo.get("cuda_devices") or []) or "none"
    lines = [f"# GPU suite: {rec['device']}, {rec['date']}", ""]
    if rec["dry_run"]:
        lines += ["**Dry run: nothing was executed; no figure below was measured.**", ""]
    lines += [f"- commit: `{rec['commit']}`", f"- started: {rec['started']} (UTC), {rec['seconds']} s of a "
              f"{rec['budget_s']:g} s budget", f"- GPUs: {gpus}",
              f"- driver: {sysinfo.get('driver') or 'unknown'} (CUDA driver API "
              f"{sysinfo.get('driver_cuda_api') or 'unknown'}), CUDA runtime (torch): {sysinfo.get('cuda_runtime') or 'none'}",
              f"- CPU: {sysinfo.get('cpu', '?')} ({sysinfo.get('cpu_count', '?')} cores)",
              f"- software: " + ", ".join(f"{k} {v}" for k, v in sorted((sysinfo.get("software") or {}).items())),
              "", "## Targets (bench/README.md)", "", "| target | required | measured | status | note |",
              "|---|---|---|---|---|"]
    for t in rec["targets"]:
        measured = "-" if t["measured"] is None else f"{t['measured']:g}"
        lines.append(f"| {t['target']} | {t['required']} | {measured} | **{t['status']}** | {t['note']} |")
    lines += ["", "## Commands", "", "| step | status | s | command |", "|---|---|---|---|"]
    for s in steps_run:
        status = s.status + (f" ({s.reason})" if s.reason else "")
        lines.append(f"| {s.name} | {status} | {s.seconds:.0f} | `{s.command()}` |")
    for s in steps_run:
        table = _table_of(s)
        if table:
            lines += ["", f"## {s.name}", "", "```", table, "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"),
                    help="where <device>-<date>.json/.md go (default bench/results)")
    ap.add_argument("--work-dir", default=None,
                    help="scratch folder for the steps (default TMP/camid-gpu-suite-<date>; the 12 MP data set "
                         "rendered there is reused by a second run on the same machine)")
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                    help=f"seconds for the whole suite (default {DEFAULT_BUDGET_S:g})")
    ap.add_argument("--only", nargs="+", default=None, help="run only these steps (names as in the record)")
    ap.add_argument("--dry-run", action="store_true", help="run nothing; write the record of what would run")
    ap.add_argument("--python", default=sys.executable, help="interpreter with camid installed")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    # the shell wrapper passes its own start time, so the install counts against the budget too
    started_epoch = float(os.environ.get("CAMID_SUITE_START", time.time()))
    deadline = t0 + args.budget - (time.time() - started_epoch) - RESERVE_S
    started = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started_epoch))
    out_dir = Path(args.out_dir)
    work = Path(args.work_dir or Path(tempfile.gettempdir()) / f"camid-gpu-suite-{started[:10]}")
    plan = steps(work, args.python)
    if args.only:
        unknown = set(args.only) - {s.name for s in plan}
        if unknown:
            ap.error(f"unknown steps {sorted(unknown)}; known: {[s.name for s in plan]}")
        plan = [s for s in plan if s.name in args.only]
    if args.dry_run:
        for s in plan:
            s.reason = "dry run"
        facts = {}
    else:
        work.mkdir(parents=True, exist_ok=True)
        has_gpu, why = gpu_present(args.python)
        for s in plan:
            if s.needs_gpu and not has_gpu:
                s.reason = why
                continue
            print(f"gpu_suite: {s.name} ({min(s.budget_s, deadline - time.monotonic()):.0f} s at most): {s.command()}",
                  file=sys.stderr)
            run_step(s, deadline - time.monotonic())
            print(f"gpu_suite: {s.name}: {s.status} {s.reason} ({s.seconds:.0f} s)", file=sys.stderr)
        facts = device_facts(args.python)
    rec = record(plan, facts, started, time.monotonic() - t0, args.dry_run, args.budget)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{rec['device']}-{rec['date']}{'-dry-run' if args.dry_run else ''}"
    Path(f"{stem}.json").write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    Path(f"{stem}.md").write_text(markdown(rec, plan), encoding="utf-8")
    for t in rec["targets"]:
        print(f"{t['status']:8s} {t['target']} ({t['required']}; measured {t['measured']}; {t['note']})")
    print(f"gpu_suite: wrote {stem}.json and {stem}.md")
    failed = [s.name for s in plan if s.status in ("failed", "timeout")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
