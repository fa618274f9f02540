"""What every peer of ``kotaflow bench peers`` is given and gives back.

A peer (kotaflow, Telegraf, the Quix Streams app) runs one comparison on a job the harness
prepared (its own topics, consumer group, MQTT session and buckets, removed afterwards) and
returns a :class:`PeerRun`: the figures the tables compare. The harness, not the peer,
counts what landed in InfluxDB afterwards (raw points, complete event-time windows), so
every column is judged by the same query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.procstats import ProcessCost


class PeerNotRunError(RuntimeError):
    """A peer could not run here (not built, not installed): its column says why.

    Raise it with a short reason ("quixstreams not installed: ..."); never fake figures."""


@dataclass(frozen=True, slots=True)
class InfluxTarget:
    """Where a peer writes: InfluxDB 2.x, an org, a token with write rights on both buckets."""

    url: str
    org: str
    token: str
    raw_bucket: str
    """One point per reading time and device: tag ``device``, one float field per metric,
    timestamp = the reading's ``ts`` (ms)."""
    rollup_bucket: str
    """One-minute rollups: tags ``device``, ``metric``, ``window`` (``1m``); fields ``count``
    (integer), ``min``, ``max``, ``mean``, ``sum``; timestamp = window start (ms, UTC
    minute). kotaflow's rollups schema (processors/aggregate/rollups.py) is this shape."""


@dataclass(frozen=True, slots=True)
class BacklogJob:
    """Comparison 2: a Kafka backlog of readings -> raw points + 1-minute rollups.

    Every record of ``topic`` is written before the peer starts. Record format (kotaflow's
    raw envelope, :mod:`kotaflow.wire.raw`): key = device id (UTF-8); value = native JSON
    ``{"ts": <ms since the epoch>, "values": {"<metric>": <number>, ...}}``; headers
    ``kf.device`` (device id), ``kf.format`` (``native-json``) and the rest of the
    envelope's, which a peer may ignore. One message per device per second, all in the past.
    """

    bootstrap_servers: str
    topic: str
    partitions: int
    group: str
    """The consumer group the peer must use (the harness deletes it afterwards)."""
    messages: int
    """Records in ``topic``: the peer is done when its group has committed all of them."""
    readings: int
    """Metric values in those records (what ``items`` of the run counts)."""
    influx: InfluxTarget
    work_dir: Path
    """A scratch folder for the peer's config, state and logs (removed by the harness)."""


@dataclass(frozen=True, slots=True)
class PeerRun:
    """What one peer did in one round of one comparison.

    ``steady_*`` cover the measured span: from the moment the peer's group had committed
    10 % of the backlog until it had committed all of it (start-up and the first commit's
    granularity left out, the same rule for every peer). CPU is user + system seconds of
    all the peer's processes (all threads) in that span."""

    peer: str
    items: int
    """Items the steady span covers (messages or readings)."""
    steady_s: float
    steady_cpu_s: float
    total_s: float
    """Wall seconds from starting the peer's processes until it was done."""
    total_cpu_s: float
    startup_s: float | None = None
    """Seconds from starting the peer's processes to its first InfluxDB write (or Kafka
    produce, for MQTT -> Kafka); None when not measured."""
    processes: tuple[ProcessCost, ...] = ()
    """Each process's peak RSS and CPU over its life."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rate(self) -> float:
        """Items per second in the steady span."""
        return self.items / self.steady_s if self.steady_s > 0 else 0.0

    @property
    def cpu_us_per_item(self) -> float:
        """CPU microseconds per item in the steady span (all the peer's processes)."""
        return 1e6 * self.steady_cpu_s / self.items if self.items else 0.0

    @property
    def peak_rss_mb(self) -> float:
        return sum(p.peak_rss_mb for p in self.processes)
