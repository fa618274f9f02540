"""Bridge throughput next to ``mosquitto_sub`` draining the same QoS 1 stream.

Run: ``uv run python -m benchmarks.bridge_bench [--messages 100000] [--devices 50]``, or as
the ``bridge`` scenario of ``kotaflow bench`` (needs the local stack: ``kotaflow stack up``).

Method, so the two numbers are comparable:

1. Two persistent sessions subscribe to the bridge's topic filters: ``mosquitto_sub``'s
   (``-c``, session expiry) and a ``kotaflow bridge`` process's (started until it has
   subscribed, then stopped). Both are offline now, so the broker queues for both.
2. ``mosquitto_pub -l`` (one process per device) publishes N messages at QoS 1: the same
   stream lands in both queues.
3. ``mosquitto_sub -q 1 -C N`` drains its queue: rate = N / its wall time.
4. The bridge drains its queue into Kafka: rate = N / (time of its N-th ack - time of its
   first receive), read from its Prometheus metrics every 20 ms. Every ack means Kafka
   (acks=all) already has the record. Its peak RSS is read from /proc.

Messages from other users of the broker that match the filters land in both queues too and
are counted by both. Topics, sessions and the lease group are unique per run and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from benchmarks.children import spawn_kotaflow, wait_log
from benchmarks.isolation import mosquitto_cli_env, wipe_mqtt_session
from benchmarks.procstats import ProcessCost, cost_of, cpu_seconds
from benchmarks.report import Figure, Latency, ScenarioResult, Target
from deploy.local.mosquitto import mosquitto_tool
from devices.topics import SUBSCRIPTIONS
from kotaflow.mqtt import Account, mqtt_access
from kotaflow.settings import Settings, load_settings

PARTITIONS = 6
QUICK_MESSAGES, FULL_MESSAGES = 50_000, 200_000
DEVICES = 50
PAYLOAD_BYTES = 160


@dataclass(frozen=True, slots=True)
class BridgeRun:
    """What one measurement found (times in seconds)."""

    messages: int
    mosquitto_sub_s: float
    bridge_s: float
    bridge: ProcessCost
    """The bridge's peak RSS over its life and the CPU it used while draining."""
    metrics: dict[str, float]
    """The bridge's Prometheus metrics at the end of the drain."""
    records_in_kafka: int

    @property
    def sub_rate(self) -> float:
        return self.messages / self.mosquitto_sub_s

    @property
    def bridge_rate(self) -> float:
        return self.messages / self.bridge_s

    def ack_latency(self) -> Latency | None:
        """Receive -> ack percentiles from the bridge's histogram (bucket upper bounds)."""
        return histogram_latency(
            self.metrics,
            "kotaflow_bridge_ack_latency_seconds",
            "receive -> MQTT ack, bucket bounds",
        )


async def scenario(settings: Settings, quick: bool) -> ScenarioResult:
    """The ``bridge`` scenario of ``kotaflow bench``."""
    n = QUICK_MESSAGES if quick else FULL_MESSAGES
    run = await measure(settings, n, DEVICES, PAYLOAD_BYTES)
    ratio = 100 * run.bridge_rate / run.sub_rate
    return ScenarioResult(
        "bridge",
        quick,
        {"messages": n, "devices": DEVICES, "payload_bytes": PAYLOAD_BYTES, "qos": 1},
        throughput=[
            Figure("kotaflow bridge drain (MQTT -> Kafka acks=all)", run.bridge_rate, "msg/s"),
            Figure("mosquitto_sub drain (same queued stream)", run.sub_rate, "msg/s"),
            Figure("bridge vs mosquitto_sub", ratio, "%"),
            Figure("bridge CPU per message", 1e6 * run.bridge.cpu_s / n, "µs"),
        ],
        latency=run.ack_latency(),
        processes=[run.bridge],
        targets=[
            Target("bridge vs mosquitto_sub", ratio, 80, "%"),
            Target(run.bridge.name, run.bridge.peak_rss_mb, 100, "MB", "<="),
        ],
        notes=[f"records in Kafka: {run.records_in_kafka:,} (>= {n:,} expected)"],
    )


