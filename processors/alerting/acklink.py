"""Signed acknowledge links and the small HTTP endpoint of the alert stage that serves them.

With ``alerting.ack_secret`` and ``alerting.ack_url`` set, every e-mail and webhook message
carries a link (and a Telegram message an inline button) that acknowledges the alert it is
about, as ``kotaflow alerts ack`` would. The link names the alert episode (rule, device,
``started_ms``), the level the reader saw and the receiver it went to, signed with
HMAC-SHA256 over exactly those, so it cannot be altered or forged; it acknowledges that level
of that episode only (a later rise needs a new acknowledgement).

Opening a link (GET) only shows the alert and a button: mail scanners and link previews
fetch links by themselves and must not acknowledge anything. The button POSTs the form; the
acknowledgement is written to the alert state, recorded as by ``link:<receiver>`` with the
name typed into the form when given. Served on ``alerting.ack_port`` (aiohttp), typically
behind the office's reverse proxy.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

from aiohttp import web

from kotaflow.wire.alerts import AlertEvent
from processors.alerting.state_store import AlertStore, NotFiringError
from processors.alerting.templates import AckLink

log = logging.getLogger("kotaflow.alerting.acklink")

_FIELDS = ("alert", "episode", "level", "via")


def signature(secret: str, alert: str, episode: str, level: str, via: str) -> str:
    message = "\n".join((alert, episode, level, via)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:32]


def link_maker(secret: str, base_url: str, receiver: str) -> AckLink:
    """The acknowledge link of an event, for messages to ``receiver``."""

    def link(event: AlertEvent) -> str | None:
        fields = {
            "alert": event.alert_id,
            "episode": str(event.started_ms),
            "level": event.level,
            "via": receiver,
        }
        sig = signature(secret, *fields.values())
        return f"{base_url}?{urlencode({**fields, 'sig': sig})}"

    return link


def ack_app(
    store: AlertStore, secret: str, clock: Callable[[], float] = time.time
) -> web.Application:
    """``GET /ack?...`` (a confirmation page) and ``POST /ack`` (acknowledge)."""

    def checked(fields: dict[str, str]) -> tuple[str, str, int, str, str]:
        if any(name not in fields for name in (*_FIELDS, "sig")):
            raise web.HTTPBadRequest(text="incomplete acknowledge link")
        expected = signature(secret, *(fields[name] for name in _FIELDS))
        if not hmac.compare_digest(expected, fields["sig"]):
            raise web.HTTPForbidden(text="this acknowledge link is not valid")
        rule, _, device = fields["alert"].partition("/")
        if not fields["episode"].isdigit():
            raise web.HTTPBadRequest(text="bad episode")
        return rule, device, int(fields["episode"]), fields["level"], fields["via"]

    async def show(request: web.Request) -> web.Response:
        fields = dict(request.query)
        checked(fields)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in fields.items()
        )
        page = (
            "<!doctype html><meta charset=utf-8><title>kotaflow</title>"
            f"<p>Alert <b>{html.escape(fields['alert'])}</b>, level "
            f"<b>{html.escape(fields['level'])}</b>.</p>"
            f'<form method="post">{hidden}<label>Nama / name: <input name="by"></label> '
            '<label>Catatan / note: <input name="note"></label> '
            '<button type="submit">Tangani / Acknowledge</button></form>'
        )
        return web.Response(text=page, content_type="text/html")

    async def acknowledge(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        rule, device, episode, level, via = checked(form)
        who = form.get("by", "").strip()[:80]
        by = f"{who} (link:{via})" if who else f"link:{via}"
        try:
            ack = store.acknowledge(
                rule,
                device,
                by,
                form.get("note", "").strip()[:500],
                int(clock() * 1000),
                episode=episode,
                level=level,
            )
        except NotFiringError as err:
            return web.Response(status=409, text=str(err))
        log.info("alert acknowledged", extra={"alert": f"{rule}/{device}", "by": by})
        return web.Response(text=f"{rule}/{device}: {ack.level} acknowledged by {ack.by}")

    app = web.Application()
    app.router.add_get("/ack", show)
    app.router.add_post("/ack", acknowledge)
    return app
