"""Choice keys (``Literal`` fields of the config dataclasses) are checked by OmegaConf when the
config is loaded: a misspelt value is one error line naming the key and the allowed values."""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args, get_origin, get_type_hints

import pytest

from sparselabel.config import Config, load_config, save_config
from sparselabel.errors import SparseLabelError


def _choice_keys(cls: type = Config, prefix: str = "") -> dict[str, tuple[str, ...]]:
    """Every ``Literal`` field, found by walking the dataclasses: ``{"model.head": ("capsules", "conv"), ...}``."""
    found: dict[str, tuple[str, ...]] = {}
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if get_origin(kind) is Literal:
            found[prefix + f.name] = get_args(kind)
        elif dataclasses.is_dataclass(kind):
            found.update(_choice_keys(kind, f"{prefix}{f.name}."))
    return found


CHOICE_KEYS = _choice_keys()
ALLOWED = [(key, value) for key, values in CHOICE_KEYS.items() for value in values]


def _get(config: Config, key: str) -> object:
    value: object = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _yaml(key: str, value: str) -> str:
    section, name = key.split(".")
    return f"{section}:\n  {name}: {value}\n"


def test_the_choice_keys_are_found():
    assert CHOICE_KEYS["model.head"] == ("capsules", "conv")
    assert CHOICE_KEYS["labels.oracle"] == ("simulated", "none")
    assert len(CHOICE_KEYS) >= 13
    assert "selection.strategy" not in CHOICE_KEYS  # a registry a decorator extends, checked after loading
    for key, values in CHOICE_KEYS.items():
        assert all(isinstance(v, str) for v in values), key
        assert _get(Config(), key) in values, key  # the default is one of them


@pytest.mark.parametrize("key", sorted(CHOICE_KEYS))
def test_a_misspelt_choice_is_one_line_naming_the_key(key, tmp_path):
    allowed = CHOICE_KEYS[key]
    typo = allowed[0] + "x"
    assert typo not in allowed
    expected = f"bad config: {key}={typo!r}; choose one of {', '.join(allowed)}"
    with pytest.raises(SparseLabelError) as override:
        load_config(None, [f"{key}={typo}"])
    assert str(override.value) == expected
    path = tmp_path / "config.yaml"
    path.write_text(_yaml(key, typo))
    with pytest.raises(SparseLabelError) as in_file:
        load_config(path)
    assert str(in_file.value) == f"{path}: {expected}"


@pytest.mark.parametrize(("text", "shown"), [("[a, b]", "['a', 'b']"), ("1", "1"), ("null", "None")])
def test_a_choice_given_a_list_a_number_or_nothing_names_the_key(tmp_path, text, shown):
    path = tmp_path / "config.yaml"
    path.write_text(_yaml("model.head", text))
    with pytest.raises(SparseLabelError) as exc:
        load_config(path)
    assert str(exc.value) == f"{path}: bad config: model.head={shown}; choose one of capsules, conv"


@pytest.mark.parametrize(("key", "value"), ALLOWED, ids=[f"{k}={v}" for k, v in ALLOWED])
def test_every_allowed_choice_loads_as_a_plain_string(key, value, tmp_path):
    loaded = _get(load_config(None, [f"{key}={value}"]), key)
    assert loaded == value and type(loaded) is str
    path = tmp_path / "config.yaml"
    path.write_text(_yaml(key, value))
    config = load_config(path)
    assert _get(config, key) == value
    save_config(config, tmp_path / "saved.yaml")
    assert _get(load_config(tmp_path / "saved.yaml"), key) == value


def test_other_config_errors_name_the_key_on_one_line():
    with pytest.raises(SparseLabelError) as exc:
        load_config(None, ["seed=abc"])
    assert str(exc.value).startswith("bad config: seed: ") and "\n" not in str(exc.value)
    assert "object_type" not in str(exc.value)
    with pytest.raises(SparseLabelError, match=r"^bad config: labels\.initial_precent: "):
        load_config(None, ["labels.initial_precent=5"])
