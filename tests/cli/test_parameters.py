"""Command-line parameters: a bad value is one clear line naming the option; the manifest records the
store parameters actually used."""
from __future__ import annotations

import json

import pytest

from camid_gpu.cli import EXIT_FAIL, EXIT_OK, main
from camid_gpu.config import RunConfig, parse_bytes

from conftest import evidence, FP_ARGS, RUN_ARGS


@pytest.mark.parametrize("option,value", [("--sigma-query", "inf"), ("--sigma-query", "nan"), ("--sigma-query", "0"),
                                          ("--pce-threshold", "nan"), ("--pce-threshold", "inf"),
                                          ("--pce-threshold", "-1000"), ("--shift-range", "-3"),
                                          ("--max-host-memory", "inf"), ("--max-host-memory", "1e400"),
                                          ("--max-gpu-memory", "-1G"), ("--workers", "0"),
                                          ("--dask", "local:0"), ("--dask", "local:x"),
                                          ("--device", "banana"), ("--device", "cuda:7")])
def test_bad_parameters_are_one_clear_line(world, tmp_path, capsys, option, value):
    assert main(["identify", str(world / "fp"), str(world / "data" / "disputed"), "-o", str(tmp_path / "r"),
                 f"{option}={value}", *RUN_ARGS[:1]]) == EXIT_FAIL
    err = capsys.readouterr().err
    assert err.startswith("camid: error:") and err.count("\n") == 1 and "Traceback" not in err
    assert option.lstrip("-").split("-")[0] in err.replace("_", "-")
    assert not (tmp_path / "r").exists()


def test_refs_and_numbers_name_the_option(capsys):
    with pytest.raises(ValueError, match="--refs must be a whole number"):
        from camid_gpu.config import parse_refs

        parse_refs("ten")
    with pytest.raises(ValueError, match="finite, positive"):
        parse_bytes("inf")
    with pytest.raises(ValueError, match="workers"):
        RunConfig(workers=0)


def test_manifest_records_the_store_parameters_actually_used(world, tmp_path, capsys):
    fp = tmp_path / "fp25"
    assert main(["fingerprint", str(world / "data" / "refs"), "-o", str(fp), "--sigma-fingerprint", "2.5",
                 *FP_ARGS]) == EXIT_OK
    ev = evidence(world, tmp_path)
    assert main(["identify", str(fp), str(ev), "-o", str(tmp_path / "r"), "--sigma-fingerprint", "3",
                 *RUN_ARGS]) == EXIT_FAIL
    assert "built with 2.5" in capsys.readouterr().err
    assert main(["identify", str(fp), str(ev), "-o", str(tmp_path / "r"), *RUN_ARGS]) == EXIT_OK
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["params"]["sigma_fingerprint"] == 2.5
