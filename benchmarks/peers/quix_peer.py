"""The Quix Streams peer of ``kotaflow bench peers`` (comparison 2: a Kafka backlog of
readings -> raw points + event-time 1-minute rollups in InfluxDB).

:func:`install_quix` installs Quix Streams 3.28.1 into its cached benchmark-only venv
(:mod:`deploy.local.quixstreams`; never a kotaflow dependency); :func:`spawn_quix_app`
starts ``benchmarks/peers/quix_app.py`` with that venv's ``python`` as a
:class:`benchmarks.children.Child` on a :class:`~benchmarks.peers.common.BacklogJob`'s
topic, consumer group and buckets, so the harness (:mod:`benchmarks.peers.backlog`) times
it exactly as it times kotaflow and Telegraf. The app writes kotaflow's telemetry and
rollups schemas (measurement = device type; tags ``device``, ``kecamatan``, ``type``,
plus ``metric`` and ``window`` on rollups), from a device map built here with kotaflow's
own line-protocol escaping (:func:`device_map`).

The app, at-least-once: consumer group ``job.group`` from the earliest offset, raw points
to ``job.influx.raw_bucket``, event-time 1-minute tumbling-window rollups per (device,
metric) to ``job.influx.rollup_bucket``, offsets committed only after the writes they
cover succeeded (Quix's sink contract); state, config and logs under ``job.work_dir``. It
stops on SIGTERM. Afterwards :func:`delete_internal_topics` removes the topics Quix made
(``changelog__<group>--...``, ``repartition__<group>--...``); the harness deletes the
job's topic, group and buckets.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from benchmarks.children import Child
from benchmarks.peers.common import BacklogJob, PeerNotRunError
from benchmarks.peers.quix_logic import DeviceMap, MetricMeta
from deploy.local.quixstreams import QUIXSTREAMS_VERSION, ensure_quixstreams
from deploy.local.service import ServiceError
from devices.fleet import Fleet, load_fleet
from kotaflow.kafka import client_options
from kotaflow.settings import Settings
from processors.runtime.lineprotocol import (
    escape_key,
    rollup_tags,
    series_prefix,
    telemetry_tags,
)
from tests.support.isolated_kafka import delete_topics

log = logging.getLogger("kotaflow.bench.quix")

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_MODULE = "benchmarks.peers.quix_app"
TOKEN_ENV = "QUIX_PEER_INFLUX_TOKEN"
"""How the app gets its InfluxDB token (not on its command line, where ``ps`` shows it)."""
COMMIT_INTERVAL_S = 1.0
"""Quix's checkpoint interval (its default is 5 s): kotaflow's ``store.flush_interval_s``."""


def device_map(fleet: Fleet) -> DeviceMap:
    """What the app needs per enabled device: escaped series prefixes and metric ranges."""
    out: DeviceMap = {}
    for device in fleet.registry:
        if not device.enabled:
            continue
        tags = telemetry_tags(device.id, device.type, device.kecamatan)
        metrics: dict[str, MetricMeta] = {}
        for name, m in fleet.metrics_of(device).items():
            rollup = rollup_tags(device.id, device.type, device.kecamatan, name, "1m")
            metrics[name] = MetricMeta(
                field=escape_key(name),
                rollup=series_prefix(device.type, rollup),
                min=m.minimum,
                max=m.maximum,
            )
        out[device.id] = {"telemetry": series_prefix(device.type, tags), "metrics": metrics}
    return out


def app_argv(python: Path, job: BacklogJob, devices: Path, grace_s: float) -> list[str]:
    influx = job.influx
    return [
        str(python),
        "-m",
        APP_MODULE,
        "--devices",
        str(devices),
        "--brokers",
        job.bootstrap_servers,
        "--topic",
        job.topic,
        "--group",
        job.group,
        "--influx-url",
        influx.url,
        "--org",
        influx.org,
        "--raw-bucket",
        influx.raw_bucket,
        "--rollup-bucket",
        influx.rollup_bucket,
        "--state-dir",
        str(job.work_dir / "state"),
        "--grace-s",
        str(grace_s),
        "--commit-interval-s",
        str(COMMIT_INTERVAL_S),
    ]


def configuration_notes(grace_s: float) -> tuple[str, ...]:
    return (
        f"Quix Streams {QUIXSTREAMS_VERSION} (own venv), processing_guarantee=at-least-once, "
        f"commit_interval={COMMIT_INTERVAL_S:g} s (sinks flushed, then offsets committed)",
        f"event-time tumbling_window(60 s, grace {grace_s:g} s) per device, one custom "
        "aggregator for all its metrics, .final() (closing per key); RocksDB state with "
        "its changelog topic",
        "sinks: BatchingSink subclasses writing line protocol with influxdb-client's "
        "synchronous write API, 5,000 lines per request, 429/503 -> SinkBackpressureError",
    )


@dataclass(frozen=True, slots=True)
class QuixApp:
    """The running app of one job: its process (``child.log`` is its stderr) and its stdout
    (a JSON line after each checkpoint: running totals, readings dropped as invalid)."""

    child: Child
    out: Path
    grace_s: float

    def notes(self) -> tuple[str, ...]:
        """Its configuration, and (once stopped) what it reported and how it ended."""
        return configuration_notes(self.grace_s) + run_notes(self.child.proc.returncode, self.out)


def install_quix(settings: Settings) -> Path:
    """The venv's ``python``, installed first if it is not cached (blocking: call it before
    the clock starts); :class:`PeerNotRunError` if it cannot be installed."""
    try:
        return ensure_quixstreams(settings.stack.cache_dir, lambda line: log.info("%s", line))
    except ServiceError as err:
        raise PeerNotRunError(f"quixstreams not installed: {err}") from err


def spawn_quix_app(job: BacklogJob, python: Path, settings: Settings) -> QuixApp:
    """Start the app on ``job`` with ``python`` (:func:`install_quix`); the fleet and the
    grace period come from ``settings``. Stop it with :func:`benchmarks.children.stop`,
    then :func:`delete_internal_topics`."""
    grace_s = settings.processing.aggregate.grace_s
    job.work_dir.mkdir(parents=True, exist_ok=True)
    devices = job.work_dir / "devices.json"
    devices.write_text(json.dumps(device_map(load_fleet(settings))), encoding="utf-8")
    out, err_log = job.work_dir / "quix.out", job.work_dir / "quix.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), TOKEN_ENV: job.influx.token}
    with out.open("ab") as stdout, err_log.open("ab") as stderr:
        proc = subprocess.Popen(
            app_argv(python, job, devices, grace_s),
            env=env,
            cwd=job.work_dir,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    return QuixApp(Child("quix app", proc, err_log), out, grace_s)


def run_notes(returncode: int | None, out: Path) -> tuple[str, ...]:
    """What the app said about its run: readings it dropped (its last sink report), and
    how it stopped when not cleanly."""
    notes = []
    reports = [json.loads(line) for line in _lines(out) if line.startswith("{")]
    raw = [r for r in reports if r.get("sink") == "raw"]
    if raw:
        last = raw[-1]
        notes.append(
            f"the app dropped {last.get('dropped', 0):,} invalid readings and skipped "
            f"{last.get('undecodable', 0):,} records that were not JSON"
        )
    if returncode not in (0, -signal.SIGTERM):
        notes.append(f"the app ended with exit code {returncode} (SIGKILL if it ignored SIGTERM)")
    return tuple(notes)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8", errors="replace").splitlines() if path.exists() else []


async def delete_internal_topics(settings: Settings, group: str) -> list[str]:
    """Delete the changelog/repartition topics Quix made for ``group``; their names.
    Never raises (a clean-up must not hide the outcome it follows)."""
    prefixes = (f"changelog__{group}--", f"repartition__{group}--")
    admin = AIOKafkaAdminClient(**client_options(settings), client_id="kotaflow-bench")
    try:
        await admin.start()
        mine = [t for t in await admin.list_topics() if t.startswith(prefixes)]
    except Exception as err:
        log.warning("could not list the Quix app's topics (%s...): %r", prefixes[0], err)
        return []
    finally:
        await admin.close()
    await delete_topics(settings, mine)
    return mine
