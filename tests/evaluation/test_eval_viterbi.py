"""Temporal decoding of tubes: a two-state HMM with an action-duration prior (detection.temporal=viterbi)."""

import itertools

import numpy as np
import pytest

from sparselabel.cli import main
from sparselabel.config import load_config
from sparselabel.errors import SparseLabelError
from sparselabel.evaluation.detections import (
    LinkConfig,
    act_detections,
    box_actionness,
    decode_tubes,
    viterbi_decode,
    viterbi_states,
)


def brute_force_states(evidence: np.ndarray, switch_prob: float) -> np.ndarray:
    """The most likely sequence by enumerating all 2^T of them (ties: first found, background first)."""
    stay, switch = np.log1p(-switch_prob), np.log(switch_prob)
    best, best_score = None, -np.inf
    for states in itertools.product((0, 1), repeat=len(evidence)):
        s = np.array(states)
        score = (evidence * s).sum() + np.where(np.diff(s) != 0, switch, stay).sum()
        if score > best_score + 1e-12:
            best, best_score = s, score
    return best.astype(bool)


@pytest.mark.parametrize("seed", range(20))
def test_viterbi_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    evidence = rng.normal(0, 2, size=int(rng.integers(1, 10)))
    switch = float(rng.uniform(0.05, 0.5))
    np.testing.assert_array_equal(viterbi_states(evidence, switch), brute_force_states(evidence, switch))


def test_duration_prior_removes_flicker_and_bridges_drops():
    evidence = np.r_[-np.ones(10), np.ones(20), -np.ones(2), np.ones(20), -np.ones(10)]
    evidence[5] = 3  # a one-frame flicker in the background
    states = viterbi_states(evidence, 1 / 30)
    np.testing.assert_array_equal(np.flatnonzero(states), np.arange(10, 52))  # drop bridged, flicker gone
    weak_prior = viterbi_states(evidence, 0.45)  # switching is nearly free: states follow the evidence
    assert weak_prior[5] and not weak_prior[30]


def test_box_actionness_is_the_highest_foreground_in_the_box():
    fg = np.zeros((2, 10, 20), dtype=np.float32)
    fg[0, 0:5, 0:10] = 0.7
    fg[0, 2, 3] = 0.9
    boxes = np.array([[0, 0, 40, 20], [0, 0, 80, 40]], dtype=float)  # the video is 40 x 80: 4 pixels a cell
    np.testing.assert_allclose(box_actionness(fg, (40, 80), boxes), [0.9, 0.0])
    edge = np.array([[79, 39, 80, 40], [-5, -5, 1, 1]], dtype=float)  # at and beyond the edges: one cell each
    np.testing.assert_allclose(box_actionness(fg[[0, 0]], (40, 80), edge), [0.0, 0.7])


def actor_maps(frames: int, present: np.ndarray) -> np.ndarray:
    """Foreground maps (T, 20, 20) of one 6 x 6 actor at a fixed place, ``present[t]`` its probability."""
    fg = np.zeros((frames, 20, 20), dtype=np.float32)
    fg[:, 5:11, 5:11] = present[:, None, None]
    return fg


def tube_over(frames: np.ndarray, score: float = 0.9) -> np.ndarray:
    return np.column_stack([frames, np.tile([5, 5, 11, 11, score], (len(frames), 1))])


def test_decode_joins_two_fragments_of_one_actor_into_one_tube():
    present = np.zeros(60)
    present[10:25] = present[30:50] = 0.9
    present[25:30] = 0.3  # missed for 5 frames: linking (max_gap 2) gives two tubes
    fg = actor_maps(60, present)
    cfg = LinkConfig(temporal="viterbi", duration=30)
    first, second = tube_over(np.arange(10, 25)), tube_over(np.arange(30, 50))
    (joined,) = viterbi_decode(first, fg, (20, 20), cfg)
    np.testing.assert_array_equal(joined[:, 0], np.arange(10, 50))
    np.testing.assert_allclose(joined[15:20, 5], 0.3, rtol=1e-6)  # bridged frames score what the map shows there
    (once,) = decode_tubes([first, second], fg, (20, 20), cfg)  # the same segment twice: kept once
    np.testing.assert_array_equal(once[:, 0], np.arange(10, 50))
    assert len(decode_tubes([first, second], fg, (20, 20), LinkConfig(temporal="viterbi", duration=2))) == 2


def test_decode_drops_a_short_weak_tube_and_keeps_a_long_one():
    present = np.zeros(60)
    present[30:33] = 0.55  # a 3-frame blob barely above the threshold: noise under a 30-frame prior
    tube = tube_over(np.arange(30, 33), 0.55)
    assert viterbi_decode(tube, actor_maps(60, present), (20, 20), LinkConfig(duration=30)) == []
    assert len(viterbi_decode(tube, actor_maps(60, present), (20, 20), LinkConfig(duration=2))) == 1
    present[10:50] = 0.55  # the same evidence for 40 frames is an action
    (kept,) = viterbi_decode(tube, actor_maps(60, present), (20, 20), LinkConfig(duration=30))
    np.testing.assert_array_equal(kept[:, 0], np.arange(10, 50))


def test_temporal_none_leaves_tubes_unchanged():
    tubes = [tube_over(np.arange(3, 9))]
    assert decode_tubes(tubes, np.zeros((10, 20, 20)), (20, 20), LinkConfig()) is tubes


def test_act_detections_with_viterbi_on_perfect_maps_stay_perfect(tiny_dataset):
    from test_eval_detections import perfect_predictions

    from sparselabel.data import load_dataset
    from sparselabel.evaluation import video_map

    dataset = load_dataset("native", tiny_dataset)
    videos = dataset.split("all")
    _, tube_dets = act_detections(perfect_predictions(dataset, videos), videos, LinkConfig(temporal="viterbi"))
    assert video_map(dataset.act_gttubes(videos), tube_dets, 0.5)[0] == 1.0


def test_temporal_option_is_checked_when_the_config_loads():
    assert load_config(None, ["detection.temporal=viterbi", "detection.duration=12"]).detection.duration == 12
    with pytest.raises(SparseLabelError, match="detection.temporal='hmm'; choose one of none, viterbi"):
        load_config(None, ["detection.temporal=hmm"])


def test_evaluate_cli_takes_the_temporal_override(tmp_path, capsys):
    code = main(["evaluate", str(tmp_path / "missing"), "detection.temporal=viterbi"])
    assert code == 1  # no workspace there: a clear error, not an argparse failure
    assert "error:" in capsys.readouterr().err
