"""Acceptance for a disaster-response office: routes, escalation and acknowledgement, storm
grouping and per-gauge levels, on real Kafka with a real SMTP server (aiosmtpd, STARTTLS +
AUTH), an HTTP receiver and a fake Telegram Bot API on loopback.

Each test runs the alerting service on its own Kafka topics and state file.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import yaml
from pydantic import SecretStr
from typer.testing import CliRunner

from deploy.local.kafka_topics import run_sync
from kotaflow.alerting_settings import (
    AlertingSettings,
    TelegramReceiver,
    WebhookReceiver,
)
from kotaflow.cli import app as cli_app
from kotaflow.settings import Settings
from tests.alerting.conftest import (
    HttpReceiver,
    SmtpServer,
    await_for,
    free_port,
    mail_receiver,
    own_topics,
    producer,
    running,
)
from tests.alerting.helpers import reading, write_rules
from tests.support.isolated_kafka import delete_topics

pytestmark = pytest.mark.services

TOKEN = "123456:uji-token"
TELEGRAM_PATH = f"/bot{TOKEN}/sendMessage"
RULES = """
version: 1
rules:
  - name: sungai
    kind: threshold
    title: {id: Tinggi muka air sungai, en: River level}
    metric: water_level
    scope: {types: [river_level]}
    levels:
      - {name: Waspada, at_least: 150, clear_below: 140, severity: warning}
      - {name: Siaga, at_least: 250, clear_below: 240, severity: major}
      - {name: Awas, at_least: 350, clear_below: 340, severity: critical}
    labels: {team: bpbd, hazard: banjir}
    repeat: {repeat}
