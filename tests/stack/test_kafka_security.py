"""The local Kafka's SASL_SSL listener: SCRAM-SHA-512 over verified TLS, as production runs.

The clients are configured the way an operator would: only ``security_protocol``,
``sasl_mechanism`` and the listener's address; user, password and CA come from the local
stack's state directory through ``kotaflow.kafka.client_options``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import SecretStr

from deploy.local.kafka import SASL_PORT_OFFSET, broker_address
from deploy.local.tls import ensure_tls
from kotaflow.kafka import client_options
from kotaflow.settings import Settings
from tests.support.isolated_kafka import delete_topics

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

DEADLINE_S = 30.0


def _scram(stack: Settings, **kafka: object) -> Settings:
    """``stack`` pointed at the SASL_SSL listener, with ``kafka`` fields on top."""
    host, port = broker_address(stack.kafka)
    update = {
        "bootstrap_servers": f"{host}:{port + SASL_PORT_OFFSET}",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        **kafka,
    }
    return stack.model_copy(update={"kafka": stack.kafka.model_copy(update=update)})


async def _start_fails(settings: Settings, caplog: pytest.LogCaptureFixture, why: str) -> None:
    """The client cannot bootstrap; aiokafka's log says why (its exception does not)."""
    producer = AIOKafkaProducer(**client_options(settings), request_timeout_ms=10_000)
    try:
        with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaError):
            async with asyncio.timeout(DEADLINE_S):
                await producer.start()
    finally:
        await producer.stop()
    assert why in caplog.text


async def test_scram_over_tls_round_trips_a_record(stack: Settings) -> None:
    secure = _scram(stack)
    assert broker_address(secure.kafka) == broker_address(stack.kafka)
    options = client_options(secure)
    assert options["sasl_plain_password"]
    topic = f"test.scram.{uuid.uuid4().hex[:10]}"  # Kafka creates it on the first produce
    value = uuid.uuid4().bytes
    try:
        producer = AIOKafkaProducer(**options, enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=b"k")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic, **client_options(secure), auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        try:
            async with asyncio.timeout(DEADLINE_S):
                record = await consumer.getone()
        finally:
            await consumer.stop()
    finally:
        await delete_topics(stack, [topic])
    assert record.value == value


async def test_scram_with_a_wrong_password_is_refused(
    stack: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = SecretStr("wrong-" + uuid.uuid4().hex)
    await _start_fails(_scram(stack, sasl_password=wrong), caplog, "SaslAuthenticationFailed")


async def test_scram_with_an_unknown_user_is_refused(
    stack: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = f"nobody-{uuid.uuid4().hex[:6]}"
    await _start_fails(_scram(stack, sasl_username=stranger), caplog, "SaslAuthenticationFailed")


async def test_tls_with_an_untrusted_ca_is_refused(
    stack: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other_ca = ensure_tls(tmp_path, ["127.0.0.1"], lambda _line: None).ca_cert
    await _start_fails(_scram(stack, ca_file=other_ca), caplog, "CERTIFICATE_VERIFY_FAILED")
