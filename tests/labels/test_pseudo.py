import math

import numpy as np
import pytest

from sparselabel.labels.pseudo import (
    actor_presence,
    frame_weights,
    interpolate_boxes,
    mgw_weights,
    pseudo_boxes,
    pseudo_masks,
)


def test_mgw_matches_eq4_by_hand():
    w = mgw_weights(8, [2, 6], sigma=1.3)
    # distance to the nearest annotated frame: 2 1 0 1 2 1 0 1
    expected = [math.exp(-0.5 * (d / 1.3) ** 2) for d in (2, 1, 0, 1, 2, 1, 0, 1)]
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    assert w[2] == 1.0 and w[6] == 1.0
    assert w[1] == pytest.approx(0.7438, abs=1e-4)  # exp(-0.5 / 1.69)
    assert w[0] == pytest.approx(0.3062, abs=1e-4)  # exp(-2 / 1.69)


def test_mgw_takes_the_max_over_annotations_not_the_sum():
    w = mgw_weights(5, [1, 3], sigma=1.0)
    assert w[2] == pytest.approx(math.exp(-0.5))  # two neighbours at distance 1, still exp(-0.5)


def test_sigma_to_zero_is_masking_and_to_infinity_is_interpolation():
    annotated = [0, 7, 15]
    mask = frame_weights(20, annotated, "mask")
    interp = frame_weights(20, annotated, "interp")
    np.testing.assert_array_equal(mask, np.isin(np.arange(20), annotated).astype(float))
    np.testing.assert_array_equal(interp, np.ones(20))
    np.testing.assert_allclose(frame_weights(20, annotated, "mgw", sigma=1e-3), mask, atol=1e-12)
    np.testing.assert_allclose(frame_weights(20, annotated, "mgw", sigma=1e6), interp, atol=1e-9)
    np.testing.assert_array_equal(mgw_weights(20, annotated, sigma=0.0), mask)


def test_no_annotation_means_no_weight():
    for loss in ("mgw", "mask", "interp"):
        assert frame_weights(6, [], loss).sum() == 0


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown loss"):
        frame_weights(5, [1], "l2")


def test_boxes_interpolate_between_and_repeat_outside():
    boxes = interpolate_boxes(np.array([2, 6]), np.array([[0, 0, 10, 10], [4, 8, 14, 18]]), np.arange(9))
    np.testing.assert_allclose(boxes[0], [0, 0, 10, 10])  # before the first: repeat
    np.testing.assert_allclose(boxes[4], [2, 4, 12, 14])  # halfway
    np.testing.assert_allclose(boxes[8], [4, 8, 14, 18])  # after the last: repeat


def test_actor_present_up_to_the_midpoint_towards_a_frame_without_it():
    # annotated frames 0, 4, 10; the actor is in 0 and 4 but not in 10
    present = actor_presence(12, np.array([0, 4, 10]), np.array([0, 4]))
    np.testing.assert_array_equal(np.flatnonzero(present), np.arange(0, 8))  # 7 is the tie (3 vs 3)
    frames, boxes = pseudo_boxes(12, np.array([0, 4, 10]), np.array([0, 4]), np.array([[0, 0, 4, 4], [4, 0, 8, 4]]))
    np.testing.assert_array_equal(frames, np.arange(8))
    np.testing.assert_allclose(boxes[2], [2, 0, 6, 4])
    np.testing.assert_allclose(boxes[7], [4, 0, 8, 4])


def test_masks_take_the_nearest_annotated_mask():
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[0, 0, 0] = masks[1, 3, 3] = True
    frames, out = pseudo_masks(9, np.array([1, 7]), np.array([1, 7]), masks)
    np.testing.assert_array_equal(frames, np.arange(9))
    assert out[4][0, 0] and not out[4][3, 3]  # tie at 4 goes to the earlier annotation
    assert out[5][3, 3]
