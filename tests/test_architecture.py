"""The package's shape: stages import only downwards, no import cycles, and a checkout runs without installing.

Layers, bottom first. A module may import modules of its own layer or of lower ones, never of a higher one;
and the module-level import graph (imports inside functions included: a cycle closed by a function-level
import is still a cycle) has no cycle.
"""
from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys
import sysconfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "camid_gpu"

#: the stage order, bottom first; names are "camid_gpu.<first component>"
LAYERS: list[set[str]] = [
    {"_version", "errors"},
    {"_shared"},        # optional imports
    {"config"},         # every default (the API's precision too), Params, RunConfig
    {"_cuda", "kernels"},  # the generic kernel loader; the CUDA sources (package data)
    {"backend"},        # the NumPy/torch seam
    {"io"},             # decoding, geometry, listing
    {"prnu"},           # residual, fingerprint, PCE, search (+ the fused Mihcak launcher)
    {"mahalanobis"},    # the PeerJ CS classifier (+ its fused launcher)
    {"store"},          # fingerprint files (the pipeline loads them)
    {"pipeline"},       # one chunk: prepare, identify, records
    {"provenance", "evaluate"},
    {"evidence"},       # LR calibration and use (reads run manifests; the casework record is pipeline's)
    {"engine"},         # context, scheduler, one module per command, dask
    {"cluster"},        # blind source clustering (Gram, threshold, linkage, its run on the engine)
    {"library"},        # the fingerprint library (catalogue, arrays, screening, search, link)
    {"report", "datasets", "selftest"},  # selftest: known answers on every backend (spec.py: plain float64)
    {"cli"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def imports_of(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """camid_gpu modules imported by ``name`` anywhere in its file (a submodule named in ``from X import y``
    counts as ``X.y``)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("camid_gpu")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("camid_gpu"):
                continue
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return found - {name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_module_has_a_layer():
    unplaced = sorted({layer_of(m) for m in modules()} - set(RANK) - {None})
    assert not unplaced, f"add these to LAYERS in {__file__}: {unplaced}"


def test_no_upward_imports():
    upward = []
    for name, deps in graph().items():
        if layer_of(name) is None:
            continue  # the root package's lazy exports may name any layer
        for dep in deps:
            if layer_of(dep) is not None and RANK[layer_of(dep)] > RANK[layer_of(name)]:
                upward.append(f"{name} imports {dep}")
    assert not upward, "\n".join(sorted(upward))


def test_no_import_cycles():
    deps = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(deps.get(node, ())):
            if nxt not in deps:
                continue
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(deps):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_import_walker_sees_submodule_and_function_imports():
    """The checks above are not vacuous: the walker finds ``from package import submodule`` and imports
    inside functions."""
    deps = graph()
    assert "camid_gpu.backend.host_kernels" in deps["camid_gpu.prnu.residual"]   # from package import submodule
    assert "camid_gpu.prnu.search" in deps["camid_gpu.pipeline.identify"]        # an import inside a function
    assert "camid_gpu._cuda.loader" in deps["camid_gpu.prnu.mihcak_kernel"]


def test_runs_from_a_checkout_without_installing(tmp_path):
    """PYTHONPATH=<checkout>, no site-packages processing (so no editable-install finder): the kernel sources
    are found in the package (camid_gpu/kernels/) and the CLI runs."""
    site = sysconfig.get_paths()["purelib"]
    script = ("from camid_gpu._cuda import loader\n"
              "files = loader.kernel_files()\n"
              "assert {'mihcak_shrink.cu', 'mahalanobis.cu'} <= set(files), files\n"
              "assert '__global__' in loader.kernel_source('mahalanobis.cu')\n"
              "from camid_gpu.cli import main\n"
              "raise SystemExit(main(['info']))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), site]))
    proc = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "camid" in proc.stdout


def test_public_api_is_lazy_and_complete():
    """``from camid_gpu import extract_residual, read_image`` (the README's promise) works, and a bare
    ``import camid_gpu`` loads none of the stages."""
    script = ("import sys, camid_gpu\n"
              "assert not [m for m in sys.modules if m.startswith('camid_gpu.') and m != 'camid_gpu._version'], "
              "sorted(sys.modules)\n"
              "from camid_gpu import extract_residual, read_image, estimate_fingerprint, pce_scores, get_backend\n"
              "from camid_gpu import Params, RunConfig, CamidError\n"
              "import camid_gpu.prnu.residual as r\n"
              "assert extract_residual is r.extract_residual\n"
              "assert set(camid_gpu.__all__) <= set(dir(camid_gpu))\n"
              "try:\n    camid_gpu.no_such_name\nexcept AttributeError:\n    pass\n"
              "else:\n    raise SystemExit('no AttributeError')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_backend_itemsize():
    from camid_gpu.backend import get_backend

    assert get_backend("numpy").itemsize == 8


def test_backend_is_a_typed_protocol():
    import numpy as np

    from camid_gpu.backend import Backend, NumpyBackend, get_backend

    bk = get_backend("numpy")
    assert isinstance(bk, Backend) and not isinstance("numpy", Backend)
    assert get_backend(bk) is bk
    assert NumpyBackend.sum.__annotations__ == {"x": "np.ndarray", "axis": "int | tuple[int, ...]",
                                                "return": "np.ndarray"}
    assert bk.sum(np.ones((2, 3)), -1).shape == (2, 1)


def test_cli_lists_devices_through_the_backend():
    """Only backend/ (and the CUDA loader) import torch; the CLI asks the backend for the devices."""
    from conftest import cuda_available

    from camid_gpu.backend import cuda_devices

    for path in (PACKAGE / "cli").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.split(".")[0] == "torch"], f"{path.name} imports torch"
    devices = cuda_devices()
    assert (len(devices) > 0) == cuda_available()
    assert all(d.total_bytes >= d.free_bytes >= 0 for d in devices)


def test_runtime_error_does_not_escape_main(tmp_path, capsys):
    """A CUDA device that is not there is an error message and exit code 1, not a traceback."""
    from conftest import HAVE_TORCH, cuda_available

    if not HAVE_TORCH or cuda_available():
        import pytest

        pytest.skip("needs torch without a CUDA device")
    import numpy as np
    import tifffile

    from camid_gpu.cli import EXIT_FAIL, main

    image = tmp_path / "a.tif"
    tifffile.imwrite(image, np.full((64, 64), 128, np.uint8))
    code = main(["residual", str(image), "-o", str(tmp_path / "out"), "--backend", "torch", "--device", "cuda"])
    assert code == EXIT_FAIL
    assert "CUDA" in capsys.readouterr().err


def test_write_json_is_atomic_and_canonical(tmp_path, monkeypatch):
    import json

    import pytest

    from camid_gpu._shared import jsonio

    path = tmp_path / "a.json"
    jsonio.write_json(path, {"b": 1, "a": [1.5, None]})
    assert path.read_text() == '{\n "a": [\n  1.5,\n  null\n ],\n "b": 1\n}\n'

    def broken_dump(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(json, "dump", broken_dump)
    with pytest.raises(RuntimeError):
        jsonio.write_json(path, {"c": 2})
    assert json.loads(path.read_text()) == {"a": [1.5, None], "b": 1}  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # no temporary left behind


def test_json_number_rules():
    from camid_gpu._shared.jsonio import json_float, json_number

    assert json_number(123.456789) == 123.457 and json_number(float("nan")) is None
    assert json_float(0.1234567891) == 0.1234567891 and json_float(float("inf")) is None
