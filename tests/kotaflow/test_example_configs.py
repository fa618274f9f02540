"""The example configs say what the settings model says (Telegraf's sample.conf rule: an
example that a test checks field by field cannot drift from the code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from kotaflow.settings import ProcessingSettings, Settings, load_settings

ROOT = Path(__file__).parents[2]
PROCESSING_EXAMPLE = ROOT / "processors" / "processing.example.yaml"
DEPLOYMENT_CONFIG = ROOT / "deploy" / "config" / "kotaflow.yaml"


def differences(defaults: BaseModel, shown: Any, where: str) -> list[str]:
    """Where ``shown`` (parsed YAML) misses a field of ``defaults``' model, has one the model
    does not, or shows a value other than the default."""
    model = type(defaults)
    if not isinstance(shown, dict):
        return [f"{where}: expected a mapping of {model.__name__}, got {shown!r}"]
    found = [
        f"{where}.{key}: not a field of {model.__name__}"
        for key in shown
        if key not in model.model_fields
    ]
    for name in model.model_fields:
        path = f"{where}.{name}"
        default = getattr(defaults, name)
        if name not in shown:
            found.append(f"{path}: missing (default {default!r})")
        elif isinstance(default, BaseModel):
            found += differences(default, shown[name], path)
        else:
            value = getattr(model.model_validate({name: shown[name]}), name)
            if value != default:
                found.append(f"{path}: shows {shown[name]!r}, the default is {default!r}")
    return found


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_processing_example_shows_every_field_with_its_default() -> None:
    assert "the values shown are the defaults" in PROCESSING_EXAMPLE.read_text(encoding="utf-8")
    shown = _yaml(PROCESSING_EXAMPLE)
    assert set(shown) == {"processing"}
    assert differences(ProcessingSettings(), shown["processing"], "processing") == []
    load_settings(PROCESSING_EXAMPLE)


def test_the_check_names_a_missing_an_extra_and_a_wrong_field() -> None:
    shown = _yaml(PROCESSING_EXAMPLE)["processing"]
    del shown["store"]["batch_lines"]
    shown["retry"]["initial"] = 0.2
    shown["aggregate"]["grace_s"] = 11
    assert differences(ProcessingSettings(), shown, "processing") == [
        "processing.store.batch_lines: missing (default 5000)",
        "processing.aggregate.grace_s: shows 11, the default is 10.0",
        "processing.retry.initial: not a field of RetrySettings",
    ]


@pytest.mark.parametrize("config", [DEPLOYMENT_CONFIG], ids=lambda p: str(p.relative_to(ROOT)))
def test_deployment_config_names_only_real_fields(config: Path) -> None:
    """Not defaults (it is the deployment's own choice), but every key is a setting."""
    assert isinstance(load_settings(config), Settings)
