"""Acknowledgements (pure): someone has an alert in hand, so stop reminding and escalating.

An acknowledgement names one alert episode: rule, device, the episode's ``started_ms`` and
the level it was given at. It holds while the alert stays at that level or falls; a rise
above it (Siaga -> Awas) needs a new acknowledgement, so reminders and escalation resume;
once the alert resolves the episode is over and the next firing starts unacknowledged.
Keyed by episode, an acknowledgement is replay-safe: replaying readings never revives or
cancels one. Written by ``kotaflow alerts ack`` (or the signed acknowledge link) into the
alert state file; the evaluator reads it every batch, as it reads silences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from processors.alerting.model import Level


class _Firing(Protocol):
    level: int | None
    started_ms: int | None


@dataclass(frozen=True, slots=True)
class Ack:
    rule: str
    device: str
    started_ms: int
    level: str
    by: str
    note: str
    at_ms: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ack:
        return cls(**data)


def acknowledged(ack: Ack | None, state: _Firing, levels: Sequence[Level]) -> bool:
    """Whether ``ack`` covers the alert as it fires now."""
    if ack is None or state.level is None or ack.started_ms != state.started_ms:
        return False
    names = [level.name for level in levels]
    return ack.level in names and names.index(ack.level) >= state.level


def parse_alert_id(text: str) -> tuple[str, str]:
    """``rule/device`` (an event id ``rule/device/seq`` is accepted too) -> (rule, device)."""
    parts = text.strip().split("/")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(
            f"alert id {text!r}: expected <rule>/<device>, see 'kotaflow alerts status'"
        )
    return parts[0], parts[1]
