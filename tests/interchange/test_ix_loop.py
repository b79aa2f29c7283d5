"""People in the loop: the loop pauses for answers, they come back as an import, the loop goes on."""

import json
import subprocess
import sys

from support import make_tiny_dataset

from sparselabel.config import load_config
from sparselabel.loop.workspace import Workspace

TINY = ["model.input_size=[32,32]", "model.clip_length=4", "train.batch_size=4", "train.steps=3",
        "labels.initial_percent=10", "selection.passes=2"]


def sparselabel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparselabel", *args], capture_output=True, text=True)


def test_loop_waits_for_people_and_resumes_with_their_imported_answers(tmp_path):
    data = make_tiny_dataset(tmp_path / "data", num_videos=4, num_frames=20)
    root = tmp_path / "ws"
    Workspace.create(root, load_config(None, [f"dataset.path={data}", *TINY])).close()  # initial labels: oracle

    paused = sparselabel("loop", str(root), "--cycles", "1", "--strategy", "random", "--step", "10%",
                         "labels.oracle=none")
    assert paused.returncode == 0, paused.stderr[-2000:]
    assert "waiting for answers to 6 of the 6 frames selected for cycle 1" in paused.stdout

    tasks = tmp_path / "tasks"
    assert sparselabel("export", str(root), "--format", "json", "--out", str(tasks)).returncode == 0
    (task_file,) = tasks.glob("*.jsonl")
    with Workspace.open(root) as ws:  # an annotator draws the true boxes
        lines = []
        for line in task_file.read_text().splitlines():
            task = json.loads(line)
            actors = [{"actor": k, "label": ws.ledger.classes[t.label], "box": [float(c) for c in t.box_at(task["frame"])]}
                      for k, t in ws.dataset.actors_at(task["video"], task["frame"])]
            lines.append(json.dumps({**task, "answered": True, "actors": actors}))
    task_file.write_text("\n".join(lines) + "\n")
    imported = sparselabel("import", str(root), str(task_file), "--annotator", "ann")
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert "6 frames accepted: 6 new" in imported.stdout

    resumed = sparselabel("loop", str(root), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "stopped: ran 1 cycles" in resumed.stdout
    with Workspace.open(root) as ws:
        cycle1 = [a for a in ws.ledger.annotations() if a.cycle == 1]
        assert len(cycle1) == 6 and {a.source for a in cycle1} == {"import"}
        steps = ws.ledger.db.execute("SELECT detail FROM cycle_steps WHERE cycle = 1 AND step = 'train'").fetchone()
        assert steps is not None and json.loads(steps[0])["steps"] == 3  # cycle 1 trained on them
    assert (root / "runs" / "cycle-001" / "model.pt").exists()
