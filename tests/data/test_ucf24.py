"""UCF101-24: the real sample (ten videos, corrected annotations) and hand-made bad inputs."""

from __future__ import annotations

import logging
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import shared_path

from sparselabel.data import Dataset, load_dataset
from sparselabel.data.dataset import box_problems
from sparselabel.data.safe_pickle import as_int, safe_load
from sparselabel.data.video import probe, write_video
from sparselabel.errors import AnnotationError, UnsafePickleError, VideoDecodeError

# ---------------------------------------------------------------- real data


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def real() -> tuple[Dataset, dict, list]:
    """Load the shared sample once (decoding ten videos is the slow part), keeping its warnings and logs."""
    root = shared_path("ucf24")
    handler, logger = _Records(), logging.getLogger("sparselabel.data")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = load_dataset("ucf24", root)
    finally:
        logger.removeHandler(handler)
    doc = safe_load(root / "annotations" / "pyannot_with_class_names.pkl")
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in handler.records if r.levelno >= logging.WARNING]
    return dataset, doc, messages


@pytest.mark.realdata
def test_loads_all_ten_videos(real) -> None:
    dataset, doc, _ = real
    files = sorted(p.stem for p in shared_path("ucf24", "videos").iterdir())
    assert len(dataset.videos) == 10
    assert sorted(vid.split("/")[1] for vid in dataset.videos) == files
    assert all(isinstance(vid, str) and type(vid) is str for vid in dataset.videos)
    assert dataset.classes == list(doc["classes"]) and len(dataset.classes) == 24
    assert dataset.source.name == "pyannot_with_class_names.pkl"
    for vid, video in dataset.videos.items():
        assert dataset.classes[video.label] == vid.split("/")[0]


@pytest.mark.realdata
def test_decoded_frame_count_equals_numf(real) -> None:
    """The loader decodes every video: fewer frames than numf raises, more is logged."""
    dataset, doc, messages = real
    for vid, video in dataset.videos.items():
        assert video.num_frames == as_int(doc["db"][vid]["numf"]), vid
    assert not [m for m in messages if "decoded" in m]
    avi = dataset.videos["Basketball/v_Basketball_g01_c01"]
    assert probe(avi.path).num_frames == avi.num_frames == 141


@pytest.mark.realdata
def test_sizes_follow_the_files(real) -> None:
    dataset, _, _ = real
    for video in dataset.videos.values():
        expected = (320, 240) if video.path.suffix == ".avi" else (340, 256)
        assert (video.width, video.height) == expected, video.path.name
    assert dataset.videos["Basketball/v_Basketball_g01_c01"].path.suffix == ".avi"


@pytest.mark.realdata
def test_tubes_match_the_pickle_rescaled(real) -> None:
    dataset, doc, _ = real
    for vid, video in dataset.videos.items():
        annots = doc["db"][vid]["annotations"]
        tubes = dataset.tubes[vid]
        assert len(tubes) == len(annots)
        sx, sy = video.width / 320, video.height / 240
        for tube, ann in zip(tubes, annots, strict=True):
            assert tube.label == ann["label"]
            np.testing.assert_array_equal(tube.frames, np.arange(as_int(ann["sf"]), as_int(ann["ef"])))
            xywh = ann["boxes"].astype(np.int64)
            expected = np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]) * [sx, sy, sx, sy]
            np.testing.assert_allclose(tube.boxes, expected)


@pytest.mark.realdata
def test_every_box_lies_inside_its_frame_and_none_was_clipped(real) -> None:
    dataset, _, messages = real
    for vid, tubes in dataset.tubes.items():
        video = dataset.videos[vid]
        for tube in tubes:
            assert box_problems(tube.boxes, video.width, video.height) is None
            assert tube.end < video.num_frames
    assert not [m for m in messages if "clipped" in m]


@pytest.mark.realdata
def test_known_box_of_the_avi(real) -> None:
    dataset, _, _ = real
    tube = dataset.tubes["Basketball/v_Basketball_g01_c01"][0]
    assert (tube.start, tube.end) == (8, 51)
    # stored as uint8 [189, 102, 47, 78]; exclusive edges x + w, y + h
    np.testing.assert_array_equal(tube.box_at(8), [189, 102, 236, 180])


@pytest.mark.realdata
def test_all_ten_are_split_one_test_videos(real) -> None:
    dataset, _, messages = real
    assert dataset.split("train") == []
    assert sorted(dataset.split("test")) == sorted(dataset.videos)
    assert not [m for m in messages if "split differently" in m]