def histogram_latency(metrics: dict[str, float], name: str, what: str) -> Latency | None:
    """p50/p95/p99/max of a scraped Prometheus histogram, as the upper bounds of the
    buckets they fall in (a histogram keeps no samples)."""
    prefix = f'{name}_bucket{{le="'
    buckets = sorted(
        (float(key[len(prefix) : -2]), count)
        for key, count in metrics.items()
        if key.startswith(prefix)
    )
    total = metrics.get(f"{name}_count", 0)
    if not total or not buckets:
        return None

    def bound(q: float) -> float:
        return next((1000 * le for le, count in buckets if count >= q * total), float("inf"))

    return Latency(what, int(total), bound(0.5), bound(0.95), bound(0.99), bound(1.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=FULL_MESSAGES)
    parser.add_argument("--devices", type=int, default=DEVICES)
    parser.add_argument("--payload-bytes", type=int, default=PAYLOAD_BYTES)
    parser.add_argument(
        "--py-spy",
        metavar="OUT",
        help="record the draining bridge with py-spy (collapsed stacks, all threads) to OUT",
    )
    parser.add_argument("--tree", type=Path, help="run the bridge from the checkout at TREE")
    args = parser.parse_args()
    settings = load_settings()
    run = asyncio.run(
        measure(settings, args.messages, args.devices, args.payload_bytes, args.py_spy, args.tree)
    )
    n = run.messages
    sub_s = run.mosquitto_sub_s
    print(f"mosquitto_sub (QoS 1) : {run.sub_rate:10,.0f} msg/s  ({n} in {sub_s:.2f} s)")
    print(
        f"kotaflow bridge       : {run.bridge_rate:10,.0f} msg/s  ({n} in {run.bridge_s:.2f} s)"
        f"  = {100 * run.bridge_rate / run.sub_rate:.0f}% of mosquitto_sub"
    )
    print(f"bridge peak RSS       : {run.bridge.peak_rss_mb:10.1f} MB")
    cpu_s = run.bridge.cpu_s
    print(f"bridge CPU per message: {1e6 * cpu_s / n:10.1f} us  ({cpu_s:.1f} s CPU)")
    acks = run.metrics.get("kotaflow_bridge_ack_latency_seconds_count", 0) or 1
    mean_ms = 1000 * run.metrics.get("kotaflow_bridge_ack_latency_seconds_sum", 0) / acks
    print(f"bridge mean ack latency: {mean_ms:9.1f} ms")
    print(f"records in Kafka      : {run.records_in_kafka:10,d}  (>= {n} expected)")


async def measure(
    settings: Settings,
    n: int,
    devices: int,
    payload_bytes: int,
    py_spy: str | None = None,
    tree: Path | None = None,
) -> BridgeRun:
    """Queue ``n`` messages for both subscribers, drain both, and say how each did
    (``tree``: the bridge from another checkout, :func:`benchmarks.children.spawn_kotaflow`)."""
    sub_tool, pub_tool = (
        _client_tool(settings, "mosquitto_sub"),
        _client_tool(settings, "mosquitto_pub"),
    )
    if n % devices:
        raise ValueError("--messages must be a multiple of --devices")
    rid = uuid.uuid4().hex[:8]
    raw, dead = f"kotaflow.raw.bench-{rid}", f"kotaflow.deadletter.bench-{rid}"
    sub_id, bridge_id = f"bench-sub-{rid}", f"bench-bridge-{rid}"
    port = _free_port()
    env = {
        **os.environ,
        "KOTAFLOW_KAFKA__TOPICS__RAW": raw,
        "KOTAFLOW_KAFKA__TOPICS__DEADLETTER": dead,
        "KOTAFLOW_BRIDGE__CLIENT_ID": bridge_id,
        "KOTAFLOW_BRIDGE__SESSION_EXPIRY_S": "900",
        "KOTAFLOW_BRIDGE__METRICS_PORT": str(port),
        "KOTAFLOW_BRIDGE__RATE_PER_S": "1000000",
        "KOTAFLOW_BRIDGE__RATE_BURST": "1000000",
        **{k: v for k, v in os.environ.items() if k.startswith("KOTAFLOW_BRIDGE__")},
    }
    work = Path(tempfile.mkdtemp(prefix="kotaflow-bench-"))
    reader = mosquitto_cli_env(mqtt_access(settings, Account.BRIDGE), work / "reader")
    writer = mosquitto_cli_env(mqtt_access(settings, Account.GATEWAY), work / "writer")
    await _topics(settings, create=[raw, dead])
    bridge: subprocess.Popen[bytes] | None = None
    try:
        _mosquitto_sub(sub_tool, reader, sub_id, ["-E"])  # session + subscriptions, then offline
        bridge = _spawn_bridge(env, work / "bridge.log", tree)
        wait_log(work / "bridge.log", "MQTT subscribed", bridge)
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(timeout=60)

        print(f"publishing {n} messages from {devices} devices at QoS 1 ...", flush=True)
        started = time.monotonic()
        _publish(pub_tool, writer, rid, n, devices, payload_bytes)
        print(f"  published in {time.monotonic() - started:.1f} s", flush=True)

        started = time.monotonic()
        _mosquitto_sub(sub_tool, reader, sub_id, ["-C", str(n)])
        sub_s = time.monotonic() - started

        bridge = _spawn_bridge(env, work / "bridge.log", tree)
        spy = _py_spy(bridge.pid, py_spy) if py_spy else None
        first, last, cost, metrics = _watch_bridge(bridge, port, n)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(timeout=60)
        bridge.send_signal(signal.SIGTERM)
        bridge.wait(timeout=60)
        in_kafka = await _records_in(settings, raw)
        return BridgeRun(n, sub_s, last - first, cost, metrics, in_kafka)
    finally:
        if bridge is not None and bridge.poll() is None:
            bridge.kill()  # never leave a bridge behind on a failed run
            bridge.wait()
        wipe_mqtt_session(settings, sub_id)
        wipe_mqtt_session(settings, bridge_id)
        await _topics(settings, delete=[raw, dead])
        shutil.rmtree(work, ignore_errors=True)


def _client_tool(settings: Settings, name: str) -> str:
    """The local stack's own build of a Mosquitto client (its version), else one on PATH."""
    tool = mosquitto_tool(settings, name)
    if tool is None:
        raise RuntimeError(f"{name} not found: `kotaflow stack up` builds Mosquitto's clients")
    return tool


def _mosquitto_sub(tool: str, env: dict[str, str], client_id: str, extra: list[str]) -> None:
    """Broker and login come from the options file ``env`` points at (bridge account)."""
    argv = [tool, "-V", "5", "-c", "-i", client_id, "-x", "900", "-q", "1"]
    for f in SUBSCRIPTIONS:
        argv += ["-t", f]
    subprocess.run(argv + extra, check=True, stdout=subprocess.DEVNULL, env=env)


def _publish(
    tool: str, env: dict[str, str], rid: str, n: int, devices: int, payload_bytes: int
) -> None:
    """``mosquitto_pub`` per device, logged in as the gateway (made-up devices)."""
    per_device = n // devices
    procs = []
    for d in range(devices):
        dev = f"b{rid}-d{d:03d}"
        pad = "x" * max(0, payload_bytes - 60)
        lines = "".join(
            f'{{"id":"{dev}:{i}","t":21.5,"rh":80,"pad":"{pad}"}}\n' for i in range(per_device)
        )
        proc = subprocess.Popen(
            [tool, "-V", "5", "-q", "1", "-t", f"kotaflow/{dev}/telemetry", "-l"],
            stdin=subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None
        proc.stdin.write(lines.encode())
        proc.stdin.close()
        procs.append(proc)
    for proc in procs:
        if proc.wait() != 0:
            raise RuntimeError("mosquitto_pub failed")


def _py_spy(pid: int, out: str) -> subprocess.Popen[bytes]:
    argv = [
        "py-spy",
        "record",
        "--pid",
        str(pid),
        "--threads",
        "--gil",
        "--format",
        "raw",
        "-o",
        out,
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)


def _watch_bridge(
    proc: subprocess.Popen[bytes], port: int, n: int
) -> tuple[float, float, ProcessCost, dict[str, float]]:
    """(first receive, N-th ack) as monotonic times, the bridge's peak RSS and CPU seconds
    used in between, and the final metrics."""
    first = None
    cpu_at_first = 0.0
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("bridge exited during the benchmark")
        metrics = _scrape(port)
        now = time.monotonic()
        if first is None and metrics.get("kotaflow_bridge_received_total", 0) > 0:
            first, cpu_at_first = now, cpu_seconds(proc.pid)
        if first is not None and metrics.get("kotaflow_bridge_acked_total", 0) >= n:
            return first, now, cost_of("kotaflow bridge", proc.pid, cpu_at_first), metrics
        time.sleep(0.1)
    raise RuntimeError("bridge did not finish in 600 s")


def _scrape(port: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def _records_in(settings: Settings, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(parts)
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


async def _topics(
    settings: Settings, create: list[str] | None = None, delete: list[str] | None = None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        if create:
            await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in create])
        if delete:
            await admin.delete_topics(delete)
    finally:
        await admin.close()


def _spawn_bridge(
    env: dict[str, str], log: Path, tree: Path | None = None
) -> subprocess.Popen[bytes]:
    return spawn_kotaflow("kotaflow bridge", ["bridge"], env, log, tree=tree).proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


if __name__ == "__main__":
    main()
