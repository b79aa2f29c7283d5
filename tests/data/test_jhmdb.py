"""J-HMDB-21: the real clip in the official layout, and hand-made broken layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from support import shared_path

from sparselabel.data import Dataset, load_dataset
from sparselabel.data.datasets.jhmdb import JHMDB_CLASSES, read_puppet_mask
from sparselabel.data.tubes import boxes_from_masks
from sparselabel.errors import AnnotationError, VideoDecodeError

CLIP = "catch/Goal_Keeping_Tips_catch_f_cm_np1_fr_med_2"


@pytest.fixture(scope="module")
def real() -> Dataset:
    return load_dataset("jhmdb", shared_path("jhmdb"))


@pytest.mark.realdata
def test_real_clip_frames_and_masks(real: Dataset) -> None:
    assert list(real.videos) == [CLIP]
    video = real.videos[CLIP]
    assert (video.num_frames, video.width, video.height) == (40, 320, 240)
    assert real.classes == JHMDB_CLASSES and real.classes[video.label] == "catch"
    [tube] = real.tubes[CLIP]
    assert tube.label == video.label
    assert tube.masks.shape == (40, 240, 320) and tube.masks.dtype == bool
    np.testing.assert_array_equal(tube.frames, np.arange(40))


@pytest.mark.realdata
def test_real_clip_boxes_are_tight_around_the_mask(real: Dataset) -> None:
    mat = scipy.io.loadmat(shared_path("jhmdb", "puppet_mask", CLIP, "puppet_mask.mat"))
    raw = np.moveaxis(mat["part_mask"], 2, 0) == 1
    [tube] = real.tubes[CLIP]
    np.testing.assert_array_equal(tube.masks, raw)
    np.testing.assert_array_equal(tube.boxes, boxes_from_masks(raw)[1])
    ys, xs = np.nonzero(raw[0])
    np.testing.assert_array_equal(tube.boxes[0], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


@pytest.mark.realdata
def test_real_clip_decodes(real: Dataset) -> None:
    frames = real.videos[CLIP].frames([0, 39])
    assert frames.shape == (2, 240, 320, 3)


@pytest.mark.realdata
def test_without_splits_everything_is_train(real: Dataset) -> None:
    assert real.split("train") == [CLIP] and real.split("test") == []


@pytest.mark.realdata
def test_explicit_classes(tmp_path: Path) -> None:
    ds = load_dataset("jhmdb", shared_path("jhmdb"), classes=["catch"], with_masks=False)
    assert ds.classes == ["catch"] and ds.videos[CLIP].label == 0
    assert ds.tubes[CLIP][0].masks is None and len(ds.tubes[CLIP][0]) == 40


# ---------------------------------------------------------------- hand-made


def _clip(root: Path, cls: str, clip: str, masks: np.ndarray, frames: int | None = None,
          size: tuple[int, int] | None = None) -> Path:
    """Write frames and a puppet_mask.mat (masks: H x W x T, as J-HMDB stores them)."""
    h, w, t = masks.shape
    folder = root / "Rename_Images" / cls / clip
    folder.mkdir(parents=True)
    for k in range(frames or t):
        Image.new("RGB", size or (w, h)).save(folder / f"{k + 1:05d}.png")
    mat_dir = root / "puppet_mask" / cls / clip
    mat_dir.mkdir(parents=True)
    scipy.io.savemat(mat_dir / "puppet_mask.mat", {"part_mask": masks})
    return mat_dir / "puppet_mask.mat"


def _masks(t: int = 4, empty: tuple[int, ...] = ()) -> np.ndarray:
    masks = np.zeros((12, 16, t), dtype=np.uint8)
    for k in range(t):
        if k not in empty:
            masks[2 + k : 6 + k, 3:9, k] = 1
    return masks


def test_empty_mask_frames_are_not_in_the_tube(tmp_path: Path) -> None:
    _clip(tmp_path, "run", "c1", _masks(5, empty=(0, 3)))
    ds = load_dataset("jhmdb", tmp_path)
    [tube] = ds.tubes["run/c1"]
    np.testing.assert_array_equal(tube.frames, [1, 2, 4])
    np.testing.assert_array_equal(tube.box_at(2), [3, 4, 9, 8])
    assert ds.videos["run/c1"].label == JHMDB_CLASSES.index("run")


def test_unknown_class_folders_fall_back_to_folder_names(tmp_path: Path) -> None:
    _clip(tmp_path, "zumba", "c1", _masks())
    _clip(tmp_path, "run", "c2", _masks())
    ds = load_dataset("jhmdb", tmp_path)
    assert ds.classes == ["run", "zumba"] and ds.videos["zumba/c1"].label == 1


def test_official_split_files(tmp_path: Path) -> None:
    _clip(tmp_path, "run", "c1", _masks())
    _clip(tmp_path, "run", "c2", _masks())
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "run_test_split1.txt").write_text("c1.avi 1 \nc2.avi 2 \n")
    (tmp_path / "splits" / "run_test_split2.txt").write_text("c1.avi 2\nc2.avi 1\n")
    ds = load_dataset("jhmdb", tmp_path)
    assert ds.split("train") == ["run/c1"] and ds.split("test") == ["run/c2"]
    assert load_dataset("jhmdb", tmp_path, split=2).split("train") == ["run/c2"]


def test_bad_split_line(tmp_path: Path) -> None:
    _clip(tmp_path, "run", "c1", _masks())
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "run_test_split1.txt").write_text("c1.avi 3\n")
    with pytest.raises(AnnotationError, match=r"line 1: expected"):
        load_dataset("jhmdb", tmp_path)


def test_mask_size_mismatch_names_the_mat(tmp_path: Path) -> None:
    mat = _clip(tmp_path, "run", "c1", _masks(), size=(20, 12))
    with pytest.raises(AnnotationError, match=r"mask is 16x12 but the frames are 20x12") as info:
        load_dataset("jhmdb", tmp_path)
    assert info.value.path == mat


def test_mask_longer_than_the_clip(tmp_path: Path) -> None:
    _clip(tmp_path, "run", "c1", _masks(4), frames=3)
    with pytest.raises(AnnotationError, match="mask has 4 frames but the clip has 3"):
        load_dataset("jhmdb", tmp_path)


def test_missing_and_unreadable_mat(tmp_path: Path) -> None:
    mat = _clip(tmp_path, "run", "c1", _masks())
    mat.write_bytes(b"garbage" * 20)
    with pytest.raises(AnnotationError, match="cannot read MATLAB file") as info:
        load_dataset("jhmdb", tmp_path)
    assert info.value.path == mat
    mat.unlink()
    with pytest.raises(AnnotationError, match="puppet mask file not found"):
        load_dataset("jhmdb", tmp_path)


def test_wrong_variable(tmp_path: Path) -> None:
    mat = _clip(tmp_path, "run", "c1", _masks())
    scipy.io.savemat(mat, {"mask": _masks()})
    with pytest.raises(AnnotationError, match="no variable 'part_mask'"):
        read_puppet_mask(mat)


def test_matlab_v73_is_a_clear_error(tmp_path: Path) -> None:
    mat = tmp_path / "puppet_mask.mat"
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .".ljust(116) + bytes(8) + b"\x00\x02IM"
    mat.write_bytes(header.ljust(1024, b"\x00"))
    with pytest.raises(AnnotationError, match="v7.3") as info:
        read_puppet_mask(mat)
    assert info.value.path == mat


def test_single_frame_mask_is_two_dimensional_in_matlab(tmp_path: Path) -> None:
    mat = tmp_path / "m.mat"
    scipy.io.savemat(mat, {"part_mask": _masks(1)[:, :, 0]})
    assert read_puppet_mask(mat).shape == (1, 12, 16)


def test_not_a_jhmdb_folder_and_broken_frames(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="Rename_Images/ not found"):
        load_dataset("jhmdb", tmp_path)
    _clip(tmp_path, "run", "c1", _masks())
    (tmp_path / "Rename_Images" / "run" / "c1" / "00001.png").write_bytes(b"not a png")
    with pytest.raises(VideoDecodeError, match="cannot read image"):
        load_dataset("jhmdb", tmp_path)
