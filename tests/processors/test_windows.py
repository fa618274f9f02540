"""Event-time windows, dedup, late corrections and restart safety (pure, no services)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from processors.aggregate.windows import (
    Added,
    Aggregate,
    Series,
    Window,
    WindowBook,
    aggregate_points,
    combine,
    decode_metadata,
    encode_metadata,
    window_start,
)

S = Series("rtg-aq-01", "pm25", "air_quality", "Langke Rembong")
T0 = 1_764_300_000_000  # a minute boundary
NOW = T0 + 10 * 60_000
GRACE = 10_000
DAY = 24 * 3_600_000


def book(watermark: int = 0) -> WindowBook:
    return WindowBook(grace_ms=GRACE, max_lateness_ms=DAY, watermark_ms=watermark)


def test_aggregate_counts_min_max_mean_and_last_by_event_time() -> None:
    agg = aggregate_points({T0 + 3000: 5.0, T0 + 1000: 1.0, T0 + 2000: 9.0})
    assert agg == Aggregate(count=3, min=1.0, max=9.0, sum=15.0, last=5.0, last_ts=T0 + 3000)
    assert agg.mean == 5.0


def test_combine_equals_aggregating_the_union() -> None:
    a = {T0 + i * 1000: float(i) for i in range(10)}
    b = {T0 + 60_000 + i * 1000: float(-i) for i in range(5)}
    assert combine([aggregate_points(b), aggregate_points(a)]) == aggregate_points({**a, **b})


def test_exact_duplicates_are_dropped_and_a_new_value_replaces_the_old() -> None:
    wb = book()
    assert wb.add(S, T0 + 1000, 1.0, offset=0, now_ms=NOW) is Added.NEW
    assert wb.add(S, T0 + 1000, 1.0, offset=1, now_ms=NOW) is Added.DUPLICATE
    assert wb.add(S, T0 + 1000, 2.0, offset=2, now_ms=NOW) is Added.REPLACED
    (window,) = wb.windows.values()
    assert window.points == {T0 + 1000: 2.0}


def test_window_closes_when_event_time_passes_end_plus_grace() -> None:
    wb = book()
    wb.add(S, T0 + 1000, 1.0, 0, NOW)
    wb.add(S, T0 + 60_000 + GRACE - 1, 2.0, 1, NOW)
    assert wb.take_closed() == []
    wb.add(S, T0 + 60_000 + GRACE, 3.0, 2, NOW)
    (closed,) = wb.take_closed()
    assert (closed.start_ms, closed.points, closed.correction) == (T0, {T0 + 1000: 1.0}, False)


def test_quiet_device_gets_its_last_window_on_wall_clock_time() -> None:
    wb = book()
    wb.add(S, T0 + 5000, 1.0, 0, now_ms=T0 + 6000)
    wb.caught_up(T0 + 60_000 + GRACE - 1)
    assert wb.take_closed() == []
    wb.caught_up(T0 + 60_000 + GRACE)
    assert [w.start_ms for w in wb.take_closed()] == [T0]


def test_a_fast_device_clock_cannot_close_everyone_elses_windows() -> None:
    wb = book()
    wb.add(S, T0 + 1000, 1.0, 0, now_ms=T0 + 2000)
    other = Series("rtg-wx-01", "temperature", "weather", "Ruteng")
    wb.add(other, T0 + 3_600_000, 20.0, 1, now_ms=T0 + 2000)  # one hour ahead
    assert wb.watermark_ms == T0 + 2000
    assert [w.series for w in wb.take_closed()] == []


def test_a_backlog_read_as_fast_as_it_is_produced_is_not_late() -> None:
    """Aggregate catches up with validate many times while validate drains a backlog of
    old readings: the watermark follows the data, so none of them opens a correction."""
    wb = book()
    closed: list[Window] = []
    for minute in range(5):
        for second in range(0, 60, 5):
            ts = T0 + minute * 60_000 + second * 1000
            clock = NOW + minute * 1000 + second * 10  # the backlog goes by in seconds
            assert wb.add(S, ts, 1.0, minute * 12 + second // 5, clock) is Added.NEW
            wb.caught_up(clock + 1)
            closed += wb.take_closed()
    assert [(w.start_ms, w.correction, len(w.points)) for w in closed] == [
        (T0 + m * 60_000, False, 12) for m in range(4)
    ]
    assert [w.start_ms for w in wb.windows.values()] == [T0 + 4 * 60_000]


def test_caught_up_the_watermark_moves_with_the_clock_from_the_data() -> None:
    wb = book()
    wb.add(S, T0 + 1000, 1.0, 0, now_ms=NOW)
    wb.caught_up(NOW + 4000)
    assert wb.watermark_ms == T0 + 5000
    wb.caught_up(NOW + GRACE - 1)
    assert wb.watermark_ms == T0 + 1000 + GRACE - 1
    wb.caught_up(NOW + GRACE)  # nothing came for the grace time: the wall clock
    assert wb.watermark_ms == NOW + GRACE


def test_late_reading_corrects_closed_window() -> None:
    wb = book()
    wb.add(S, T0 + 1000, 1.0, 0, NOW)
    wb.caught_up(NOW + GRACE)
    assert [w.correction for w in wb.take_closed()] == [False]
    assert wb.add(S, T0 + 2000, 7.0, 1, NOW) is Added.NEW
    (late,) = wb.take_closed()
    assert late.correction
    assert late.start_ms == T0
    assert late.points == {T0 + 2000: 7.0}
    assert (late.first_offset, late.last_offset) == (1, 1)


def test_without_a_lateness_limit_a_week_old_reading_opens_a_correction() -> None:
    wb = WindowBook(grace_ms=GRACE, watermark_ms=NOW)
    assert wb.add(S, NOW - 7 * DAY + 1, 1.0, 0, NOW) is Added.NEW
    (late,) = wb.take_closed()
    assert late.correction


def test_readings_older_than_max_lateness_are_refused() -> None:
    wb = book()
    assert wb.add(S, NOW - DAY - 1, 1.0, 0, NOW) is Added.TOO_OLD
    assert wb.add(S, NOW - DAY, 1.0, 1, NOW) is Added.NEW


def test_commit_offset_stops_at_the_oldest_window_still_held() -> None:
    wb = book()
    wb.add(S, T0 + 1000, 1.0, 10, NOW)
    wb.add(S, T0 + 61_000, 1.0, 11, NOW)
    assert wb.commit_offset(12) == 10
    wb.watermark_ms = T0 + 60_000 + GRACE
    wb.take_closed()
    assert wb.commit_offset(12) == 11
    wb.caught_up(NOW + GRACE)
    wb.take_closed()
    assert wb.commit_offset(12) == 12


def test_held_back_corrections_keep_holding_the_commit_and_merge_new_points() -> None:
    wb = book(watermark=NOW)
    wb.add(S, T0 + 1000, 1.0, 5, NOW)
    (late,) = wb.take_closed()
    wb.add(S, T0 + 2000, 2.0, 6, NOW)
    wb.hold_back([late])
    (merged,) = wb.windows.values()
    assert merged.first_offset == 5
    assert merged.points == {T0 + 1000: 1.0, T0 + 2000: 2.0}
    assert wb.commit_offset(7) == 5


def test_metadata_round_trips_and_garbage_means_no_watermark() -> None:
    assert decode_metadata(encode_metadata(T0)) == T0
    for junk in (None, "", "{", '{"v":2,"wm":5}', "[]", '{"v":1}'):
        assert decode_metadata(junk) == 0


def test_window_start_floors_to_the_minute() -> None:
    assert window_start(T0 + 59_999) == T0
    assert window_start(T0 + 60_000) == T0 + 60_000


# A partition replayed through crashes: rollups must equal a recomputation from raw points.


@dataclass
class Record:
    offset: int
    series: Series
    ts: int
    value: float
    arrives: int


@dataclass
class Sim:
    """One aggregate consumer on one partition, with store assumed caught up."""

    records: list[Record]
    rollups: dict[tuple[Series, int], Aggregate] = field(default_factory=dict)
    committed: tuple[int, str | None] = (0, None)

    def stored(self, upto: int, series: Series, start: int) -> dict[int, float]:
        points: dict[int, float] = {}
        for r in self.records[: upto + 1]:
            if r.series == series and start <= r.ts < start + 60_000:
                points[r.ts] = r.value
        return points

    def flush(self, wb: WindowBook, position: int) -> None:
        for w in wb.take_closed():
            points = self.stored(position, w.series, w.start_ms) if w.correction else w.points
            self.rollups[(w.series, w.start_ms)] = aggregate_points({**w.points, **points})

    def run(self, crash_at: set[int], rng: random.Random) -> None:
        wb = book(decode_metadata(self.committed[1]))
        i = self.committed[0]
        clock = 0
        while i < len(self.records):
            r = self.records[i]
            clock = max(clock, r.arrives)
            wb.add(r.series, r.ts, r.value, r.offset, clock)
            if rng.random() < 0.3:
                wb.caught_up(clock)
                self.flush(wb, i)
            if rng.random() < 0.1:
                self.committed = (wb.commit_offset(i + 1), encode_metadata(wb.watermark_ms))
            if i in crash_at:
                crash_at.discard(i)
                wb = book(decode_metadata(self.committed[1]))  # state lost
                i = self.committed[0]
                continue
            i += 1
        wb.caught_up(clock + 3_600_000)
        self.flush(wb, len(self.records) - 1)


def _stream(rng: random.Random, n: int) -> list[Record]:
    series = [Series(f"d{k}", m, "t", "k") for k in range(3) for m in ("a", "b")]
    out: list[Record] = []
    for offset in range(n):
        s = rng.choice(series)
        ts = T0 + offset * 700 + rng.randint(-2000, 2000)
        arrives = ts + rng.randint(0, 3000)
        if rng.random() < 0.05:  # buffered upload, up to an hour late
            ts -= rng.randint(60_000, 3_600_000)
        if rng.random() < 0.05 and out:  # exact duplicate of an earlier reading
            prev = rng.choice(out)
            s, ts = prev.series, prev.ts
            value = prev.value
        else:
            value = float(rng.randint(0, 100))
        out.append(Record(offset, s, ts, value, arrives))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_restarts_never_lose_or_double_count(seed: int) -> None:
    rng = random.Random(seed)
    records = _stream(rng, 1500)
    sim = Sim(records)
    sim.run(crash_at={rng.randrange(len(records)) for _ in range(4)}, rng=rng)
    truth: dict[tuple[Series, int], dict[int, float]] = {}
    for r in records:
        truth.setdefault((r.series, window_start(r.ts)), {})[r.ts] = r.value
    assert sim.rollups.keys() == truth.keys()
    for key, points in truth.items():
        assert sim.rollups[key] == aggregate_points(points), key


def test_window_is_a_plain_record() -> None:
    w = Window(S, T0, 1, 2, False)
    assert w.points == {}
