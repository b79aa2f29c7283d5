"""``sparselabel synth --difficulty``: named presets of the generator's knobs."""

from __future__ import annotations

import pytest

from sparselabel.data.synthetic import SynthConfig, render_video, synth_config
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
