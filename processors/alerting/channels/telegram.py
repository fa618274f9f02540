"""Telegram receiver: the Bot API's ``sendMessage`` (plain text, no link previews).

``POST {base_url}/bot{token}/sendMessage`` with ``{"chat_id", "text"}`` and, when
acknowledge links are configured, an inline keyboard with one URL button that opens it.
``base_url`` is configurable so a proxy (or a loopback receiver in tests) can stand in for
the real API.
Telegram answers 429 with ``parameters.retry_after`` when flooded; that wait is honoured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from kotaflow.alerting_settings import TelegramReceiver
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.channels.base import DeliveryError, post_json
from processors.alerting.templates import Message

MAX_TEXT = 4096
"""Telegram's limit for one message."""


class TelegramChannel:
    def __init__(self, receiver: TelegramReceiver, http: httpx.AsyncClient) -> None:
        self._receiver = receiver
        self._http = http

    async def send(
        self, event: AlertEvent, message: Message, group: Sequence[AlertEvent] = ()
    ) -> None:
        token = self._receiver.token.get_secret_value()
        url = f"{self._receiver.base_url.rstrip('/')}/bot{token}/sendMessage"
        body: dict[str, Any] = {
            "chat_id": self._receiver.chat_id,
            "text": f"{message.title}\n\n{message.text}"[:MAX_TEXT],
            "disable_web_page_preview": True,
        }
        if message.ack_url:  # an inline button opening the signed acknowledge link
            label = "Tangani" if self._receiver.language.value == "id" else "Acknowledge"
            body["reply_markup"] = {"inline_keyboard": [[{"text": label, "url": message.ack_url}]]}
        try:
            await post_json(self._http, url, body, {}, self._receiver.timeout_s, "telegram")
        except DeliveryError as err:
            # never let the bot token reach a log line
            raise DeliveryError(
                str(err).replace(token, "***") if token else str(err),
                permanent=err.permanent,
                retry_after_s=err.retry_after_s,
            ) from None
