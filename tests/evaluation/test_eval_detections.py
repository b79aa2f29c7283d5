import numpy as np
import pytest

from sparselabel.data import load_dataset
from sparselabel.evaluation import frame_map, video_map
from sparselabel.evaluation.detections import (
    LinkConfig,
    act_detections,
    fill_gaps,
    frame_boxes,
    link_tubes,
    smooth_tube,
)


def perfect_predictions(dataset, videos, scale=1):
    """Foreground maps that are exactly the ground-truth masks (optionally downsampled)."""
    out = {}
    for vid in videos:
        v = dataset.videos[vid]
        fg = np.zeros((v.num_frames, v.height, v.width), dtype=np.float32)
        for tube in dataset.tubes[vid]:
            fg[tube.frames] = np.maximum(fg[tube.frames], tube.masks)
        scores = np.full(len(dataset.classes), 0.1, dtype=np.float32)
        scores[v.label] = 0.9
        out[vid] = (fg[:, ::scale, ::scale], scores, (v.height, v.width))
    return out


def test_perfect_maps_give_perfect_frame_and_video_map(tiny_dataset):
    dataset = load_dataset("native", tiny_dataset)
    videos = dataset.split("all")
    frame_dets, tube_dets = act_detections(perfect_predictions(dataset, videos), videos)
    gt = dataset.act_gttubes(videos)
    for convention in ("act", "voc"):
        assert frame_map(gt, frame_dets, videos, 0.5, convention)[0] == 1.0
        assert video_map(gt, tube_dets, 0.5, convention)[0] == 1.0


def test_boxes_are_scaled_back_to_video_pixels():
    fg = np.zeros((1, 10, 20), dtype=np.float32)
    fg[0, 2:6, 4:10] = 0.8
    (boxes,) = frame_boxes(fg, (40, 80))
    np.testing.assert_allclose(boxes, [[16, 8, 40, 24, 0.8]], rtol=1e-6)


def test_largest_or_all_components():
    fg = np.zeros((1, 20, 20), dtype=np.float32)
    fg[0, 0:3, 0:3] = 1
    fg[0, 10:20, 10:20] = 1
    assert len(frame_boxes(fg, (20, 20), LinkConfig(components="largest"))[0]) == 1
    assert len(frame_boxes(fg, (20, 20), LinkConfig(components="all"))[0]) == 2
    assert len(frame_boxes(fg, (20, 20), LinkConfig(components="all", min_area=10))[0]) == 1


def test_two_actors_are_linked_into_two_tubes_across_a_gap():
    a = lambda t: [10 + t, 10, 30 + t, 30, 0.9]  # noqa: E731
    b = lambda t: [60 - t, 40, 80 - t, 60, 0.6]  # noqa: E731
    boxes = [np.array([a(t), b(t)]) for t in range(10)]
    boxes[4] = np.array([b(4)])  # actor a missed in frame 4
    tubes = link_tubes(boxes, LinkConfig(max_gap=2))
    assert len(tubes) == 2
    first = next(t for t in tubes if t[0, 1] == 10)
    np.testing.assert_array_equal(first[:, 0], np.arange(10))  # contiguous after filling
    np.testing.assert_allclose(first[4, 1:5], [14, 10, 34, 30])  # interpolated


def test_fill_gaps_and_smoothing():
    tube = np.array([[0, 0, 0, 10, 10, 1.0], [2, 2, 0, 12, 10, 0.5]])
    filled = fill_gaps(tube)
    np.testing.assert_allclose(filled[1], [1, 1, 0, 11, 10, 0.75])
    flat = smooth_tube(np.column_stack([np.arange(5), np.ones((5, 5))]), 3)
    np.testing.assert_allclose(flat[:, 1:], 1.0)


@pytest.mark.parametrize("length", [1, 2, 3])
def test_smoothing_a_tube_shorter_than_the_window(length):
    # np.convolve(mode="same") returns the window's length here: a tube of 1 frame became 5 rows.
    tube = np.column_stack([np.arange(length), np.arange(length)[:, None] + np.ones((length, 5))])
    out = smooth_tube(tube, 5)
    assert out.shape == tube.shape
    np.testing.assert_allclose(out[:, 1], np.full(length, tube[:, 1].mean()))
    boxes = [np.array([[0, 0, 10, 10, 0.9]])] + [np.zeros((0, 5))] * 4  # a one-frame detection
    assert link_tubes(boxes, LinkConfig(smooth=5, min_length=1))[0].shape == (1, 6)
