"""Webhook receiver: POST the alert event as JSON, with the rendered title and text.

Body: ``{"event": <kotaflow.alerts v1 record>, "title": "...", "text": "...",
"language": "id"}``, plus ``"group": [event, ...]`` for a grouped message (a storm; ``event``
is its first member) and ``"ack_url"`` when acknowledge links are configured. Header values
(e.g. an ``Authorization`` token) come from the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from kotaflow.alerting_settings import WebhookReceiver
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.channels.base import post_json
from processors.alerting.templates import Message


class WebhookChannel:
    def __init__(self, receiver: WebhookReceiver, http: httpx.AsyncClient) -> None:
        self._receiver = receiver
        self._http = http

    async def send(
        self, event: AlertEvent, message: Message, group: Sequence[AlertEvent] = ()
    ) -> None:
        body: dict[str, Any] = {
            "event": event.to_json(),
            "title": message.title,
            "text": message.text,
            "language": self._receiver.language.value,
        }
        if group:
            body["group"] = [member.to_json() for member in group]
        if message.ack_url:
            body["ack_url"] = message.ack_url
        headers = {k: v.get_secret_value() for k, v in self._receiver.headers.items()}
        await post_json(
            self._http, self._receiver.url, body, headers, self._receiver.timeout_s, "webhook"
        )
