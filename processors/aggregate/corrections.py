"""Which raw-point queries a batch of late windows needs, and which rollups it dirties (pure).

The aggregate stage (:mod:`.stage`) corrects a late window by recomputing it from the raw
points in ``telemetry``. A day of late data is ~1,440 windows per metric of a
device; one query per window would cost more than the data. So a flush's ready corrections
are planned as few queries as possible, with a bounded amount of raw data each:

* windows are de-duplicated by ``(series, start)`` already (:class:`WindowBook` keys them);
* windows of one device (its metrics share the device's raw points) are one query over
  ``[first start, last end)``, split where two windows lie more than :data:`MAX_GAP_MS`
  apart, so a reading six days late and one an hour late never make the query read the
  days between them;
* hours and days that a corrected window touches are recorded per device
  (:class:`DirtyRollups`), so the hourly and daily recomputation reads only the devices
  that changed instead of the whole fleet of that hour.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from processors.aggregate.windows import WINDOW_MS, Window

MAX_GAP_MS = 3_600_000
"""Windows of one device further apart than this get separate queries."""
MAX_DEVICES_PER_FILTER = 20
"""More devices dirty in one hour than this: recompute the hour for all (one plain query)."""


@dataclass(frozen=True, slots=True)
class RawQuery:
    """One device's raw points over ``[start_ms, stop_ms)``, for ``windows``."""

    type: str
    device: str
    start_ms: int
    stop_ms: int
    windows: tuple[Window, ...]


def plan_queries(windows: Iterable[Window], max_gap_ms: int = MAX_GAP_MS) -> list[RawQuery]:
    """The queries that cover ``windows``: per device, one per run of nearby windows."""
    by_device: dict[tuple[str, str], list[Window]] = defaultdict(list)
    for w in windows:
        by_device[(w.series.type, w.series.device)].append(w)
    out: list[RawQuery] = []
    for (type_, device), found in by_device.items():
        found.sort(key=lambda w: w.start_ms)
        run: list[Window] = [found[0]]
        for w in found[1:]:
            if w.start_ms - (run[-1].start_ms + WINDOW_MS) > max_gap_ms:
                out.append(_query(type_, device, run))
                run = []
            run.append(w)
        out.append(_query(type_, device, run))
    return out


def _query(type_: str, device: str, run: list[Window]) -> RawQuery:
    stop = max(w.start_ms for w in run) + WINDOW_MS
    return RawQuery(type_, device, run[0].start_ms, stop, tuple(run))


@dataclass(slots=True)
class DirtyRollups:
    """Hours (or days) to recompute, each with the devices whose rollups changed in it
    (None: every device)."""

    devices: dict[int, set[str] | None] = field(default_factory=dict)

    def touch(self, start_ms: int, device: str | None) -> None:
        """``start_ms`` changed for ``device`` (None: for every device)."""
        found = self.devices.setdefault(start_ms, set())
        if found is None:
            return
        if device is None or len(found) >= MAX_DEVICES_PER_FILTER:
            self.devices[start_ms] = None
        else:
            found.add(device)

    def take(self) -> list[tuple[int, list[str] | None]]:
        """Every dirty period, oldest first, with its devices (None: all of them)."""
        taken = sorted(self.devices.items())
        self.devices = {}
        return [(start, None if found is None else sorted(found)) for start, found in taken]
