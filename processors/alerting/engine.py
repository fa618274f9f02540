"""The alert state machine (pure: no I/O, time is passed in).

Per rule and device an :class:`AlertState` is *inactive*, *pending* (a higher level is
reached but its ``for`` has not elapsed) or *firing* at one level. Readings move it
(:meth:`Engine.apply`, event time), the wall-clock tick moves it too (:meth:`Engine.tick`:
pending ``for`` durations, no-data, reminders):

* up a level only after the signal has reached it for the level's ``for`` duration;
* down a level, or resolved, as soon as the signal crosses that level's clear value
  (hysteresis: no flapping around a threshold);
* a no-data alert fires on the tick when a device has been silent for the rule's ``for``
  (counted from start-up at the earliest, so a restart does not page for every device) and
  resolves with the device's next reading.

Every change yields an :class:`AlertEvent`. Whether it notifies is decided here as well, from
the persisted state, so a restart never notifies twice: a firing alert notifies once per level
change, then reminds every ``repeat``; its resolution notifies only if its firing did; a
silenced alert notifies nothing, and once the silence is over the next tick notifies it.

Replays are harmless: a reading whose timestamp the window already holds changes nothing,
and a late reading never moves a state back in time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kotaflow.wire.alerts import AlertEvent, Change
from kotaflow.wire.readings import ValidReading
from processors.alerting.acks import Ack, acknowledged
from processors.alerting.model import Level, Rule, RuleKind, RuleSet
from processors.alerting.series import Series
from processors.alerting.silences import Silence, silenced_by

StateKey = tuple[str, str]
"""(rule name, device id)."""
SeriesKey = tuple[str, str]
"""(device id, metric)."""


@dataclass(slots=True)
class DeviceSeen:
    type: str
    kecamatan: str
    partition: int
    last_ms: int
    metrics: dict[str, int] = field(default_factory=dict)
    """Metric -> timestamp of its newest reading."""
    units: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "kecamatan": self.kecamatan,
            "partition": self.partition,
            "last_ms": self.last_ms,
            "metrics": self.metrics,
            "units": self.units,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceSeen:
        return cls(**data)


@dataclass(slots=True)
class AlertState:
    level: int | None = None
    """Index of the firing level, None when inactive."""
    started_ms: int | None = None
    pending: int | None = None
    pending_since_ms: int | None = None
    value: float | None = None
    value_ts_ms: int | None = None
    notified_level: int | None = None
    notified_ms: int | None = None
    seq: int = 0
    level_since_ms: int | None = None
    """When the current level began (escalation delays count from here)."""

    def to_json(self, levels: Sequence[Level]) -> dict[str, Any]:
        """Levels are saved by name, so reordering a rule's levels cannot confuse a restart."""

        def name(index: int | None) -> str | None:
            return None if index is None else levels[index].name

        return {
            "level": name(self.level),
            "started_ms": self.started_ms,
            "pending": name(self.pending),
            "pending_since_ms": self.pending_since_ms,
            "value": self.value,
            "value_ts_ms": self.value_ts_ms,
            "notified_level": name(self.notified_level),
            "notified_ms": self.notified_ms,
            "seq": self.seq,
            "level_since_ms": self.level_since_ms,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], levels: Sequence[Level]) -> AlertState:
        names = [level.name for level in levels]

        def index(name: str | None) -> int | None:
            return names.index(name) if name in names else None

        state = cls(
            level=index(data["level"]),
            started_ms=data["started_ms"],
            pending=index(data["pending"]),
            pending_since_ms=data["pending_since_ms"],
            value=data["value"],
            value_ts_ms=data["value_ts_ms"],
            notified_level=index(data["notified_level"]),
            notified_ms=data["notified_ms"],
            seq=data["seq"],
            level_since_ms=data.get("level_since_ms", data["started_ms"]),
        )
        if state.pending is None:
            state.pending_since_ms = None
        return state


