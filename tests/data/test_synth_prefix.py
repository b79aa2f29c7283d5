"""Synthetic datasets of two seeds can join one pool: an id prefix, and no change without one."""

import json

import pytest

from sparselabel.cli import main
from sparselabel.data.dataset import load_dataset
from sparselabel.data.synthetic import MARKER_FILE, SynthConfig, generate
from sparselabel.errors import SparseLabelError

TINY = SynthConfig(width=48, height=40, min_frames=16, max_frames=20)


def test_a_prefix_renames_every_video_and_nothing_else(tmp_path):
    plain = load_dataset("native", generate(tmp_path / "a", num_videos=3, seed=1, config=TINY))
    prefixed = load_dataset("native", generate(tmp_path / "b", num_videos=3, seed=1, config=TINY, prefix="b_"))
    assert sorted(plain.videos) == ["syn_0000", "syn_0001", "syn_0002"]
    assert sorted(prefixed.videos) == ["b_syn_0000", "b_syn_0001", "b_syn_0002"]
    for vid, video in plain.videos.items():
        other = prefixed.videos["b_" + vid]
        assert (other.num_frames, other.label) == (video.num_frames, video.label)
        assert [t.frames.tolist() for t in prefixed.tubes["b_" + vid]] == [t.frames.tolist() for t in plain.tubes[vid]]
    assert "prefix" not in json.loads((tmp_path / "a" / MARKER_FILE).read_text())
    assert json.loads((tmp_path / "b" / MARKER_FILE).read_text())["prefix"] == "b_"


def test_regenerating_with_another_prefix_replaces_the_old_files(tmp_path):
    generate(tmp_path / "d", num_videos=2, seed=0, config=TINY, prefix="x_")
    assert main(["synth", "--out", str(tmp_path / "d"), "--videos", "2", "--prefix", "y_"]) == 0
    assert sorted(p.name for p in (tmp_path / "d" / "videos").iterdir()) == ["y_syn_0000.mp4", "y_syn_0001.mp4"]


def test_a_prefix_must_be_safe_in_a_file_name(tmp_path):
    with pytest.raises(SparseLabelError, match="prefix"):
        generate(tmp_path / "e", num_videos=1, config=TINY, prefix="../x")


def test_repeat_lists_each_video_many_times_on_the_same_file(tmp_path):
    data = generate(tmp_path / "d", num_videos=2, seed=0, config=TINY, repeat=3)
    ds = load_dataset("native", data)
    assert sorted(ds.videos) == ["syn_0000", "syn_0000_r001", "syn_0000_r002", "syn_0001", "syn_0001_r001",
                                 "syn_0001_r002"]
    copy, original = ds.videos["syn_0001_r002"], ds.videos["syn_0001"]
    assert copy.path == original.path and copy.num_frames == original.num_frames and copy.label == original.label
    for a, b in zip(ds.tubes["syn_0001_r002"], ds.tubes["syn_0001"], strict=True):
        assert (a.boxes == b.boxes).all() and (a.masks == b.masks).all()
    assert len(list((data / "videos").iterdir())) == 2
    with pytest.raises(SparseLabelError, match="repeat"):
        generate(tmp_path / "e", num_videos=2, repeat=0)
