"""A dataset path names exactly what is read: no fallback to a parent folder or the current one."""

from __future__ import annotations

import pytest

from sparselabel.cli import main
from sparselabel.config import load_config
from sparselabel.data.dataset import load_dataset
from sparselabel.errors import SparseLabelError


def test_a_missing_folder_does_not_fall_back_to_the_parent_dataset(tiny_dataset):
    with pytest.raises(SparseLabelError, match="no such file or folder"):
        load_dataset("native", tiny_dataset / "missing")
    with pytest.raises(SparseLabelError, match="dataset folder or its dataset.json"):
        load_dataset("native", tiny_dataset / "videos" / "vid0.mp4")
    assert load_dataset("native", tiny_dataset / "dataset.json").videos


def test_an_empty_dataset_path_is_an_error(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.chdir(tiny_dataset)  # holds a dataset.json that "." would find
    with pytest.raises(SparseLabelError, match="dataset.path is empty"):
        load_dataset("native", "")


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"),
    ("- a\n- b\n", "mapping"),
    ("dataset: {path: ${oops}}\n", "bad config"),
    ("\x00\x01\x02\xff\xfe", "bad config"),
    ("model: [", "bad config"),
])
def test_an_unusable_workspace_config_is_one_clear_error(tmp_path, tiny_dataset, capsys, text, why):
    ws = tmp_path / "ws"
    assert main(["init", str(ws), "--dataset", str(tiny_dataset)]) == 0
    (ws / "config.yaml").write_bytes(text.encode("latin1"))
    capsys.readouterr()
    assert main(["status", str(ws)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "config.yaml" in err[0] and why in err[0], err
    with pytest.raises(SparseLabelError):
        load_config(ws / "config.yaml")