@pytest.mark.realdata
def test_frames_decode_at_the_probed_size(real) -> None:
    dataset, _, _ = real
    video = dataset.videos["CliffDiving/v_CliffDiving_g03_c01"]
    frames = video.frames([0, video.num_frames - 1])
    assert frames.shape == (2, video.height, video.width, 3) and frames.dtype == np.uint8


@pytest.mark.realdata
def test_explicit_annotation_and_video_paths(real, tmp_path: Path) -> None:
    root = shared_path("ucf24")
    ann = root / "annotations" / "pyannot_with_class_names.pkl"
    (tmp_path / "vids" / "Fencing").mkdir(parents=True)  # per-class layout, linked not copied
    (tmp_path / "vids" / "Fencing" / "v_Fencing_g01_c06.mp4").symlink_to(root / "videos" / "v_Fencing_g01_c06.mp4")
    dataset = load_dataset("ucf24", tmp_path, annotations=ann, videos=tmp_path / "vids")
    assert list(dataset.videos) == ["Fencing/v_Fencing_g01_c06"]
    np.testing.assert_array_equal(dataset.tubes["Fencing/v_Fencing_g01_c06"][1].boxes,
                                  real[0].tubes["Fencing/v_Fencing_g01_c06"][1].boxes)


# ---------------------------------------------------------------- hand-made


KEY = "Basketball/v_Basketball_g01_c01"


def _annotation(numf: int = 8, boxes: np.ndarray | None = None, sf: int = 2, ef: int = 6) -> dict:
    if boxes is None:
        boxes = np.array([[100, 60, 40, 80]] * (ef - sf), dtype=np.uint8)
    entry = {"numf": np.uint8(numf), "label": 0, "annotations": [{"sf": sf, "ef": ef, "label": 0, "boxes": boxes}]}
    return {"db": {KEY: entry, "Biking/v_Biking_g01_c01": dict(entry, label=2)},
            "trainvideos": [KEY], "classes": ["Basketball", "BasketballDunk", "Biking"]}


