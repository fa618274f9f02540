"""The simulator's message stream: faults in exact proportions, deterministic, and every
payload decoded by the real ``devices.formats`` decoders to exactly the fate the stream
promised (readings accepted with their value and time, faulty ones rejected with their
reason). Pure: no services, no clock (the decoder's receive time is the message's due time).
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from devices.calibration import apply_calibration
from devices.decoding import DecodeContext
from devices.fleet import Fleet, load_fleet
from devices.formats import decode
from devices.simulator.faults import BLOCK, FaultMix, FaultPlan, Kind, Malformation
from devices.simulator.manifest import (
    ManifestWriter,
    manifest_values,
    payload_hash,
    read_manifest,
)
from devices.simulator.options import FormatChoice, OptionsError, SimulationOptions
from devices.simulator.plan import PlanError, plan_devices
from devices.simulator.stream import (
    DUPLICATE,
    LATE_MAX_S,
    LATE_MIN_S,
    OK,
    SKEW_MIN_S,
    MessageStream,
    SimMessage,
)
from devices.simulator.summary import Summary
from devices.topics import match_topic
from kotaflow.wire.raw import PayloadFormat
from kotaflow.wire.reasons import Reason

T0_MS = 1_800_000_000_000  # 2027-01-15 08:00 UTC: wet season, 16:00 in Ruteng
HEAVY = FaultMix.parse(
    "malformed=0.05,out_of_range=0.05,duplicate=0.05,late=0.05,skew=0.05,silent=0.1"
)


@pytest.fixture(scope="module")
def packaged() -> Fleet:
    return load_fleet()


def stream_of(fleet: Fleet, **options: object) -> MessageStream:
    opts = SimulationOptions(**{"rate": 2000.0, **options})  # type: ignore[arg-type]
    return MessageStream.for_run(fleet, plan_devices(fleet, opts), opts, T0_MS)


def take(stream: MessageStream, n: int) -> list[SimMessage]:
    return [stream.next_message() for _ in range(n)]


# --- options and fault mix -------------------------------------------------------------


def test_fault_mix_parses_the_cli_spec() -> None:
    mix = FaultMix.parse("malformed=0.01, out-of-range=0.02,silent=0.05")
    assert mix.share(Kind.MALFORMED) == 0.01
    assert mix.share(Kind.OUT_OF_RANGE) == 0.02
    assert mix.silent == 0.05
    assert mix.share(Kind.NORMAL) == pytest.approx(0.97)
    assert FaultMix.parse(str(mix)) == mix
    assert FaultMix.parse("") == FaultMix()


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("malformed", "KIND=SHARE"),
        ("typo=0.1", "KIND=SHARE"),
        ("late=lots", "not a number"),
        ("skew=1.5", "between 0 and 1"),
        ("late=0.6,skew=0.6", "add up"),
        ("silent=1", "no device"),
        ("late=0.1,late=0.2", "twice"),
    ],
)
def test_fault_mix_refuses_bad_specs_by_name(spec: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        FaultMix.parse(spec)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"rate": 0.0}, "--rate"),
        ({"duration_s": -1.0}, "--duration"),
        ({"count": 0}, "--count"),
        ({"time_scale": 0.0}, "--time-scale"),
        ({"max_inflight": 0}, "--max-inflight"),
    ],
)
def test_options_refuse_bad_values_naming_the_flag(
    options: dict[str, float], complaint: str
) -> None:
    with pytest.raises(OptionsError, match=complaint):
        SimulationOptions(**options)  # type: ignore[arg-type]


def test_fault_plan_deals_exact_shares_in_random_order() -> None:
    plan = FaultPlan(HEAVY, seed=3)
    kinds = [plan.next_kind() for _ in range(10 * BLOCK + 37)]
    counts = Counter(kinds)
    for kind in (Kind.MALFORMED, Kind.OUT_OF_RANGE, Kind.DUPLICATE, Kind.LATE, Kind.SKEW):
        assert abs(counts[kind] - 0.05 * len(kinds)) <= 0.05 * BLOCK + 1
    full = Counter(kinds[: 10 * BLOCK])
    assert full[Kind.LATE] == 0.05 * 10 * BLOCK  # exact over whole blocks
    gaps = [b - a for a, b in itertools.pairwise(i for i, k in enumerate(kinds) if k is Kind.LATE)]
    assert len(set(gaps)) > 10, "faults must not come at a fixed period"
    again, other = FaultPlan(HEAVY, seed=3), FaultPlan(HEAVY, seed=4)
    assert kinds == [again.next_kind() for _ in kinds]
    assert kinds != [other.next_kind() for _ in kinds]


# --- who publishes, in which format ------------------------------------------------------


def test_mixed_format_follows_each_devices_network(packaged: Fleet) -> None:
    plan = plan_devices(packaged, SimulationOptions(format=FormatChoice.MIXED))
    formats = {d.id: d.format for d in plan.devices}
    for device in packaged.registry:
        if not device.enabled:
            assert device.id not in formats
        elif device.tts_device_id:
            assert formats[device.id] is PayloadFormat.TTS_V3
        elif device.dev_eui:
            assert formats[device.id] is PayloadFormat.CHIRPSTACK_V4
        else:
            assert formats[device.id] in (PayloadFormat.NATIVE_JSON, PayloadFormat.SENML_JSON)
    assert set(formats.values()) == set(PayloadFormat)


def test_chirpstack_format_leaves_out_devices_without_a_deveui(packaged: Fleet) -> None:
    plan = plan_devices(packaged, SimulationOptions(format=FormatChoice.CHIRPSTACK))
    assert plan.devices
    assert all(d.device.dev_eui for d in plan.devices)
    assert plan.excluded
    assert all(packaged.registry.by_id[i].dev_eui is None for i in plan.excluded)


def test_devices_filter_takes_globs_on_id_or_type(packaged: Fleet) -> None:
    plan = plan_devices(packaged, SimulationOptions(devices=("reo-*", "river_level")))
    ids = {d.id for d in plan.devices}
    assert {"reo-wx-01", "reo-rl-01", "gwo-rl-01"} <= ids
    assert all(i.startswith("reo-") or i.split("-")[1] == "rl" for i in ids)
    with pytest.raises(PlanError, match="no enabled device"):
        plan_devices(packaged, SimulationOptions(devices=("nowhere-*",)))


def test_silent_devices_are_the_given_share_and_never_publish(packaged: Fleet) -> None:
    options = SimulationOptions(faults=FaultMix(silent=0.2), seed=5)
    plan = plan_devices(packaged, options)
    enabled = sum(1 for d in packaged.registry if d.enabled)
    assert len(plan.silent) == round(0.2 * enabled)
    assert len(plan.devices) == enabled - len(plan.silent)
    senders = {
        m.device_id for m in take(MessageStream.for_run(packaged, plan, options, T0_MS), 3000)
    }
    assert senders.isdisjoint(plan.silent)
    assert senders == {d.id for d in plan.devices}


# --- the stream ----------------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_traffic(packaged: Fleet) -> None:
    one = take(stream_of(packaged, seed=11, faults=HEAVY), 500)
    again = take(stream_of(packaged, seed=11, faults=HEAVY), 500)
    other = take(stream_of(packaged, seed=12, faults=HEAVY), 500)
    assert [(m.topic, m.payload) for m in one] == [(m.topic, m.payload) for m in again]
    assert [m.payload for m in one] != [m.payload for m in other]


def test_messages_are_due_at_the_rate_and_device_time_follows(packaged: Fleet) -> None:
    stream = stream_of(packaged, rate=1000.0)
    messages = take(stream, 2000)
    for before, after in itertools.pairwise(messages):
        assert after.due_s == pytest.approx(before.due_s + len(before.values) / 1000.0)
    last_ts: dict[str, int] = {}
    for m in messages:
        if m.kind is not Kind.NORMAL:
            continue
        ts = m.values[0].ts_ms
        assert abs(ts - (T0_MS + m.due_s * 1000)) <= 1000
        assert ts > last_ts.get(m.device_id, 0), "device time must strictly increase"
        last_ts[m.device_id] = ts


def test_count_budget_gives_exactly_the_readings_asked_for(packaged: Fleet) -> None:
    stream = stream_of(packaged, faults=HEAVY)
    while stream.values_sent < 12_345:
        stream.next_message(12_345 - stream.values_sent)
    assert stream.values_sent == 12_345


def test_devices_report_in_proportion_to_their_interval(packaged: Fleet) -> None:
    stream = stream_of(packaged)
    counts = Counter(m.device_id for m in take(stream, 4000))
    # Weather stations report every 60 s, water meters every 900 s.
    assert counts["rtg-wx-02"] / counts["rtg-wm-02"] == pytest.approx(15, rel=0.2)


@pytest.mark.parametrize("fmt", list(FormatChoice), ids=str)
def test_every_payload_decodes_to_the_fate_the_stream_promised(
    packaged: Fleet, fmt: FormatChoice
) -> None:
    ctx = DecodeContext(packaged)
    messages = take(stream_of(packaged, format=fmt, faults=HEAVY, seed=21), 1500)
    seen_kinds: Counter[Kind] = Counter()
    for message in messages:
        match = match_topic(message.topic)
        assert match is not None, message.topic
        assert match.format is message.format
        rx_ms = T0_MS + round(message.due_s * 1000) + 150  # a little transit time
        result = decode(message.payload, match, rx_ms, ctx)
        got = sorted((r.metric, r.ts_ms, r.value) for r in result.readings)
        want = sorted(
            (e.metric, e.ts_ms, e.raw) for e in message.values if e.outcome in (OK, DUPLICATE)
        )
        assert got == want, (message.kind, message.variant, message.payload[:300])
        reasons = {r.reason.value for r in result.rejections}
        assert reasons == message.reasons, (message.kind, message.variant, result.rejections)
        for rejection in result.rejections:
            if rejection.metric is not None:
                fate = {e.outcome for e in message.values if e.metric == rejection.metric}
                assert rejection.reason.value in fate
        device = packaged.registry.by_id[message.device_id]
        for reading in result.readings:
            stored = apply_calibration(reading, device).value
            expected = next(
                e for e in message.values if (e.metric, e.ts_ms) == (reading.metric, reading.ts_ms)
            )
            assert stored == expected.value
        seen_kinds[message.kind] += 1
    assert set(seen_kinds) == set(Kind)


def test_each_fault_kind_goes_wrong_the_way_it_says(packaged: Fleet) -> None:
    messages = take(stream_of(packaged, faults=HEAVY, seed=8), 3000)
    by_seq = {m.seq: m for m in messages}
    variants = Counter(m.variant for m in messages if m.kind is Kind.MALFORMED)
    assert set(variants) == set(Malformation)
    reason_of = {
        Malformation.TRUNCATED: Reason.NOT_JSON,
        Malformation.NOT_JSON: Reason.NOT_JSON,
        Malformation.BAD_SHAPE: Reason.BAD_SHAPE,
        Malformation.BAD_TYPE: Reason.BAD_TYPE,
        Malformation.NAN: Reason.NOT_FINITE,
    }
    for m in messages:
        outcomes = Counter(e.outcome for e in m.values)
        if m.kind is Kind.NORMAL:
            assert set(outcomes) == {OK}
        elif m.kind is Kind.MALFORMED:
            assert m.variant is not None
            assert m.reasons == {reason_of[m.variant].value}
        elif m.kind is Kind.OUT_OF_RANGE:
            assert outcomes[Reason.OUT_OF_RANGE.value] == 1
            assert outcomes[OK] == len(m.values) - 1
        elif m.kind is Kind.SKEW:
            assert set(outcomes) == {Reason.TIME_IN_FUTURE.value}
            ahead_s = (m.values[0].ts_ms - T0_MS) / 1000 - m.due_s
            assert ahead_s >= SKEW_MIN_S - 1
        elif m.kind is Kind.LATE:
            assert set(outcomes) == {OK}
            for e in m.values:
                age_s = m.due_s - (e.ts_ms - T0_MS) / 1000
                assert LATE_MIN_S - 1 <= age_s <= LATE_MAX_S + 24 * 900
            if m.format in (PayloadFormat.NATIVE_JSON, PayloadFormat.SENML_JSON):
                assert len({e.ts_ms for e in m.values}) >= 3, "a buffered burst, in one message"
        else:
            assert m.kind is Kind.DUPLICATE
            assert m.dup_of is not None
            original = by_seq[m.dup_of]
            assert (m.topic, m.payload) == (original.topic, original.payload)
            assert set(outcomes) == {DUPLICATE}


def test_senml_devices_exercise_unit_conversions(packaged: Fleet) -> None:
    messages = take(stream_of(packaged, format=FormatChoice.SENML), 2000)
    text = b"".join(m.payload for m in messages)
    assert b'"u":"Cel"' in text
    assert any(unit in text for unit in (b'"u":"degF"', b'"u":"K"', b'"u":"Pa"', b'"u":"km/h"'))


def test_summary_and_manifest_account_for_every_value(packaged: Fleet, tmp_path: Path) -> None:
    messages = take(stream_of(packaged, faults=HEAVY, seed=2), 1200)
    summary = Summary("run1", 2, "mixed", str(HEAVY), "now", 1.0, 2000.0)
    path = tmp_path / "manifest.jsonl"
    with ManifestWriter(path, "run1") as manifest:
        for m in messages:
            summary.count(m)
            manifest.write(m)
    assert summary.messages == len(messages)
    assert summary.readings == sum(len(m.values) for m in messages)
    duplicates = summary.kinds[Kind.DUPLICATE.value].readings
    assert summary.readings == summary.valid + duplicates + sum(summary.rejected.values())
    assert sum(k.messages for k in summary.kinds.values()) == summary.messages
    assert summary.bytes == sum(len(m.payload) for m in messages)
    values = list(manifest_values(path))
    assert len(values) == summary.readings
    assert sum(1 for v in values if v.expect == OK) == summary.valid
    assert {v.run for v in values} == {"run1"}
    lines = list(read_manifest(path))
    assert [line["seq"] for line in lines] == [m.seq for m in messages]
    assert lines[0]["payload_b2b"] == payload_hash(messages[0].payload)
    json_form = summary.to_json()
    assert json_form["schema"] == "kotaflow.simulate.summary/1"
    assert json_form["kinds"]["late"]["messages"] == summary.kinds["late"].messages


def _temperatures(stream: MessageStream, device_id: str, messages: int) -> list[float]:
    return [
        e.value
        for m in take(stream, messages)
        if m.device_id == device_id and m.kind is Kind.NORMAL
        for e in m.values
        if e.metric == "temperature" and e.value is not None
    ]


def test_start_sets_the_simulated_clock_and_time_scale_speeds_it(packaged: Fleet) -> None:
    wita = timezone(timedelta(hours=8))
    night = stream_of(packaged, start=datetime(2027, 8, 3, 4, 0, tzinfo=wita))
    afternoon = stream_of(packaged, start=datetime(2027, 8, 3, 14, 0, tzinfo=wita))
    cold = statistics.fmean(_temperatures(night, "rtg-wx-02", 300))
    warm = statistics.fmean(_temperatures(afternoon, "rtg-wx-02", 300))
    assert warm - cold > 4.0
    # At 1,440x a simulated day passes in a minute: one device's temperature then swings
    # through the whole diurnal range within 60 s of due time.
    fast = stream_of(packaged, rate=None, time_scale=1440.0, devices=("rtg-wx-02",))
    assert fast.rate == pytest.approx(7 / 60 * 1440)  # 7 metrics every 60 s, sped up
    day = _temperatures(fast, "rtg-wx-02", 1440)  # a simulated day: 1,440 reports
    assert max(day) - min(day) > 5.0
