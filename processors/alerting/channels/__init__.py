"""One module per receiver kind, all with the same interface (:class:`.base.Channel`).

A channel delivers one rendered message or raises :class:`.base.DeliveryError` saying
whether a retry can help. Channels hold no queue and no retry loop: the outbox
(:mod:`processors.alerting.dispatch`) owns both, so every channel gets the same durability.
:func:`build_channel` is the registry: one line per kind.
"""

from __future__ import annotations

import httpx

from kotaflow.alerting_settings import (
    ConsoleReceiver,
    EmailReceiver,
    GatewayReceiver,
    Receiver,
    TelegramReceiver,
    WebhookReceiver,
)
from processors.alerting.channels.base import Channel, DeliveryError
from processors.alerting.channels.console import ConsoleChannel
from processors.alerting.channels.gateway import GatewayChannel
from processors.alerting.channels.smtp import EmailChannel
from processors.alerting.channels.telegram import TelegramChannel
from processors.alerting.channels.webhook import WebhookChannel

__all__ = ["Channel", "DeliveryError", "build_channel"]


def build_channel(receiver: Receiver, http: httpx.AsyncClient) -> Channel:
    """The channel for a configured receiver (HTTP channels share ``http``)."""
    if isinstance(receiver, WebhookReceiver):
        return WebhookChannel(receiver, http)
    if isinstance(receiver, EmailReceiver):
        return EmailChannel(receiver)
    if isinstance(receiver, TelegramReceiver):
        return TelegramChannel(receiver, http)
    if isinstance(receiver, GatewayReceiver):
        return GatewayChannel(receiver, http)
    assert isinstance(receiver, ConsoleReceiver)
    return ConsoleChannel(receiver)
