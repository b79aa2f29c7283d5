"""Every bad input a review found, and each class of it, through the real CLI as a subprocess:
exit 1, exactly one line starting ``error:`` that names the file, no traceback, and the ledger
(its full SQL dump) unchanged, or, for ``init``, no workspace at all."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from support import make_tiny_dataset

ENV = {**os.environ, "SPARSELABEL_FAULT": ""}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparselabel", *args], capture_output=True, text=True, env=ENV,
                          timeout=120)


def assert_refused(done: subprocess.CompletedProcess, names: str, *fragments: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
    assert names in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def ledger_dump(workspace: Path) -> list[str]:
    with sqlite3.connect(f"file:{workspace / 'ledger.sqlite'}?mode=ro", uri=True) as db:
        return list(db.iterdump())


# --- init: a native dataset.json that cannot be used -----------------------------------------


def edit(doc: dict, change: Callable[[dict], None]) -> dict:
    change(doc)
    return doc


def _set(key: str, value: object, video: int = 0) -> Callable[[dict], None]:
    return lambda doc: doc["videos"][video].__setitem__(key, value)


def _rename(new: str) -> Callable[[dict], None]:
    def change(doc: dict) -> None:
        old, doc["videos"][0]["id"] = doc["videos"][0]["id"], new
        for tube in doc["tubes"]:
            tube["video"] = new if tube["video"] == old else tube["video"]
    return change


def _same_id_in_two_splits(doc: dict) -> None:
    doc["videos"][1]["id"] = doc["videos"][3]["id"]


def _class_with_newline(doc: dict) -> None:
    doc["classes"][0] = "left\nturn"


DATASET_CASES = {
    "same id in two splits": (_same_id_in_two_splits, "listed twice"),
    "fps NaN": (_set("fps", float("nan")), "fps"),
    "fps 0": (_set("fps", 0), "fps"),
    "num_frames 0": (_set("num_frames", 0), "positive"),
    "num_frames negative": (_set("num_frames", -4), "positive"),
    "num_frames fractional": (_set("num_frames", 19.5), "whole number"),
    "id of 300 characters": (_rename("v" * 300), "at most 200"),
    "id with a newline": (_rename("a\nb"), "control"),
    "empty id": (_rename(""), "non-empty"),
    "label outside the classes": (_set("label", 99), "label 99"),
    "label -2": (_set("label", -2), "label -2"),
    "path outside the dataset": (_set("path", "../../elsewhere.mp4"), "outside the dataset folder"),
    "class name with a newline": (_class_with_newline, "control character"),
    "class names repeated": (lambda doc: doc.__setitem__("classes", ["left", "left"]), "listed twice"),
    "class name not a string": (lambda doc: doc.__setitem__("classes", ["left", 7]), "not a name"),
}


@pytest.fixture(scope="module")
def template_dataset(tmp_path_factory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("robust") / "data")


@pytest.fixture
def dataset(template_dataset, tmp_path) -> Path:
    return Path(shutil.copytree(template_dataset, tmp_path / "data"))


@pytest.mark.parametrize("case", DATASET_CASES, ids=list(DATASET_CASES))
def test_init_refuses_an_unusable_dataset_json(dataset, tmp_path, case):
    change, fragment = DATASET_CASES[case]
    doc = json.loads((dataset / "dataset.json").read_text())
    (dataset / "dataset.json").write_text(json.dumps(edit(doc, change)))
    done = cli("init", str(tmp_path / "ws"), "--dataset", str(dataset))
    assert_refused(done, "dataset.json", fragment)
    assert not (tmp_path / "ws").exists() and not list(tmp_path.glob(".ws.*"))


@pytest.mark.parametrize(("text", "fragment"), [
    ("[1, 2]", "JSON object"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"format": "sparselabel-dataset/1", "x": ' + "9" * 5000 + "}", "number"),
    ('{"format": "sparselabel-dataset/1", "videos": [', "not valid JSON"),
], ids=["a list", "deeply nested", "5000-digit number", "truncated"])
def test_init_refuses_dataset_json_that_is_not_a_dataset(dataset, tmp_path, text, fragment):
    (dataset / "dataset.json").write_text(text)
    assert_refused(cli("init", str(tmp_path / "ws"), "--dataset", str(dataset)), "dataset.json", fragment)
    assert not (tmp_path / "ws").exists()


@pytest.mark.parametrize(("key", "value", "fragment"), [
    ("width", 32, "decodes to 64x48"),
    ("num_frames", 25, "decoded 20 frames, expected 25"),
], ids=["declared width", "more frames declared"])
def test_init_refuses_a_video_that_is_not_what_dataset_json_says(dataset, tmp_path, key, value, fragment):
    shutil.rmtree(dataset / "masks")  # boxes only: the video itself is what disagrees
    doc = json.loads((dataset / "dataset.json").read_text())
    doc["videos"][0][key] = value
    (dataset / "dataset.json").write_text(json.dumps(doc))
    assert_refused(cli("init", str(tmp_path / "ws"), "--dataset", str(dataset)), "vid0.mp4", fragment)
    assert not (tmp_path / "ws").exists()


def test_init_refuses_masks_stored_as_python_objects(dataset, tmp_path):
    masks = next((dataset / "masks").glob("*.npz"))
    np.savez(masks, tube_0=np.array([object()] * 3, dtype=object))
    assert_refused(cli("init", str(tmp_path / "ws"), "--dataset", str(dataset)), masks.name, "booleans")


def test_init_refuses_a_missing_dataset_folder_instead_of_its_parents(dataset, tmp_path):
    assert_refused(cli("init", str(tmp_path / "ws"), "--dataset", str(dataset / "nothing")), "nothing",
                   "no such file or folder")


# --- import: answer files that cannot be used ----------------------------------------------------


@pytest.fixture(scope="module")
def template_workspace(template_dataset, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("robust-ws") / "ws"
    done = cli("init", str(root), "--dataset", str(template_dataset), "labels.initial_percent=10")
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture
def workspace(template_workspace, tmp_path) -> Path:
    return Path(shutil.copytree(template_workspace, tmp_path / "ws"))


def line(**changes: object) -> str:
    answer = {"format": "sparselabel-frame/1", "video": "vid0", "frame": 5, "answered": True,
              "actors": [{"actor": 0, "label": "left", "box": [1, 1, 20, 20]}]}
    answer.update(changes)
    return json.dumps(answer)


IMPORT_CASES = {
    "deeply nested JSON": ('{"a": ' * 50_000 + "1" + "}" * 50_000, "nested too deeply"),
    "actor id 1e20": (line(actors=[{"actor": 1e20, "label": "left", "box": [1, 1, 20, 20]}]), "actor"),
    "actor id a huge integer": (line(actors=[{"actor": 10**30, "label": "left", "box": [1, 1, 20, 20]}]),
                                "actor"),
    "box coordinate a huge integer": (line(actors=[{"actor": 0, "label": "left", "box": [10**400, 1, 20, 20]}]),
                                      "box"),
    "a 5000-digit number": ('{"format": "sparselabel-frame/1", "frame": ' + "7" * 5000 + "}", "number"),
    "frame NaN": (line(frame=float("nan")), "frame"),
    "fractional frame": (line(frame=5.5), "frame"),
}


@pytest.mark.parametrize("case", IMPORT_CASES, ids=list(IMPORT_CASES))
def test_import_refuses_an_unusable_answer_file(workspace, tmp_path, case):
    text, fragment = IMPORT_CASES[case]
    answers = tmp_path / "answers.jsonl"
    answers.write_text(text + "\n")
    before = ledger_dump(workspace)
    assert_refused(cli("import", str(workspace), str(answers)), "answers.jsonl", fragment)
    assert ledger_dump(workspace) == before


def test_import_refuses_a_fifo_instead_of_waiting_forever(workspace, tmp_path):
    fifo = tmp_path / "answers.jsonl"
    os.mkfifo(fifo)
    before = ledger_dump(workspace)
    assert_refused(cli("import", str(workspace), str(fifo)), "answers.jsonl", "not a regular file")
    assert ledger_dump(workspace) == before


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_import_refuses_an_unusable_size_limit(workspace, tmp_path, value):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(line() + "\n")
    before = ledger_dump(workspace)
    config = workspace / "config.yaml"
    config.write_text(config.read_text().replace("import_max_mb: 100.0", f"import_max_mb: {value}"))
    assert_refused(cli("import", str(workspace), str(answers)), "config.yaml", "import_max_mb")
    assert ledger_dump(workspace) == before


def test_a_raw_line_separator_inside_a_json_string_is_text_not_a_line_break(workspace, tmp_path):
    answers = tmp_path / "answers.jsonl"
    answers.write_text(line(note="a\u2028b") + "\n")
    done = cli("import", str(workspace), str(answers), "--allow-unselected")
    assert "not valid JSON" not in done.stderr


# --- the workspace's own files --------------------------------------------------------------------


@pytest.mark.parametrize(("content", "fragment"), [
    (b"", "empty"),
    (b"- dataset\n- model\n", "mapping"),
    (b"\x00\xff\xfe\x01binary", "bad config"),
    (b"dataset: {path: ${nowhere}}\n", "bad config"),
], ids=["empty", "a list", "binary", "unresolvable interpolation"])
def test_a_broken_config_yaml_is_one_line(workspace, content, fragment):
    (workspace / "config.yaml").write_bytes(content)
    before = ledger_dump(workspace)
    assert_refused(cli("status", str(workspace)), "config.yaml", fragment)
    assert ledger_dump(workspace) == before


def test_a_zero_byte_ledger_is_an_error_not_a_new_workspace(workspace):
    (workspace / "ledger.sqlite").write_bytes(b"")
    for suffix in ("-wal", "-shm"):
        (workspace / f"ledger.sqlite{suffix}").unlink(missing_ok=True)
    assert_refused(cli("status", str(workspace)), "ledger.sqlite", "no schema")
    assert (workspace / "ledger.sqlite").read_bytes() == b""


def test_export_onto_an_existing_file_is_one_line(workspace, tmp_path):
    target = tmp_path / "out"
    target.write_text("mine")
    assert_refused(cli("export", str(workspace), "--format", "json", "--out", str(target), "--cycle", "0"), "out",
                   "not a folder")
    assert target.read_text() == "mine"


# --- settings: every value a later step needs is checked when a command starts -------------------


@pytest.mark.parametrize(("setting", "fragment"), [
    ("train.steps=-5", "train.steps"),
    ("train.batch_size=0", "train.batch_size"),
    ("model.input_size=[0,0]", "model.input_size"),
    ("selection.budget=150%", "selection.budget"),
    ("labels.initial_percent=0", "labels.initial_percent"),
    ("labels.initial_percent=nan", "labels.initial_percent"),
    ("seed=-1", "seed"),
    ("labels.oracle=simulted", "labels.oracle"),
    ("labels.annotation=masks", "labels.annotation"),
    ("model.encoder=i3dd", "model.encoder"),
    ("selection.strategy=apuu", "selection.strategy"),
], ids=lambda v: v if "=" in v else "")
def test_a_bad_setting_is_refused_when_the_command_starts(dataset, workspace, tmp_path, setting, fragment):
    assert_refused(cli("init", str(tmp_path / "new"), "--dataset", str(dataset), setting), "", fragment)
    assert not (tmp_path / "new").exists()
    before = ledger_dump(workspace)
    assert_refused(cli("train", str(workspace), setting), "config.yaml", fragment)
    assert ledger_dump(workspace) == before


def test_the_encoder_choices_are_the_registered_encoders():
    from typing import get_args

    from sparselabel.config import Encoder
    from sparselabel.models import ENCODERS

    assert sorted(get_args(Encoder)) == sorted(ENCODERS)


# --- concurrent writers ---------------------------------------------------------------------------


def _answers(path: Path, box: list[int]) -> Path:
    path.write_text("".join(line(frame=f, actors=[{"actor": 0, "label": "left", "box": box}]) + "\n"
                            for f in range(4, 12)))
    return path


@pytest.mark.parametrize("round_", range(3))
def test_two_conflicting_imports_at_once_end_as_if_run_one_after_the_other(workspace, tmp_path, round_):
    files = [_answers(tmp_path / "a.jsonl", [1, 1, 20, 20]), _answers(tmp_path / "b.jsonl", [2, 2, 30, 30])]
    procs = [subprocess.Popen([sys.executable, "-m", "sparselabel", "import", str(workspace), str(f),
                               "--allow-unselected"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=ENV) for f in files]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-1500:] for r in results]
    with sqlite3.connect(f"file:{workspace / 'ledger.sqlite'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT a.frame, a.version, x.x1 FROM annotations a JOIN actors x ON x.annotation_id = a.id "
                          "WHERE a.video_id = 'vid0' AND a.frame BETWEEN 4 AND 11 ORDER BY a.frame, a.version").fetchall()
    by_frame: dict[int, list[tuple[int, float]]] = {}
    for frame, version, x1 in rows:
        by_frame.setdefault(frame, []).append((version, x1))
    already = {f for f in by_frame if by_frame[f][0][1] not in (1.0, 2.0)}  # frames the oracle answered at init
    orders = {tuple(x for _, x in v if x in (1.0, 2.0)) for f, v in by_frame.items() if f not in already}
    # Each import is one transaction: every frame saw the same order, one answer per import, as versions.
    assert len(orders) == 1 and sorted(orders.pop()) == [1.0, 2.0]
    assert all([v for v, _ in versions] == list(range(1, len(versions) + 1)) for versions in by_frame.values())


@pytest.mark.parametrize("case", ["label outside the classes", "num_frames 0", "fps NaN", "empty id"])
def test_add_videos_refuses_the_same_bad_datasets_as_init(workspace, template_dataset, tmp_path, case):
    change, fragment = DATASET_CASES[case]
    more = Path(shutil.copytree(template_dataset, tmp_path / "more"))
    doc = json.loads((more / "dataset.json").read_text())
    (more / "dataset.json").write_text(json.dumps(edit(doc, change)))
    before = ledger_dump(workspace)
    assert_refused(cli("add-videos", str(workspace), str(more)), "dataset.json", fragment)
    assert ledger_dump(workspace) == before


def test_add_videos_refuses_an_integer_id(workspace, template_dataset, tmp_path):
    more = Path(shutil.copytree(template_dataset, tmp_path / "more"))
    doc = json.loads((more / "dataset.json").read_text())
    _rename(7)(doc)  # type: ignore[arg-type]
    (more / "dataset.json").write_text(json.dumps(doc))
    before = ledger_dump(workspace)
    assert_refused(cli("add-videos", str(workspace), str(more)), "dataset.json", "not a non-empty string")
    assert ledger_dump(workspace) == before


def test_a_damaged_ledger_page_is_one_line_and_nothing_is_written(workspace):
    ledger = workspace / "ledger.sqlite"
    db = sqlite3.connect(ledger)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # fold the WAL into the file: the damage below is what is read
    db.close()
    data = bytearray(ledger.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data), page):  # every page after the schema page: garbage
        data[offset + 8 : offset + 64] = b"\xff" * 56
    ledger.write_bytes(bytes(data))
    done = cli("status", str(workspace))
    assert_refused(done, "ledger.sqlite")
    assert ledger.read_bytes() == bytes(data)


def test_integer_video_ids_of_an_act_pickle_export_in_every_format(template_dataset, tmp_path):
    """ACT pickles often key videos by integers: they become string ids, and every export works
    (an export of such a workspace once ended in a KeyError)."""
    import pickle

    doc = json.loads((template_dataset / "dataset.json").read_text())
    frames = tmp_path / "Frames"
    frames.mkdir()
    gt = {"labels": doc["classes"], "gttubes": {}, "nframes": {}, "resolution": {}, "train_videos": [[]],
          "test_videos": [[]]}
    for number, video in enumerate(doc["videos"], start=1):
        shutil.copyfile(template_dataset / video["path"], frames / f"{number}.mp4")
        tube = next(t for t in doc["tubes"] if t["video"] == video["id"])
        rows = np.column_stack([np.array(tube["frames"]) + 1, np.array(tube["boxes"])]).astype(float)
        gt["gttubes"][number] = {tube["label"]: [rows]}
        gt["nframes"][number], gt["resolution"][number] = video["num_frames"], (video["height"], video["width"])
        gt["train_videos"][0].append(number)
    (tmp_path / "gt.pkl").write_bytes(pickle.dumps(gt))
    ws = tmp_path / "ws"
    done = cli("init", str(ws), "--dataset", str(tmp_path / "gt.pkl"), "--kind", "act-pkl", "dataset.test_split=none",
               "labels.oracle=none", "labels.initial_percent=10")
    assert done.returncode == 0, done.stderr
    for fmt in ("json", "cvat", "cvat-images", "labelstudio"):
        done = cli("export", str(ws), "--format", fmt, "--out", str(tmp_path / f"tasks-{fmt}"))
        assert done.returncode == 0, done.stderr
    done = cli("export", str(ws), "--dense", "--format", "act-pkl", "--out", str(tmp_path / "dense"))
    assert done.returncode == 0, done.stderr


def limited_cli(max_file_bytes: int, *args: str) -> subprocess.CompletedProcess:
    """``cli`` with no file allowed to grow past ``max_file_bytes``: a full disk, as a process sees it
    (writes fail with EFBIG; Python ignores SIGXFSZ)."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    return subprocess.run([sys.executable, "-m", "sparselabel", *args], capture_output=True, text=True, env=ENV,
                          timeout=120, preexec_fn=limit)


# 8 KB: no room even for the write-ahead log's index (32 KB) when the ledger opens;
# 36 KB: it opens, and the write transaction fails midway.
@pytest.mark.parametrize("room", [8192, 36864])
def test_a_full_disk_during_import_is_one_line_and_the_ledger_is_unchanged(workspace, tmp_path, room):
    answers = tmp_path / "answers.jsonl"
    boxes = [{"actor": k, "label": "left", "box": [1, 1, 20 + k, 20]} for k in range(6)]
    answers.write_text("".join(line(video=f"vid{v}", frame=f, actors=boxes) + "\n" for v in range(3) for f in range(20)))
    before = ledger_dump(workspace)
    done = limited_cli(room, "import", str(workspace), str(answers), "--allow-unselected")
    assert_refused(done, "ledger.sqlite", "disk I/O error", "is the disk full")
    assert ledger_dump(workspace) == before


def test_a_full_disk_during_export_is_one_line_and_leaves_no_folder(workspace, tmp_path):
    done = limited_cli(2000, "export", str(workspace), "--format", "cvat", "--out", str(tmp_path / "tasks"),
                       "--cycle", "0")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error:"), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"]  # no export, no hidden build folder
