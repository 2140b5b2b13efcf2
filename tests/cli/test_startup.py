"""Start-up: importing the command line loads no heavy library; each is imported by the command that uses it."""
from __future__ import annotations

import os
import subprocess
import sys

import camid_gpu

HEAVY = ("scipy", "torch", "matplotlib", "rich", "numpy.testing", "numpy.f2py", "pywt", "PIL")


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY + ('numpy',)!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(camid_gpu.__file__))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


def test_importing_the_cli_imports_no_heavy_library():
    assert _loaded_after("import camid_gpu.cli") == []  # not even NumPy: --version answers before it


def test_the_commands_import_no_scipy_torch_matplotlib_or_rich():
    # the parser and every command's module: SciPy, torch, matplotlib and rich load with the work that needs them
    assert _loaded_after("import camid_gpu.cli.commands, camid_gpu.cli.parser; "
                         "camid_gpu.cli.parser.build_parser()") == ["numpy"]


def test_version_is_answered_without_the_commands(capsys):
    from camid_gpu.cli import main

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"camid {camid_gpu.__version__}\n"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(camid_gpu.__file__))}
    out = subprocess.run([sys.executable, "-m", "camid_gpu.cli", "--version"], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout == f"camid {camid_gpu.__version__}\n"
