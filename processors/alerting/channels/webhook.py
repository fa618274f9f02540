"""Webhook receiver: POST the alert event as JSON, with the rendered title and text.

Body: ``{"event": <kotaflow.alerts v1 record>, "title": "...", "text": "...",
"language": "id"}``. Header values (e.g. an ``Authorization`` token) come from the settings.
"""

from __future__ import annotations

import httpx

from kotaflow.alerting_settings import WebhookReceiver
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.channels.base import post_json
from processors.alerting.templates import Message


class WebhookChannel:
    def __init__(self, receiver: WebhookReceiver, http: httpx.AsyncClient) -> None:
        self._receiver = receiver
        self._http = http

    async def send(self, event: AlertEvent, message: Message) -> None:
        body = {
            "event": event.to_json(),
            "title": message.title,
            "text": message.text,
            "language": self._receiver.language.value,
        }
        headers = {k: v.get_secret_value() for k, v in self._receiver.headers.items()}
        await post_json(
            self._http, self._receiver.url, body, headers, self._receiver.timeout_s, "webhook"
        )
