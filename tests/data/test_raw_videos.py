"""Raw video in: `init --videos` on a folder, a glob or a list, classes from folders, a CSV or none."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sparselabel.data.datasets.raw import NO_CLASS, scan_videos
from sparselabel.data.video import write_video
from sparselabel.errors import SparseLabelError
from sparselabel.loop.workspace import Workspace


def clip(path: Path, frames: int = 12, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((frames, size, size, 3), np.uint8)
    pixels[:, :, :, 0] = np.arange(frames)[:, None, None] * 20  # frames differ
    write_video(path, pixels, fps=10)
    return path


def frame_folder(path: Path, frames: int = 6, size: int = 32) -> Path:
    from PIL import Image

    path.mkdir(parents=True)
    for k in range(frames):
        Image.fromarray(np.full((size, size, 3), k * 30, np.uint8)).save(path / f"{k:05d}.jpg")
    return path


@pytest.fixture
def ucf_layout(tmp_path) -> Path:
    root = tmp_path / "raw"
    for name in ("Jump/v_a", "Jump/v_b", "Run/v_c"):
        clip(root / f"{name}.mp4")
    frame_folder(root / "Run" / "v_d")
    (root / "notes.txt").write_text("not a video")
    return root


def sparselabel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparselabel", *args], capture_output=True, text=True)


def test_class_folders_name_the_classes_and_frame_folders_are_videos(ucf_layout):
    dataset = scan_videos(str(ucf_layout))
    assert dataset.classes == ["Jump", "Run"]
    assert {v: video.label for v, video in dataset.videos.items()} == {"Jump/v_a": 0, "Jump/v_b": 0,
                                                                       "Run/v_c": 1, "Run/v_d": 1}
    assert dataset.videos["Jump/v_a"].num_frames == 12 and dataset.videos["Run/v_d"].num_frames == 6
    assert dataset.videos["Jump/v_a"].fps == 10 and dataset.tubes == {v: [] for v in dataset.videos}


def test_flat_folder_glob_and_list_file_give_one_class(tmp_path):
    for name in ("a", "b"):
        clip(tmp_path / "flat" / f"{name}.mp4")
    assert scan_videos(str(tmp_path / "flat")).classes == [NO_CLASS]
    assert sorted(scan_videos(str(tmp_path / "flat" / "*.mp4")).videos) == ["a", "b"]
    (tmp_path / "flat" / "list.txt").write_text("# one per line\nb.mp4\n")
    assert sorted(scan_videos(str(tmp_path / "flat" / "list.txt")).videos) == ["b"]


def test_csv_labels_and_its_mistakes(ucf_layout, tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("video,label\nJump/v_a.mp4,dive\nJump/v_b,walk\n")
    dataset = scan_videos(str(ucf_layout), labels=str(table))
    assert dataset.classes == ["dive", "walk"]
    assert dataset.videos["Jump/v_a"].label == 0 and dataset.videos["Run/v_c"].label == -1  # no row: unknown
    table.write_text("video,label\nJump/nope,dive\n")
    with pytest.raises(SparseLabelError, match="line 2: 'Jump/nope' is no video found"):
        scan_videos(str(ucf_layout), labels=str(table))
    with pytest.raises(SparseLabelError, match="not inside a class folder"):
        clip(ucf_layout / "loose.mp4")
        scan_videos(str(ucf_layout), labels="folders")


def test_init_videos_writes_a_manifest_and_equidistant_initial_frames(ucf_layout, tmp_path):
    done = sparselabel("init", str(tmp_path / "ws"), "--videos", str(ucf_layout), "labels.initial_percent=20",
                       "labels.initial_strategy=equidistant")
    assert done.returncode == 0, done.stderr
    assert "4 videos; classes: Jump, Run" in done.stdout
    (ucf_layout / "Jump" / "v_b.mp4").unlink()  # later opens read the manifest, not the folder
    with Workspace.open(tmp_path / "ws") as ws:
        assert ws.config.labels.oracle == "none" and ws.config.dataset.kind == "videos"
        assert len(ws.dataset.videos) == 4 and not ws.ledger.annotations()
        picks = [(v, f) for _, strategy, v, f, _ in ws.ledger.selections(0) if strategy == "initial-equidistant"]
        assert [f for v, f in picks if v == "Jump/v_a"] == [3, 9]  # 20% of 12 frames: centres of two halves


def test_undecodable_videos_are_all_named_and_nothing_is_written(ucf_layout, tmp_path):
    (ucf_layout / "Jump" / "broken.mp4").write_bytes(b"\x00" * 100)
    (ucf_layout / "Run" / "empty.avi").write_bytes(b"")
    done = sparselabel("init", str(tmp_path / "ws"), "--videos", str(ucf_layout))
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "2 of 6 videos cannot be used" in done.stderr
    assert "broken.mp4" in done.stderr and "empty.avi" in done.stderr
    assert not (tmp_path / "ws").exists()


def test_simulated_oracle_and_labels_without_videos_are_refused(ucf_layout, tmp_path):
    done = sparselabel("init", str(tmp_path / "ws"), "--videos", str(ucf_layout), "labels.oracle=simulated")
    assert done.returncode == 1 and "no ground truth" in done.stderr
    done = sparselabel("init", str(tmp_path / "ws"), "--dataset", str(ucf_layout), "--labels", "none")
    assert done.returncode == 1 and "--labels goes with --videos" in done.stderr
    assert not (tmp_path / "ws").exists()


def test_two_files_for_one_id_are_refused(tmp_path):
    clip(tmp_path / "raw" / "a.mp4")
    clip(tmp_path / "raw" / "a.avi")
    with pytest.raises(SparseLabelError, match="would both be video 'a'"):
        scan_videos(str(tmp_path / "raw"))


def test_a_list_file_that_is_not_text_is_one_error(tmp_path):
    (tmp_path / "list.txt").write_bytes(b"\xff\xfe\x00clip.mp4")
    done = sparselabel("init", str(tmp_path / "ws"), "--videos", str(tmp_path / "list.txt"))
    assert done.returncode == 1 and "must be UTF-8 text" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "ws").exists()
