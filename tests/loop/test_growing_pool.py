"""A pool that grows: videos of further datasets join a workspace between cycles, get initial labels
as at init, compete for the budget from then on, and no earlier row of the ledger changes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import make_tiny_dataset

from sparselabel.cli import main
from sparselabel.config import load_config, save_config
from sparselabel.data.datasets.native import write_native
from sparselabel.data.tubes import Tube
from sparselabel.errors import SparseLabelError
from sparselabel.labels.ledger import Ledger
from sparselabel.loop.cycle import run_loop, start_loop
from sparselabel.loop.grow import activate_pending, add_videos
from sparselabel.loop.steps import score_step, select_step
from sparselabel.loop.workspace import POOL, Workspace, initial_picks
from sparselabel.reports.build import write_report

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=2", "train.steps=2",
        "train.checkpoint_every=1", "labels.initial_percent=10", "selection.passes=2", "selection.budget=5%",
        "loop.dense_recovery=false"]
NEW = ["new0", "new1", "new2"]


def more_videos(root: Path, ids: list[str] = NEW, classes: tuple[str, ...] = ("right", "left"),
                num_frames: int = 20) -> Path:
    """A second tiny dataset: its own ids, its classes listed in the other order, all in split train."""
    rng = np.random.default_rng(1)
    videos, tubes = [], {}
    for i, vid in enumerate(ids):
        span = np.arange(3, num_frames - 2)
        boxes = np.stack([span % 10, span % 5 + 2, span % 10 + 20, span % 5 + 30], axis=1).astype(float)
        tubes[vid] = [Tube(i % 2, span, boxes)]
        frames = rng.integers(0, 255, (num_frames, 48, 64, 3), dtype=np.uint8)
        videos.append({"id": vid, "frames": frames, "fps": 25.0, "label": i % 2, "split": "train"})
    return write_native(root, "more", list(classes), videos, tubes)


def dump(root: Path) -> list[str]:
    """The whole ledger as SQL, timestamps included."""
    with Ledger(root / "ledger.sqlite") as ledger:
        return list(ledger.db.iterdump())


def rows(root: Path) -> set[str]:
    return {line for line in dump(root) if line.startswith("INSERT")}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("grow")
    return {"old": make_tiny_dataset(base / "old", num_videos=4, num_frames=20), "new": more_videos(base / "new")}


@pytest.fixture(scope="module")
def fresh(data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fresh") / "ws"
    Workspace.create(root, load_config(None, [f"dataset.path={data['old']}", *TINY])).close()
    return root


@pytest.fixture
def ws_root(fresh, tmp_path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(fresh, root)
    return root


def test_added_videos_get_initial_labels_in_the_open_cycle_and_old_rows_stay(ws_root, data):
    before = rows(ws_root)
    with Workspace.open(ws_root) as ws:
        growth = add_videos(ws, [data["new"]])
        assert (growth.cycle, growth.now, growth.videos) == (0, True, 3)
        assert sorted(ws.ledger.videos(POOL)) == [*NEW, "vid0", "vid1", "vid2"]
        picks = initial_picks({v: ws.ledger.videos()[v] for v in NEW}, ws.config)
        answers = [a for a in ws.ledger.annotations() if a.video_id in NEW]
        assert [(a.video_id, a.frame) for a in answers] == picks  # seeded by (seed, video id), as at init
        assert {(a.cycle, a.source) for a in answers} == {(0, "initial")}
        row = ws.status()[-1]
        assert (row.pool_videos, row.pool_frames, row.frames) == (6, 120, 6 + len(picks))
        assert row.percent == pytest.approx(100 * row.frames / 120)
    assert before < rows(ws_root)  # every earlier row untouched, new ones added

    with Workspace.open(ws_root) as again:  # a reopened workspace merges the added dataset
        video, tube = again.dataset.videos["new0"], again.dataset.tubes["new0"][0]
        assert again.ledger.classes == ["left", "right"]
        assert video.label == tube.label == 1  # "right" is 0 in the new dataset, 1 in the workspace
        assert {a.label for a in again.ledger.annotations("new0")[0].actors} <= {1}
        assert again.dataset.videos["new0"].frames([0]).shape == (1, 48, 64, 3)
        unchanged = dump(ws_root)
        assert add_videos(again, [data["new"]]).skipped == [str(data["new"].resolve())]  # identical: a no-op
    assert dump(ws_root) == unchanged


def test_inside_a_cycle_the_videos_wait_for_the_next_one(ws_root, data, capsys):
    with Workspace.open(ws_root) as ws:
        ledger = ws.ledger
        ledger.start_step(0, "train")  # the loop is training cycle 0
        assert main(["add-videos", str(ws_root), str(data["new"])]) == 0
        assert "join the pool with their initial frames when the loop starts cycle 1" in capsys.readouterr().out
        (pending,) = ledger.sources("pending")
        assert (pending.cycle, pending.video_ids) == (1, tuple(NEW))
        assert set(ledger.videos()) == {"vid0", "vid1", "vid2", "vid3"}  # not in the pool yet
        assert main(["status", str(ws_root)]) == 0
        assert "pending: 3 videos" in capsys.readouterr().out
        ledger.finish_step(0, "train")
        for step in ("predict", "evaluate", "score", "select"):
            ledger.start_step(0, step)
            ledger.finish_step(0, step)
        with pytest.raises(SparseLabelError, match="only right before cycle 1 trains"):
            activate_pending(ws, 1)  # cycle 0's annotate step is not done
        ledger.start_step(0, "annotate")
        ledger.finish_step(0, "annotate")
        assert activate_pending(ws, 1) == [pending]
        assert {a.cycle for a in ledger.annotations() if a.video_id in NEW} == {1}
        assert [s.status for s in ledger.sources()] == ["added"]
        assert [(r.cycle, r.pool_videos) for r in ws.status()] == [(0, 3), (1, 6)]


def test_ids_already_in_the_workspace_and_a_second_pending_copy_are_refused(ws_root, data, tmp_path):
    twin = more_videos(tmp_path / "twin")
    with Workspace.open(ws_root) as ws:
        add_videos(ws, [data["new"]])
        with pytest.raises(SparseLabelError, match="'new0' is already in the workspace"):
            add_videos(ws, [twin])
        other = more_videos(tmp_path / "other", ids=["x0"])
        with pytest.raises(SparseLabelError, match="'x0' is already in dataset"):
            add_videos(ws, [other, more_videos(tmp_path / "again", ids=["x0"])])


def _unknown_class(path: Path) -> Path:
    return more_videos(path, classes=("right", "jump"))


def _duplicate_id(path: Path) -> Path:
    return more_videos(path, ids=["new9", "vid1"])


def _not_json(path: Path) -> Path:
    root = more_videos(path)
    (root / "dataset.json").write_text("{not json")
    return root


def _truncated_video(path: Path) -> Path:
    root = more_videos(path)
    video = root / "videos" / "new1.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    return root


@pytest.mark.parametrize("make, where, problem", [
    (_unknown_class, "dataset.json", "class 'jump' is not one of the workspace's classes"),
    (_duplicate_id, "dataset.json", "'vid1' is already in the workspace"),
    (_not_json, "dataset.json", "not valid JSON"),
    (_truncated_video, "new1.mp4", "truncated"),
    (lambda path: path / "nowhere", "nowhere", "no such file or folder"),
])
def test_bad_input_is_one_clear_error_and_the_ledger_stays_byte_identical(ws_root, tmp_path, capsys, make, where,
                                                                          problem):
    path = make(tmp_path / "bad")
    before = dump(ws_root)
    assert main(["add-videos", str(ws_root), str(more_videos(tmp_path / "good", ids=["ok0"])), str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and where in err and problem in err
    assert dump(ws_root) == before  # the good dataset before the bad one was not written either


def test_an_unknown_split_names_the_dataset(ws_root, data, capsys):
    assert main(["add-videos", str(ws_root), str(data["new"]), "--split", "val"]) == 1
    err = capsys.readouterr().err
    assert "dataset.json" in err and "no split 'val'" in err


def test_a_kill_inside_the_transaction_leaves_nothing(ws_root, data):
    before = dump(ws_root)
    env = {**os.environ, "SPARSELABEL_FAULT": "ledger:sources-half-written"}
    killed = subprocess.run([sys.executable, "-m", "sparselabel", "add-videos", str(ws_root), str(data["new"])],
                            capture_output=True, text=True, env=env)
    assert killed.returncode == -9
    assert dump(ws_root) == before


def _set_cycles(root: Path, cycles: int) -> None:
    config = load_config(root / "config.yaml")
    config.loop.cycles = cycles
    save_config(config, root / "config.yaml")


def test_added_after_the_loop_stopped_they_join_before_the_next_cycle_trains(ws_root, data, capsys):
    ws = Workspace.open(ws_root, ["loop.cycles=0", "selection.strategy=apu"])
    start_loop(ws)
    assert run_loop(ws).stopped_because == "ran 0 cycles"  # stopped right after evaluating cycle 0
    ws.close()
    before = rows(ws_root)
    assert main(["add-videos", str(ws_root), str(data["new"])]) == 0
    assert "when the loop starts cycle 1" in capsys.readouterr().out
    _set_cycles(ws_root, 1)
    with Workspace.open(ws_root) as ws:
        run_loop(ws)
        ledger = ws.ledger
        assert before < rows(ws_root)
        assert ledger.step_done(1, "add-videos") and ledger.step_done(1, "train")
        assert {a.cycle for a in ledger.annotations() if a.video_id in NEW} == {1}
        by_strategy = {}
        for _, strategy, vid, _, _ in ledger.selections(1):
            by_strategy.setdefault(strategy, set()).add(vid)
        assert by_strategy["initial-random"] == set(NEW) and not by_strategy["apu"] & set(NEW)
        assert not (ws_root / "scores" / "cycle-000" / "new0.npz").exists()  # not in the pool at cycle 0
        assert (ws_root / "predictions" / "cycle-001" / "new0.npz").exists()
        assert [(r.cycle, r.pool_videos) for r in ws.status()] == [(0, 3), (1, 6)]
        # The next selection scores every pool video, and the new ones compete for the budget.
        score_step(ws, run="cycle-001")
        assert (ws_root / "scores" / "cycle-001" / "new0.npz").exists()
        picked = {vid for vid, _ in select_step(ws, budget="40%", cycle=2).picks}
        assert picked & set(NEW) and picked - set(NEW)
        # The report draws cycle 0's scores over the pool as it was then (without the new videos).
        assert write_report([ws], ws_root / "report").exists()


def test_the_config_route_adds_once_across_a_killed_and_resumed_loop(data, tmp_path):
    root = tmp_path / "ws"
    config = load_config(None, [f"dataset.path={data['old']}", *TINY, f"loop.add_videos=[{data['new']}]",
                                "loop.add_at_cycle=1"])
    Workspace.create(root, config).close()
    run = [sys.executable, "-m", "sparselabel", "loop", str(root)]
    env = {k: v for k, v in os.environ.items() if k != "SPARSELABEL_FAULT"}
    killed = subprocess.run([*run, "--cycles", "1"], capture_output=True, text=True,
                            env={**env, "SPARSELABEL_FAULT": "grow:joined"})  # added, step not yet finished
    assert killed.returncode == -9, killed.stderr[-1500:]
    resumed = subprocess.run([*run, "--resume"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    with Workspace.open(root) as ws:
        ledger = ws.ledger
        (source,) = ledger.sources()
        assert (source.cycle, source.status, source.video_ids) == (1, "added", tuple(NEW))
        steps = {(c, s): (status, detail) for c, s, status, detail in ledger.db.execute(
            "SELECT cycle, step, status, detail FROM cycle_steps")}
        assert steps[(1, "add-videos")][0] == "done" and (0, "add-videos") not in steps
        picks = initial_picks({v: ledger.videos()[v] for v in NEW}, ws.config)
        new_rows = ledger.db.execute("SELECT video_id, frame, cycle FROM annotations WHERE video_id LIKE 'new%' "
                                     "ORDER BY video_id, frame").fetchall()
        assert new_rows == [(v, f, 1) for v, f in picks]  # exactly once
        assert json.loads(steps[(1, "train")][1])["steps"] == 2
        started = dict(ledger.db.execute("SELECT step, started_at FROM cycle_steps WHERE cycle = 1"))
        assert started["add-videos"] <= started["train"]
        assert [(r.cycle, r.pool_videos) for r in ws.status()] == [(0, 3), (1, 6)]
