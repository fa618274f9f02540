"""Fixtures for the edge's service tests (the harness: tests/support/edge_harness.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local.service import ServiceError
from deploy.local.toxiproxy import ensure_toxiproxy
from kotaflow.settings import Settings
from tests.conftest import ScratchLedger
from tests.support.edge_harness import (
    Collector,
    EdgeProcess,
    central_broker,
    central_reader,
    free_port,
    kecamatan_devices,
    local_broker,
)
from tests.support.private_pipeline import (
    device_tag,
    private_fleet,
    private_pipeline,
    quick_flushes,
)
from tests.support.tcp_relay import TcpRelay


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Settings]:
    with central_broker(tmp_path) as settings:
        yield settings


@pytest.fixture
def local_port(tmp_path: Path) -> Iterator[int]:
    with local_broker(tmp_path) as port:
        yield port


@pytest.fixture
def relay(central: Settings) -> Iterator[TcpRelay]:
    """The edge's uplink, initially down."""
    link = TcpRelay(central.mqtt.port, free_port())
    try:
        yield link
    finally:
        link.down()


@pytest.fixture
def collector(central: Settings) -> Iterator[Collector]:
    with central_reader(central) as found:
        yield found


def _edge(central: Settings, uplink: int, local: int, tmp_path: Path) -> EdgeProcess:
    kecamatan, _ = kecamatan_devices()
    process = EdgeProcess(central, uplink, local, tmp_path, kecamatan)
    process.extra_env["KOTAFLOW_EDGE__CLIENT_ID"] = f"edge-test-{uuid.uuid4().hex[:8]}"
    return process


@pytest.fixture
def edge_process(
    central: Settings, relay: TcpRelay, local_port: int, tmp_path: Path
) -> Iterator[EdgeProcess]:
    """The edge behind the relay."""
    process = _edge(central, relay.port, local_port, tmp_path)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def toxiproxy_binary(settings: Settings) -> Path:
    """Toxiproxy, built once from the Go module proxy and cached (deploy/local/toxiproxy.py)."""
    try:
        return ensure_toxiproxy(settings.stack.cache_dir, lambda _: None)
    except ServiceError as err:  # no Go toolchain: the weak-link tests cannot run
        pytest.skip(f"toxiproxy unavailable: {err}")


@pytest.fixture
def fleet_settings(
    stack: Settings, scratch_ledger: ScratchLedger, tmp_path: Path
) -> Iterator[Settings]:
    """Private topics, groups, buckets (least-privilege tokens) and tagged device ids, for
    tests that run the central pipeline (tests/support/central_pipeline.py)."""
    tokens = tmp_path / "influx-tokens"
    tokens.mkdir()
    fleet_dir = tmp_path / "fleet"
    fleet_dir.mkdir()
    for mine in private_pipeline(stack, scratch_ledger, tokens):
        yield quick_flushes(private_fleet(mine, fleet_dir, device_tag(mine)))
