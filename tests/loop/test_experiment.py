import json

import pytest
from support import make_tiny_dataset

from sparselabel.cli import main
from sparselabel.errors import SparseLabelError
from sparselabel.loop.experiment import Experiment
from sparselabel.train.trainer import FINAL

TINY = {"model.input_size": [32, 32], "model.clip_length": 4, "train.batch_size": 4, "train.steps": 3,
        "labels.initial_percent": 10, "selection.passes": 2, "selection.budget": "5%", "loop.cycles": 1}


def write_experiment(tmp_path, grid, **extra):
    data = make_tiny_dataset(tmp_path / "data", num_videos=4, num_frames=20)
    doc = {"name": "tiny", "settings": {"dataset.path": str(data), **TINY}, "grid": grid, "workers": 2, **extra}
    path = tmp_path / "exp.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


@pytest.mark.slow
def test_a_grid_runs_in_parallel_and_is_summarised_over_seeds(tmp_path, capsys):
    path = write_experiment(tmp_path, {"selection.strategy": ["apu", "random"], "seed": [0, 1]})
    out = tmp_path / "out"
    assert main(["experiment", str(path), "--out", str(out)]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert set(summary["groups"]) == {"selection.strategy=apu", "selection.strategy=random"}
    for rows in summary["groups"].values():
        assert [r["cycle"] for r in rows] == [0, 1] and all(r["seeds"] == 2 for r in rows)
        assert rows[1]["percent"][0] > rows[0]["percent"][0]
    assert "± " in (out / "results.md").read_text()
    assert len(list((out / "runs").iterdir())) == 4
    # running it again resumes every finished loop instead of redoing it
    before = {p.name: (p / "ledger.sqlite").stat().st_mtime for p in (out / "runs").iterdir()}
    assert main(["experiment", str(path), "--out", str(out)]) == 0
    assert json.loads((out / "results.json").read_text()) == summary
    assert all((out / "runs" / name / "loop.log").read_text().count("stopped:") == 1 for name in before)


def test_a_bad_grid_fails_before_anything_runs(tmp_path):
    with pytest.raises(SparseLabelError, match="train.los"):
        Experiment.load(write_experiment(tmp_path, {"train.los": ["mgw"]}))
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: {}\n")
    with pytest.raises(SparseLabelError, match="non-empty 'grid'"):
        Experiment.load(bad)


def test_runs_that_differ_only_in_selection_share_one_cycle_0_model(tmp_path):
    path = write_experiment(tmp_path, {"selection.strategy": ["apu", "random"], "seed": [0]}, workers=1)
    out = tmp_path / "out"
    assert main(["experiment", str(path), "--out", str(out)]) == 0
    apu, random = (out / "runs" / f"selection.strategy={s},seed=0" / "runs" / "cycle-000" / FINAL for s in ("apu", "random"))
    assert apu.read_bytes() == random.read_bytes()
    assert apu.stat().st_mtime_ns == random.stat().st_mtime_ns  # copied, not trained again
    summary = json.loads((out / "results.json").read_text())["groups"]
    assert summary["selection.strategy=apu"][0]["f_map"] == summary["selection.strategy=random"][0]["f_map"]
