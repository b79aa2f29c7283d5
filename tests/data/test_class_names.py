"""Class names are stored as a list, never joined: a name that would split or collide is refused."""

from __future__ import annotations

import json

import pytest

from sparselabel.cli import main
from sparselabel.labels.ledger import Ledger


@pytest.mark.parametrize(("classes", "why"), [
    (["walk\nrun", "jump"], "control character"),
    (["walk", "walk"], "listed twice"),
    (["walk", ""], "empty name"),
    (["walk", 3], "not a name"),
    (["tab\there", "jump"], "control character"),
])
def test_unusable_class_names_are_refused_at_init(tmp_path, tiny_dataset, capsys, classes, why):
    doc = json.loads((tiny_dataset / "dataset.json").read_text())
    doc["classes"] = classes
    (tiny_dataset / "dataset.json").write_text(json.dumps(doc))
    assert main(["init", str(tmp_path / "ws"), "--dataset", str(tiny_dataset)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "dataset.json" in err[0] and why in err[0]
    assert not (tmp_path / "ws").exists()


def test_the_ledger_keeps_names_with_any_printable_character(tmp_path):
    names = ["run, fast", "[jump]", "Überschlag", "a/b", "x\u00a0y"]
    with Ledger(tmp_path / "l.sqlite", create=True) as ledger:
        ledger.set_classes(names)
    with Ledger(tmp_path / "l.sqlite") as ledger:
        assert ledger.classes == names


def test_a_ledger_from_before_keeps_its_newline_joined_names(tmp_path):
    with Ledger(tmp_path / "l.sqlite", create=True) as ledger:
        ledger.set_meta(classes="[x]\nrun")  # how earlier versions stored them
    with Ledger(tmp_path / "l.sqlite") as ledger:
        assert ledger.classes == ["[x]", "run"]
