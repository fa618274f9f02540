"""Planning late-window corrections: few raw queries, bounded spans, per-device dirt (pure)."""

from __future__ import annotations

from processors.aggregate.corrections import (
    MAX_DEVICES_PER_FILTER,
    MAX_GAP_MS,
    DirtyRollups,
    plan_queries,
)
from processors.aggregate.rollups import combine_flux
from processors.aggregate.windows import WINDOW_MS, Series, Window

T0 = 1_764_300_000_000
DAY = 86_400_000


def window(device: str, metric: str, start: int) -> Window:
    return Window(Series(device, metric, "weather", "Ruteng"), start, 0, 0, True)


def test_a_day_of_late_windows_of_one_device_is_one_query() -> None:
    windows = [window("wx-1", m, T0 + i * WINDOW_MS) for i in range(1440) for m in ("t", "rh")]
    (query,) = plan_queries(windows)
    assert (query.device, query.start_ms, query.stop_ms) == ("wx-1", T0, T0 + DAY)
    assert len(query.windows) == 2880


def test_windows_far_apart_get_their_own_queries_so_no_query_reads_the_days_between() -> None:
    six_days_late, an_hour_late = T0 - 6 * DAY, T0 - 3_600_000
    near = T0 - 3_600_000 + WINDOW_MS + MAX_GAP_MS  # exactly MAX_GAP_MS after the previous end
    windows = [window("wx-1", "t", s) for s in (near, six_days_late, an_hour_late)]
    spans = [(q.start_ms, q.stop_ms) for q in plan_queries(windows)]
    assert spans == [
        (six_days_late, six_days_late + WINDOW_MS),
        (an_hour_late, near + WINDOW_MS),
    ]


def test_each_device_is_queried_separately() -> None:
    windows = [window(d, "t", T0) for d in ("wx-1", "wx-2", "wx-1")]
    assert sorted(q.device for q in plan_queries(windows)) == ["wx-1", "wx-2"]


def test_dirty_hours_name_their_devices_until_there_are_too_many() -> None:
    dirty = DirtyRollups()
    dirty.touch(T0, "wx-2")
    dirty.touch(T0, "wx-1")
    dirty.touch(T0, "wx-1")
    for i in range(MAX_DEVICES_PER_FILTER + 1):
        dirty.touch(T0 + 3_600_000, f"d{i}")
    dirty.touch(T0 + 7_200_000, None)
    dirty.touch(T0 + 7_200_000, "wx-1")
    assert dirty.take() == [
        (T0, ["wx-1", "wx-2"]),
        (T0 + 3_600_000, None),
        (T0 + 7_200_000, None),
    ]
    assert dirty.take() == []


def test_combine_query_filters_devices_only_when_given() -> None:
    assert "r.device" not in combine_flux("rollups", "1m", T0, T0 + 3_600_000)
    some = combine_flux("rollups", "1m", T0, T0 + 3_600_000, ["a", 'b"'])
    assert 'r.window == "1m" and (r.device == "a" or r.device == "b\\"")' in some
