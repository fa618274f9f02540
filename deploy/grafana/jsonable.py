"""SDK models to plain JSON-like values (dicts, lists, scalars), keeping EnvRef markers."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any


def plain(value: Any) -> Any:
    """Recursively call the SDK's ``to_json`` and unwrap builders and enums."""
    build = getattr(value, "build", None)
    if callable(build) and not isinstance(value, type):
        return plain(build())
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return plain(to_json())
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    return value