def _ucf_folder(root: Path, doc: dict, frames: int = 8, size: tuple[int, int] = (160, 120)) -> Path:
    """An annotations/ + videos/ folder; one video at half of the 320x240 annotation size."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "pyannot_with_class_names.pkl").write_bytes(pickle.dumps(doc))
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (frames, size[1], size[0], 3), dtype=np.uint8)
    write_video(root / "videos" / "v_Basketball_g01_c01.mp4", video, fps=25)
    return root


def test_small_folder_rescales_and_skips_absent_videos(tmp_path: Path) -> None:
    dataset = load_dataset("ucf24", _ucf_folder(tmp_path, _annotation()))
    assert list(dataset.videos) == [KEY]  # Biking has no video file: not loaded
    video = dataset.videos[KEY]
    assert (video.num_frames, video.width, video.height) == (8, 160, 120)
    tube = dataset.tubes[KEY][0]
    np.testing.assert_array_equal(tube.frames, [2, 3, 4, 5])
    np.testing.assert_allclose(tube.boxes[0], [50, 30, 70, 70])  # (100, 60, 140, 140) / 2
    assert dataset.split("train") == [KEY] and dataset.split("test") == []


def test_uint8_boxes_do_not_overflow(tmp_path: Path) -> None:
    boxes = np.array([[200, 100, 100, 120]] * 4, dtype=np.uint8)  # x + w = 300 > 255
    dataset = load_dataset("ucf24", _ucf_folder(tmp_path, _annotation(boxes=boxes)))
    np.testing.assert_allclose(dataset.tubes[KEY][0].boxes[0], [100, 50, 150, 110])


def test_box_past_the_border_is_clipped_and_counted(tmp_path: Path) -> None:
    boxes = np.array([[300, 60, 22, 80]] + [[100, 60, 40, 80]] * 3, dtype=np.uint16)  # x + w = 322
    with pytest.warns(UserWarning, match="clipped 1 of 4 boxes"):
        dataset = load_dataset("ucf24", _ucf_folder(tmp_path, _annotation(boxes=boxes)))
    np.testing.assert_allclose(dataset.tubes[KEY][0].boxes[0], [150, 30, 160, 70])


@pytest.mark.parametrize(
    ("boxes", "match"),
    [
        (np.zeros((4, 3), dtype=np.uint8), r"expected 4 numeric rows"),
        (np.ones((3, 4), dtype=np.uint8), r"expected 4 numeric rows"),
        (np.array([[10, 10, 0, 5]] * 4, dtype=np.uint8), r"frame 2: box .* is empty"),
        (np.array([["a", "b", "c", "d"]] * 4), r"expected 4 numeric rows"),
    ],
    ids=["three-columns", "wrong-row-count", "zero-width", "strings"],
)
def test_malformed_box_is_a_clear_error(tmp_path: Path, boxes: np.ndarray, match: str) -> None:
    root = _ucf_folder(tmp_path, _annotation(boxes=boxes))
    with pytest.raises(AnnotationError, match=match) as info:
        load_dataset("ucf24", root)
    assert KEY in str(info.value) and "pyannot_with_class_names.pkl" in str(info.value)


def test_frames_past_numf_are_an_error(tmp_path: Path) -> None:
    root = _ucf_folder(tmp_path, _annotation(sf=4, ef=10))
    with pytest.raises(AnnotationError, match=r"sf=4 .. ef=10 .* not within 0..8"):
        load_dataset("ucf24", root)


def test_missing_keys_are_a_clear_error(tmp_path: Path) -> None:
    doc = _annotation()
    del doc["db"][KEY]["annotations"][0]["sf"]
    with pytest.raises(AnnotationError, match="malformed"):
        load_dataset("ucf24", _ucf_folder(tmp_path, doc))


def test_video_shorter_than_numf_names_the_file(tmp_path: Path) -> None:
    root = _ucf_folder(tmp_path, _annotation(numf=12))
    with pytest.raises(VideoDecodeError, match="decoded 8 frames but the annotation has 12") as info:
        load_dataset("ucf24", root)
    assert "v_Basketball_g01_c01.mp4" in str(info.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_video_names_the_file(tmp_path: Path, damage: str) -> None:
    root = _ucf_folder(tmp_path, _annotation(), frames=8)
    video = root / "videos" / "v_Basketball_g01_c01.mp4"
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\x00not a video" * 50)
    with pytest.raises(VideoDecodeError) as info:
        load_dataset("ucf24", root)
    assert info.value.path == video


def test_unsafe_annotation_pickle_is_refused(tmp_path: Path) -> None:
    root = _ucf_folder(tmp_path, _annotation())
    (root / "annotations" / "pyannot_with_class_names.pkl").write_bytes(
        pickle.dumps({"db": {}, "x": __import__("collections").OrderedDict()})
    )
    with pytest.raises(UnsafePickleError, match="OrderedDict"):
        load_dataset("ucf24", root)


def test_missing_annotation_and_empty_video_folder(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="annotation pickle not found"):
        load_dataset("ucf24", tmp_path)
    root = _ucf_folder(tmp_path / "ds", _annotation())
    (root / "videos" / "v_Basketball_g01_c01.mp4").unlink()
    with pytest.raises(AnnotationError, match="none of its 2 videos"):
        load_dataset("ucf24", root)


def test_testlist_disagreement_warns(tmp_path: Path) -> None:
    root = _ucf_folder(tmp_path, _annotation())
    (root / "annotations" / "testlist01.txt").write_text(f"{KEY}\n")  # pickle says train
    with pytest.warns(UserWarning, match="split differently"):
        load_dataset("ucf24", root)


def test_video_longer_than_numf_is_logged_and_cut(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _ucf_folder(tmp_path, _annotation(numf=6), frames=8)
    with caplog.at_level(logging.WARNING, logger="sparselabel.data"):
        dataset = load_dataset("ucf24", root)
    assert dataset.videos[KEY].num_frames == 6
    assert "decoded 8 frames, annotation has 6" in caplog.text
    assert dataset.videos[KEY].frames().shape[0] == 6


def test_all_kinds_are_registered() -> None:
    from sparselabel.data.dataset import LOADERS

    assert {"ucf24", "act-pkl", "jhmdb", "davis", "native"} <= set(LOADERS)


def test_frame_folders_per_class_layout(tmp_path: Path) -> None:
    """The ``rgb-images/Class/v_name/00001.jpg`` layout many UCF101-24 copies use."""
    doc = _annotation()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "pyannot_with_class_names.pkl").write_bytes(pickle.dumps(doc))
    folder = tmp_path / "frames" / "Basketball" / "v_Basketball_g01_c01"
    folder.mkdir(parents=True)
    for k in range(8):
        Image.new("RGB", (640, 480)).save(folder / f"{k + 1:05d}.jpg")
    dataset = load_dataset("ucf24", tmp_path, videos=tmp_path / "frames")
    video = dataset.videos[KEY]
    assert (video.path, video.num_frames, video.width, video.fps) == (folder, 8, 640, 25.0)
    np.testing.assert_allclose(dataset.tubes[KEY][0].boxes[0], [200, 120, 280, 280])
