"""The synthetic dataset: deterministic, valid, and classes that only motion can tell apart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from sparselabel.data import Dataset, load_dataset
from sparselabel.data.synthetic import (
    MOTIONS,
    SynthConfig,
    assign_labels,
    assign_splits,
    generate,
    render_video,
    sample_actor_track,
)
from sparselabel.errors import SparseLabelError

TINY = SynthConfig(width=48, height=40, min_frames=16, max_frames=20)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- determinism ------------------------------------------------------------


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    a = _files(generate(tmp_path / "a", num_videos=5, seed=3, config=TINY))
    b = _files(generate(tmp_path / "b", num_videos=5, seed=3, config=TINY))
    c = _files(generate(tmp_path / "c", num_videos=5, seed=4, config=TINY))
    assert a.keys() == b.keys() == c.keys()
    assert {"dataset.json", "synth.json"} <= a.keys() and sum(
        n.startswith("videos/") for n in a
    ) == 5
    for name in a:  # the encoded videos are checked below, see the note there
        if not name.startswith("videos/"):
            assert a[name] == b[name], name
    for index in range(5):  # what goes into the encoder is identical
        assert np.array_equal(
            render_video(3, index, 0, TINY).frames, render_video(3, index, 0, TINY).frames
        )
    assert a["dataset.json"] != c["dataset.json"]
    assert all(a[n] != c[n] for n in a if n.startswith(("videos/", "masks/")))


def test_same_seed_gives_byte_identical_video_files(tmp_path: Path) -> None:
    cfg = SynthConfig(width=96, height=96, min_frames=32, max_frames=40)
    a = _files(generate(tmp_path / "a", num_videos=6, seed=0, config=cfg))
    b = _files(generate(tmp_path / "b", num_videos=6, seed=0, config=cfg))
    assert [n for n in a if a[n] != b[n]] == []


def test_a_video_does_not_depend_on_how_many_follow_it() -> None:
    first = render_video(7, 2, 1, TINY)
    again = render_video(7, 2, 1, TINY)
    assert np.array_equal(first.frames, again.frames)
    assert all(
        np.array_equal(s.boxes, t.boxes) and np.array_equal(s.masks, t.masks)
        for s, t in zip(first.tubes, again.tubes, strict=True)
    )
    labels_small, labels_big = assign_labels(8, 8, 5), assign_labels(8, 8, 5)
    assert np.array_equal(labels_small, labels_big)


# --- a valid dataset ----------------------------------------------------------


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    cfg = SynthConfig(width=64, height=64, min_frames=24, max_frames=32)
    return load_dataset(
        "native", generate(tmp_path_factory.mktemp("syn") / "ds", 16, seed=0, config=cfg)
    )


def test_loads_validates_and_decodes_to_the_recorded_shape(small_dataset: Dataset) -> None:
    ds = small_dataset
    ds.validate()
    assert ds.name == "synthetic" and len(ds.classes) >= 6 and ds.classes == list(MOTIONS)
    assert sorted(ds.videos) == [f"syn_{i:04d}" for i in range(16)]
    for vid, video in ds.videos.items():
        frames = video.frames()
        assert frames.shape == (video.num_frames, 64, 64, 3) and 24 <= video.num_frames <= 32
        assert video.fps == 25.0
        assert 1 <= len(ds.tubes[vid]) <= 3
        assert 0 <= video.label < len(ds.classes)


def test_tubes_boxes_and_visible_masks(small_dataset: Dataset) -> None:
    ds = small_dataset
    partial = 0
    for vid, video in ds.videos.items():
        for tube in ds.tubes[vid]:
            assert tube.label == video.label
            assert np.array_equal(tube.frames, np.arange(tube.start, tube.end + 1))
            partial += tube.start > 0 or tube.end < video.num_frames - 1
            b = tube.boxes
            assert (
                np.all(b[:, :2] >= 0)
                and np.all(b[:, 2] <= video.width)
                and np.all(b[:, 3] <= video.height)
            )
            assert np.all(b[:, 2] - b[:, 0] >= 1) and np.all(b[:, 3] - b[:, 1] >= 1)
            assert tube.masks.shape == (len(tube), video.height, video.width)
            # visible pixels lie inside the full-extent box (pixel centres; boxes are rounded to 1e-3)
            for mask, (x1, y1, x2, y2) in zip(tube.masks, b, strict=True):
                ys, xs = np.nonzero(mask)
                assert np.all(xs + 0.5 >= x1 - 1e-3) and np.all(xs + 0.5 <= x2 + 1e-3)
                assert np.all(ys + 0.5 >= y1 - 1e-3) and np.all(ys + 0.5 <= y2 + 1e-3)
            assert tube.masks.any(axis=(1, 2)).mean() > 0.5  # mostly visible, sometimes hidden
    assert partial == sum(
        len(t) for t in ds.tubes.values()
    )  # every action fills only part of its clip


def test_splits_are_stratified_and_recorded(small_dataset: Dataset) -> None:
    ds = small_dataset
    train, test = ds.split("train"), ds.split("test")
    assert sorted(train + test) == sorted(ds.videos) and len(test) == 4
    assert len({ds.videos[v].label for v in test}) == len(
        test
    )  # 2 videos per class: no class twice in test


def test_passing_occluders_hide_part_of_the_actor() -> None:
    """The mask is the visible part: its area drops while a post passes, the box does not shrink."""
    cfg = SynthConfig(width=64, height=64, actors=(1, 1), distractors=(0, 0), occluders=(2, 2))
    drops = 0
    for index in range(6):
        tube = render_video(0, index, 0, cfg).tubes[0]  # slide_horizontal: constant size
        area = np.count_nonzero(tube.masks, axis=(1, 2))
        box_area = (tube.boxes[:, 2] - tube.boxes[:, 0]) * (tube.boxes[:, 3] - tube.boxes[:, 1])
        drops += bool(
            np.any(area < 0.6 * np.median(area)) and box_area.min() > 0.6 * np.median(box_area)
        )
    assert drops >= 3


# --- only motion tells the classes apart --------------------------------------


def test_single_frame_state_is_class_independent() -> None:
    """At a random frame an actor's position, size and angle follow one law for every class (KS test)."""
    from scipy.stats import ks_2samp

    cfg = SynthConfig()
    rng = np.random.default_rng(0)
    states: dict[str, np.ndarray] = {}
    for name in cfg.classes:
        rows = []
        for _ in range(300):
            track = sample_actor_track(rng, cfg, name, start=0, num_frames=40)
            k = int(rng.integers(40))
            rows.append((track.cx[k], track.cy[k], np.log(track.size[k]), track.theta[k] % np.pi))
        states[name] = np.array(rows)
    pooled = np.concatenate(list(states.values()))
    for name, rows in states.items():
        for j in range(4):
            assert ks_2samp(rows[:, j], pooled[:, j]).pvalue > 1e-3, (name, j)


