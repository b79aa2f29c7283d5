"""Label Studio's other exports of the same answers import to the same ledger: JSON-MIN and the
export snapshot; a JSON-MIN that lost what links a label to its box is refused with the fix.

Shapes, from label-studio 1.23.2 / label-studio-sdk 2.1.2:
- JSON-MIN (label_studio_sdk/converter/converter.py, convert_to_json_min): one record per
  submitted annotation, newest first, and one per task with no annotation: the task's data
  fields at the top level, "id", per from_name the list of its regions' ``value`` objects (no
  region id, no type; image values also carry original_width / original_height), then
  "annotator", "annotation_id" (null: nobody annotated), "created_at", "updated_at", "lead_time".
- Snapshot (label_studio/data_export/serializers.py, ExportDataSerializer): the JSON export's
  tasks with every model field; ``completed_by`` an id or {id, email, first_name, last_name},
  ``predictions`` / ``drafts`` ids or objects, and with ``interpolate_key_frames`` every frame
  a video region shows as a sequence item with ``auto: true``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pytest
from ix_tools import answers, expected_after_edits
from test_ix_ambiguity import interpolate
from test_ix_roundtrip import answer_labelstudio_images, answer_labelstudio_video

from sparselabel.errors import AnnotationError
from sparselabel.interchange import export_tasks, import_answers

ROOT = Path(__file__).resolve().parents[2]
ANSWER = {"image": answer_labelstudio_images, "video": answer_labelstudio_video}


def json_min(export: list[dict]) -> list[dict]:
    """What JSON-MIN makes of a JSON export (see the module doc)."""
    records = []
    for task in export:
        if not task["annotations"]:
            records.append({**task["data"], "id": task["id"], "annotator": None, "annotation_id": None,
                            "created_at": None, "updated_at": None, "lead_time": None})
        kept = [a for a in task["annotations"] if not a.get("was_cancelled")]
        for annotation in sorted(kept, key=lambda a: a["created_at"], reverse=True):
            record = {**task["data"], "id": task["id"]}
            for item in annotation["result"]:
                value = {**item["value"], **{k: item[k] for k in ("original_width", "original_height") if k in item}}
                record.setdefault(item["from_name"], []).append(value)
            record.update(annotator=annotation["completed_by"], annotation_id=annotation["id"],
                          created_at=annotation["created_at"], updated_at=annotation["updated_at"],
                          lead_time=annotation["lead_time"])
            records.append(record)
    return records


def snapshot_export(export: list[dict]) -> list[dict]:
    """An export snapshot of the same tasks: expanded annotators, prediction ids, interpolated
    video frames, a skipped annotation, and one more task holding only a draft."""
    tasks = []
    for k, task in enumerate(copy.deepcopy(export)):
        for annotation in task["annotations"]:
            annotation.update(completed_by={"id": 1, "email": "ann@example.org", "first_name": "", "last_name": ""},
                              task=task["id"], project=3, result_count=len(annotation["result"]),
                              draft_created_at=None, prediction={}, import_id=None, last_action=None,
                              bulk_created=False, updated_by=1, parent_prediction=None, parent_annotation=None,
                              last_created_by=None, unique_id=f"u{k}")
            if "frames" in task["data"]:
                interpolate(annotation["result"])
        task["annotations"].append({**task["annotations"][0], "id": 900 + k, "was_cancelled": True, "result": [],
                                    "updated_at": "2030-01-01T00:00:00Z"})
        task.update(predictions=[500 + k], drafts=[], file_upload=None, meta={}, inner_id=k + 1, total_annotations=1,
                    cancelled_annotations=1, total_predictions=1, comment_count=0, unresolved_comment_count=0,
                    last_comment_updated_at=None, project=3, updated_by=1, comment_authors=[],
                    created_at="2024-01-01T00:00:00Z", updated_at="2024-01-01T00:00:00Z")
        tasks.append(task)
    draft_only = {**copy.deepcopy(tasks[0]), "id": 999, "annotations": [], "drafts": [701], "total_annotations": 0}
    return [*tasks, draft_only]


def exported(ws, tmp_path: Path, kind: str) -> list[dict]:
    out = tmp_path / "out"
    export_tasks(ws, "labelstudio", out, with_predictions=True)
    (path,) = ANSWER[kind](out, tmp_path)
    return json.loads(path.read_text())


@pytest.mark.parametrize("kind", ["image", "video"])
@pytest.mark.parametrize("variant", ["json-min", "snapshot"])
def test_json_min_and_snapshot_exports_give_the_json_export_s_answers(predicted_ws, tmp_path, kind, variant):
    export = exported(predicted_ws, tmp_path, kind)
    path = tmp_path / f"{variant}.json"
    path.write_text(json.dumps(json_min(export) if variant == "json-min" else snapshot_export(export)))
    report = import_answers(predicted_ws, path)
    assert answers(predicted_ws.ledger) == expected_after_edits()
    assert (report.corrected, report.drawn, report.ambiguous) == (8, 1, [])
    if variant == "json-min":
        assert any("JSON-MIN" in note for note in report.notes)
    else:
        assert report.unanswered == 1 and "1 tasks have only drafts" in report.summary()


def test_json_min_with_labels_apart_from_their_boxes_is_refused(predicted_ws, tmp_path):
    records = json_min(exported(predicted_ws, tmp_path, "video"))
    records[0]["videoLabels"] = [{"start": 1, "end": 5, "labels": ["left"]}]  # no region id links it to a box
    path = tmp_path / "min.json"
    path.write_text(json.dumps(records))
    with pytest.raises(AnnotationError, match="without the region ids that link them; export as JSON instead"):
        import_answers(predicted_ws, path)


def test_json_min_that_cannot_tell_unanswered_from_nobody_there_is_refused(predicted_ws, tmp_path):
    records = json_min(exported(predicted_ws, tmp_path, "image"))
    for record in records:
        del record["annotation_id"]
    path = tmp_path / "min.json"
    path.write_text(json.dumps(records))
    with pytest.raises(AnnotationError, match="without annotation_id .* export as JSON instead"):
        import_answers(predicted_ws, path)


# --- Label Studio's own converter, where it is installed --------------------------------------


def sdk_python() -> str:
    """A Python with label_studio_sdk: $SPARSELABEL_LABEL_STUDIO_PYTHON, the one beside
    $SPARSELABEL_LABEL_STUDIO, or .venv-labelstudio's (`make labelstudio`); else skip."""
    given = os.environ.get("SPARSELABEL_LABEL_STUDIO_PYTHON")
    beside = os.environ.get("SPARSELABEL_LABEL_STUDIO")
    for candidate in (given, beside and str(Path(beside).with_name("python")),
                      str(ROOT / ".venv-labelstudio" / "bin" / "python")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("label_studio_sdk is not installed: `make labelstudio`, or set SPARSELABEL_LABEL_STUDIO_PYTHON")


CONVERT = """
import sys
from label_studio_sdk.converter import Converter
Converter(config=open(sys.argv[1]).read(), project_dir=None).convert(sys.argv[2], sys.argv[3], "JSON_MIN",
                                                                      is_dir=False)
"""


@pytest.mark.parametrize("kind", ["image", "video"])
def test_label_studio_s_own_json_min_imports_like_its_json(predicted_ws, tmp_path, kind):
    python = sdk_python()
    export = exported(predicted_ws, tmp_path, kind)
    source = tmp_path / "export.json"
    source.write_text(json.dumps(export))
    config = tmp_path / "out" / "labelstudio" / f"{kind}-config.xml"
    done = subprocess.run([python, "-c", CONVERT, str(config), str(source), str(tmp_path / "min")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = import_answers(predicted_ws, tmp_path / "min" / "result.json")
    assert answers(predicted_ws.ledger) == expected_after_edits()
    assert (report.corrected, report.drawn) == (8, 1)
