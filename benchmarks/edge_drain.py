"""The edge's costs and drain rates, between two private Mosquitto brokers.

``uv run python -m benchmarks.edge_drain [MESSAGES]`` queues MESSAGES readings with the
uplink down, then opens it and times the drain, once over a good link (a loopback TCP
relay) and once over a 16 kbit/s Toxiproxy link with 300 ms +- 100 ms latency (fewer
messages: it is slow). The readings are those of the end-to-end test
(tests/support/edge_scenario.py): native JSON of the catalogue's metrics for the 6
uncalibrated devices of one kecamatan (weather, 2 noise, water meter, 2 streetlights),
interleaved, every 4th without a time. Prints per run: intake rate and CPU per message
while queueing, drain rate, CPU per message while draining, the edge's peak RSS, payload
bytes, queue-file bytes and uplink bytes per message. No service of the shared stack is
used.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.procstats import cpu_seconds, peak_rss_kb
from deploy.local.toxiproxy import ensure_toxiproxy
from devices.topics import device_topic
from kotaflow.settings import Settings
from kotaflow.wire.raw import PayloadFormat
from tests.support.edge_harness import (
    EdgeProcess,
    central_broker,
    central_reader,
    free_port,
    local_broker,
    local_publisher,
    toxiproxy,
    wait_until,
)
from tests.support.edge_scenario import KECAMATAN, field_devices, reading_payload
from tests.support.tcp_relay import TcpRelay

START_MS = 1_780_000_000_000
"""Device time of the first reading (any past time does: nothing here decodes it)."""


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def readings(per_device: int) -> list[tuple[str, bytes]]:
    """(topic, payload) of ``per_device`` readings of each device, interleaved."""
    devices = field_devices(Settings())
    return [
        (
            device_topic(PayloadFormat.NATIVE_JSON, d.id),
            json.dumps(
                reading_payload(i, n, d.metrics, START_MS + n * d.interval_s * 1000)
            ).encode(),
        )
        for n in range(per_device)
        for i, d in enumerate(devices)
    ]


def run(messages: int, slow: bool) -> dict[str, float]:
    traffic = readings(max(1, messages // len(field_devices(Settings()))))
    total = len(traffic)
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        work = Path(tmp)
        with central_broker(work) as central, local_broker(work) as local:
            relay = TcpRelay(central.mqtt.port, free_port())
            binary = ensure_toxiproxy(central.stack.cache_dir, print) if slow else None
            with central_reader(central) as reader:
                if slow:
                    assert binary is not None
                    proxy_cm = toxiproxy(binary, relay.port)
                    proxy = proxy_cm.__enter__()
                    uplink = proxy.listen_port
                else:
                    uplink = relay.port
                edge = EdgeProcess(central, uplink, local, work, KECAMATAN)
                edge.extra_env["KOTAFLOW_EDGE__CLIENT_ID"] = f"edge-bench-{uuid.uuid4().hex[:6]}"
                # What the edge itself can drain: no rate cap, a wide window (docs/edge.md)
                edge.extra_env["KOTAFLOW_EDGE__BACKLOG_RATE_PER_S"] = "100000"
                edge.extra_env["KOTAFLOW_EDGE__MAX_IN_FLIGHT"] = "100"
                try:
                    edge.start()
                    assert edge.proc is not None
                    pid = edge.proc.pid
                    publisher = local_publisher(local)
                    cpu0, t0 = cpu_seconds(pid), time.monotonic()
                    infos = [publisher.publish(topic, body, qos=1) for topic, body in traffic]
                    for info in infos:
                        info.wait_for_publish(60)
                    wait_until(lambda: edge.queued() == total, 600, "the backlog")
                    t1, cpu1 = time.monotonic(), cpu_seconds(pid)
                    queue_bytes = _file_bytes(edge.queue_file)
                    if slow:
                        for stream in ("upstream", "downstream"):
                            proxy.toxic(f"cap-{stream}", "bandwidth", stream, rate=2)
                        proxy.toxic("latency", "latency", "downstream", latency=300, jitter=100)
                    relay.up()
                    t2 = time.monotonic()
                    wait_until(lambda: reader.count() >= total, 3600, "the drain")
                    t3, cpu3 = time.monotonic(), cpu_seconds(pid)
                    rss_mb = peak_rss_kb(pid) / 1024
                    publisher.loop_stop()
                finally:
                    edge.stop()
                    if slow:
                        proxy_cm.__exit__(None, None, None)
                    relay.down()
    return {
        "messages": total,
        "intake_msg_s": total / (t1 - t0),
        "intake_cpu_us_per_msg": (cpu1 - cpu0) / total * 1e6,
        "drain_s": t3 - t2,
        "drain_msg_s": total / (t3 - t2),
        "drain_cpu_us_per_msg": (cpu3 - cpu1) / total * 1e6,
        "peak_rss_mb": rss_mb,
        "payload_bytes_per_msg": sum(len(body) for _, body in traffic) / total,
        "queue_file_bytes_per_msg": queue_bytes / total,
        "uplink_bytes_per_msg": relay.bytes_up / total,
    }


def main() -> None:
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    for slow, count in ((False, messages), (True, max(200, messages // 50))):
        result = run(count, slow)
        label = "16 kbit/s + 300+-100 ms" if slow else "good link (loopback)"
        print(f"{label}: " + ", ".join(f"{k}={v:.1f}" for k, v in result.items()), flush=True)


if __name__ == "__main__":
    main()
