"""Silences and maintenance windows (pure): which alerts must not notify, and when.

A silence matches alerts by rule, device, kecamatan and device type (shell-style patterns,
e.g. ``rtg-rl-*``; an unset matcher matches anything) between ``starts_ms`` and ``ends_ms``.
A maintenance window is a silence that starts in the future. A silenced alert still changes
state and is still published to ``kotaflow.alerts`` and InfluxDB (marked ``silenced_by``);
only its notifications are held back. When the silence ends while the alert still fires, the
next tick notifies it once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any


class SilenceState(StrEnum):
    PENDING = "pending"
    """A maintenance window that has not started yet."""
    ACTIVE = "active"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str
    created_ms: int
    rule: str | None = None
    device: str | None = None
    kecamatan: str | None = None
    type: str | None = None

    def state(self, now_ms: int) -> SilenceState:
        if now_ms >= self.ends_ms:
            return SilenceState.EXPIRED
        if now_ms < self.starts_ms:
            return SilenceState.PENDING
        return SilenceState.ACTIVE

    def matches(self, rule: str, device: str, kecamatan: str, type_: str) -> bool:
        return all(
            pattern is None or fnmatchcase(value, pattern)
            for pattern, value in (
                (self.rule, rule),
                (self.device, device),
                (self.kecamatan, kecamatan),
                (self.type, type_),
            )
        )

    def matchers(self) -> dict[str, str]:
        found = {
            "rule": self.rule,
            "device": self.device,
            "kecamatan": self.kecamatan,
            "type": self.type,
        }
        return {key: value for key, value in found.items() if value is not None}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "starts_ms": self.starts_ms,
            "ends_ms": self.ends_ms,
            "created_by": self.created_by,
            "comment": self.comment,
            "created_ms": self.created_ms,
            **self.matchers(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Silence:
        return cls(**data)


def silenced_by(
    silences: Iterable[Silence], now_ms: int, rule: str, device: str, kecamatan: str, type_: str
) -> str | None:
    """The id of the first active silence matching this alert, or None."""
    for silence in silences:
        if silence.state(now_ms) is SilenceState.ACTIVE and silence.matches(
            rule, device, kecamatan, type_
        ):
            return silence.id
    return None