def _appearance_features(frame: np.ndarray, mask: np.ndarray, box: np.ndarray) -> np.ndarray:
    """What one frame shows of an actor: colour, area, box shape and place, orientation, intensity histogram."""
    img = frame.astype(np.float64) / 255
    pixels = img[mask]
    ys, xs = np.nonzero(mask)
    cov = np.cov(np.stack([xs, ys])) if len(xs) > 2 else np.zeros((2, 2))
    x1, y1, x2, y2 = box
    crop = img[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))].mean(-1)
    hist = np.histogram(crop, bins=6, range=(0, 1))[0] / crop.size
    return np.r_[
        pixels.mean(0),
        pixels.std(0),
        mask.sum(),
        x2 - x1,
        y2 - y1,
        (x2 - x1) / (y2 - y1),
        (x1 + x2) / 2,
        (y1 + y2) / 2,
        cov[0, 0] - cov[1, 1],
        2 * cov[0, 1],
        hist,
    ]


def _motion_features(boxes: np.ndarray) -> np.ndarray:
    """How the box moves over the tube (camera motion not removed)."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    vx, vy = np.diff(cx), np.diff(cy)
    dw, dh = np.diff(np.log(boxes[:, 2] - boxes[:, 0])), np.diff(np.log(boxes[:, 3] - boxes[:, 1]))
    speed2 = np.mean(vx**2) + np.mean(vy**2) + 1e-6

    def turns(v: np.ndarray) -> float:  # how often the velocity reverses
        moving = v[np.abs(v) > 0.05]
        return float(np.mean(np.diff(np.sign(moving)) != 0)) if len(moving) > 2 else 0.0

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        a, b = a - a.mean(), b - b.mean()
        return float(np.sum(a * b) / (np.sqrt(np.sum(a * a) * np.sum(b * b)) + 1e-9))

    return np.array(
        [
            np.mean(np.abs(vx)),
            np.mean(np.abs(vy)),
            np.median(np.abs(np.diff(vx))),
            np.median(np.abs(np.diff(vy))),
            turns(vx),
            turns(vy),
            np.std(dw),
            np.std(dh),
            corr(dw, dh),
            np.abs(np.mean(vx * vy)) / speed2,
        ]
    )


def _cross_validated_accuracy(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: str, folds: int = 5
) -> float:
    """Accuracy of nearest-centroid or 7-NN on standardised features, folds split by video."""
    pred = np.empty_like(y)
    for f in range(folds):
        train, test = groups % folds != f, groups % folds == f
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
        xtr, xte = (x[train] - mu) / sd, (x[test] - mu) / sd
        dist = ((xte[:, None] - xtr[None]) ** 2).sum(-1)
        if kind == "centroid":
            classes = np.unique(y[train])
            centroids = np.array([xtr[y[train] == c].mean(0) for c in classes])
            pred[test] = classes[np.argmin(((xte[:, None] - centroids[None]) ** 2).sum(-1), 1)]
        else:
            nearest = y[train][np.argsort(dist, axis=1, kind="stable")[:, :7]]
            pred[test] = [np.bincount(r, minlength=y.max() + 1).argmax() for r in nearest]
    return float((pred == y).mean())


@pytest.mark.slow
def test_one_frame_cannot_tell_the_class_but_motion_can(tmp_path: Path) -> None:
    cfg = SynthConfig(width=48, height=48, min_frames=32, max_frames=40)
    ds = load_dataset("native", generate(tmp_path / "ds", 160, seed=1, config=cfg))
    rng = np.random.default_rng(0)
    appearance, motion, labels, groups = [], [], [], []
    for g, (vid, video) in enumerate(ds.videos.items()):
        frames = video.frames()
        for tube in ds.tubes[vid]:
            seen = np.flatnonzero(tube.masks.sum(axis=(1, 2)) >= 4)
            if len(seen) == 0:
                continue
            k = int(rng.choice(seen))  # one random frame where the actor shows
            appearance.append(
                _appearance_features(frames[tube.frames[k]], tube.masks[k], tube.boxes[k])
            )
            motion.append(_motion_features(tube.boxes))
            labels.append(video.label)
            groups.append(g)
    y, g = np.array(labels), np.array(groups)
    chance = np.bincount(y).max() / len(y)
    assert len(y) >= 250 and len(np.unique(y)) == 8
    app = {k: _cross_validated_accuracy(np.array(appearance), y, g, k) for k in ("centroid", "knn")}
    mot = {k: _cross_validated_accuracy(np.array(motion), y, g, k) for k in ("centroid", "knn")}
    print(f"chance {chance:.3f}  appearance {app}  motion {mot}  (n={len(y)})")
    assert max(app.values()) < chance + 0.08
    assert min(mot.values()) > 0.8


# --- edge cases -------------------------------------------------------------


def test_fewer_videos_than_classes_and_a_single_video(tmp_path: Path) -> None:
    ds = load_dataset("native", generate(tmp_path / "three", 3, seed=0, config=TINY))
    assert len(ds.classes) == 8 and len({v.label for v in ds.videos.values()}) == 3
    assert len(ds.split("test")) == 1 and len(ds.split("train")) == 2
    one = load_dataset("native", generate(tmp_path / "one", 1, seed=0, config=TINY))
    assert one.split("train") == ["syn_0000"] and "test" not in one.splits


def test_labels_balanced_and_splits_stratified() -> None:
    labels = assign_labels(100, 8, seed=2)
    assert np.bincount(labels, minlength=8).min() == 12 and np.bincount(labels).max() == 13
    splits = np.array(assign_splits(labels, 0.25, seed=2))
    assert (splits == "test").sum() == 25
    per_class = [int(((splits == "test") & (labels == c)).sum()) for c in range(8)]
    assert max(per_class) - min(per_class) <= 1
    assert assign_splits(labels, 0.0, seed=2) == ["train"] * 100


def test_class_subset_and_frame_size(tmp_path: Path) -> None:
    cfg = SynthConfig(
        width=40,
        height=33,
        min_frames=10,
        max_frames=10,
        classes=("spin", "pulse"),
        actors=(3, 3),
        distractors=(0, 0),
        occluders=(0, 0),
    )
    ds = load_dataset("native", generate(tmp_path / "ds", 4, seed=0, config=cfg))
    assert ds.classes == ["spin", "pulse"]
    for vid, video in ds.videos.items():
        assert video.frames().shape == (10, 33, 40, 3) and len(ds.tubes[vid]) == 3


@pytest.mark.parametrize(
    "bad",
    [
        {"classes": ("fly",)},
        {"classes": ()},
        {"classes": ("spin", "spin")},
        {"width": 8},
        {"min_frames": 4},
        {"min_frames": 40, "max_frames": 30},
        {"actors": (0, 2)},
        {"actors": (3, 1)},
        {"test_fraction": 1.0},
        {"camera_pan": 0.3},
        {"stage_margin": 0.0, "camera_zoom": (1.0, 1.3)},
        {"tube_fraction": (0.5, 1.5)},
        {"actor_aspect": (0.5, 1.0)},
    ],
)
def test_bad_config_is_refused(bad: dict) -> None:
    with pytest.raises(SparseLabelError, match="synthetic config"):
        SynthConfig(**bad)


@pytest.mark.parametrize(("videos", "seed"), [(0, 0), (-1, 0), (2, -1), (2.5, 0), (True, 0)])
def test_bad_arguments_are_refused(tmp_path: Path, videos: int, seed: int) -> None:
    with pytest.raises(SparseLabelError):
        generate(tmp_path / "ds", videos, seed, TINY)


def test_output_folder_rules(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(SparseLabelError, match="not empty"):
        generate(other, 2, 0, TINY)
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(SparseLabelError, match="not a folder"):
        generate(other / "notes.txt", 2, 0, TINY)

    root = generate(tmp_path / "ds", 4, seed=0, config=TINY)
    again = generate(root, 2, seed=1, config=TINY)  # an earlier synthetic dataset is replaced
    ds = load_dataset("native", again)
    assert sorted(ds.videos) == ["syn_0000", "syn_0001"]
    assert sorted(p.name for p in (root / "videos").iterdir()) == ["syn_0000.mp4", "syn_0001.mp4"]
    marker = json.loads((root / "synth.json").read_text())
    assert marker["seed"] == 1 and marker["num_videos"] == 2 and marker["config"]["width"] == 48


def test_default_rendering_is_fast() -> None:
    """24 default videos render (without encoding) in a few seconds."""
    cfg = SynthConfig()
    t0 = time.perf_counter()
    labels = assign_labels(24, len(cfg.classes), 0)
    for i, label in enumerate(labels):
        video = render_video(0, i, int(label), cfg)
        assert video.frames.shape[1:] == (96, 96, 3) and 48 <= len(video.frames) <= 64
    assert time.perf_counter() - t0 < 20  # generous for slow CI machines; ~1-2 s here
