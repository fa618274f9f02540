"""Channels and the outbox against real receivers on loopback: SMTP with STARTTLS and AUTH,
webhook, Telegram Bot API, WhatsApp/SMS gateway; retries, isolation of a receiver that is
down, permanent refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from kotaflow.alerting_settings import (
    EmailReceiver,
    GatewayReceiver,
    Language,
    TelegramReceiver,
    WebhookReceiver,
)
from kotaflow.wire.alerts import AlertEvent, Change, Severity
from processors.alerting.channels import DeliveryError, build_channel
from processors.alerting.dispatch import Dispatcher, ReceiverDestination
from processors.alerting.metrics import AlertMetrics
from processors.alerting.state_store import AlertStore, Outgoing
from processors.alerting.templates import render
from processors.runtime.retry import Backoff
from tests.alerting.conftest import (
    SMTP_PASSWORD,
    SMTP_USER,
    HttpReceiver,
    SmtpServer,
    await_for,
)
from tests.alerting.helpers import T0

DASH = "http://grafana.test/d/device?var-device={device}"


def _event(seq: int = 1, change: Change = Change.FIRED) -> AlertEvent:
    return AlertEvent(
        id=f"river/rl-1/{seq}",
        rule="river",
        device="rl-1",
        type="river_level",
        kecamatan="Reok",
        metric="water_level",
        unit="cm",
        change=change,
        level="Siaga",
        previous_level=None,
        severity=Severity.MAJOR,
        value=262.0,
        threshold=250.0,
        at_ms=T0,
        started_ms=T0,
        title={"id": "Tinggi muka air sungai", "en": "River level"},
        notify=True,
    )


def _email(server: SmtpServer, **extra: object) -> EmailReceiver:
    fields: dict[str, object] = {
        "kind": "email",
        "host": server.host,
        "port": server.port,
        "username": SMTP_USER,
        "password": SecretStr(SMTP_PASSWORD),
        "sender": "kotaflow@manggaraikab.test",
        "to": ["pusdalops@bpbd.test"],
        "ca_file": server.ca_file,
        "language": Language.ID,
    }
    fields.update(extra)
    return EmailReceiver.model_validate(fields)


@pytest.mark.asyncio
async def test_email_over_starttls_with_auth(smtp_server: SmtpServer) -> None:
    channel = build_channel(_email(smtp_server), httpx.AsyncClient())
    message = render(_event(), Language.ID, "Muara Wae Pesi", DASH)
    await channel.send(_event(), message)
    mail = smtp_server.received()[0]
    assert mail["Subject"] == "[SIAGA] Tinggi muka air sungai: Muara Wae Pesi, Reok"
    assert mail["X-Kotaflow-Alert"] == "river/rl-1/1"
    assert "Nilai: 262 cm (ambang 250 cm)" in mail.get_payload(decode=True).decode()
    assert smtp_server.logins == [SMTP_USER]


@pytest.mark.asyncio
async def test_email_wrong_password_is_retryable_not_lost(smtp_server: SmtpServer) -> None:
    channel = build_channel(_email(smtp_server, password="salah"), httpx.AsyncClient())
    with pytest.raises(DeliveryError) as caught:
        await channel.send(_event(), render(_event(), Language.EN, "x", DASH))
    assert not caught.value.permanent
    assert smtp_server.received() == []


@pytest.mark.asyncio
async def test_webhook_telegram_and_gateway_posts(http_receiver: HttpReceiver) -> None:
    async with httpx.AsyncClient() as http:
        webhook = WebhookReceiver(
            kind="webhook",
            url=f"{http_receiver.url}/hook",
            headers={"Authorization": SecretStr("Bearer hook-secret")},
            language=Language.EN,
        )
        telegram = TelegramReceiver(
            kind="telegram", base_url=http_receiver.url, token=SecretStr("123:abc"), chat_id="-42"
        )
        gateway = GatewayReceiver(
            kind="gateway",
            channel="whatsapp",
            url=f"{http_receiver.url}/wa",
            token=SecretStr("gw-token"),
            to=["+6281234567890"],
        )
        for receiver in (webhook, telegram, gateway):
            message = render(_event(), receiver.language, "Wae Pesi", DASH)
            await build_channel(receiver, http).send(_event(), message)
    hook = http_receiver.on("/hook")[0]
    assert hook.body["event"]["id"] == "river/rl-1/1"
    assert hook.body["title"].startswith("[SIAGA] River level")
    assert hook.headers["Authorization"] == "Bearer hook-secret"
    bot = http_receiver.on("/bot123:abc/sendMessage")[0]
    assert bot.body["chat_id"] == "-42"
    assert "Kecamatan Reok" in bot.body["text"]
    wa = http_receiver.on("/wa")[0]
    assert (wa.body["channel"], wa.body["to"]) == ("whatsapp", ["+6281234567890"])
    assert wa.headers["Authorization"] == "Bearer gw-token"


@pytest.mark.asyncio
async def test_down_receiver_is_retried_and_does_not_block_others(
    tmp_path: Path, http_receiver: HttpReceiver, smtp_server: SmtpServer
) -> None:
    store = AlertStore(tmp_path / "state.sqlite3")
    http = httpx.AsyncClient()
    hook = WebhookReceiver(kind="webhook", url=f"{http_receiver.url}/hook")
    destinations = [
        ReceiverDestination("hook", build_channel(hook, http), Language.ID, {}, DASH),
        ReceiverDestination(
            "mail", build_channel(_email(smtp_server), http), Language.ID, {}, DASH
        ),
    ]
    metrics = AlertMetrics()
    dispatcher = Dispatcher(
        store, destinations, Backoff(initial_s=0.05, max_s=0.2, jitter=0), metrics=metrics
    )
    http_receiver.failing = True
    events = [_event(1), _event(2, Change.RESOLVED)]
    outgoing = [Outgoing(d, e.id, e.to_json()) for e in events for d in ("hook", "mail")]
    store.save(_no_state(), {}, outgoing, T0)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        await await_for(lambda: len(smtp_server.received()) == 2, what="both e-mails")
        await await_for(lambda: http_receiver.failures >= 3, what="webhook retries")
        assert http_receiver.posts == []
        http_receiver.failing = False
        dispatcher.wake()
        await await_for(lambda: len(http_receiver.posts) == 2, what="webhook after recovery")
        # delivered in order: the resolution never overtakes its firing
        assert [p.body["event"]["change"] for p in http_receiver.posts] == ["fired", "resolved"]
    finally:
        stop.set()
        await task
        await http.aclose()
    summary = {(d, s): n for d, s, n, _ in store.outbox_summary()}
    assert summary == {("hook", "sent"): 2, ("mail", "sent"): 2}
    sent = "kotaflow_alert_notifications_total"
    assert metrics.value(sent, {"receiver": "hook", "outcome": "sent"}) == 2
    assert metrics.value(sent, {"receiver": "mail", "outcome": "sent"}) == 2
    assert metrics.value(sent, {"receiver": "hook", "outcome": "retry"}) >= 3
    metrics.outbox(store.pending(), T0)
    assert metrics.value("kotaflow_alert_outbox_pending", {"destination": "hook"}) == 0


@pytest.mark.asyncio
async def test_permanent_refusal_is_kept_as_failed_and_queue_moves_on(
    tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    store = AlertStore(tmp_path / "state.sqlite3")
    async with httpx.AsyncClient() as http:
        hook = WebhookReceiver(kind="webhook", url=f"{http_receiver.url}/hook")
        destination = ReceiverDestination("hook", build_channel(hook, http), Language.ID, {}, DASH)
        dispatcher = Dispatcher(store, [destination], Backoff(initial_s=0.05, jitter=0))
        http_receiver.failing, http_receiver.status_when_failing = True, 400
        store.save(_no_state(), {}, [Outgoing("hook", "a", _event(1).to_json())], T0)
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        await await_for(lambda: http_receiver.failures == 1, what="the refused attempt")
        http_receiver.failing = False
        store.save(_no_state(), {}, [Outgoing("hook", "b", _event(2).to_json())], T0)
        dispatcher.wake()
        await await_for(lambda: len(http_receiver.posts) == 1, what="the next message")
        stop.set()
        await task
    statuses = {(s, n) for _, s, n, _ in store.outbox_summary()}
    assert statuses == {("failed", 1), ("sent", 1)}


def test_the_same_event_is_queued_once(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "state.sqlite3")
    item = Outgoing("hook", "river/rl-1/1", _event().to_json())
    assert store.save(_no_state(), {}, [item], T0) == 1
    assert store.save(_no_state(), {}, [item], T0) == 0


def _no_state():  # type: ignore[no-untyped-def]
    from processors.alerting.engine import Dirty

    return Dirty()


def test_each_process_takes_only_its_partitions_messages(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "state.sqlite3")
    rows = [Outgoing("hook", f"e{p}", _event(p).to_json(), p) for p in (0, 1, 2)]
    store.save(_no_state(), {}, rows, T0)
    other = AlertStore(tmp_path / "state.sqlite3")  # a second evaluator on the same file
    assert [i.event_id for i in store.next_batch("hook", 10, {0, 2})] == ["e0", "e2"]
    assert [i.event_id for i in other.next_batch("hook", 10, {1})] == ["e1"]
    assert [i.event_id for i in other.next_batch("hook", 10, set())] == []
