"""_shared.files.atomic_write: a failed write leaves the old file and no temporary."""
from __future__ import annotations


import pytest


def test_atomic_write_leaves_old_file_and_no_temporary(tmp_path):
    from camid_gpu._shared.files import atomic_write

    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(OSError):
        with atomic_write(target, "w") as handle:
            handle.write("half")
            raise OSError(28, "No space left on device")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]
