"""``kotaflow simulate --behind-edge``: the chosen devices publish to the edge's local broker
and reach the central broker through a real ``kotaflow edge``; the rest go straight there.

Every part is real: the CLI as its own process, the edge's local Mosquitto, the edge, a
private central Mosquitto with accounts and ACL from the registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.catalogue import load_catalogue
from devices.registry import load_registry
from devices.simulator.runner import TRACE_PROPERTY
from kotaflow.settings import Settings
from kotaflow.wire.raw import EDGE_NAME_PROPERTY, EDGE_RX_PROPERTY
from tests.support.edge_harness import REPO, Collector, EdgeProcess, wait_until
from tests.support.tcp_relay import TcpRelay

pytestmark = pytest.mark.services

KECAMATAN = "Reok"


@pytest.fixture
def reok_edge(
    central: Settings, relay: TcpRelay, local_port: int, tmp_path: Path
) -> Iterator[EdgeProcess]:
    process = EdgeProcess(central, relay.port, local_port, tmp_path, KECAMATAN)
    process.extra_env["KOTAFLOW_EDGE__CLIENT_ID"] = f"edge-test-{uuid.uuid4().hex[:8]}"
    try:
        yield process
    finally:
        process.stop()


def simulate(central: Settings, *args: str) -> dict[str, object]:
    """``kotaflow simulate ... --json`` against the private central broker."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KOTAFLOW_STACK__STATE_DIR": str(central.stack.state_dir),
        "KOTAFLOW_MQTT__PORT": str(central.mqtt.port),
        "KOTAFLOW_REGISTRY_FILE": str(central.registry_file),
    }
    done = subprocess.run(
        [sys.executable, "-m", "kotaflow", "simulate", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert isinstance(summary, dict)
    return summary


def test_chosen_devices_reach_the_centre_through_the_edge_the_rest_directly(
    central: Settings, relay: TcpRelay, reok_edge: EdgeProcess, collector: Collector
) -> None:
    relay.up()
    reok_edge.start()
    summary = simulate(
        central,
        "--devices", "reo-*,cnc-*",
        "--behind-edge", f"127.0.0.1:{reok_edge.local_port}",
        "--edge-devices", KECAMATAN,
        "--format", "native",
        "--rate", "300",
        "--count", "300",
    )  # fmt: skip
    registry = load_registry(load_catalogue(), central.registry_file)
    reok = sorted(d.id for d in registry if d.kecamatan == KECAMATAN and d.enabled)
    gateway = [d for d in reok if registry.by_id[d].type == "gateway"]
    assert summary["behind_edge"] == sorted(set(reok) - set(gateway))
    assert summary["excluded_devices"] == gateway  # the edge reports as its gateway itself
    assert summary["unacked"] == summary["refused"] == 0
    sent = int(str(summary["messages"]))

    def arrived() -> dict[str, tuple[str, dict[str, str]]]:
        with collector.lock:
            return {props[TRACE_PROPERTY]: (topic, props) for topic, _, props in collector.got}

    wait_until(lambda: len(arrived()) == sent, 30, "every simulated message at the centre")
    through_edge = direct = 0
    for topic, props in arrived().values():
        device = topic.split("/")[1]
        if device in reok:
            assert props[EDGE_NAME_PROPERTY] == reok_edge.name
            assert int(props[EDGE_RX_PROPERTY]) > 0
            through_edge += 1
        else:
            assert device.startswith("cnc-")
            assert EDGE_NAME_PROPERTY not in props
            direct += 1
    assert through_edge > 0
    assert direct > 0
    wait_until(lambda: reok_edge.queued() == 0, 10, "the edge's queue to empty")