"""
ROUTES = [
    {
        "name": "awas",
        "match": {"labels": {"team": "bpbd"}, "level": ["Awas"]},
        "receivers": ["mail", "hook"],
        "group_window": 0,
        "escalate_after": "3s",
        "escalate_to": ["kalak"],
    },
    {
        "name": "siaga",
        "match": {"labels": {"team": "bpbd"}, "level": ["Siaga"]},
        "receivers": ["tg", "hook"],
        "group_window": "4s",
    },
    {"name": "bpbd", "match": {"labels": {"team": "bpbd"}}, "receivers": ["tg"], "group_window": 0},
]

MakeSettings = Callable[..., Settings]


@pytest.fixture
def office(
    stack: Settings, tmp_path: Path, http_receiver: HttpReceiver, smtp_server: SmtpServer
) -> Iterator[MakeSettings]:
    made: list[dict[str, int]] = []

    def make(repeat: str = "1d", registry: Path | None = None, **extra: Any) -> Settings:
        topics, wanted = own_topics(stack, "office")
        uid = topics.readings.rsplit(".", 1)[1]
        made.append(wanted)
        receivers: dict[str, Any] = {
            "hook": WebhookReceiver(kind="webhook", url=f"{http_receiver.url}/hook"),
            "kalak": WebhookReceiver(kind="webhook", url=f"{http_receiver.url}/kalak"),
            "tg": TelegramReceiver(
                kind="telegram", base_url=http_receiver.url, token=SecretStr(TOKEN), chat_id="-1"
            ),
            "mail": mail_receiver(smtp_server),
        }
        alerting = AlertingSettings.model_validate(
            {
                "rules_file": write_rules(
                    tmp_path, RULES.replace("{repeat}", repeat), f"{uid}.yaml"
                ),
                "state_dir": tmp_path / f"state-{uid}",
                "group_id": f"test-office-{uid}",
                "tick_s": 0.2,
                "poll_timeout_ms": 50,
                "write_influx": False,
                "retry_initial_s": 0.1,
                "retry_max_s": 2.0,
                "receivers": receivers,
                "routes": ROUTES,
                "default_route": {"receivers": []},
                **extra,
            }
        )
        kafka = stack.kafka.model_copy(update={"topics": topics})
        update: dict[str, Any] = {"kafka": kafka, "alerting": alerting}
        if registry is not None:
            update["registry_file"] = registry
        return stack.model_copy(update=update)

    try:
        yield make
    finally:
        for wanted in made:
            run_sync(delete_topics(stack, wanted))


async def _send(prod: Any, settings: Settings, device: str, cm: float) -> None:
    record = reading(device, "water_level", cm, int(time.time() * 1000))
    await prod.send_and_wait(settings.kafka.topics.readings, record.value_bytes(), key=record.key())


def _events(receiver: HttpReceiver, path: str) -> list[dict[str, Any]]:
    return [post.body["event"] for post in receiver.on(path)]


@pytest.mark.asyncio
async def test_a_route_sends_awas_to_two_receivers_and_waspada_to_one(
    office: MakeSettings, http_receiver: HttpReceiver, smtp_server: SmtpServer
) -> None:
    port = free_port()
    settings = office(metrics_port=port)
    async with running(settings), producer(settings) as prod:
        await _send(prod, settings, "uji-rl-w", 160)
        await await_for(lambda: len(http_receiver.on(TELEGRAM_PATH)) == 1, what="Waspada on tg")
        await _send(prod, settings, "uji-rl-a", 365)
        await await_for(lambda: len(smtp_server.received()) == 1, what="Awas by e-mail")
        await await_for(lambda: len(http_receiver.on("/hook")) == 1, what="Awas on the webhook")
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert len(http_receiver.on(TELEGRAM_PATH)) == 1  # Awas did not go to the team chat
    for line in (
        'kotaflow_alert_notifications_total{outcome="sent",receiver="mail"} 1.0',
        'kotaflow_alert_notifications_total{outcome="sent",receiver="tg"} 1.0',
        'kotaflow_alert_events_total{change="fired"} 2.0',
        "kotaflow_alert_outbox_oldest_pending_seconds",
    ):
        assert line in metrics
    assert [e["level"] for e in _events(http_receiver, "/hook")] == ["Awas"]
    mail = smtp_server.received()[0]
    assert mail["Subject"] == "[AWAS] Tinggi muka air sungai: uji-rl-a, Reok"
    body = mail.get_payload(decode=True).decode()
    assert "Tingkat keparahan: kritis" in body  # the severity in the message's language
    assert "kotaflow alerts ack sungai/uji-rl-a" in body
    telegram = http_receiver.on(TELEGRAM_PATH)[0].body
    assert telegram["text"].startswith("[WASPADA] Tinggi muka air sungai: uji-rl-w, Reok")


@pytest.mark.asyncio
async def test_unacknowledged_awas_escalates_and_ack_stops_reminders(
    office: MakeSettings,
    http_receiver: HttpReceiver,
    smtp_server: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = office(repeat="2s")
    state_dir = settings.alerting.state_dir
    assert state_dir is not None
    monkeypatch.setenv("KOTAFLOW_ALERTING__STATE_DIR", str(state_dir))
    cli = CliRunner()
    async with running(settings), producer(settings) as prod:
        await _send(prod, settings, "uji-rl-e", 365)
        await await_for(lambda: len(http_receiver.on("/hook")) == 1, what="Awas")
        fired_at = http_receiver.on("/hook")[0].at
        await await_for(lambda: http_receiver.on("/kalak"), 20, what="escalation")
        escalation = http_receiver.on("/kalak")[0]
        assert escalation.at - fired_at >= 2.5  # escalate_after: 3s from the reading's time
        assert escalation.body["event"]["change"] == "unacknowledged"
        assert escalation.body["title"].startswith("[ESKALASI AWAS] Tinggi muka air sungai")
        await await_for(lambda: len(http_receiver.on("/hook")) >= 2, what="a reminder")
        acked = cli.invoke(
            cli_app, ["alerts", "ack", "sungai/uji-rl-e", "-m", "TRC menuju lokasi", "--by", "Yos"]
        )
        assert acked.exit_code == 0, acked.output
        assert "acknowledged at Awas by Yos" in acked.output
        await asyncio.sleep(0.5)  # a reminder queued just before the ack may still leave
        after_ack = len(http_receiver.on("/hook"))
        shown = cli.invoke(cli_app, ["alerts", "status", "--json"])
        assert shown.exit_code == 0, shown.output
        (row,) = [r for r in _json(shown.output)["firing"] if r["device"] == "uji-rl-e"]
        assert (row["acked_by"], row["ack_note"]) == ("Yos", "TRC menuju lokasi")
        start = time.monotonic()
        await await_for(lambda: time.monotonic() - start > 5, 10, what="5 s without reminders")
        assert len(http_receiver.on("/hook")) == after_ack
        assert len(http_receiver.on("/kalak")) == 1  # escalated once
    changes = [e["change"] for e in _events(http_receiver, "/hook")]
    assert changes[0] == "fired"
    assert set(changes[1:]) == {"reminder"}


@pytest.mark.asyncio
async def test_storm_over_five_gauges_in_one_kecamatan_is_one_message_per_receiver(
    office: MakeSettings, http_receiver: HttpReceiver
) -> None:
    settings = office()
    devices = [f"uji-rl-s{i}" for i in range(5)]
    async with running(settings), producer(settings) as prod:
        for i, device in enumerate(devices):
            await _send(prod, settings, device, 260 + i)
        await await_for(lambda: len(http_receiver.on(TELEGRAM_PATH)) == 1, 30, what="tg")
        await await_for(lambda: len(http_receiver.on("/hook")) == 1, 30, what="webhook")
        start = time.monotonic()
        await await_for(lambda: time.monotonic() - start > 5, 10, what="a window more")
        assert len(http_receiver.on(TELEGRAM_PATH)) == 1
        assert len(http_receiver.on("/hook")) == 1
        await _send(prod, settings, devices[2], 200)  # one member falls back: alone, at once
        await await_for(lambda: len(http_receiver.on(TELEGRAM_PATH)) == 2, 10, what="change")
    hook = http_receiver.on("/hook")[0].body
    assert sorted(e["device"] for e in hook["group"]) == devices
    assert hook["title"] == "[SIAGA] Tinggi muka air sungai: 5 perangkat di Kecamatan Reok"
    text = http_receiver.on(TELEGRAM_PATH)[0].body["text"]
    assert all(f"({d}): 26{i} cm, Siaga" in text for i, d in enumerate(devices))
    later = http_receiver.on(TELEGRAM_PATH)[1].body["text"]
    assert later.startswith("[WASPADA] Tinggi muka air sungai: uji-rl-s2, Reok")


@pytest.mark.asyncio
async def test_a_gauge_with_its_own_four_levels_fires_and_clears_at_its_own_values(
    office: MakeSettings, http_receiver: HttpReceiver, tmp_path: Path
) -> None:
    registry = tmp_path / "registry.yaml"
    gauge = {
        "id": "uji-rl-own", "type": "river_level", "name": "Jembatan uji", "kecamatan": "Reok",
        "latitude": -8.3, "longitude": 120.4, "elevation_m": 5, "install_date": "2025-01-01",
        "alert_levels": {"sungai": [
            {"name": "Siaga IV", "at_least": 120, "clear_below": 110, "severity": "info"},
            {"name": "Siaga III", "at_least": 180, "clear_below": 170, "severity": "warning"},
            {"name": "Siaga II", "at_least": 240, "clear_below": 230, "severity": "major"},
            {"name": "Siaga I", "at_least": 300, "clear_below": 290, "severity": "critical"},
        ]},
    }  # fmt: skip
    other = {**gauge, "id": "uji-rl-std", "alert_levels": {}}
    registry.write_text(
        yaml.safe_dump(
            {"version": 1, "regency": "Manggarai", "kecamatan": ["Reok"], "devices": [gauge, other]}
        ),
        encoding="utf-8",
    )
    settings = office(registry=registry)
    steps = [125, 185, 245, 305, 285, 225, 165, 105]
    async with running(settings), producer(settings) as prod:
        for count, cm in enumerate(steps, start=1):
            await _send(prod, settings, "uji-rl-own", cm)
            await await_for(lambda n=count: len(http_receiver.on(TELEGRAM_PATH)) == n, what=f"{cm}")
        await _send(prod, settings, "uji-rl-std", 185)  # the rule's own levels: Waspada
        await await_for(lambda: len(http_receiver.on(TELEGRAM_PATH)) == len(steps) + 1, what="std")
    texts = [post.body["text"].splitlines() for post in http_receiver.on(TELEGRAM_PATH)]
    assert [t[0].split("]")[0] for t in texts] == [
        "[SIAGA IV", "[SIAGA III", "[SIAGA II", "[SIAGA I", "[SIAGA II", "[SIAGA III",
        "[SIAGA IV", "[PULIH", "[WASPADA",
    ]  # fmt: skip
    assert "Nilai: 125 cm (ambang 120 cm)" in texts[0]
    assert "Nilai: 305 cm (ambang 300 cm)" in texts[3]
    assert "Nilai: 105 cm (batas pulih 110 cm)" in texts[7]


@pytest.mark.asyncio
async def test_a_signed_link_acknowledges_the_alert_and_telegram_shows_a_button(
    office: MakeSettings, http_receiver: HttpReceiver, smtp_server: SmtpServer
) -> None:
    port = free_port()
    settings = office(
        ack_secret="uji-rahasia", ack_url=f"http://127.0.0.1:{port}/ack", ack_port=port
    )
    async with running(settings), producer(settings) as prod, httpx.AsyncClient() as http:
        await _send(prod, settings, "uji-rl-k", 365)
        await await_for(lambda: http_receiver.on("/hook"), what="Awas on the webhook")
        await await_for(lambda: smtp_server.received(), what="Awas by e-mail")
        link = http_receiver.on("/hook")[0].body["ack_url"]
        body = smtp_server.received()[0].get_payload(decode=True).decode()
        mail_link = link.split("via=hook")[0] + "via=mail&sig="  # signed for its receiver
        assert f"Tandai ditangani: {mail_link}" in body
        page = await http.get(link)  # a mail scanner opening the link acknowledges nothing
        assert page.status_code == 200
        assert '<form method="post">' in page.text
        forged = await http.post(link.split("?")[0], data={**_query(link), "level": "Waspada"})
        assert forged.status_code == 403
        done = await http.post(link.split("?")[0], data={**_query(link), "by": "Yos"})
        assert done.status_code == 200, done.text
        assert "Awas acknowledged by Yos (link:hook)" in done.text
        start = time.monotonic()
        await await_for(lambda: time.monotonic() - start > 4, 10, what="past escalate_after")
        assert http_receiver.on("/kalak") == []  # acknowledged in time: no escalation
        await _send(prod, settings, "uji-rl-k2", 160)  # Waspada: the team's Telegram chat
        await await_for(lambda: http_receiver.on(TELEGRAM_PATH), what="Telegram")
    markup = http_receiver.on(TELEGRAM_PATH)[0].body["reply_markup"]
    (button,) = markup["inline_keyboard"][0]
    assert button["text"] == "Tangani"
    assert button["url"].startswith(f"http://127.0.0.1:{port}/ack?alert=sungai%2Fuji-rl-k2")


def _query(link: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(link).query))


def _json(text: str) -> dict[str, Any]:
    import json

    data = json.loads(text)
    assert isinstance(data, dict)
    return data
