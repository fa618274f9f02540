"""The simulated traffic itself: a deterministic stream of MQTT messages with known fates.

:class:`MessageStream` is pure (no I/O, no clock): given the device plan, the options, the
run's start time and the rate, it yields :class:`SimMessage` s in order, each with the
moment it is due (``due_s`` after the start), its topic and payload, its :class:`Kind`,
and for every value it carries the outcome the pipeline must reach (:class:`Expected`):
accepted with this canonical and calibrated value, a duplicate, or rejected with this
reason code. The same seed and start give the same stream, byte for byte.

Timing: message *i* is due when the values before it, at ``rate`` per second, have been
sent; its device timestamp is that instant (kept strictly increasing per device, so no two
readings of a device share a millisecond). Which device speaks next follows each device's
catalogue interval (a heap of next-due times), so at any rate the mix of devices is the
real one. The signals are evaluated at the *simulated* time, ``start + elapsed *
time_scale``.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import NamedTuple

from devices.calibration import apply_calibration
from devices.catalogue import Metric
from devices.fleet import Fleet
from devices.reading import Reading
from devices.registry import Calibration
from devices.simulator.climate import Climate
from devices.simulator.encoders import Encoder, Encoders, Frame, Uplink, Value
from devices.simulator.faults import FaultMix, FaultPlan, Kind, Malformation
from devices.simulator.noise import key_of
from devices.simulator.options import SimulationOptions
from devices.simulator.plan import DevicePlan, SimDevice, WireUnit
from devices.simulator.signals import sample
from kotaflow.wire.raw import PayloadFormat
from kotaflow.wire.reasons import Reason

OK = "ok"
DUPLICATE = "duplicate"

LATE_MIN_S = 3600.0
LATE_MAX_S = 24 * 3600.0
SKEW_MIN_S = 6 * 60.0
"""Beyond the decoders' 5-minute future tolerance, with a minute of margin for delays."""
SKEW_MAX_S = 60 * 60.0

_DECIMALS: Mapping[str, int] = MappingProxyType(
    {
        "temperature": 2, "humidity": 1, "pressure": 1, "wind_speed": 1, "wind_direction": 0,
        "rain": 2, "rain_rate": 1, "water_level": 1, "river_flow": 2, "pm25": 1, "pm10": 1,
        "co2": 0, "no2": 1, "o3": 1, "co": 2, "laeq": 1, "lamax": 1, "flow": 2,
        "water_pressure": 2, "volume": 3, "power": 1, "energy": 3, "voltage": 1,
        "current": 3, "battery": 3,
    }
)  # fmt: skip


class Expected(NamedTuple):
    """One value a message carries and what the pipeline must make of it."""

    metric: str
    ts_ms: int
    outcome: str
    """``ok``, ``duplicate`` (accepted again, stored once) or a rejection reason code."""
    raw: float | None = None
    """Canonical value the decoder yields (accepted values only)."""
    value: float | None = None
    """``raw`` after the device's calibration: what the time-series store holds."""


@dataclass(frozen=True, slots=True)
class SimMessage:
    seq: int
    device_id: str
    format: PayloadFormat
    topic: str
    payload: bytes
    kind: Kind
    due_s: float
    values: tuple[Expected, ...]
    variant: Malformation | None = None
    dup_of: int | None = None

    @property
    def accepted(self) -> int:
        """Values the pipeline stores for the first time."""
        return sum(1 for v in self.values if v.outcome == OK)

    @property
    def reasons(self) -> frozenset[str]:
        """Rejection reasons the decoder must give for this message."""
        return frozenset(v.outcome for v in self.values if v.outcome not in (OK, DUPLICATE))


class _Wire(NamedTuple):
    """How a device puts one metric on the wire (prepared once per device)."""

    decimals: int
    calibration: Calibration | None
    unit: WireUnit | None


@dataclass(slots=True)
class _DeviceState:
    sim: SimDevice
    encoder: Encoder
    metrics: tuple[Metric, ...]
    wire: tuple[_Wire, ...]
    last_ts_ms: int = 0
    last_t: float | None = None
    f_cnt: int = 0
    last_normal: SimMessage | None = field(default=None, repr=False)


