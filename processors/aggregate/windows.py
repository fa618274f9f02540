"""1-minute tumbling windows per device and metric, in event time (pure logic, no I/O).

One :class:`WindowBook` per Kafka partition of ``kotaflow.readings`` holds the partition's
open windows and its watermark; the aggregate stage (``processors/aggregate/stage.py``) feeds it
records and writes what it hands back.

Event time and closing
    A reading belongs to the window ``[floor(ts / 60 s) * 60 s, +60 s)``. The partition's
    watermark is the largest event time seen, never ahead of the wall clock (a device whose
    clock runs fast cannot close everyone's windows). While the partition is caught up it
    moves on with the wall clock *from where the data left it* (newest event time plus the
    wall time since that reading came), and once no reading has come for ``grace`` it is
    the wall clock: a device that goes quiet still gets its last window. Jumping to the
    wall clock at every caught-up poll would turn a backlog into late data: a consumer of
    ``kotaflow.readings`` catches up with validate many times a second while validate
    drains a backlog of minutes-old readings, and each of those readings would open a
    correction (one raw query each; that was 40% of the processors' CPU on a backlog).
    A window closes once ``end + grace <= watermark``.

Dedup
    A window keeps its points as ``{ts: value}``. An exact duplicate (same device, metric,
    time and value) is dropped; a reading with the same time and a new value replaces the
    old one, as the same point in the ``telemetry`` bucket is overwritten, so rollups
    always equal a recomputation from the raw points.

Late readings
    A reading whose window has already closed (watermark past it) opens a *correction*
    window. The stage does not trust memory for it (the window's other points are gone);
    it recomputes the whole window from the raw points in InfluxDB once the store stage has
    committed past the reading, and overwrites the rollup. There is no lateness horizon by
    default: whatever validate let through (up to 7 days old) the store stores, so the
    aggregate corrects it too. An explicit ``max_lateness`` refuses older readings (the
    stage dead-letters them as ``time_too_old``; their rollups then stay below raw).

Restart without double counting
    Offsets are committed only up to the first record of the oldest window still in memory,
    with the watermark in the commit's metadata. A restart re-reads every record of every
    window that was not yet written and rebuilds it whole; windows that were written before
    the commit have watermark <= restored watermark, so their re-read records come back as
    corrections, which recompute from the stored raw points. Nothing is added twice because
    nothing is ever added to a stored aggregate: every write replaces a window whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum

WINDOW_MS = 60_000


def window_start(ts_ms: int, size_ms: int = WINDOW_MS) -> int:
    return ts_ms - ts_ms % size_ms


@dataclass(frozen=True, slots=True)
class Aggregate:
    count: int
    min: float
    max: float
    sum: float
    last: float
    last_ts: int

    @property
    def mean(self) -> float:
        return self.sum / self.count


def aggregate_points(points: dict[int, float]) -> Aggregate:
    """count, min, max, sum and last (by event time) of ``{ts: value}``; must not be empty."""
    values = points.values()
    last_ts = max(points)
    return Aggregate(len(points), min(values), max(values), sum(values), points[last_ts], last_ts)


def combine(parts: list[Aggregate]) -> Aggregate:
    """One aggregate of several disjoint ones (minutes into an hour, hours into a day)."""
    last = max(parts, key=lambda a: a.last_ts)
    return Aggregate(
        count=sum(a.count for a in parts),
        min=min(a.min for a in parts),
        max=max(a.max for a in parts),
        sum=sum(a.sum for a in parts),
        last=last.last,
        last_ts=last.last_ts,
    )


@dataclass(frozen=True, slots=True)
class Series:
    """What identifies a rollup series besides its window: tags of the rollup lines."""

    device: str
    metric: str
    type: str
    kecamatan: str


@dataclass(slots=True)
class Window:
    series: Series
    start_ms: int
    first_offset: int
    last_offset: int
    correction: bool
    points: dict[int, float] = field(default_factory=dict)


class Added(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    REPLACED = "replaced"
    TOO_OLD = "too_old"


class WindowBook:
    """Open windows and watermark of one partition."""

    def __init__(
        self,
        grace_ms: int,
        max_lateness_ms: int | None = None,
        watermark_ms: int = 0,
        size_ms: int = WINDOW_MS,
    ) -> None:
        self.grace_ms = grace_ms
        self.max_lateness_ms = max_lateness_ms
        self.size_ms = size_ms
        self.watermark_ms = watermark_ms
        self.windows: dict[tuple[Series, int], Window] = {}
        self._data_ms = watermark_ms
        """The newest event time seen (capped at the wall clock of its arrival)."""
        self._data_at_ms: int | None = None
        """Wall time at which ``_data_ms`` was reached (None: no reading yet)."""
        self._last_add_ms: int | None = None
        """Wall time of the latest reading."""

    def add(self, series: Series, ts_ms: int, value: float, offset: int, now_ms: int) -> Added:
        """Put one reading in its window; open one (normal or correction) if needed."""
        if self.max_lateness_ms is not None and ts_ms < now_ms - self.max_lateness_ms:
            return Added.TOO_OLD
        start = ts_ms - ts_ms % self.size_ms
        key = (series, start)
        window = self.windows.get(key)
        if window is None:
            late = start + self.size_ms + self.grace_ms <= self.watermark_ms
            window = Window(series, start, offset, offset, late)
            self.windows[key] = window
        window.last_offset = offset
        self._last_add_ms = now_ms
        event_ms = ts_ms if ts_ms < now_ms else now_ms
        if event_ms > self._data_ms or self._data_at_ms is None:
            self._data_ms = max(self._data_ms, event_ms)
            self._data_at_ms = now_ms
            if self._data_ms > self.watermark_ms:
                self.watermark_ms = self._data_ms
        old = window.points.get(ts_ms)
        window.points[ts_ms] = value
        if old is None:
            return Added.NEW
        return Added.DUPLICATE if old == value else Added.REPLACED

    def caught_up(self, now_ms: int) -> None:
        """Nothing left to read on this partition right now: event time moves on with the
        wall clock from the newest reading, and is the wall clock once none has come for
        ``grace`` (see the module docstring)."""
        if self._last_add_ms is None or now_ms - self._last_add_ms >= self.grace_ms:
            moved = now_ms
        else:
            assert self._data_at_ms is not None
            moved = min(now_ms, self._data_ms + (now_ms - self._data_at_ms))
        if moved > self.watermark_ms:
            self.watermark_ms = moved

    def take_closed(self) -> list[Window]:
        """Remove and return every window that is complete: closed ones and all corrections."""
        limit = self.watermark_ms - self.size_ms - self.grace_ms
        done = [w for w in self.windows.values() if w.correction or w.start_ms <= limit]
        for w in done:
            del self.windows[(w.series, w.start_ms)]
        return done

    def hold_back(self, windows: list[Window]) -> None:
        """Put windows back (their write failed or must wait); they keep holding the commit."""
        for w in windows:
            key = (w.series, w.start_ms)
            kept = self.windows.get(key)
            if kept is None:
                self.windows[key] = w
            else:  # new points arrived meanwhile: merge, keeping the newer values
                kept.first_offset = min(kept.first_offset, w.first_offset)
                kept.correction = kept.correction or w.correction
                kept.points = {**w.points, **kept.points}

    def commit_offset(self, next_offset: int) -> int:
        """The offset safe to commit: the first record of the oldest window still held."""
        oldest = min((w.first_offset for w in self.windows.values()), default=next_offset)
        return min(oldest, next_offset)


def encode_metadata(watermark_ms: int) -> str:
    """Commit metadata: the watermark a restart must resume from (see module docstring)."""
    return json.dumps({"v": 1, "wm": watermark_ms}, separators=(",", ":"))


def decode_metadata(text: str | None) -> int:
    """The watermark in commit metadata; 0 (everything open) when absent or unreadable."""
    if not text:
        return 0
    try:
        data = json.loads(text)
        return int(data["wm"]) if data.get("v") == 1 else 0
    except (ValueError, KeyError, TypeError, AttributeError):
        return 0
