"""Where a stage gets its clients: one factory object, the seam its contract tests swap.

Like Telegraf's injectable ``ClientFactory``: :class:`~processors.runtime.stage_loop.StageLoop`
takes its Kafka consumer, :class:`~processors.runtime.kafka_output.KafkaOutput` its producer,
the aggregate stage its admin client and :func:`processors.runner.run_stages` its InfluxDB
writer from a :class:`StageClients`. The default, :data:`REAL_CLIENTS`, makes the real ones
(``kafka_clients.py``, ``influx.py``). The stage contract suite (``tests/contracts/``) passes
in-memory stand-ins (``tests/support/stage_standins.py``) to check each stage's commit rule
in a few seconds; every other test, and production, talks to the real services.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from kotaflow.settings import Settings, StageConsumer
from processors.runtime.influx import InfluxSink, Refused
from processors.runtime.kafka_clients import make_admin, make_consumer, make_producer
from processors.runtime.write_block import BlockGauge


class InfluxWriter(Protocol):
    """What the stages need of InfluxDB (:class:`InfluxSink` is the real one)."""

    async def write(
        self, bucket: str, lines: Sequence[str], stage: str = "influxdb"
    ) -> list[Refused]:
        """Return once every line is written; the lines refused as invalid data."""

    async def query(self, flux: str, stage: str | None = None) -> list[dict[str, Any]]:
        """Rows of a Flux query."""


class InfluxClient(InfluxWriter, Protocol):
    """An InfluxDB writer with its own connections: entered with ``async with``."""

    def tokens(self) -> tuple[str, str]:
        """The (write, read) tokens it would use: clients with the same share one."""

    async def __aenter__(self) -> InfluxClient: ...

    async def __aexit__(self, *exc: object) -> None: ...


class StageClients:
    """Makes the clients of the stages; subclass it to hand them other ones."""

    def consumer(
        self, settings: Settings, stage: StageConsumer, client_id: str
    ) -> AIOKafkaConsumer:
        return make_consumer(settings, stage, client_id)

    def producer(
        self, settings: Settings, client_id: str, linger_ms: int, max_batch_bytes: int
    ) -> AIOKafkaProducer:
        return make_producer(settings, client_id, linger_ms, max_batch_bytes)

    def admin(self, settings: Settings, client_id: str) -> AIOKafkaAdminClient:
        return make_admin(settings, client_id)

    def influx(
        self,
        settings: Settings,
        role: str | None = None,
        gauge: BlockGauge | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> InfluxClient:
        """An InfluxDB client with ``role``'s tokens, to enter with ``async with`` inside
        the running loop."""
        return InfluxSink(settings, gauge=gauge, on_retry=on_retry, role=role)


REAL_CLIENTS = StageClients()
