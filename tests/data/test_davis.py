"""DAVIS / YouTube-VOS: the two real DAVIS-2016 sequences, and hand-made palette masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import shared_path

from sparselabel.data import Dataset, load_dataset
from sparselabel.data.datasets.davis import read_mask_ids
from sparselabel.data.tubes import boxes_from_masks
from sparselabel.errors import AnnotationError


@pytest.fixture(scope="module")
def real() -> Dataset:
    return load_dataset("davis", shared_path("davis"))


@pytest.mark.realdata
@pytest.mark.parametrize(("seq", "frames"), [("blackswan", 50), ("car-shadow", 40)])
def test_real_sequences(real: Dataset, seq: str, frames: int) -> None:
    video = real.videos[seq]
    assert (video.num_frames, video.width, video.height) == (frames, 854, 480)
    assert video.path == shared_path("davis", "JPEGImages", "480p", seq)
    [tube] = real.tubes[seq]  # DAVIS-2016: one object
    assert tube.label == 0 and real.classes == ["object"]
    assert tube.masks.shape[1:] == (480, 854)
    first = np.array(Image.open(shared_path("davis", "Annotations", "480p", seq, "00000.png"))) == 255
    assert tube.start == 0
    np.testing.assert_array_equal(tube.masks[0], first)
    np.testing.assert_array_equal(tube.boxes[0], boxes_from_masks(first[None])[1][0])
    assert len(tube) == frames  # the object is visible in every frame of both


@pytest.mark.realdata
def test_real_frames_decode(real: Dataset) -> None:
    frames = real.videos["car-shadow"].frames([0, 39])
    assert frames.shape == (2, 480, 854, 3)


@pytest.mark.realdata
def test_real_splits_without_imagesets(real: Dataset) -> None:
    assert real.split("train") == ["blackswan", "car-shadow"] and real.split("test") == []


# ---------------------------------------------------------------- hand-made

PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)


def _sequence(root: Path, seq: str, ids: list[np.ndarray], stems: list[str] | None = None,
              n_frames: int | None = None, level: str = "480p", mode: str = "P") -> None:
    """JPEG frames and PNG masks; ``stems`` names the annotated frames (default: all)."""
    h, w = ids[0].shape
    n_frames = n_frames or len(ids)
    img_dir = root / "JPEGImages" / level / seq
    ann_dir = root / "Annotations" / level / seq
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    for k in range(n_frames):
        Image.new("RGB", (w, h), (10 * k, 0, 0)).save(img_dir / f"{k:05d}.jpg")
    for stem, arr in zip(stems or [f"{k:05d}" for k in range(len(ids))], ids, strict=True):
        im = Image.fromarray(arr.astype(np.uint8))  # mode L
        if mode == "P":
            im.putpalette(PALETTE)  # turns the L image into a palette image, same indices
        im.save(ann_dir / f"{stem}.png")


def _ids(obj1: tuple[int, int] | None, obj2: tuple[int, int] | None, void: bool = False) -> np.ndarray:
    arr = np.zeros((10, 14), dtype=np.uint8)
    if obj1:
        arr[obj1[0] : obj1[0] + 3, obj1[1] : obj1[1] + 2] = 1
    if obj2:
        arr[obj2[0] : obj2[0] + 2, obj2[1] : obj2[1] + 4] = 2
    if void:
        arr[0, :] = 255
    return arr


def test_palette_masks_give_one_tube_per_object_and_ignore_void(tmp_path: Path) -> None:
    ids = [_ids((1, 1), (5, 6), void=True), _ids((2, 1), None), _ids(None, (6, 7))]
    _sequence(tmp_path, "dogs", ids)
    ds = load_dataset("davis", tmp_path)
    one, two = ds.tubes["dogs"]
    np.testing.assert_array_equal(one.frames, [0, 1])
    np.testing.assert_array_equal(one.boxes, [[1, 1, 3, 4], [1, 2, 3, 5]])
    np.testing.assert_array_equal(two.frames, [0, 2])
    np.testing.assert_array_equal(two.box_at(2), [7, 6, 11, 8])
    assert not one.masks[:, 0, :].any()  # the void row is nobody's


def test_palette_indices_are_read_not_colours(tmp_path: Path) -> None:
    _sequence(tmp_path, "s", [_ids((1, 1), (5, 6))])
    png = tmp_path / "Annotations" / "480p" / "s" / "00000.png"
    assert Image.open(png).mode == "P"
    assert set(np.unique(read_mask_ids(png, (10, 14)))) == {0, 1, 2}


def test_binary_grayscale_mask_is_object_one(tmp_path: Path) -> None:
    arr = np.zeros((10, 14), dtype=np.uint8)
    arr[2:5, 3:7] = 255
    _sequence(tmp_path, "s", [arr], mode="L")
    [tube] = load_dataset("davis", tmp_path).tubes["s"]
    np.testing.assert_array_equal(tube.boxes, [[3, 2, 7, 5]])


def test_sparse_annotations_land_on_their_frames_youtube_vos_layout(tmp_path: Path) -> None:
    ids = [_ids((1, 1), None), _ids((3, 3), None)]
    _sequence(tmp_path, "yt1", ids, stems=["00000", "00005"], n_frames=8, level="")
    ds = load_dataset("davis", tmp_path)  # no 480p level: YouTube-VOS layout
    assert ds.videos["yt1"].num_frames == 8
    np.testing.assert_array_equal(ds.tubes["yt1"][0].frames, [0, 5])


def test_imagesets_split(tmp_path: Path) -> None:
    for seq in ("a", "b", "c"):
        _sequence(tmp_path, seq, [_ids((1, 1), None)])
    sets = tmp_path / "ImageSets" / "2017"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("a\nc\n")
    (sets / "val.txt").write_text("b\n")
    ds = load_dataset("davis", tmp_path)
    assert ds.split("train") == ["a", "c"] and ds.split("test") == ["b"]
    with pytest.raises(AnnotationError, match="ImageSets/2016/ not found"):
        load_dataset("davis", tmp_path, imageset="2016")


def test_classes_and_labels(tmp_path: Path) -> None:
    _sequence(tmp_path, "a", [_ids((1, 1), None)])
    _sequence(tmp_path, "b", [_ids((1, 1), None)])
    ds = load_dataset("davis", tmp_path, classes=["cat", "dog"], labels={"a": "dog", "b": "cat"})
    assert ds.videos["a"].label == 1 and ds.tubes["a"][0].label == 1 and ds.videos["b"].label == 0
    with pytest.raises(AnnotationError, match="sequence 'b' has no entry in labels="):
        load_dataset("davis", tmp_path, classes=["cat", "dog"], labels={"a": "dog"})


def test_mask_without_frame_and_size_mismatch(tmp_path: Path) -> None:
    _sequence(tmp_path, "s", [_ids((1, 1), None)], stems=["00009"], n_frames=2)
    with pytest.raises(AnnotationError, match="no frame 00009.jpg") as info:
        load_dataset("davis", tmp_path)
    assert info.value.path.name == "00009.png"
    _sequence(tmp_path / "other", "s", [np.zeros((4, 4), dtype=np.uint8)])
    (tmp_path / "other" / "JPEGImages" / "480p" / "s" / "00000.jpg").unlink()
    Image.new("RGB", (8, 4)).save(tmp_path / "other" / "JPEGImages" / "480p" / "s" / "00000.jpg")
    with pytest.raises(AnnotationError, match="mask is 4x4 but the frames are 8x4"):
        load_dataset("davis", tmp_path / "other")


def test_colour_mask_is_refused(tmp_path: Path) -> None:
    _sequence(tmp_path, "s", [_ids((1, 1), None)])
    png = tmp_path / "Annotations" / "480p" / "s" / "00000.png"
    rgb = np.zeros((10, 14, 3), dtype=np.uint8)
    rgb[1:3, 1:3] = (128, 0, 0)
    Image.fromarray(rgb).save(png)
    with pytest.raises(AnnotationError, match="RGB colour mask"):
        load_dataset("davis", tmp_path)


def test_not_a_davis_folder(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="JPEGImages/ not found"):
        load_dataset("davis", tmp_path)
