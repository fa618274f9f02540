"""Durations as operators write them (``90s``, ``15m``, ``1h``, ``1d``; a number is seconds;
ISO 8601 ``PT15M`` too, as a settings dump writes them back).

One parser for the rule file (``for``, windows), the alert routes (``group_window``,
``escalate_after``) and the command line (``alerts silence add --duration``), so a
duration reads the same everywhere.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, TypeAdapter, ValidationError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_ISO = TypeAdapter(timedelta)


def parse_duration(value: Any) -> timedelta:
    """``"15m"`` -> 15 minutes. Accepts numbers (seconds) and ``ms``/``s``/``m``/``h``/``d``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 15m, 1h or 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (found := _DURATION.match(value)):
        seconds = float(found.group(1)) * _UNIT_S[found.group(2)]
    elif isinstance(value, str) and value.strip().upper().startswith(("P", "-P")):
        try:
            seconds = _ISO.validate_python(value.strip()).total_seconds()
        except ValidationError:
            raise ValueError(
                f"expected a duration like 90s, 15m, 1h or 1d, got {value!r}"
            ) from None
    else:
        raise ValueError(f"expected a duration like 90s, 15m, 1h or 1d, got {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
"""A pydantic field type: a duration as :func:`parse_duration` reads it."""
