"""``camid demo``, the README's first command: it runs end to end from the command line and PCE names every
disputed image's camera (a stray ``--videos`` branch once made it an internal error while every other test
passed)."""
from __future__ import annotations

import json

from camid_gpu.cli import main


def test_demo_runs_and_pce_is_right_on_every_image(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--outdir", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "camid demo: 4 synthetic cameras" in printed
    truth = {i["path"]: i["camera"] for i in json.loads((out / "data" / "ground_truth.json").read_text())["images"]
             if i["kind"] != "ref"}
    records = [json.loads(line) for line in (out / "run" / "results.jsonl").read_text().splitlines()]
    assert len(records) == len(truth) == 24
    for r in records:
        assert r["pce"]["decision"] == next(c for p, c in truth.items() if r["path"].endswith(p)), r["path"]
