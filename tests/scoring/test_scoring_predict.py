import json

import numpy as np
import pytest

from sparselabel.cli import main
from sparselabel.config import load_config
from sparselabel.data.safe_pickle import safe_load
from sparselabel.data.windows import video_windows
from sparselabel.loop.workspace import Workspace
from sparselabel.scoring.predict import VideoPrediction, prediction_path
from sparselabel.train.clips import ClipSpec

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=4", "train.steps=4",
        "labels.initial_percent=20"]


@pytest.mark.parametrize("num_frames, length, stride", [(20, 8, 2), (7, 8, 2), (1, 4, 3), (33, 4, 1), (16, 4, 4)])
def test_windows_predict_every_frame_exactly_once(num_frames, length, stride):
    seen = []
    for window in video_windows(num_frames, ClipSpec(length=length, stride=stride)):
        assert len(window) == length
        assert np.all(np.diff(window) >= 0) and np.all(np.isin(np.diff(window), [0, stride]))
        real = window[np.r_[True, window[1:] != window[:-1]]]
        seen.extend(real.tolist())
    assert sorted(seen) == list(range(num_frames))


def test_prediction_files_escape_video_ids(tmp_path):
    path = prediction_path(tmp_path, "Basketball/../../v_x")
    assert path.parent == tmp_path and "/" not in path.name
    pred = VideoPrediction("a/b", np.random.default_rng(0).random((3, 4, 5), dtype=np.float32),
                           np.array([0.2, 0.8], np.float32), (40, 50))
    pred.save(tmp_path)
    back = VideoPrediction.load(tmp_path, "a/b")
    assert np.abs(back.fg - pred.fg).max() <= 0.5 / 255 + 1e-7 and back.size == (40, 50)


def test_train_predict_evaluate_on_a_workspace(tmp_path, tiny_dataset, capsys):
    root = tmp_path / "ws"
    Workspace.create(root, load_config(None, [f"dataset.path={tiny_dataset}", *TINY])).close()
    assert main(["train", str(root)]) == 0
    assert main(["predict", str(root)]) == 0
    folder = root / "predictions" / "cycle-000"
    ws = Workspace.open(root)
    for vid, video in ws.ledger.videos().items():
        pred = VideoPrediction.load(folder, vid)
        assert pred.fg.shape == (video.num_frames, 32, 32) and pred.class_scores.shape == (2,)
        assert pred.fg.min() >= 0 and pred.fg.max() <= 1
    frame_dets = safe_load(folder / "frame_dets.pkl")
    assert frame_dets.ndim == 2 and frame_dets.shape[1] == 8
    assert isinstance(safe_load(folder / "tube_dets.pkl"), dict)
    assert json.loads((folder / "videos.json").read_text()) == sorted(ws.ledger.videos())
    capsys.readouterr()
    assert main(["evaluate", str(root)]) == 0
    out = capsys.readouterr().out
    assert "f-mAP@0.5" in out and "v-mAP@0.75" in out and "J&F" in out
    report = json.loads((root / "reports" / "eval-cycle-000-test-act.json").read_text())
    assert set(report["video_map"]) == {"0.1", "0.2", "0.3", "0.5", "0.75"}
    assert report["segmentation"]["num_videos"] == 1
    assert 0 <= report["frame_map"]["0.5"]["mAP"] <= 1


def test_evaluate_before_predict_is_a_clear_error(tmp_path, tiny_dataset, capsys):
    root = tmp_path / "ws"
    Workspace.create(root, load_config(None, [f"dataset.path={tiny_dataset}", *TINY])).close()
    assert main(["evaluate", str(root)]) == 1
    assert "run `sparselabel predict` first" in capsys.readouterr().err
    assert main(["predict", str(root)]) == 1
    assert "run `sparselabel train` first" in capsys.readouterr().err
