"""The Quix Streams peer's pure parts, without services or Quix: it writes kotaflow's own
schemas, drops what kotaflow's validate would refuse, and its venv install is cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.peers.quix_logic import DeviceMeta, event_ms, fold, parse, rollup_lines
from benchmarks.peers.quix_peer import device_map
from deploy.local.quixstreams import MARKER, ensure_quixstreams, quixstreams_dir
from devices.fleet import Fleet, load_fleet
from kotaflow.settings import Settings
from kotaflow.wire.readings import ReadingsRecord
from processors.aggregate.rollups import rollup_line
from processors.aggregate.windows import Series, aggregate_points
from processors.runtime.readings_input import RecordRef
from processors.store import LineBuffer

T0 = 1_764_300_000_000


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return load_fleet(Settings())


def _device(fleet: Fleet) -> tuple[str, DeviceMeta, dict[str, float]]:
    device = next(d for d in fleet.registry if d.enabled)
    metrics = fleet.metrics_of(device)
    values = {name: (m.minimum + m.maximum) / 2 for name, m in metrics.items()}
    return device.id, device_map(fleet)[device.id], values


def test_telemetry_line_is_the_one_kotaflows_store_writes(fleet: Fleet) -> None:
    device_id, meta, values = _device(fleet)
    device = fleet.device(device_id)
    assert device is not None
    [entry] = parse(meta, {"ts": T0, "values": values}, T0 + 50)
    ours = LineBuffer()
    ref = RecordRef("raw", 0, 0, None, None)
    units = dict.fromkeys(values, "")
    record = ReadingsRecord(device.id, device.type, device.kecamatan, units, T0, (), values)
    ours.add(record, ref)
    assert [entry.line] == ours.take()[0]
    assert (entry.ts_ms, entry.values, entry.dropped) == (T0, values, 0)


def test_rollup_lines_are_the_ones_kotaflows_aggregate_writes(fleet: Fleet) -> None:
    device_id, meta, values = _device(fleet)
    device = fleet.device(device_id)
    assert device is not None
    metric = next(iter(values))
    points = {T0 + 5000: 3.5, T0 + 1000: 1.25, T0 + 3000: 7.0}
    state = {}
    for ts, value in points.items():  # not in time order: "last" follows event time
        state = fold(state, {metric: value}, ts)
    series = Series(device=device.id, metric=metric, type=device.type, kecamatan=device.kecamatan)
    assert rollup_lines(meta, T0, state) == [
        rollup_line(series, "1m", T0, aggregate_points(points))
    ]


def test_readings_kotaflow_would_refuse_are_dropped_and_counted(fleet: Fleet) -> None:
    _, meta, values = _device(fleet)
    metric, m = next(iter(meta["metrics"].items()))
    bad = {metric: m["max"] + 1, "no_such_metric": 1.0}
    [entry] = parse(meta, {"ts": T0, "values": bad}, T0)
    assert (entry.values, entry.line, entry.dropped) == ({}, "", 2)
    for value in (True, "3", float("nan"), None):
        assert parse(meta, {"ts": T0, "values": {metric: value}}, T0)[0].dropped == 1
    unknown = parse(None, {"ts": T0, "values": values}, T0)
    assert unknown[0].dropped == len(values)
    assert not unknown[0].line


def test_bad_shapes_and_times_are_dropped_not_raised(fleet: Fleet) -> None:
    _, meta, values = _device(fleet)
    cases = [
        {"ts": "yesterday", "values": values},
        {"ts": T0, "values": values, "extra": 1},
        {"ts": T0, "values": [1, 2]},
        "not an object",
        {"ts": T0},
    ]
    for payload in cases:
        [entry] = parse(meta, payload, T0)
        assert not entry.values
        assert entry.dropped >= 1


def test_untimed_entries_take_the_receive_time_and_arrays_give_one_entry_each(
    fleet: Fleet,
) -> None:
    _, meta, values = _device(fleet)
    entries = parse(meta, [values, {"ts": "2025-11-28T03:20:00Z", "values": values}], T0)
    assert [e.ts_ms for e in entries] == [T0, T0]
    assert all(e.values == values for e in entries)


def test_event_time_accepts_epoch_ms_and_rfc3339_with_a_zone() -> None:
    assert event_ms(T0) == T0
    assert event_ms("2025-11-28T03:20:00.000+00:00") == T0
    assert event_ms("2025-11-28T03:20:00") is None  # no zone: ambiguous
    assert event_ms(True) is None


def test_a_cached_venv_is_used_without_installing(tmp_path: Path) -> None:
    target = quixstreams_dir(tmp_path)
    python = target / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("", encoding="utf-8")
    (target / MARKER).write_text("quixstreams\n", encoding="utf-8")
    said: list[str] = []
    assert ensure_quixstreams(tmp_path, said.append) == python
    assert said == []
