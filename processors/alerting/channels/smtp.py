"""E-mail receiver: plain text over SMTP with STARTTLS and AUTH (stdlib ``smtplib``).

``smtplib`` blocks, so each send runs in a worker thread; one connection per message keeps
it simple and robust (alert volumes are small). STARTTLS verifies the server certificate
(``ca_file`` adds a private CA). Errors: a 5xx answer to the message or its recipients is
permanent; connection problems, 4xx and authentication failures are retried (an operator
can fix a password without losing the queued alerts).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from kotaflow.alerting_settings import EmailReceiver
from kotaflow.wire.alerts import AlertEvent
from processors.alerting.channels.base import DeliveryError
from processors.alerting.templates import Message


class EmailChannel:
    def __init__(self, receiver: EmailReceiver) -> None:
        self._receiver = receiver

    async def send(
        self, event: AlertEvent, message: Message, group: Sequence[AlertEvent] = ()
    ) -> None:
        mail = EmailMessage()
        mail["Subject"] = message.title
        mail["From"] = self._receiver.sender
        mail["To"] = ", ".join(self._receiver.to)
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(idstring=event.id.replace("/", "."), domain="kotaflow")
        mail["X-Kotaflow-Alert"] = event.id
        mail.set_content(message.text)
        await asyncio.to_thread(self._send_blocking, mail)

    def _send_blocking(self, mail: EmailMessage) -> None:
        r = self._receiver
        try:
            with smtplib.SMTP(r.host, r.port, timeout=r.timeout_s) as smtp:
                smtp.ehlo()
                if r.starttls:
                    context = ssl.create_default_context(
                        cafile=str(r.ca_file) if r.ca_file else None
                    )
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if r.username:
                    password = r.password.get_secret_value() if r.password else ""
                    smtp.login(r.username, password)
                smtp.send_message(mail)
        except smtplib.SMTPRecipientsRefused as err:
            codes = [code for code, _ in err.recipients.values()]
            permanent = all(code >= 500 for code in codes)
            raise DeliveryError(
                f"smtp: recipients refused {err.recipients}", permanent=permanent
            ) from None
        except smtplib.SMTPAuthenticationError as err:
            raise DeliveryError(f"smtp: authentication failed ({err.smtp_code})") from None
        except smtplib.SMTPResponseException as err:
            raise DeliveryError(
                f"smtp: {err.smtp_code} {err.smtp_error!r}", permanent=err.smtp_code >= 500
            ) from None
        except (smtplib.SMTPException, OSError) as err:
            raise DeliveryError(f"smtp: {type(err).__name__}: {err}") from None
