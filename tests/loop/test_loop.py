"""The loop: killed anywhere, resumed, it ends with the ledger of an uninterrupted run;
and training never sees the ground truth of frames nobody annotated."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support import make_tiny_dataset, make_tiny_workspace

from sparselabel.config import load_config
from sparselabel.labels.ledger import Ledger
from sparselabel.loop.workspace import Workspace

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=4", "train.steps=4",
        "train.checkpoint_every=2", "labels.initial_percent=10", "selection.passes=2"]
LOOP = ["--cycles", "1", "--step", "5%", "--strategy", "apu"]

# Step boundaries and the insides of training, scoring, selecting and annotating.
FAULTS = [
    "train:checkpointed",  # mid-training, between checkpoints
    "train:metrics-half-written",  # a torn line at the end of metrics.jsonl
    "train:finished",  # after the last checkpoint, before model.pt
    "loop:train:after",
    "loop:evaluate:after",
    "score:video-saved",  # mid-scoring, one video done
    "loop:score:after",
    "ledger:selection-half-written",  # inside the selection's transaction
    "loop:select:after",
    "ledger:annotations-half-written",  # inside the answers' transaction
    "loop:annotate:after",
]


def ledger_state(root: Path) -> dict:
    """Everything the ledger says, minus wall-clock timestamps."""
    with Ledger(root / "ledger.sqlite") as ledger:
        db = ledger.db
        return {
            "annotations": db.execute("SELECT video_id, frame, version, cycle, source, clicks, num_actors "
                                      "FROM annotations ORDER BY video_id, frame, version").fetchall(),
            "actors": db.execute("SELECT a.video_id, a.frame, x.actor, x.label, x.x1, x.y1, x.x2, x.y2 FROM actors x "
                                 "JOIN annotations a ON a.id = x.annotation_id ORDER BY 1, 2, 3").fetchall(),
            "selections": db.execute("SELECT cycle, strategy, video_id, frame, score, rank FROM selections "
                                     "ORDER BY cycle, rank").fetchall(),
            "steps": db.execute("SELECT cycle, step, status, detail FROM cycle_steps ORDER BY cycle, step").fetchall(),
        }


def loop(root: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SPARSELABEL_FAULT"}
    if fault:
        env["SPARSELABEL_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "sparselabel", "loop", str(root), *args],
                          capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    return make_tiny_workspace(tmp_path_factory.mktemp("loop"), TINY, num_videos=5, num_frames=24)


@pytest.fixture(scope="module")
def uninterrupted(fresh, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("whole") / "ws"
    shutil.copytree(fresh, root)
    done = loop(root, *LOOP)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "stopped: ran 1 cycles" in done.stdout
    return ledger_state(root)


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_a_loop_killed_anywhere_resumes_to_the_same_ledger(fresh, uninterrupted, tmp_path, fault):
    root = tmp_path / "ws"
    shutil.copytree(fresh, root)
    killed = loop(root, *LOOP, fault=fault)
    assert killed.returncode == -9, f"the fault {fault} was never reached:\n{killed.stdout}\n{killed.stderr[-1500:]}"
    resumed = loop(root, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert ledger_state(root) == uninterrupted


def test_resume_takes_no_new_settings_and_a_started_loop_needs_resume(fresh, uninterrupted, tmp_path):
    root = tmp_path / "ws"
    shutil.copytree(fresh, root)
    killed = loop(root, *LOOP, fault="loop:evaluate:after")
    assert killed.returncode == -9
    again = loop(root, *LOOP)
    assert again.returncode == 1 and "--resume" in again.stderr
    mixed = loop(root, "--resume", "--cycles", "5")
    assert mixed.returncode == 1 and "give no other settings" in mixed.stderr


def test_training_never_sees_ground_truth_of_unannotated_frames(tmp_path):
    """Rewrite the truth of every frame nobody annotated: the trained weights do not change."""
    import json

    weights = []
    for name, corrupt in (("clean", False), ("corrupted", True)):
        data = make_tiny_dataset(tmp_path / name / "data", num_videos=4, num_frames=20)
        root = tmp_path / name / "ws"
        ws = Workspace.create(root, load_config(None, [f"dataset.path={data}", *TINY]))
        if corrupt:
            annotated = {v: set(f.tolist()) for v, f in ws.ledger.annotated_frames().items()}
            doc = json.loads((data / "dataset.json").read_text())
            for tube in doc["tubes"]:
                for k, frame in enumerate(tube["frames"]):
                    if frame not in annotated.get(tube["video"], set()):
                        tube["boxes"][k] = [0.0, 0.0, 5.0, 5.0]  # a different truth everywhere else
            (data / "dataset.json").write_text(json.dumps(doc))
            (data / "masks").rename(data / "masks-hidden")
        ws.close()
        done = subprocess.run([sys.executable, "-m", "sparselabel", "train", str(root)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        weights.append(torch.load(root / "runs" / "cycle-000" / "model.pt", weights_only=True))
    clean, corrupted = weights
    assert all(torch.equal(clean[k], corrupted[k]) for k in clean)
