"""WhatsApp / SMS receiver through a generic HTTP gateway.

``POST {url}`` with ``{"channel": "whatsapp" | "sms", "to": ["+62..."], "text": "...",
"event_id": "..."}`` and, when a token is configured, ``Authorization: Bearer <token>``.
Most Indonesian WhatsApp/SMS gateway services (and a small adapter in front of any other)
take this shape; ``event_id`` lets the gateway drop a retried duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from kotaflow.alerting_settings import GatewayReceiver
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.channels.base import post_json
from processors.alerting.templates import Message

SMS_LIMIT = 459
"""Three concatenated GSM-7 segments: enough for the headline, value and link."""


class GatewayChannel:
    def __init__(self, receiver: GatewayReceiver, http: httpx.AsyncClient) -> None:
        self._receiver = receiver
        self._http = http

    async def send(
        self, event: AlertEvent, message: Message, group: Sequence[AlertEvent] = ()
    ) -> None:
        text = f"{message.title}\n{message.text}"
        if self._receiver.channel == "sms":
            text = text[:SMS_LIMIT]
        body = {
            "channel": self._receiver.channel,
            "to": list(self._receiver.to),
            "text": text,
            "event_id": event.id,
        }
        token = self._receiver.token
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        await post_json(
            self._http, self._receiver.url, body, headers, self._receiver.timeout_s, "gateway"
        )
