"""YAML files whose problems can be pointed at: data plus the line of every field.

The catalogue and the registry are edited by hand, so an error must say *where*: file,
line, field and reason. :func:`read_yaml` parses once for the data and walks PyYAML's
composed node tree for line numbers (``start_mark``), keyed by the field's path, e.g.
``("devices", 3, "dev_eui")``. It also reports duplicate mapping keys, which
``yaml.safe_load`` would silently collapse to the last one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

FieldPath = tuple[str | int, ...]

# libyaml's loader when PyYAML was built with it (10x faster), same marks and results
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a device file, located for a human."""

    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


class DeviceFileError(ValueError):
    """A catalogue or registry file is invalid; ``problems`` lists every finding."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def field_name(path: FieldPath) -> str:
    """``("devices", 3, "dev_eui")`` -> ``devices[3].dev_eui``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(document)"


@dataclass(frozen=True, slots=True)
class SourceFile:
    """A parsed YAML document with the line of each field path."""

    path: Path
    data: Any
    lines: dict[FieldPath, int]
    duplicates: tuple[tuple[FieldPath, int], ...]

    def line_of(self, path: FieldPath) -> int:
        """Line of ``path``, else of its nearest ancestor that exists (1 for the document)."""
        for depth in range(len(path), 0, -1):
            line = self.lines.get(path[:depth])
            if line is not None:
                return line
        return 1

    def problem(self, path: FieldPath, reason: str) -> Problem:
        return Problem(str(self.path), self.line_of(path), field_name(path), reason)

    def duplicate_problems(self) -> list[Problem]:
        return [
            Problem(str(self.path), line, field_name(path), "duplicate key (YAML keeps only one)")
            for path, line in self.duplicates
        ]


def read_yaml(path: Path) -> SourceFile:
    """Parse ``path``; raise :class:`DeviceFileError` if it is unreadable or not YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DeviceFileError([Problem(str(path), 1, "(file)", f"cannot read: {err}")]) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = f"not valid YAML: {getattr(err, 'problem', None) or err}"
        raise DeviceFileError([Problem(str(path), line, "(document)", reason)]) from None
    finally:
        loader.dispose()
    lines: dict[FieldPath, int] = {}
    duplicates: list[tuple[FieldPath, int]] = []
    if node is not None:
        _walk(node, (), lines, duplicates)
    return SourceFile(path, data, lines, tuple(duplicates))


def _walk(
    node: yaml.Node,
    path: FieldPath,
    lines: dict[FieldPath, int],
    duplicates: list[tuple[FieldPath, int]],
) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                duplicates.append((child, key_node.start_mark.line + 1))
                continue
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines, duplicates)


def pydantic_problems(
    source: SourceFile, err: ValidationError, prefix: FieldPath = ()
) -> list[Problem]:
    """One :class:`Problem` per pydantic error, located under ``prefix`` in ``source``."""
    problems = []
    for item in err.errors(include_url=False):
        path: FieldPath = (*prefix, *item["loc"])
        problems.append(source.problem(path, item["msg"]))
    return problems
