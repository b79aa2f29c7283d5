"""``sparselabel synth --difficulty``: named presets of the generator's knobs."""

from __future__ import annotations

import numpy as np
import pytest

from sparselabel.data.synthetic import SynthConfig, _occluder_track, render_video, synth_config
from sparselabel.errors import SparseLabelError


def test_hard_is_the_default_config_and_changes_go_on_top() -> None:
    assert synth_config("hard") == SynthConfig()
    assert synth_config("medium", width=64, height=64).width == 64


@pytest.mark.parametrize("index", range(4))
def test_easy_videos_hold_one_actor_and_no_camera_motion(index: int) -> None:
    video = render_video(0, index, label=index % 8, config=synth_config("easy", width=48, height=48,
                                                                        min_frames=12, max_frames=12))
    assert len(video.tubes) == 1
    assert set(video.camera.zoom.tolist()) == {1.0} and not video.camera.pan_x.any()


def test_medium_keeps_at_most_two_actors() -> None:
    cfg = synth_config("medium", width=48, height=48, min_frames=12, max_frames=12)
    assert all(len(render_video(1, i, 0, cfg).tubes) <= 2 for i in range(6))


def test_an_unknown_difficulty_is_one_clear_error() -> None:
    with pytest.raises(SparseLabelError, match="unknown difficulty 'brutal'"):
        synth_config("brutal")


def _boxes_by_frame(video) -> dict[int, list]:
    boxes: dict[int, list] = {}
    for tube in video.tubes:
        for frame, box in zip(tube.frames, tube.boxes, strict=True):
            boxes.setdefault(int(frame), []).append(box)
    return boxes


def _touch(a, b) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def test_medium_actors_keep_apart_where_the_hard_ones_touch() -> None:
    """actor_gap: two actors' boxes never meet on a frame they share, so decoding maps into
    boxes can separate them; without it they do meet."""
    def touching(cfg) -> int:
        shown = [_boxes_by_frame(render_video(0, i, i % len(cfg.classes), cfg)) for i in range(24)]
        return sum(_touch(a, b) for boxes in shown for frame in boxes.values()
                   for k, a in enumerate(frame) for b in frame[k + 1:])

    medium = synth_config("medium", min_frames=48, max_frames=48)
    assert medium.actor_gap == 0.05
    assert touching(medium) == 0
    assert touching(synth_config("medium", min_frames=48, max_frames=48, actor_gap=None)) > 0


def test_occluders_sweep_at_the_configured_speed() -> None:
    cfg = synth_config("medium", min_frames=16, max_frames=16, occluders=(1, 1), occluder_speed=(0.04, 0.04))
    video = render_video(0, 0, 0, cfg)
    track = _occluder_track(np.random.default_rng(0), cfg, video.actors[0], 16)
    assert np.allclose(np.abs(np.diff(track.cx)), 0.04 * cfg.scale)


@pytest.mark.parametrize("changes, problem", [({"actor_gap": 0.6}, "actor_gap"),
                                              ({"occluder_speed": (0.0, 0.1)}, "occluder_speed")])
def test_bad_placement_knobs_are_one_clear_error(changes: dict, problem: str) -> None:
    with pytest.raises(SparseLabelError, match=problem):
        synth_config("medium", **changes)
