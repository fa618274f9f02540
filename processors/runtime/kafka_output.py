"""Kafka output shared by the stages of a process: one idempotent producer, acked sends.

Every stage may dead-letter; validate also produces readings. :class:`KafkaOutput` queues
records with ``send`` (which only enqueues in aiokafka) and keeps the delivery futures;
:meth:`KafkaOutput.drain` awaits them all, so a stage commits its input offsets only once
every record its output covers has been acknowledged by the brokers (``acks=all``).
A failed delivery raises from ``drain``; the stage then does not commit and the process
stops, to be restarted from the last commit (at least once, never lost).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from kotaflow.settings import Settings
from kotaflow.wire.deadletter import DeadLetter
from processors.runtime.clients import REAL_CLIENTS, StageClients
from processors.runtime.health import Health


class KafkaOutput:
    def __init__(
        self,
        settings: Settings,
        health: Health,
        client_id: str,
        clients: StageClients = REAL_CLIENTS,
    ) -> None:
        self._settings = settings
        self._clients = clients
        self._health = health
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._pending: dict[str, list[asyncio.Future[Any]]] = {}
        self._users = 0
        self._starting = asyncio.Lock()

    @property
    def producer(self) -> AIOKafkaProducer:
        assert self._producer is not None, "KafkaOutput.start() first"
        return self._producer

    async def start(self) -> None:
        """Start the producer on first use (stages of one process share it); each
        stage waits only for its own deliveries."""
        async with self._starting:  # stages start at once: one producer, not one each
            if self._producer is None:
                cfg = self._settings.processing.validation
                producer = self._clients.producer(
                    self._settings, self._client_id, cfg.linger_ms, cfg.max_batch_bytes
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()  # a failed start leaves its connections to close
                    raise
                self._producer = producer
            self._users += 1

    async def stop(self) -> None:
        self._users -= 1
        if self._users <= 0 and self._producer is not None:
            await self._producer.stop()
            self._producer = None

    def track(self, stage: str, future: asyncio.Future[Any]) -> None:
        """Count ``future`` (a delivery) among what ``stage`` must wait for before committing."""
        self._pending.setdefault(stage, []).append(future)

    async def send(self, stage: str, topic: str, key: bytes | None, value: bytes) -> None:
        self.track(stage, await self.producer.send(topic, value, key=key))

    async def deadletter(self, stage: str, letter: DeadLetter) -> None:
        self._health.deadletter(stage, letter.reason.value)
        await self.send(stage, self._settings.kafka.topics.deadletter, letter.key(), letter.value())

    async def drain(self, stage: str) -> None:
        """Wait until every record sent so far is acknowledged (raises if one failed)."""
        pending = self._pending.pop(stage, [])
        if not pending:
            return
        started = time.perf_counter()
        await asyncio.gather(*pending)
        self._health.write_latency(stage, time.perf_counter() - started)
