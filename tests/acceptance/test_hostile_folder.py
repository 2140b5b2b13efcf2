"""Acceptance: a folder that mixes hostile files with good images."""
from __future__ import annotations

import json
import os
import shutil

from PIL import Image

from camid_gpu.cli import EXIT_OK, EXIT_PARTIAL, main
from camid_gpu.engine.scheduler import read_results

from conftest import snapshot, RUN_ARGS


def test_acceptance_hostile_folder(world, tmp_path, capsys):
    """Hostile files (tests/hostile_inputs.py and a few more) mixed with good images: exit 3, every file reported
    with a reason (a record, or a skipped entry in the manifest), good images as in a clean run, no traceback,
    nothing written outside the run folder, inputs byte-identical."""
    from hostile_inputs import eps_bytes, gif_bytes, jpeg_bytes, jpeg_cut_with_eoi, jpeg_declaring, png_bytes, \
        png_with_flipped_bit

    from conftest import natural_image

    clean_dir = tmp_path / "clean_in"
    clean_dir.mkdir()
    good = sorted((world / "data" / "disputed").rglob("*.jpg"))[:3]
    for k, src in enumerate(good):
        shutil.copy(src, clean_dir / f"good_{k}.jpg")
    assert main(["identify", str(world / "fp"), str(clean_dir), "-o", str(tmp_path / "clean"), *RUN_ARGS]) == EXIT_OK
    clean = {os.path.basename(r["path"]): r for r in read_results(tmp_path / "clean" / "results.jsonl")}

    hostile = tmp_path / "hostile"
    shutil.copytree(clean_dir, hostile)
    rgb = natural_image(160, 192, seed=4, channels=3)
    (hostile / "empty.jpg").write_bytes(b"")
    (hostile / "note.jpg").write_text("not a photograph")
    (hostile / "cut.jpg").write_bytes(good[0].read_bytes()[:600])
    (hostile / "cut_eoi.jpg").write_bytes(jpeg_cut_with_eoi(jpeg_bytes(rgb)))
    (hostile / "declares_12000.jpg").write_bytes(jpeg_declaring(jpeg_bytes(rgb[:64, :64]), 12000, 12000))
    (hostile / "crc.png").write_bytes(png_with_flipped_bit(png_bytes(rgb[:40, :40], filters=(1,)), 3))
    (hostile / "eps.jpg").write_bytes(eps_bytes())
    (hostile / "anim.gif").write_bytes(gif_bytes())
    (hostile / ".hidden.jpg").write_bytes(good[0].read_bytes())
    Image.new("RGB", (192, 160), (90, 90, 90)).save(hostile / "constant.png")
    Image.new("RGB", (40, 30), (90, 20, 90)).save(hostile / "tiny.png")
    os.mkfifo(hostile / "pipe.jpg")
    os.mkdir(hostile / "folder.jpg")
    os.symlink(hostile / "loop_b.jpg", hostile / "loop_a.jpg")
    os.symlink(hostile / "loop_a.jpg", hostile / "loop_b.jpg")
    os.symlink(hostile / "gone.jpg", hostile / "dangling.jpg")
    before = snapshot(hostile)
    outside_before = sorted(str(p) for p in tmp_path.rglob("*") if "run" not in p.parts)
    out = tmp_path / "run"
    rc = main(["identify", str(world / "fp"), str(hostile), "-o", str(out), "--workers", "2", "--csv",
               str(out / "t.csv"), *RUN_ARGS])
    captured = capsys.readouterr()
    assert rc == EXIT_PARTIAL and "Traceback" not in captured.err + captured.out
    records = {os.path.basename(r["path"]): r for r in read_results(out / "results.jsonl")}
    manifest = json.loads((out / "manifest.json").read_text())
    skipped = {os.path.basename(s["path"]): s["reason"] for s in manifest["skipped_inputs"]}
    everything = {p.name for p in hostile.iterdir()}
    assert set(records) | set(skipped) >= everything - {"folder.jpg"}, everything - set(records) - set(skipped)
    assert all(reason for reason in skipped.values())
    for name, record in records.items():
        if name.startswith("good_"):
            assert record["error"] is None
            assert record["pce"]["decision"] == clean[name]["pce"]["decision"]
            assert record["pce"]["scores"] == clean[name]["pce"]["scores"]
        else:
            assert record["error"]["reason"], name
    assert records["constant.png"]["error"]["kind"] == "no-usable-content"
    assert "FIFO" in records["pipe.jpg"]["error"]["reason"]
    assert snapshot(hostile) == before  # inputs byte-identical
    assert sorted(str(p) for p in tmp_path.rglob("*") if "run" not in p.parts) == outside_before
    assert main(["verify", str(out)]) == EXIT_OK