class MessageStream:
    """Yields the run's messages in order; see the module docstring."""

    def __init__(
        self,
        plan: DevicePlan,
        encoders: Encoders,
        *,
        seed: int,
        faults: FaultMix,
        rate: float,
        t0_ms: int,
        start_s: float,
        time_scale: float = 1.0,
    ) -> None:
        self.rate = rate
        self._t0_ms = t0_ms
        self._start_s = start_s
        self._scale = time_scale
        self._climate = Climate(seed)
        self._faults = FaultPlan(faults, seed)
        self._rng = random.Random(key_of(seed, "stream"))
        self._states = [_state(d, encoders[d.format]) for d in plan.devices]
        self._heap = [
            (d.type.interval_s * self._rng.random(), i) for i, d in enumerate(plan.devices)
        ]
        heapq.heapify(self._heap)
        self._values_sent = 0
        self._seq = 0
        self._last_normal: SimMessage | None = None

    @classmethod
    def for_run(
        cls, fleet: Fleet, plan: DevicePlan, options: SimulationOptions, t0_ms: int
    ) -> MessageStream:
        """The stream of a run that starts at ``t0_ms`` (wall clock, ms)."""
        encoders = Encoders(
            {m.name: m.unit for m in fleet.catalogue.metrics.values()}, list(fleet.catalogue.types)
        )
        return cls(
            plan,
            encoders,
            seed=options.seed,
            faults=options.faults,
            rate=plan.target_rate(options),
            t0_ms=t0_ms,
            start_s=options.start.timestamp() if options.start else t0_ms / 1000,
            time_scale=options.time_scale,
        )

    @property
    def values_sent(self) -> int:
        return self._values_sent

    def next_due_s(self) -> float:
        """When the next message is due, seconds after the start."""
        return self._values_sent / self.rate

    def next_message(self, budget: int | None = None) -> SimMessage:
        """The next message, carrying at most ``budget`` values when given (>= 1)."""
        due_s = self.next_due_s()
        due, index = heapq.heappop(self._heap)
        state = self._states[index]
        interval = state.sim.type.interval_s
        heapq.heappush(self._heap, (due + interval * (0.95 + 0.1 * self._rng.random()), index))
        kind = self._faults.next_kind()
        metrics = state.metrics
        if budget is not None and budget < len(metrics):
            metrics, kind = metrics[:budget], Kind.NORMAL  # the last, trimmed message
        ts_ms = max(self._t0_ms + round(due_s * 1000), state.last_ts_ms + 1)
        message = self._build(state, kind, metrics, ts_ms, due_s, budget)
        self._values_sent += len(message.values)
        self._seq += 1
        return message

    def _build(
        self,
        state: _DeviceState,
        kind: Kind,
        metrics: tuple[Metric, ...],
        ts_ms: int,
        due_s: float,
        budget: int | None,
    ) -> SimMessage:
        if kind is Kind.DUPLICATE:
            source = state.last_normal or self._last_normal
            if source is not None and (budget is None or len(source.values) <= budget):
                return self._duplicate(source, due_s)
            kind = Kind.NORMAL
        if kind is Kind.LATE:
            return self._late(state, metrics, ts_ms, due_s, budget)
        t = self._signal_time(ts_ms)
        dt = t - state.last_t if state.last_t is not None else float(state.sim.type.interval_s)
        state.last_t = t
        state.last_ts_ms = ts_ms
        if kind is Kind.SKEW:
            skewed = ts_ms + round(self._rng.uniform(SKEW_MIN_S, SKEW_MAX_S) * 1000)
            frame, expected = self._frame(state, metrics, skewed, t, dt)
            rejected = _reject_all(expected, Reason.TIME_IN_FUTURE)
            return self._message(state, kind, due_s, [frame], rejected)
        frame, expected = self._frame(state, metrics, ts_ms, t, dt)
        if kind is Kind.OUT_OF_RANGE:
            frame, expected = self._out_of_range(state, metrics, frame, expected)
        elif kind is Kind.MALFORMED:
            return self._malformed(state, metrics, frame, expected, due_s)
        message = self._message(state, kind, due_s, [frame], expected)
        if kind is Kind.NORMAL:
            state.last_normal = self._last_normal = message
        return message

    def _signal_time(self, ts_ms: int) -> float:
        return self._start_s + (ts_ms - self._t0_ms) / 1000 * self._scale

    def _message(
        self,
        state: _DeviceState,
        kind: Kind,
        due_s: float,
        frames: list[Frame],
        expected: tuple[Expected, ...],
        payload: bytes | None = None,
        variant: Malformation | None = None,
    ) -> SimMessage:
        if payload is None:
            payload = state.encoder.encode(state.sim.device, frames, self._uplink(state))
        return SimMessage(
            seq=self._seq,
            device_id=state.sim.id,
            format=state.sim.format,
            topic=state.encoder.topic(state.sim.device),
            payload=payload,
            kind=kind,
            due_s=due_s,
            values=expected,
            variant=variant,
        )

    def _uplink(self, state: _DeviceState) -> Uplink:
        state.f_cnt += 1
        return Uplink(state.f_cnt, self._rng)

    # --- values ------------------------------------------------------------------

    def _frame(
        self,
        state: _DeviceState,
        metrics: tuple[Metric, ...],
        ts_ms: int,
        t: float,
        dt: float,
    ) -> tuple[Frame, tuple[Expected, ...]]:
        """True values at ``t``, de-calibrated, rounded and in the device's wire unit."""
        device = state.sim.device
        truth = sample(self._climate, state.sim.site, metrics, t, dt)
        values: list[Value] = []
        expected: list[Expected] = []
        for metric, wire in zip(metrics, state.wire, strict=False):
            calibration = wire.calibration
            raw = truth[metric.name]
            if calibration is not None:  # what the uncalibrated sensor reads, kept in range
                raw = (raw - calibration.offset) / calibration.scale
                raw = min(metric.maximum, max(metric.minimum, raw))
            value, decoded = _on_wire(metric, wire, raw)
            values.append(value)
            stored = decoded
            if calibration is not None:
                reading = Reading(device.id, metric.name, decoded, ts_ms)
                stored = apply_calibration(reading, device).value
            expected.append(Expected(metric.name, ts_ms, OK, decoded, stored))
        return Frame(ts_ms, tuple(values)), tuple(expected)

    def _out_of_range(
        self,
        state: _DeviceState,
        metrics: tuple[Metric, ...],
        frame: Frame,
        expected: tuple[Expected, ...],
    ) -> tuple[Frame, tuple[Expected, ...]]:
        index = self._rng.randrange(len(metrics))
        metric = metrics[index]
        span = metric.maximum - metric.minimum
        if metric.boolean:
            bad = 2.0
        elif self._rng.random() < 0.5:
            bad = metric.maximum + span * self._rng.uniform(0.05, 0.5)
        else:
            bad = metric.minimum - span * self._rng.uniform(0.05, 0.5)
        unit = state.wire[index].unit
        if unit is not None:
            value = Value(metric.name, float(f"{(bad - unit.offset) / unit.factor:.6g}"), unit.unit)
        else:
            value = Value(metric.name, round(bad, state.wire[index].decimals))
        return _replace_at(frame, expected, index, value, Reason.OUT_OF_RANGE)

    def _malformed(
        self,
        state: _DeviceState,
        metrics: tuple[Metric, ...],
        frame: Frame,
        expected: tuple[Expected, ...],
        due_s: float,
    ) -> SimMessage:
        variant = self._rng.choice(tuple(Malformation))
        numeric = [i for i, m in enumerate(metrics) if not m.boolean]
        if variant is Malformation.NAN and not numeric:
            variant = Malformation.BAD_TYPE
        kind = Kind.MALFORMED
        if variant is Malformation.TRUNCATED:
            whole = state.encoder.encode(state.sim.device, [frame], self._uplink(state))
            payload = whole[: self._rng.randrange(1, len(whole))]
            everything = _reject_all(expected, Reason.NOT_JSON)
            return self._message(state, kind, due_s, [], everything, payload, variant)
        if variant is Malformation.NOT_JSON:  # a firmware speaking "key=value" text
            text = ";".join(f"{v.metric}={v.sent}" for v in frame.values)
            payload = f"{state.sim.id};{frame.ts_ms};{text}".encode()
            everything = _reject_all(expected, Reason.NOT_JSON)
            return self._message(state, kind, due_s, [], everything, payload, variant)
        if variant is Malformation.BAD_SHAPE:
            payload = state.encoder.bad_shape(state.sim.device, frame, self._uplink(state))
            everything = _reject_all(expected, Reason.BAD_SHAPE)
            return self._message(state, kind, due_s, [], everything, payload, variant)
        if variant is Malformation.NAN:
            index = self._rng.choice(numeric)
            old = frame.values[index]
            frame, expected = _replace_at(
                frame, expected, index, Value(old.metric, math.nan, old.unit), Reason.NOT_FINITE
            )
        else:  # BAD_TYPE: a number sent as a string
            index = self._rng.randrange(len(frame.values))
            old = frame.values[index]
            text = ("on" if old.sent else "off") if isinstance(old.sent, bool) else str(old.sent)
            frame, expected = _replace_at(
                frame, expected, index, Value(old.metric, text, old.unit), Reason.BAD_TYPE
            )
        return self._message(state, kind, due_s, [frame], expected, variant=variant)

    def _late(
        self,
        state: _DeviceState,
        metrics: tuple[Metric, ...],
        now_ms: int,
        due_s: float,
        budget: int | None,
    ) -> SimMessage:
        """A buffered upload: ``k`` frames at the device's interval, 1-24 h old."""
        room = state.encoder.max_frames
        if budget is not None:
            room = max(1, min(room, budget // len(metrics)))
        frames_wanted = min(room, self._rng.randint(3, 24))
        interval = state.sim.type.interval_s
        newest = now_ms - round(self._rng.uniform(LATE_MIN_S, LATE_MAX_S) * 1000)
        frames: list[Frame] = []
        expected: list[Expected] = []
        for k in range(frames_wanted - 1, -1, -1):
            ts_ms = newest - k * interval * 1000
            frame, values = self._frame(
                state, metrics, ts_ms, self._signal_time(ts_ms), float(interval)
            )
            frames.append(frame)
            expected.extend(values)
        return self._message(state, Kind.LATE, due_s, frames, tuple(expected))

    def _duplicate(self, source: SimMessage, due_s: float) -> SimMessage:
        again = tuple(e._replace(outcome=DUPLICATE) for e in source.values)
        return replace(
            source, seq=self._seq, kind=Kind.DUPLICATE, due_s=due_s, values=again, dup_of=source.seq
        )


def _state(device: SimDevice, encoder: Encoder) -> _DeviceState:
    metrics = tuple(device.type.metrics.values())
    wire = tuple(
        _Wire(
            decimals=_DECIMALS.get(m.name, 3),
            calibration=None if m.boolean else device.device.calibration.get(m.name),
            unit=device.units.get(m.name) if encoder.sends_units else None,
        )
        for m in metrics
    )
    return _DeviceState(device, encoder, metrics, wire)


def _on_wire(metric: Metric, wire: _Wire, raw: float) -> tuple[Value, float]:
    """The value as sent, and what the decoder will read from it."""
    if metric.boolean:
        on = raw >= 0.5
        return Value(metric.name, on), 1.0 if on else 0.0
    unit = wire.unit
    if unit is not None:
        sent = float(f"{(raw - unit.offset) / unit.factor:.6g}")
        decoded = sent * unit.factor + unit.offset
        if metric.minimum <= decoded <= metric.maximum:
            return Value(metric.name, sent, unit.unit), decoded
    sent = round(raw, wire.decimals)
    return Value(metric.name, sent), sent


def _reject_all(expected: tuple[Expected, ...], reason: Reason) -> tuple[Expected, ...]:
    """Every value refused for ``reason`` (rejected values have no decoded or stored value)."""
    return tuple(e._replace(outcome=reason.value, raw=None, value=None) for e in expected)


def _replace_at(
    frame: Frame, expected: tuple[Expected, ...], index: int, value: Value, reason: Reason
) -> tuple[Frame, tuple[Expected, ...]]:
    values = list(frame.values)
    values[index] = value
    marked = list(expected)
    marked[index] = expected[index]._replace(outcome=reason.value, raw=None, value=None)
    return Frame(frame.ts_ms, tuple(values)), tuple(marked)
