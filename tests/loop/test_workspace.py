import subprocess
import sys

import numpy as np
import pytest

from sparselabel.cli import main
from sparselabel.config import load_config
from sparselabel.errors import SparseLabelError
from sparselabel.loop.workspace import Workspace


def create(root, dataset, *overrides):
    return Workspace.create(root, load_config(None, [f"dataset.path={dataset}", *overrides]))


def test_init_gives_every_pool_video_its_initial_random_frames(tmp_path, tiny_dataset):
    ws = create(tmp_path / "ws", tiny_dataset, "labels.initial_percent=10")
    annotated = ws.ledger.annotated_frames()
    assert sorted(annotated) == ["vid0", "vid1", "vid2", "vid3"]
    assert [len(annotated[v]) for v in ("vid0", "vid1", "vid2")] == [2, 2, 2]  # 10% of 20 frames
    assert len(annotated["vid3"]) == 0  # the test split is never annotated
    (row,) = ws.status()
    assert (row.cycle, row.frames, row.selected) == (0, 6, 6)
    assert row.percent == pytest.approx(100 * 6 / 60)


def test_initial_answers_are_the_ground_truth_of_those_frames(tmp_path, tiny_dataset):
    ws = create(tmp_path / "ws", tiny_dataset, "labels.initial_percent=30")
    tube = ws.dataset.tubes["vid0"][0]
    for ann in ws.ledger.annotations("vid0"):
        expected = tube.box_at(ann.frame)
        if expected is None:
            assert ann.actors == [] and ann.clicks == 0
        else:
            (actor,) = ann.actors
            np.testing.assert_allclose(actor.box, expected)
            assert ann.clicks == 2 and ann.source == "initial"


def test_at_least_one_frame_per_video_and_same_seed_same_picks(tmp_path, tiny_dataset):
    a = create(tmp_path / "a", tiny_dataset, "labels.initial_percent=0.1")
    b = create(tmp_path / "b", tiny_dataset, "labels.initial_percent=0.1")
    c = create(tmp_path / "c", tiny_dataset, "labels.initial_percent=0.1", "seed=1")
    picks = [[(v, f) for _, _, v, f, _ in ws.ledger.selections()] for ws in (a, b, c)]
    assert picks[0] == picks[1] and picks[0] != picks[2]
    assert sorted({v for v, _ in picks[0]}) == ["vid0", "vid1", "vid2"]


def test_an_interrupted_or_failed_init_leaves_nothing_and_can_be_run_again(tmp_path, tiny_dataset, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Workspace, "annotate", crash)
    with pytest.raises(KeyboardInterrupt):
        create(tmp_path / "ws", tiny_dataset, "labels.initial_percent=10")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # the dataset; no workspace, no hidden leftovers
    again = create(tmp_path / "ws", tiny_dataset, "labels.initial_percent=10")
    whole = create(tmp_path / "other", tiny_dataset, "labels.initial_percent=10")
    assert len(again.ledger.selections()) == 6 and again.ledger.selections() == whole.ledger.selections()


def test_a_killed_init_leaves_only_a_hidden_folder_that_the_next_init_removes(tmp_path, tiny_dataset):
    abandoned = tmp_path / ".ws.init-999999999"  # no such process
    abandoned.mkdir()
    (abandoned / "ledger.sqlite").write_bytes(b"half")
    create(tmp_path / "ws", tiny_dataset)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny", "ws"]


def test_init_refuses_a_folder_that_holds_other_files(tmp_path, tiny_dataset):
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "notes.txt").write_text("mine")
    with pytest.raises(SparseLabelError, match="not an empty folder"):
        create(tmp_path / "ws", tiny_dataset)
    assert [p.name for p in (tmp_path / "ws").iterdir()] == ["notes.txt"]


def test_init_refuses_an_existing_workspace_and_leaves_it_alone(tmp_path, tiny_dataset):
    ws = create(tmp_path / "ws", tiny_dataset)
    before = ws.ledger.selections()
    with pytest.raises(SparseLabelError, match="already a workspace"):
        create(tmp_path / "ws", tiny_dataset, "seed=5")
    assert Workspace.open(tmp_path / "ws").ledger.selections() == before


def test_cli_truncated_video_is_one_clear_error_and_creates_nothing(tmp_path, tiny_dataset, capsys):
    video = tiny_dataset / "videos" / "vid1.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    code = main(["init", str(tmp_path / "ws"), "--dataset", str(tiny_dataset)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and "vid1.mp4" in err and err.count("\n") == 1
    assert not (tmp_path / "ws").exists()


def test_cli_bad_override_and_unknown_workspace(tmp_path, tiny_dataset, capsys):
    assert main(["init", str(tmp_path / "ws"), "--dataset", str(tiny_dataset), "labels.initial_precent=5"]) == 1
    assert "initial_precent" in capsys.readouterr().err
    assert main(["status", str(tmp_path / "nowhere")]) == 1
    assert "not a workspace" in capsys.readouterr().err


def test_cli_init_and_status_as_a_user_runs_them(tmp_path, tiny_dataset):
    ws = tmp_path / "ws"
    run = [sys.executable, "-m", "sparselabel"]
    done = subprocess.run([*run, "init", str(ws), "--dataset", str(tiny_dataset), "labels.initial_percent=10"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    status = subprocess.run([*run, "status", str(ws)], capture_output=True, text=True)
    assert status.returncode == 0
    assert status.stdout.splitlines()[1].split()[:4] == ["0", "6", "6", "6"]


@pytest.mark.parametrize("box, problem", [([10, 5, 70, 20], "outside the 64x48 frame"), ([30, 5, 10, 20], "x2 <= x1")])
def test_cli_bad_box_in_the_dataset_is_one_clear_error(tmp_path, tiny_dataset, capsys, box, problem):
    import json

    ann = tiny_dataset / "dataset.json"
    doc = json.loads(ann.read_text())
    doc["tubes"][1]["boxes"][3] = box
    ann.write_text(json.dumps(doc))
    assert main(["init", str(tmp_path / "ws"), "--dataset", str(tiny_dataset)]) == 1
    err = capsys.readouterr().err
    assert "dataset.json" in err and problem in err and "vid1" in err
    assert not (tmp_path / "ws").exists()
