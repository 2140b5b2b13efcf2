"""camid verify: every run records and prints its manifest hash; verify fails when nothing is checked,
escapes a hostile manifest's fields and keeps usage errors apart from 'changed'."""
from __future__ import annotations

import hashlib
import json

import pytest

from camid_gpu.cli import EXIT_FAIL, EXIT_OK, EXIT_VERIFY_FAILED, main

from conftest import evidence, RUN_ARGS


def test_every_run_records_and_prints_the_manifest_hash(world, tmp_path, capsys):
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_OK
    out = capsys.readouterr().out
    digest = hashlib.sha256((run / "manifest.json").read_bytes()).hexdigest()
    assert (run / "manifest.sha256").read_text() == f"{digest}  manifest.json\n" and digest in out
    assert main(["verify", str(run), "--expect-sha256", digest]) == EXIT_OK
    assert main(["verify", str(run), "--expect-sha256", "0" * 64]) == EXIT_VERIFY_FAILED
    assert "expected 0000" in capsys.readouterr().out
    fp_manifest = json.loads((world / "fp" / "manifest.json").read_text())
    assert fp_manifest["command"] == "fingerprint" and (world / "fp" / "manifest.sha256").exists()


@pytest.mark.parametrize("edit", ["null_hashes", "empty_lists", "missing_fields", "mistyped", "bad_hash"])
def test_verify_fails_when_nothing_is_checked(world, tmp_path, capsys, edit):
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_OK
    manifest = json.loads((run / "manifest.json").read_text())
    if edit == "null_hashes":
        for key in ("inputs", "outputs", "fingerprints"):
            for entry in manifest[key]:
                entry["sha256"] = None
                for ref in entry.get("references", []):
                    ref["sha256"] = None
    elif edit == "empty_lists":
        manifest.update(inputs=[], outputs=[], fingerprints=[])
    elif edit == "missing_fields":
        del manifest["inputs"], manifest["outputs"]
    elif edit == "mistyped":
        manifest["inputs"] = "everything"
        manifest["outputs"] = [3, {"path": 4}]
    else:
        manifest["inputs"][0]["sha256"] = "abc"
    (run / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["verify", str(run / "manifest.json")]) == EXIT_VERIFY_FAILED
    out = capsys.readouterr().out
    assert "FAILED" in out and "all unchanged" not in out


def test_verify_prints_a_hostile_manifests_fields_escaped(world, tmp_path, capsys):
    """verify printed a manifest's 'role' and recorded hash raw: a terminal escape or a newline in them faked
    lines of the verdict (the recorded hash was checked for its length only, not for hex digits)."""
    ev, run = evidence(world, tmp_path), tmp_path / "run"
    assert main(["identify", str(world / "fp"), str(ev), "-o", str(run), *RUN_ARGS]) == EXIT_OK
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["inputs"][0]["role"] = "x\x1b[2J\nall unchanged"
    manifest["inputs"][0]["sha256"] = "0" * 64  # reported as changed, with its role
    manifest["inputs"][1]["sha256"] = "\x1b[31m" + "a" * 59
    (run / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["verify", str(run)]) == EXIT_VERIFY_FAILED
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\nall unchanged" not in out
    assert "CHANGED  x\\x1b[2J\\nall unchanged" in out and "is not a SHA-256" in out


def test_verify_usage_error_is_not_the_changed_code(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["verify"])
    assert info.value.code == EXIT_FAIL != EXIT_VERIFY_FAILED
    with pytest.raises(SystemExit) as info:
        main(["verify", "x", "--no-such-option"])
    assert info.value.code == EXIT_FAIL
    assert main(["verify", str(tmp_path / "absent.json")]) == EXIT_FAIL
    assert main(["verify", str(tmp_path), "--expect-sha256", "xyz"]) == EXIT_FAIL
