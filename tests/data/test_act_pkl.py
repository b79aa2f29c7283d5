"""ACT ``*-GT.pkl``: reading, writing, and a round trip through the real UCF101-24 sample."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import shared_path

from sparselabel.data import Dataset, Tube, Video, load_dataset
from sparselabel.data.datasets.act_pkl import write_act_pkl
from sparselabel.data.safe_pickle import safe_load
from sparselabel.errors import AnnotationError, VideoDecodeError


def _same_tubes(a: Dataset, b: Dataset) -> None:
    assert sorted(a.videos) == sorted(b.videos)
    for vid in a.videos:
        ta = sorted(a.tubes.get(vid, []), key=lambda t: (t.label, t.start, tuple(t.boxes[0])))
        tb = sorted(b.tubes.get(vid, []), key=lambda t: (t.label, t.start, tuple(t.boxes[0])))
        assert len(ta) == len(tb), vid
        for x, y in zip(ta, tb, strict=True):
            assert x.label == y.label
            np.testing.assert_array_equal(x.frames, y.frames)
            np.testing.assert_array_equal(x.boxes, y.boxes)


@pytest.fixture(scope="module")
def ucf24() -> Dataset:
    return load_dataset("ucf24", shared_path("ucf24"))


@pytest.mark.realdata
def test_round_trip_of_the_real_ucf24_sample(ucf24: Dataset, tmp_path: Path) -> None:
    pkl = write_act_pkl(ucf24, tmp_path / "UCF101v2-GT.pkl")
    back = load_dataset("act-pkl", pkl, frames_root=shared_path("ucf24", "videos"))
    _same_tubes(ucf24, back)
    assert back.name == "UCF101v2" and back.classes == ucf24.classes
    assert back.splits == ucf24.splits
    for vid, video in ucf24.videos.items():
        other = back.videos[vid]
        assert (other.num_frames, other.width, other.height, other.label) == (
            video.num_frames, video.width, video.height, video.label)
        assert other.fps == pytest.approx(video.fps)


@pytest.mark.realdata
def test_written_file_is_act_layout_with_one_based_frames(ucf24: Dataset, tmp_path: Path) -> None:
    doc = safe_load(write_act_pkl(ucf24, tmp_path / "gt.pkl"))
    assert set(doc) == {"labels", "gttubes", "nframes", "train_videos", "test_videos", "resolution"}
    vid = "Basketball/v_Basketball_g01_c01"
    rows = doc["gttubes"][vid][0][0]
    assert rows.shape == (44, 5) and rows[0, 0] == 9  # 0-based frame 8
    assert doc["nframes"][vid] == 141 and doc["resolution"][vid] == (240, 320)
    assert doc["resolution"]["Biking/v_Biking_g01_c01"] == (256, 340)
    assert len(doc["train_videos"]) == len(doc["test_videos"]) == 1


@pytest.mark.realdata
def test_round_trip_without_decoding(ucf24: Dataset, tmp_path: Path) -> None:
    pkl = write_act_pkl(ucf24, tmp_path / "gt.pkl")
    back = load_dataset("act-pkl", pkl, frames_root=shared_path("ucf24", "videos"), check_videos=False, fps=30.0)
    _same_tubes(ucf24, back)
    assert {v.fps for v in back.videos.values()} == {30.0}


@pytest.mark.realdata
def test_round_trip_of_jhmdb_boxes(tmp_path: Path) -> None:
    jhmdb = load_dataset("jhmdb", shared_path("jhmdb"))
    back = load_dataset("act-pkl", write_act_pkl(jhmdb, tmp_path / "JHMDB-GT.pkl"),
                        frames_root=shared_path("jhmdb", "Rename_Images"))
    _same_tubes(jhmdb, back)
    assert back.tubes[next(iter(back.tubes))][0].masks is None  # the format has no masks


# ---------------------------------------------------------------- hand-made


def _frames(root: Path, vid: str, n: int, size: tuple[int, int] = (32, 24)) -> None:
    folder = root / "Frames" / vid
    folder.mkdir(parents=True)
    for k in range(n):
        Image.new("RGB", size, (k, 0, 0)).save(folder / f"{k + 1:05d}.png")


def _doc(**changes: object) -> dict:
    doc = {
        "labels": ["run", "jump"],
        "gttubes": {
            "run/a": {0: [np.array([[1, 0, 0, 10, 10], [2, 1, 1, 11, 11], [3, 2, 2, 12, 12]], dtype=np.float32)]},
            "jump/b": {np.int64(1): [np.array([[4, 5, 5, 32, 24]], dtype=np.float64)]},
        },
        "nframes": {"run/a": 5, "jump/b": 4, "jump/absent": 3},
        "train_videos": [["run/a", "jump/absent"], ["jump/b"]],
        "test_videos": [["jump/b"], ["run/a"]],
        "resolution": {"run/a": (24, 32), "jump/b": (24, 32), "jump/absent": (24, 32)},
    }
    doc.update(changes)
    return doc


def _act_folder(root: Path, doc: dict) -> Path:
    _frames(root, "run/a", 5)
    _frames(root, "jump/b", 4)
    path = root / "Toy-GT.pkl"
    path.write_bytes(pickle.dumps(doc, protocol=2))
    return path


def test_frames_become_zero_based_and_splits_are_chosen(tmp_path: Path) -> None:
    ds = load_dataset("act-pkl", _act_folder(tmp_path, _doc()))  # frames_root defaults to ./Frames
    assert sorted(ds.videos) == ["jump/b", "run/a"]  # jump/absent has no frames: skipped
    tube = ds.tubes["run/a"][0]
    np.testing.assert_array_equal(tube.frames, [0, 1, 2])
    np.testing.assert_array_equal(tube.box_at(1), [1, 1, 11, 11])
    assert ds.tubes["jump/b"][0].start == 3 and ds.videos["jump/b"].label == 1
    assert ds.split("train") == ["run/a"] and ds.split("test") == ["jump/b"]
    second = load_dataset("act-pkl", tmp_path / "Toy-GT.pkl", split=1)
    assert second.split("train") == ["jump/b"] and second.split("test") == ["run/a"]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"split": 2}, r"'train_videos' has 2 splits; split=2"),
        ({"doc": {"labels": []}}, r"not an ACT GT pickle"),
        ({"doc": _doc(gttubes={"run/a": {0: [np.zeros((3, 4))]}})}, r"numeric \(n, 5\) array"),
        ({"doc": _doc(gttubes={"run/a": {0: [np.array([[0, 0, 0, 5, 5.0]])]}})}, r"1-based"),
        ({"doc": _doc(gttubes={"ghost": {0: [np.array([[1, 0, 0, 5, 5.0]])]}})}, r"missing from 'nframes'"),
        ({"doc": _doc(resolution={"run/a": (48, 64), "jump/b": (24, 32), "jump/absent": (1, 1)})},
         r"64x48 in the pickle but .* decodes to 32x24"),
        ({"frames_root": "nowhere"}, r"frames folder .* not found"),
        ({"doc": _doc(gttubes={"run/a": {0: [np.array([[1, 0, np.nan, 5, 5.0]])]}})}, r"NaN"),
        ({"doc": _doc(gttubes={"run/a": {"0": [np.array([[1, 0, 0, 5, 5.0]])]}})}, r"not a class index"),
        ({"doc": _doc(labels=["run", "run"])}, r"listed twice"),
        ({"doc": _doc(labels=["run", 5])}, r"not a name"),
    ],
    ids=["split", "keys", "columns", "zero-frame", "unknown-video", "resolution", "frames-root", "nan-box",
         "string-label", "repeated-class", "non-string-class"],
)
def test_bad_act_pickles(tmp_path: Path, changes: dict, match: str) -> None:
    path = _act_folder(tmp_path, changes.pop("doc", _doc()))
    if "frames_root" in changes:
        changes["frames_root"] = tmp_path / changes["frames_root"]
    with pytest.raises(AnnotationError, match=match) as info:
        load_dataset("act-pkl", path, **changes)
    assert info.value.path is not None


def test_video_shorter_than_nframes(tmp_path: Path) -> None:
    doc = _doc(nframes={"run/a": 9, "jump/b": 4, "jump/absent": 3})
    with pytest.raises(VideoDecodeError, match="decoded 5 frames but the annotation has 9"):
        load_dataset("act-pkl", _act_folder(tmp_path, doc))


def test_writer_skips_mask_only_tubes_and_is_atomic(tmp_path: Path) -> None:
    video = Video("v", tmp_path, 3, 25.0, 8, 6, 0)
    masks = np.zeros((1, 6, 8), dtype=bool)
    masks[0, 1:3, 2:5] = True
    ds = Dataset("toy", ["a"], {"v": video}, {"v": [Tube(0, [1], masks=masks), Tube(0, [0, 1], [[0, 0, 2, 2]] * 2)]},
                 {"train": ["v"]})
    path = write_act_pkl(ds, tmp_path / "out" / "toy-GT.pkl")
    doc = safe_load(path)
    assert len(doc["gttubes"]["v"][0]) == 1 and doc["test_videos"] == [[]]
    assert [p.name for p in path.parent.iterdir()] == ["toy-GT.pkl"]
