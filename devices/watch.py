"""Picking up an edited registry or catalogue in a running process, safely.

A long-running consumer of device data (the validate stage, the alert stage) holds a
:class:`FleetWatcher` and calls :meth:`FleetWatcher.poll` from its own loop (validate: at
each flush, so every record is judged wholly by one fleet). ``poll`` looks at the two
files' modification time and size at most every ``check_every_s`` (two ``stat`` calls);
when they changed, or :meth:`request` was called (SIGHUP), it loads and validates both
files in full and switches only if they are valid. A bad file keeps the fleet in force
and logs every problem once (file, line, field), until the file changes again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from devices.catalogue import PACKAGED_CATALOGUE
from devices.fleet import Fleet, load_fleet
from devices.registry import PACKAGED_REGISTRY
from devices.sourcefile import DeviceFileError
from kotaflow.settings import Settings
from kotaflow.waiting import wait_or_stop

log = logging.getLogger("kotaflow.devices")

CHECK_EVERY_S = 2.0
"""How often the files are looked at: a new device is taken up within this (plus one
flush interval)."""

Stamp = tuple[tuple[str, int, int] | None, ...]


class FleetWatcher:
    """The fleet in force, and the files it came from."""

    def __init__(
        self,
        settings: Settings,
        fleet: Fleet | None = None,
        *,
        check_every_s: float = CHECK_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._paths = (
            settings.catalogue_file or PACKAGED_CATALOGUE,
            settings.registry_file or PACKAGED_REGISTRY,
        )
        self._stamp = self._stamp_now()
        self.fleet = fleet or load_fleet(settings)
        self.check_every_s = check_every_s
        self._clock = clock
        self._next = clock() + check_every_s
        self._requested = False
        self.reloads = 0
        """Switches made."""
        self.refusals = 0
        """Changed files refused (the fleet in force was kept)."""

    def request(self) -> None:
        """Reload at the next :meth:`poll` even if the files look unchanged (SIGHUP)."""
        self._requested = True

    def poll(self) -> Fleet | None:
        """The new fleet if the files changed and are valid (now in force), else None."""
        now = self._clock()
        if not self._requested and now < self._next:
            return None
        self._next = now + self.check_every_s
        stamp = self._stamp_now()
        if stamp == self._stamp and not self._requested:
            return None
        self._requested = False
        self._stamp = stamp
        try:
            fleet = load_fleet(self._settings)
        except DeviceFileError as err:
            self.refusals += 1
            log.warning(
                "device files changed but are invalid: keeping the registry and catalogue in force",
                extra={"problems": [str(p) for p in err.problems]},
            )
            return None
        except OSError as err:  # mid-replace by an editor, or removed: keep what we have
            self.refusals += 1
            log.warning("device files unreadable: keeping those in force", extra={"err": str(err)})
            return None
        self.fleet = fleet
        self.reloads += 1
        log.info(
            "device files reloaded",
            extra={"devices": len(fleet.registry), "types": len(fleet.catalogue.types)},
        )
        return fleet

    def _stamp_now(self) -> Stamp:
        return tuple(_stamp(p) for p in self._paths)


def _stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (str(path), found.st_mtime_ns, found.st_size)


async def follow(
    watcher: FleetWatcher, on_change: Callable[[Fleet], None], stop: asyncio.Event
) -> None:
    """Poll ``watcher`` until ``stop``; hand each fleet it switches to to ``on_change``.
    For a consumer that has no loop of its own to poll from (the alert stage's names)."""
    while not stop.is_set():
        await wait_or_stop(stop, watcher.check_every_s)
        fleet = watcher.poll()
        if fleet is not None:
            on_change(fleet)
