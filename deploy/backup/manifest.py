"""The backup's table of contents: ``manifest.json`` with versions, time and a checksum per file.

Restore reads nothing else to learn what a backup holds, and checks every file's size and
SHA-256 against it before the first write to a target, so a truncated copy or a flipped bit
is found while the running stack is still untouched.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT = 1


class BackupError(RuntimeError):
    """A backup or restore cannot go on; the message says what to do."""


@dataclass(frozen=True)
class Entry:
    """One file of the backup.

    ``kind`` says how restore puts it back; ``target`` is where: relative to the state
    directory for state files, the original path for settings files, a server part for
    InfluxDB files.
    """

    path: str
    kind: str
    target: str
    size: int
    sha256: str


@dataclass
class Manifest:
    created: str
    versions: dict[str, str]
    source: dict[str, str]
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    influxdb_buckets: list[dict[str, Any]] = field(default_factory=list)
    """org, bucket, point count per measurement: what restore should find again."""
    format: int = FORMAT

    def add(self, root: Path, path: Path, kind: str, target: str) -> Entry:
        entry = Entry(
            path=path.relative_to(root).as_posix(),
            kind=kind,
            target=target,
            size=path.stat().st_size,
            sha256=sha256_of(path),
        )
        self.entries.append(entry)
        return entry

    def of_kind(self, kind: str) -> list[Entry]:
        return [e for e in self.entries if e.kind == kind]

    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def save(self, root: Path) -> None:
        (root / MANIFEST_NAME).write_text(
            json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, root: Path) -> Manifest:
        path = root / MANIFEST_NAME
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackupError(f"{root} is not a kotaflow backup: no {MANIFEST_NAME}") from None
        except (OSError, ValueError) as err:
            raise BackupError(f"cannot read {path}: {err}") from None
        if data.get("format") != FORMAT:
            raise BackupError(
                f"{path}: format {data.get('format')!r}, this kotaflow reads {FORMAT}"
            )
        entries = [Entry(**e) for e in data.pop("entries", [])]
        return cls(entries=entries, **data)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(root: Path, manifest: Manifest) -> list[str]:
    """Every problem with the backup's files (missing, wrong size, wrong checksum)."""
    problems = []
    for entry in manifest.entries:
        path = root / entry.path
        if not path.is_file():
            problems.append(f"{entry.path}: missing")
        elif path.stat().st_size != entry.size:
            problems.append(
                f"{entry.path}: {path.stat().st_size} bytes, manifest says {entry.size}"
            )
        elif sha256_of(path) != entry.sha256:
            problems.append(f"{entry.path}: SHA-256 differs from the manifest")
    return problems


def human_size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"
