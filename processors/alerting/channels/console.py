"""Console receiver: print the message to the terminal (the default with no receivers)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from kotaflow.alerting_settings import ConsoleReceiver
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.templates import Message


class ConsoleChannel:
    def __init__(self, receiver: ConsoleReceiver) -> None:
        self._receiver = receiver

    async def send(
        self, event: AlertEvent, message: Message, group: Sequence[AlertEvent] = ()
    ) -> None:
        rule = "-" * min(72, max(len(message.title), 20))
        sys.stdout.write(f"{rule}\n{message.title}\n{message.text}\n{rule}\n")
        sys.stdout.flush()
