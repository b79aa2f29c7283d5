"""Dense labels from sparse answers: interpolation, the model's tubes, and their fusion."""

import numpy as np
import pytest

from sparselabel.evaluation.dense import (
    ANSWER,
    FUSED,
    INTERPOLATED,
    MODEL,
    FusionConfig,
    agreement,
    dense_tracks,
    frame_rows,
)
from sparselabel.evaluation.recovery import dense_quality
from sparselabel.labels.rows import ActorLabel, FrameAnnotation

A, B = (10.0, 10.0, 20.0, 20.0), (30.0, 10.0, 40.0, 20.0)  # the actor moves 20 px right over frames 0..20


def answered(*frames_boxes):
    return [FrameAnnotation("v", f, [ActorLabel(0, 1, box)] if box else []) for f, box in frames_boxes]


def model_boxes(n: int, shift: float = 0.0, score: float = 0.8) -> list[np.ndarray]:
    """The model sees the actor where it truly is (linear motion), ``shift`` px lower."""
    return [np.array([[10 + f, 10 + shift, 20 + f, 20 + shift, score]]) for f in range(n)]


def test_interpolation_keeps_answers_and_fills_between_them():
    (track,) = dense_tracks("interpolation", 21, answered((0, A), (20, B)))
    assert track.frames.tolist() == list(range(21)) and track.label == 1
    np.testing.assert_allclose(track.boxes[10], (20, 10, 30, 20))
    assert track.source[0] == track.source[20] == ANSWER and set(track.source[1:20]) == {INTERPOLATED}
    assert track.confidence[0] == 1 and track.confidence[10] < track.confidence[2] < 1  # farther: less sure


def test_an_answer_without_the_actor_ends_it_halfway():
    (track,) = dense_tracks("interpolation", 21, answered((0, A), (10, None)))
    assert track.frames.tolist() == list(range(6))


def test_model_keeps_answers_and_adds_its_tubes_off_the_answered_frames():
    tracks = dense_tracks("model", 21, answered((0, A), (20, B)), model_boxes(21), model_label=1)
    answers, tube = tracks
    assert answers.frames.tolist() == [0, 20] and set(answers.source) == {ANSWER}
    assert tube.actor == 1 and tube.frames.tolist() == list(range(1, 20)) and set(tube.source) == {MODEL}


def test_fusion_moves_towards_the_model_more_far_from_answers():
    cfg = FusionConfig(half_life=4, gate=0.3, model_weight=0.5)
    (track,) = dense_tracks("fusion", 21, answered((0, A), (20, B)), model_boxes(21, shift=2.0), 1, fusion=cfg)
    shift = track.boxes[:, 1] - 10  # interpolation says y1 = 10, the model 12
    assert shift[0] == shift[20] == 0  # answers exact
    assert 0 < shift[1] < shift[5] < shift[10] <= 1.0  # weight grows with distance, at most model_weight x agreement
    assert track.source[10] == FUSED


def test_fusion_adds_the_actors_the_answers_never_showed():
    seen = model_boxes(21)  # the model agrees with the answers, and sees a second actor
    both = [np.vstack([box, [[50.0, 40.0, 60.0, 50.0, 0.9]]]) for box in seen]
    interp, extra = dense_tracks("fusion", 21, answered((0, A), (20, B)), both, 1)
    assert extra.actor == 1 and set(extra.source) == {MODEL} and extra.frames.tolist() == list(range(1, 20))
    assert extra.confidence[10] > extra.confidence[1]  # less trusted next to frames answered without it


def test_a_model_that_disagrees_with_the_answers_changes_nothing():
    far = [np.array([[50.0, 40.0, 60.0, 50.0, 0.9]]) for _ in range(21)]
    assert agreement(answered((0, A), (20, B)), far) == 0
    interp, extra = dense_tracks("fusion", 21, answered((0, A), (20, B)), far, 1)
    assert set(interp.source[1:20]) == {INTERPOLATED}  # nothing overlapped: unchanged
    assert np.all(extra.confidence == 0)  # its own actor, ranked below every other box
    shifted = model_boxes(21, shift=2.0)  # overlapping, but only partly where the answers are
    half = agreement(answered((0, A), (20, B)), shifted)
    assert 0.5 < half < 1
    (track,) = dense_tracks("fusion", 21, answered((0, A), (20, B)), shifted, 1, fusion=FusionConfig(half_life=4))
    assert track.boxes[10, 1] - 10 == pytest.approx(half * 0.5 * 2 * (1 - 0.5 ** (10 / 4)))


def test_quality_scores_only_unannotated_frames():
    truth = {"v": {1: [np.array([[f + 1, 10 + f, 10, 20 + f, 20] for f in range(21)], dtype=float)]}}
    annotated = {"v": np.array([0, 20])}
    tracks = dense_tracks("interpolation", 21, answered((0, A), (20, B)))
    quality = dense_quality(truth, frame_rows(tracks, 0), ["v"], annotated)
    assert quality["f-mAP"] == pytest.approx(1.0) and quality["mean IoU"] == pytest.approx(1.0)
    assert quality["boxes"] == 19
    half = dense_quality(truth, frame_rows(tracks, 0)[:10], ["v"], annotated)  # frames 1..9 only
    assert half["mean IoU"] == pytest.approx(9 / 19)


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown dense-label method"):
        dense_tracks("magic", 5, [])
