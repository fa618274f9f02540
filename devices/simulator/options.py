"""What a simulation run is asked to do: one typed, validated options object.

The CLI builds it from its flags, tests and benchmarks build it directly; either way every
bad value is refused here, once, with a message naming the option (no network I/O).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from devices.simulator.faults import FaultMix


class FormatChoice(StrEnum):
    """Which payload format devices use. ``mixed``: each device its own (see plan)."""

    NATIVE = "native"
    SENML = "senml"
    CHIRPSTACK = "chirpstack"
    TTS = "tts"
    MIXED = "mixed"


class OptionsError(ValueError):
    """An option is invalid; the message names it."""


@dataclass(frozen=True, slots=True)
class SimulationOptions:
    rate: float | None = None
    """Readings per second over all devices; None: each device at its catalogue interval."""
    duration_s: float | None = None
    """Stop after this long (the last message is due before it); with ``count``: first wins."""
    count: int | None = None
    """Stop after exactly this many readings. Neither limit: run until stopped."""
    format: FormatChoice = FormatChoice.MIXED
    devices: tuple[str, ...] = ()
    """Glob patterns on device id or type (``rtg-*``, ``weather``); empty: all enabled."""
    faults: FaultMix = field(default_factory=FaultMix)
    seed: int = 1
    time_scale: float = 1.0
    """Signals evolve this many times faster than the wall clock (1440: a day a minute)."""
    start: datetime | None = None
    """Simulated time the signals start at (timezone-aware); None: now."""
    manifest: Path | None = None
    """Write one JSON line per message sent, with the expected outcome of each value."""
    max_inflight: int = 500
    """QoS 1 messages published but not yet acknowledged, at most (capped by the broker)."""
    trace: bool = True
    """Tag each message with the MQTT 5 user property ``kf-sim`` = ``<run id>/<seq>``."""
    client_id: str | None = None
    ack_timeout_s: float = 30.0
    """How long to wait for outstanding PUBACKs at the end."""
    behind_edge: tuple[str, int] | None = None
    """An edge gateway's local broker (host, port): the ``edge_devices`` publish there (as
    they would in the field, the edge forwards them), the rest to the central broker."""
    edge_devices: tuple[str, ...] = ()
    """Globs on device id, type or kecamatan put behind the edge; empty: every device."""

    def __post_init__(self) -> None:
        if self.rate is not None and not 0 < self.rate <= 1_000_000:
            raise OptionsError(f"--rate must be > 0 and at most 1,000,000, got {self.rate:g}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise OptionsError(f"--duration must be > 0 seconds, got {self.duration_s:g}")
        if self.count is not None and self.count <= 0:
            raise OptionsError(f"--count must be > 0 readings, got {self.count}")
        if not 0 < self.time_scale <= 1_000_000:
            raise OptionsError(f"--time-scale must be > 0, got {self.time_scale:g}")
        if self.start is not None and self.start.tzinfo is None:
            raise OptionsError("--start needs a UTC offset, e.g. 2027-01-15T06:00+08:00")
        if not 1 <= self.max_inflight <= 65535:
            raise OptionsError(f"--max-inflight must be 1..65535, got {self.max_inflight}")
        if self.ack_timeout_s <= 0:
            raise OptionsError("ack timeout must be > 0 seconds")
        if self.edge_devices and self.behind_edge is None:
            raise OptionsError("--edge-devices needs --behind-edge HOST:PORT")


def broker_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:1883`` for IPv6) as a pair; OptionsError naming the flag."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise OptionsError(f"--behind-edge must be HOST:PORT (e.g. 127.0.0.1:1884), got {text!r}")
    return host, int(port)
