"""End to end: a simulated device's MQTT publish crosses a threshold -> bridge -> validate ->
alert evaluator (all as ``kotaflow`` processes) -> webhook received on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from kotaflow.settings import Settings
from tests.alerting.conftest import HttpReceiver, await_for
from tests.support.alerting_pipeline import pipeline

pytestmark = pytest.mark.services


@pytest.mark.asyncio
async def test_mqtt_publish_to_notification_firing_resolved_firing(
    stack: Settings, tmp_path: Path, http_receiver: HttpReceiver
) -> None:
    with pipeline(tmp_path, f"{http_receiver.url}/hook") as run:
        for cm, count in ((262.0, 1), (230.0, 2), (271.0, 3)):
            run.publish(cm)
            await await_for(
                lambda n=count: len(http_receiver.on("/hook")) >= n, 60, f"notification {count}"
            )
    events = [post.body["event"] for post in http_receiver.on("/hook")]
    assert [(e["change"], e["value"]) for e in events] == [
        ("fired", 262.0),
        ("resolved", 230.0),
        ("fired", 271.0),
    ]
    first = http_receiver.on("/hook")[0].body
    assert first["title"] == "[SIAGA] Tinggi muka air sungai: Jembatan Wae Pesi (uji), Reok"
    assert f"({run.device}), Kecamatan Reok" in first["text"]
