import numpy as np
import pytest
import torch

from sparselabel.data.dataset import Video
from sparselabel.data.datasets.native import write_native
from sparselabel.data.tubes import Tube
from sparselabel.labels.ledger import ActorLabel, FrameAnnotation
from sparselabel.train.clips import ClipSpec, SparseClipDataset, clip_frames, video_labels


@pytest.fixture
def bright_box_video(tmp_path) -> Video:
    """A video whose pixels are white exactly inside a box moving right, black elsewhere."""
    frames = np.zeros((24, 40, 60, 3), dtype=np.uint8)
    boxes = []
    for t in range(24):
        x1 = 4 + t
        frames[t, 10:30, x1 : x1 + 16] = 255
        boxes.append((x1, 10, x1 + 16, 30))
    root = write_native(tmp_path / "d", "box", ["a", "b"],
                        [{"id": "v", "frames": frames, "fps": 25, "label": 1}],
                        {"v": [Tube(1, np.arange(24), np.array(boxes, float))]}, codec="ffv1")
    from sparselabel.data import load_dataset

    return load_dataset("native", root).videos["v"]


def answers_at(frames):
    return [FrameAnnotation("v", f, [ActorLabel(0, 1, (4 + f, 10, 4 + f + 16, 30))]) for f in frames]


def test_targets_interpolate_between_answers_and_weights_follow_the_loss(bright_box_video):
    labels = video_labels(bright_box_video, answers_at([2, 12]), loss="mgw", sigma=1.3)
    np.testing.assert_array_equal(labels.annotated, [2, 12])
    # frame 7 is halfway: box x1 = 11, x2 = 27 (exclusive), exactly the truth for this linear motion
    row = labels.target([7])[0, 20]
    assert row[11] == 1 and row[26] == 1 and row[10] == 0 and row[27] == 0
    assert labels.weights[2] == 1 and labels.weights[12] == 1 and 0 < labels.weights[3] < 1
    mask = video_labels(bright_box_video, answers_at([2, 12]), loss="mask")
    assert mask.weights.sum() == 2


def test_an_answer_without_actors_is_background(bright_box_video):
    answers = [FrameAnnotation("v", 5, [])]
    labels = video_labels(bright_box_video, answers)
    assert labels.target(range(24)).sum() == 0 and labels.weights[5] == 1


def test_crop_flip_and_resize_move_frames_and_targets_together(bright_box_video):
    labels = video_labels(bright_box_video, answers_at(range(24)), loss="interp")
    data = SparseClipDataset([labels], ClipSpec(length=4, stride=2, size=(32, 48)), clips_per_video=16, seed=3)
    for i in range(len(data)):
        item = data[i]
        bright = (item["clip"][0] > 0).float()  # white pixels of the decoded clip
        target = (item["target"] > 0.5).float()
        agreement = (bright == target).float().mean()
        assert agreement > 0.97, f"item {i}: frames and targets disagree on {1 - agreement:.1%} of pixels"
    assert item["clip"].shape == (3, 4, 32, 48) and item["target"].shape == (4, 32, 48)
    assert item["label"].item() == 1


def test_items_are_reproducible_and_change_with_the_epoch(bright_box_video):
    labels = video_labels(bright_box_video, answers_at([3, 17]))
    data = SparseClipDataset([labels], ClipSpec(length=4, stride=2, size=(32, 32)), clips_per_video=8, seed=0)
    first = [data[i] for i in range(8)]
    again = [data[i] for i in range(8)]
    assert all(torch.equal(a["clip"], b["clip"]) for a, b in zip(first, again, strict=True))
    data.set_epoch(1)
    other = [data[i] for i in range(8)]
    assert not all(torch.equal(a["clip"], b["clip"]) for a, b in zip(first, other, strict=True))


def test_every_clip_holds_an_annotated_frame(bright_box_video):
    labels = video_labels(bright_box_video, answers_at([0, 23]), loss="mask")
    data = SparseClipDataset([labels], ClipSpec(length=4, stride=3, size=(16, 16)), clips_per_video=20, seed=1)
    assert all(data[i]["weight"].max() == 1 for i in range(len(data)))


def test_clip_frames_repeat_the_last_frame_past_the_end():
    np.testing.assert_array_equal(clip_frames(3, ClipSpec(length=4, stride=2), num_frames=8), [3, 5, 7, 7])


def test_balanced_anchors_draw_as_before_when_every_frame_is_annotated(bright_box_video):
    labels = video_labels(bright_box_video, answers_at(range(24)))
    spec = ClipSpec(length=4, stride=2, size=(16, 16))
    plain = SparseClipDataset([labels], spec, clips_per_video=12, seed=5)
    balanced = SparseClipDataset([labels], spec, clips_per_video=12, seed=5, balance_anchors=True)
    assert all(torch.equal(plain[i]["clip"], balanced[i]["clip"]) for i in range(12))


def test_balanced_anchors_follow_the_videos_mix_not_the_selectors(bright_box_video):
    # The actor shows throughout, but 8 of the 9 answers were picked where nobody is: by the
    # pseudo-labels the actor shows on frames 8-16, 9 of 24.
    empty = [FrameAnnotation("v", f, []) for f in (0, 1, 2, 3, 20, 21, 22, 23)]
    labels = video_labels(bright_box_video, answers_at([12]) + empty)
    assert labels.present.sum() == 9
    one_frame = ClipSpec(length=1, stride=1, size=(16, 16))  # a clip is its anchor
    for balance, share in ((False, 1 / 9), (True, 9 / 24)):
        data = SparseClipDataset([labels], one_frame, clips_per_video=400, seed=0, balance_anchors=balance)
        shown = np.mean([data[i]["target"].max().item() > 0 for i in range(len(data))])
        assert abs(shown - share) < 0.06, (balance, shown, share)
