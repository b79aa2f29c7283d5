"""A failed export leaves no folder behind: neither --out nor the hidden folder it is built in."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sparselabel.interchange.export as export_module
from sparselabel.interchange import export_tasks

EXPORTS = "interchange/exports"


def leftovers(base) -> list[str]:
    return sorted(str(p.relative_to(base)) for p in base.rglob("*") if "ws" not in p.relative_to(base).parts)


@pytest.mark.parametrize("fmt", ["labelstudio", "cvat"])
def test_export_with_predictions_but_no_prediction_run_leaves_nothing(ws, tmp_path, fmt):
    out = tmp_path / "exports" / "cycle0"
    done = subprocess.run([sys.executable, "-m", "sparselabel", "export", str(ws.root), "--format", fmt,
                           "--out", str(out), "--with-predictions"], capture_output=True, text=True)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "sparselabel predict" in line
    assert leftovers(tmp_path) == []  # no --out, no .cycle0.export-*, not even its parent folder
    assert not (ws.root / EXPORTS).exists() or not any((ws.root / EXPORTS).iterdir())  # no record either


def test_a_video_that_fails_to_encode_mid_export_leaves_nothing(ws, tmp_path, monkeypatch):
    def broken(path, frames, fps=25.0, crf=18):
        path.write_bytes(b"half a video")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "write_playable_video", broken)
    with pytest.raises(OSError):
        export_tasks(ws, "labelstudio", tmp_path / "exports" / "out")
    assert [p.name for p in (tmp_path / "exports").iterdir()] == []
    assert not (ws.root / EXPORTS).exists() or not any((ws.root / EXPORTS).iterdir())