@dataclass(slots=True)
class Dirty:
    """What changed since the last :meth:`Engine.take_dirty` (the store writes just this)."""

    states: dict[StateKey, dict[str, Any]] = field(default_factory=dict)
    series: dict[SeriesKey, dict[str, Any]] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Engine:
    rules: RuleSet
    started_ms: int
    max_notify_age_ms: int = 15 * 60_000
    """A level change older than this (a backlog being replayed) is recorded, not notified;
    if the alert still fires once caught up, the next tick notifies it once."""
    caught_up: set[int] | None = None
    """Partitions read up to their end (set by the consumer); None: all (no consumer)."""
    devices: dict[str, DeviceSeen] = field(default_factory=dict)
    series: dict[SeriesKey, Series] = field(default_factory=dict)
    states: dict[StateKey, AlertState] = field(default_factory=dict)
    _dirty_states: set[StateKey] = field(default_factory=set)
    _dirty_series: set[SeriesKey] = field(default_factory=set)
    _dirty_devices: set[str] = field(default_factory=set)

    # -- input -------------------------------------------------------------------------

    def apply(
        self, reading: ValidReading, partition: int, now_ms: int, silences: Sequence[Silence]
    ) -> list[AlertEvent]:
        """One reading from ``kotaflow.readings``; the events it causes."""
        device = self._see(reading, partition)
        key = (reading.device, reading.metric)
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = Series(self.rules.window_ms(reading.metric))
        if not series.add(reading.ts_ms, reading.value):
            return []  # a replay: already counted
        self._dirty_series.add(key)
        newest_ts = series.newest_ts
        assert newest_ts is not None
        events: list[AlertEvent] = []
        for rule in self.rules.rules:
            if not rule.applies(reading.device, device.type, device.kecamatan, reading.metric):
                continue
            if rule.kind is RuleKind.NODATA:
                events += self._data_arrived(rule, reading.device, reading.ts_ms, now_ms, silences)
                continue
            if rule.signal.window_ms == 0 and reading.ts_ms < newest_ts:
                continue  # a late reading must not move a state back in time
            value = series.evaluate(rule.signal)
            assert value is not None
            state = self._state(rule, reading.device)
            state.value, state.value_ts_ms = value, newest_ts
            events += self._advance(rule, reading.device, state, newest_ts, now_ms, silences)
        return events

    def tick(
        self,
        now_ms: int,
        silences: Sequence[Silence],
        acks: Mapping[StateKey, Ack] | None = None,
    ) -> list[AlertEvent]:
        """Wall-clock tick: pending ``for`` durations, no-data, reminders (none for an
        acknowledged alert until its level rises)."""
        events: list[AlertEvent] = []
        for rule in self.rules.rules:
            if rule.kind is RuleKind.NODATA:
                events += self._check_silent(rule, now_ms, silences)
        for (rule_name, device), state in list(self.states.items()):
            found = self.rules.by_name(rule_name)
            if found is None:
                continue
            if state.pending is not None and found.kind is not RuleKind.NODATA:
                events += self._advance(found, device, state, now_ms, now_ms, silences)
            if state.level is not None:
                ack = (acks or {}).get((rule_name, device))
                events += self._remind(found, device, state, now_ms, silences, ack)
        return events

    def unacknowledged(
        self, now_ms: int, silences: Sequence[Silence], acks: Mapping[StateKey, Ack]
    ) -> list[AlertEvent]:
        """A snapshot event (``Change.UNACKED``) per firing alert that notified, is not
        silenced and nobody acknowledged at its level; ``at_ms`` is when the level began.
        Changes no state: routing decides whether an escalation is due."""
        events: list[AlertEvent] = []
        for (rule_name, device), state in self.states.items():
            rule = self.rules.by_name(rule_name)
            seen = self.devices.get(device)
            if rule is None or seen is None or state.level is None:
                continue
            if state.notified_level is None or state.started_ms is None:
                continue
            levels = rule.levels_for(device)
            if acknowledged(acks.get((rule_name, device)), state, levels):
                continue
            if silenced_by(silences, now_ms, rule.name, device, seen.kecamatan, seen.type):
                continue
            since = state.level_since_ms or state.started_ms
            level, threshold = state.level, levels[state.level].trigger
            event = self._event(
                rule, device, state, Change.UNACKED, level, None, since, None, True, threshold
            )
            name = levels[state.level].name
            events.append(replace(event, id=f"{rule_name}/{device}/{state.started_ms}/{name}"))
        return events

    # -- persistence hooks -------------------------------------------------------------

    def take_dirty(self) -> Dirty:
        dirty = Dirty()
        for rule_name, device in self._dirty_states:
            rule = self.rules.by_name(rule_name)
            state = self.states.get((rule_name, device))
            if rule is not None and state is not None:
                dirty.states[(rule_name, device)] = state.to_json(rule.levels_for(device))
        for key in self._dirty_series:
            if key in self.series:
                dirty.series[key] = self.series[key].to_json()
        for device in self._dirty_devices:
            dirty.devices[device] = self.devices[device].to_json()
        self._dirty_states.clear()
        self._dirty_series.clear()
        self._dirty_devices.clear()
        return dirty

    def load(
        self,
        devices: Iterable[tuple[str, dict[str, Any]]],
        series: Iterable[tuple[SeriesKey, dict[str, Any]]],
        states: Iterable[tuple[StateKey, dict[str, Any]]],
    ) -> None:
        """Restore saved state (rows of rules that no longer exist are ignored)."""
        for device, data in devices:
            self.devices[device] = DeviceSeen.from_json(data)
        for (device, metric), data in series:
            self.series[(device, metric)] = Series.from_json(data, self.rules.window_ms(metric))
        for (rule_name, device), data in states:
            rule = self.rules.by_name(rule_name)
            if rule is not None:
                levels = rule.levels_for(device)
                self.states[(rule_name, device)] = AlertState.from_json(data, levels)

    def use_rules(self, rules: RuleSet) -> None:
        """Switch to ``rules`` (the same rules, other device levels: a registry change)
        keeping every alert's state. A level is carried over by name or, when the new
        levels lack that name, by position (clamped), so a firing alert stays firing and
        its next reading moves it to its level under the new thresholds, with the change
        notified, instead of vanishing unannounced."""
        old, self.rules = self.rules, rules
        for key, state in self.states.items():
            before, after = old.by_name(key[0]), rules.by_name(key[0])
            if before is None or after is None:
                continue
            was, now = before.levels_for(key[1]), after.levels_for(key[1])
            if was == now:
                continue
            state.level = _carried(state.level, was, now)
            state.pending = _carried(state.pending, was, now)
            state.notified_level = _carried(state.notified_level, was, now)
            if state.pending is None:
                state.pending_since_ms = None
            self._dirty_states.add(key)

    def forget(self, partitions: set[int]) -> None:
        """Drop the devices of partitions this instance no longer owns (after a rebalance)."""
        gone = {d for d, seen in self.devices.items() if seen.partition in partitions}
        self.devices = {d: s for d, s in self.devices.items() if d not in gone}
        self.series = {k: s for k, s in self.series.items() if k[0] not in gone}
        self.states = {k: s for k, s in self.states.items() if k[1] not in gone}

    def partition_of(self, device: str) -> int:
        seen = self.devices.get(device)
        return seen.partition if seen is not None else -1

    # -- the state machine -------------------------------------------------------------

    def _see(self, reading: ValidReading, partition: int) -> DeviceSeen:
        seen = self.devices.get(reading.device)
        if seen is None:
            seen = self.devices[reading.device] = DeviceSeen(
                reading.type, reading.kecamatan, partition, reading.ts_ms
            )
        seen.type, seen.kecamatan, seen.partition = reading.type, reading.kecamatan, partition
        seen.last_ms = max(seen.last_ms, reading.ts_ms)
        seen.metrics[reading.metric] = max(seen.metrics.get(reading.metric, 0), reading.ts_ms)
        seen.units[reading.metric] = reading.unit
        self._dirty_devices.add(reading.device)
        return seen

    def _state(self, rule: Rule, device: str) -> AlertState:
        key = (rule.name, device)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = AlertState()
        self._dirty_states.add(key)
        return state

    def _target(self, rule: Rule, device: str, current: int | None, value: float) -> int | None:
        """The level the value belongs to: held levels use clear values, new ones triggers."""
        found: int | None = None
        for index, level in enumerate(rule.levels_for(device)):
            held = current is not None and index <= current
            check = level.holds if held else level.reached
            if check(value, rule.direction):
                found = index
        return found

    def _advance(
        self,
        rule: Rule,
        device: str,
        state: AlertState,
        at_ms: int,
        now_ms: int,
        silences: Sequence[Silence],
    ) -> list[AlertEvent]:
        if state.value is None:
            return []
        current = state.level
        target = self._target(rule, device, current, state.value)
        if target is None or (current is not None and target <= current):
            state.pending = state.pending_since_ms = None
            self._dirty_states.add((rule.name, device))
            if target == current:
                return []
            return [self._transition(rule, device, state, target, at_ms, now_ms, silences)]
        if state.pending is None or state.pending_since_ms is None:
            state.pending_since_ms = at_ms
        state.pending = target
        self._dirty_states.add((rule.name, device))
        waited = at_ms - state.pending_since_ms
        for index in range(target, -1 if current is None else current, -1):
            if waited >= rule.levels_for(device)[index].for_ms:
                if index == target:
                    state.pending = state.pending_since_ms = None
                return [self._transition(rule, device, state, index, at_ms, now_ms, silences)]
        return []

    def _transition(
        self,
        rule: Rule,
        device: str,
        state: AlertState,
        new: int | None,
        at_ms: int,
        now_ms: int,
        silences: Sequence[Silence],
    ) -> AlertEvent:
        previous = state.level
        if new is None:
            change = Change.RESOLVED
        elif previous is None:
            change = Change.FIRED
            state.started_ms = at_ms
        else:
            change = Change.ESCALATED if new > previous else Change.DEESCALATED
        state.level = new
        state.level_since_ms = None if new is None else at_ms
        state.seq += 1
        seen = self.devices[device]
        silence = silenced_by(silences, now_ms, rule.name, device, seen.kecamatan, seen.type)
        if new is None:
            notify = state.notified_level is not None and silence is None
            state.notified_level = state.notified_ms = None
        else:
            notify = silence is None and now_ms - at_ms <= self.max_notify_age_ms
            if notify:
                state.notified_level, state.notified_ms = new, now_ms
        shown = new if new is not None else previous
        assert shown is not None
        level = rule.levels_for(device)[shown]
        threshold = level.trigger if new is not None else level.clear
        event = self._event(
            rule, device, state, change, shown, previous, at_ms, silence, notify, threshold
        )
        if new is None:
            state.started_ms = None
        self._dirty_states.add((rule.name, device))
        return event

    def _remind(
        self,
        rule: Rule,
        device: str,
        state: AlertState,
        now_ms: int,
        silences: Sequence[Silence],
        ack: Ack | None = None,
    ) -> list[AlertEvent]:
        assert state.level is not None
        seen = self.devices.get(device)
        if seen is None:
            return []
        silence = silenced_by(silences, now_ms, rule.name, device, seen.kecamatan, seen.type)
        if silence is not None:
            return []
        current = self.caught_up is None or seen.partition in self.caught_up
        first = current and (state.notified_level != state.level or state.notified_ms is None)
        levels = rule.levels_for(device)
        due = (
            not acknowledged(ack, state, levels)
            and rule.repeat_ms > 0
            and state.notified_ms is not None
            and now_ms - state.notified_ms >= rule.repeat_ms
        )
        if not (first or due):
            return []
        state.notified_level, state.notified_ms = state.level, now_ms
        state.seq += 1
        self._dirty_states.add((rule.name, device))
        level, threshold = state.level, levels[state.level].trigger
        change = Change.REMINDER
        return [
            self._event(rule, device, state, change, level, None, now_ms, None, True, threshold)
        ]

    def _data_arrived(
        self, rule: Rule, device: str, ts_ms: int, now_ms: int, silences: Sequence[Silence]
    ) -> list[AlertEvent]:
        state = self.states.get((rule.name, device))
        if state is None or state.level is None:
            return []
        return [self._transition(rule, device, state, None, ts_ms, now_ms, silences)]

    def _check_silent(
        self, rule: Rule, now_ms: int, silences: Sequence[Silence]
    ) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        for device, seen in self.devices.items():
            if not rule.scope.matches(device, seen.type, seen.kecamatan):
                continue
            last = seen.last_ms if rule.metric is None else seen.metrics.get(rule.metric)
            if last is None:
                continue
            if now_ms - max(last, self.started_ms) < rule.silent_ms:
                continue
            state = self._state(rule, device)
            if state.level is not None:
                continue
            state.value, state.value_ts_ms = (now_ms - last) / 60_000, now_ms
            events.append(self._transition(rule, device, state, 0, now_ms, now_ms, silences))
        return events

    def _event(
        self,
        rule: Rule,
        device: str,
        state: AlertState,
        change: Change,
        level: int,
        previous: int | None,
        at_ms: int,
        silence: str | None,
        notify: bool,
        threshold: float,
    ) -> AlertEvent:
        seen = self.devices[device]
        levels = rule.levels_for(device)
        nodata = rule.kind is RuleKind.NODATA
        unit = "min" if nodata else seen.units.get(rule.metric or "", "")
        return AlertEvent(
            id=f"{rule.name}/{device}/{state.seq}",
            rule=rule.name,
            device=device,
            type=seen.type,
            kecamatan=seen.kecamatan,
            metric=rule.metric,
            unit=unit,
            change=change,
            level=levels[level].name,
            previous_level=None if previous is None else levels[previous].name,
            severity=levels[level].severity,
            value=state.value,
            threshold=rule.silent_ms / 60_000 if nodata else threshold,
            at_ms=at_ms,
            started_ms=state.started_ms if state.started_ms is not None else at_ms,
            title=rule.title,
            labels=rule.labels,
            receivers=rule.receivers,
            silenced_by=silence,
            notify=notify,
            nodata=nodata,
            last_seen_ms=seen.last_ms if rule.metric is None else seen.metrics.get(rule.metric),
        )


def _carried(index: int | None, was: Sequence[Level], now: Sequence[Level]) -> int | None:
    """``was[index]`` in ``now``: the level of the same name, else the same position."""
    if index is None or not now:
        return None
    names = [level.name for level in now]
    name = was[index].name
    return names.index(name) if name in names else min(index, len(now) - 1)
