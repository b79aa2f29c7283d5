"""People in the loop: selected frames out as annotation tasks, answers back into the ledger.

Formats: CVAT for video / for images 1.1 XML, Label Studio JSON, sparselabel
JSONL (docs/interchange.md).
"""

from __future__ import annotations

from sparselabel.interchange.dense import export_dense
from sparselabel.interchange.export import FORMATS, export_tasks
from sparselabel.interchange.importer import ImportReport, import_answers

__all__ = ["FORMATS", "ImportReport", "export_dense", "export_tasks", "import_answers"]
