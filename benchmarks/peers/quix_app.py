"""The Quix Streams peer: kotaflow's processors' job on a Kafka backlog, written as a
Quix Streams 3.28.1 app. Runs with the peer's own venv (``deploy/local/quixstreams.py``)::

    PYTHONPATH=<repo> <cache>/quixstreams/3.28.1/venv/bin/python -m benchmarks.peers.quix_app \\
        --devices devices.json --brokers 127.0.0.1:9092 --topic raw --group g \\
        --influx-url http://127.0.0.1:8086 --org kotaflow --raw-bucket b1 --rollup-bucket b2 \\
        --state-dir state      # token in QUIX_PEER_INFLUX_TOKEN

It imports nothing of kotaflow (only :mod:`benchmarks.peers.quix_logic`, standard library;
``benchmarks/__init__.py`` and ``benchmarks/peers/__init__.py`` must stay import-free for
that): what it needs about the fleet comes in ``--devices`` (a
:data:`~benchmarks.peers.quix_logic.DeviceMap`).

Topology: raw topic (JSON values, key = device id) -> parse into timed entries (event time
from the payload's ``ts``) -> two branches: every entry's telemetry line to the raw bucket,
and a per-device event-time tumbling window of 60 s (``--grace-s``, kotaflow's
``aggregate.grace_s``) with one custom aggregator for all the device's metrics, emitted when
it closes (``final()``) as one rollup line per metric to the rollup bucket. Windows close
per key: a device's last minute stays open until it sends again past the grace period.

At-least-once: ``processing_guarantee="at-least-once"``; each checkpoint
(``--commit-interval-s``) flushes both sinks (a synchronous InfluxDB write per 5,000
lines, raising on failure) and commits the offsets only after they succeeded; 429/503 pause
the partitions for ``Retry-After`` (Quix's ``SinkBackpressureError``). Window state is in
RocksDB with its changelog topic (Quix's default), so a restart recovers open windows.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from quixstreams import Application
from quixstreams.dataframe.windows.aggregations import Aggregator
from quixstreams.models import HeadersTuples, RawConfluentKafkaMessageProto
from quixstreams.models.serializers.exceptions import (
    KeyDeserializationError,
    SerializationError,
    ValueDeserializationError,
)
from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch

from benchmarks.peers.quix_logic import (
    DeviceMap,
    Parsed,
    WindowState,
    fold,
    parse,
    rollup_lines,
)

TOKEN_ENV = "QUIX_PEER_INFLUX_TOKEN"
MS = cast(WritePrecision, WritePrecision.MS)
"""(the client's constants are typed ``str``, its parameters ``WritePrecision``)"""
WRITE_LINES = 5000
"""Lines per InfluxDB write (InfluxData's advice, and kotaflow's ``store.batch_lines``)."""
log = logging.getLogger("quix_peer")


class LineSink(BatchingSink):
    """Line protocol into one InfluxDB 2.x bucket, ``WRITE_LINES`` per synchronous write.

    ``lines_of`` turns a record's value into its line and the readings it carries. After a
    checkpoint's flush that changed anything it prints ``{"sink": name, "lines": n,
    "readings": n, **counts}`` (running totals; ``counts`` is shared with the parse step
    and the consumer: readings dropped, records skipped)."""

    def __init__(
        self,
        name: str,
        client: InfluxDBClient,
        bucket: str,
        lines_of: Callable[[Any], tuple[str, int]],
        counts: dict[str, int],
    ) -> None:
        super().__init__()
        self._name = name
        self._write = client.write_api(write_options=SYNCHRONOUS)
        self._bucket = bucket
        self._lines_of = lines_of
        self._counts = counts
        self._lines = 0
        self._readings = 0
        self._reported: dict[str, object] = {}

    def write(self, batch: SinkBatch) -> None:
        for chunk in batch.iter_chunks(n=WRITE_LINES):
            lines, readings = [], 0
            for item in chunk:
                line, n = self._lines_of(item.value)
                lines.append(line)
                readings += n
            try:
                self._write.write(self._bucket, record="\n".join(lines), write_precision=MS)
            except ApiException as err:
                if err.status in (429, 503):
                    headers: Any = err.headers or {}
                    retry = float(headers.get("Retry-After") or 1)
                    raise SinkBackpressureError(retry_after=retry) from err
                raise
            self._lines += len(lines)
            self._readings += readings

    def flush(self) -> None:
        super().flush()  # raises if a write failed: the checkpoint is not committed
        report: dict[str, object] = {
            "sink": self._name,
            "lines": self._lines,
            "readings": self._readings,
            **self._counts,
        }
        if report != self._reported:
            print(json.dumps(report), flush=True)
            self._reported = report


class DeviceWindow(Aggregator):
    """count, min, max, sum and last (by event time) of every metric of one device's window."""

    def initialize(self) -> WindowState:
        return {}

    def agg(self, old: WindowState, new: Parsed, timestamp: int) -> WindowState:
        return fold(old, new.values, new.ts_ms)

    def result(self, value: WindowState) -> WindowState:
        return value


def build(
    app: Application, args: argparse.Namespace, devices: DeviceMap, counts: dict[str, int]
) -> None:
    """The topology of the module docstring, on ``app``; ``counts["dropped"]`` counts the
    readings the parse step drops."""
    token = os.environ.get(TOKEN_ENV, "")
    client = InfluxDBClient(url=args.influx_url, token=token, org=args.org, timeout=30_000)
    topic = app.topic(args.topic, key_deserializer="str", value_deserializer="json")
    sdf = app.dataframe(topic)

    def entries(value: Any, key: Any, timestamp: int, headers: HeadersTuples) -> list[Parsed]:
        out = parse(devices.get(key), value, timestamp)
        for entry in out:
            counts["dropped"] += entry.dropped
        return out

    parsed = sdf.apply(entries, expand=True, metadata=True)
    parsed = parsed.filter(lambda p: bool(p.values))
    parsed = parsed.set_timestamp(lambda value, key, timestamp, headers: value.ts_ms)
    parsed.sink(LineSink("raw", client, args.raw_bucket, lambda p: (p.line, len(p.values)), counts))

    def rollups(value: Any, key: Any, timestamp: int, headers: HeadersTuples) -> list[str]:
        meta = devices.get(key)
        return rollup_lines(meta, value["start"], value["stats"]) if meta else []

    windows = parsed.tumbling_window(60_000, grace_ms=round(args.grace_s * 1000))
    closed = windows.agg(stats=DeviceWindow()).final()
    lines = closed.apply(rollups, expand=True, metadata=True)
    lines.sink(LineSink("rollups", client, args.rollup_bucket, lambda line: (line, 1), counts))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=Path, required=True, help="device map (JSON)")
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--influx-url", required=True)
    parser.add_argument("--org", required=True)
    parser.add_argument("--raw-bucket", required=True)
    parser.add_argument("--rollup-bucket", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--grace-s", type=float, default=10.0)
    parser.add_argument("--commit-interval-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    devices: DeviceMap = json.loads(args.devices.read_text(encoding="utf-8"))
    counts = {"dropped": 0, "undecodable": 0}

    def skip_undecodable(
        exc: Exception, message: RawConfluentKafkaMessageProto | None, logger: logging.Logger
    ) -> bool:
        """A record that is not JSON is skipped and counted (Quix's default stops the app);
        any other consumer error still stops it."""
        undecodable = (SerializationError, KeyDeserializationError, ValueDeserializationError)
        if not isinstance(exc, undecodable):
            return False
        counts["undecodable"] += 1
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}" if message else ""
        logger.warning("skipping a record that is not JSON %s: %s", where, exc)
        return True

    app = Application(
        broker_address=args.brokers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        commit_interval=args.commit_interval_s,
        state_dir=args.state_dir,
        loglevel="INFO",
        on_consumer_error=skip_undecodable,
    )
    build(app, args, devices, counts)
    app.run()


if __name__ == "__main__":
    main()
