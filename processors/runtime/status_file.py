"""The status hook of ``kotaflow process``: its stages' state as a small JSON file.

``<state>/processors/<instance>.status.json`` holds :meth:`processors.runtime.health.Health.status`:
per stage the counters and ``write_blocked`` (null, or ``{"reason", "since_ms", "fix"}``
while its InfluxDB writes stall), plus ``instance``, ``pid`` and ``at_ms`` (when written:
every health interval, and at once when a stage stalls or resumes). The file is removed when
the process stops; one older than a few intervals belongs to a process that died (files of
this host's dead processes are removed when the next one starts).
It works when nothing else does (InfluxDB refusing us, no metrics port), which is when an
operator needs it; ``kotaflow status`` and monitoring checks read it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path

from kotaflow.settings import Settings
from processors.runtime.health import Health


def status_dir(settings: Settings) -> Path:
    return settings.stack.state_dir / "processors"


def status_path(settings: Settings, instance: str) -> Path:
    return status_dir(settings) / f"{instance}.status.json"


def read_statuses(settings: Settings) -> list[dict[str, object]]:
    """Every status file there is (for ``kotaflow status``); unreadable ones are skipped."""
    found: list[dict[str, object]] = []
    for path in sorted(status_dir(settings).glob("*.status.json")):
        with contextlib.suppress(OSError, ValueError):
            found.append(json.loads(path.read_text(encoding="utf-8")))
    return found


def remove_dead(settings: Settings) -> None:
    """Remove the status files of this host's processes that are gone (a SIGKILL, a crash)."""
    host = socket.gethostname()
    for path in status_dir(settings).glob(f"{host}-*.status.json"):
        pid = path.name.removeprefix(f"{host}-").removesuffix(".status.json")
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class StatusFile:
    def __init__(self, path: Path, health: Health) -> None:
        self.path = path
        self._health = health

    def write(self) -> None:
        """Replace the file atomically (readers never see half of it); best effort."""
        data = {**self._health.status(), "pid": os.getpid()}
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
            tmp.replace(self.path)
        except OSError:
            pass

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()
