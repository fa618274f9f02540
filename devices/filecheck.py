"""``devices check``: tell a registry from a catalogue and report every problem in it.

A file with a top-level ``devices:`` is a registry (checked against the catalogue in the
settings, or the packaged one); a file with ``types:`` or ``metrics:`` is a catalogue.
Findings are :class:`devices.sourcefile.Problem` values: file, line, field, reason.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from devices.catalogue import Catalogue, check_catalogue
from devices.registry import check_registry
from devices.sourcefile import DeviceFileError, Problem, SourceFile, read_yaml


class DeviceFileKind(StrEnum):
    CATALOGUE = "catalogue"
    REGISTRY = "registry"


def detect_kind(source: SourceFile) -> DeviceFileKind | None:
    if not isinstance(source.data, dict):
        return None
    if "devices" in source.data:
        return DeviceFileKind.REGISTRY
    if "types" in source.data or "metrics" in source.data:
        return DeviceFileKind.CATALOGUE
    return None


def check_device_file(
    path: Path, catalogue: Callable[[], Catalogue]
) -> tuple[DeviceFileKind | None, list[Problem]]:
    """Kind of ``path`` and its problems (empty if valid).

    ``catalogue`` is called only for a registry; a broken catalogue raises
    :class:`DeviceFileError` with the catalogue's own problems.
    """
    try:
        source = read_yaml(path)
    except DeviceFileError as err:
        return None, err.problems
    kind = detect_kind(source)
    if kind is DeviceFileKind.REGISTRY:
        return kind, check_registry(source, catalogue())[1]
    if kind is DeviceFileKind.CATALOGUE:
        return kind, check_catalogue(source)[1]
    reason = "neither a registry (top-level devices:) nor a catalogue (top-level types:)"
    return None, [source.problem((), reason)]
