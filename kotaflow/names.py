"""Names an operator types (a kecamatan, a rule, a dead-letter reason): refused when they
name nothing, with the closest known one as a suggestion (``'Reokk': did you mean 'Reok'?``).

A filter or a silence naming what does not exist would match nothing and say nothing; every
command that takes such a name checks it here, so the wording is the same everywhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from fnmatch import fnmatchcase

_PATTERN = set("*?[")


def unknown(what: str, value: str, known: Collection[str]) -> str | None:
    """A problem if ``value`` (a name or shell pattern) names nothing in ``known``."""
    if _PATTERN & set(value):
        if any(fnmatchcase(item, value) for item in known):
            return None
        return f"{what} pattern {value!r} matches none"
    if value in known:
        return None
    close = difflib.get_close_matches(value, list(known), n=1, cutoff=0.6)
    hint = f": did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {value!r}{hint}"
