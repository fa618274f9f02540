"""The ``alerting:`` section of kotaflow's settings: rule file, state, receivers.

Part of the foundation, so :mod:`kotaflow.settings` composes it without importing a stage;
the alerting stage (``processors/alerting/``) and its channels read it from here. Secrets
(SMTP password, bot and gateway tokens, webhook header values) are
:class:`~pydantic.SecretStr`, so they never show in logs or ``repr``; set them from the
environment, e.g.
``KOTAFLOW_ALERTING__RECEIVERS__BPBD_MAIL__PASSWORD``.

Example (YAML settings file)::

    alerting:
      dashboard_url: "https://grafana.manggaraikab.go.id/d/kotaflow-device/device?var-device={device}"
      receivers:
        bpbd-mail: {kind: email, host: smtp.example.id, port: 587, username: kotaflow,
                    sender: kotaflow@example.id, to: [pusdalops@example.id], language: id}
        ops-hook: {kind: webhook, url: "https://ops.example.id/hooks/kotaflow", language: en}
        bpbd-telegram: {kind: telegram, chat_id: "-100123", language: id}
        camat-wa: {kind: gateway, channel: whatsapp, url: "https://wa.example.id/send",
                   to: ["+6281234567890"], language: id}
      routes:                      # kotaflow.alert_routes
        - {match: {labels: {team: bpbd}, level: [Awas]}, receivers: [camat-wa, bpbd-telegram],
           escalate_after: 15m, escalate_to: [bpbd-mail]}
        - {match: {labels: {team: bpbd}}, receivers: [bpbd-telegram]}
      default_route: {receivers: [ops-hook]}
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from kotaflow.alert_routes import DefaultRoute, Route

DASHBOARD_URL_EXAMPLE = "https://grafana.example.id/d/kotaflow-device/device?var-device={device}"
"""The device dashboard of ``kotaflow grafana render``, on a Grafana the staff can reach."""


class Language(StrEnum):
    ID = "id"
    EN = "en"


class _Receiver(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    language: Language = Language.ID
    timeout_s: float = Field(10.0, gt=0, description="one delivery attempt")


class WebhookReceiver(_Receiver):
    """POST the alert event as JSON (with the rendered title and text)."""

    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, SecretStr] = {}


class EmailReceiver(_Receiver):
    """Send a plain-text e-mail over SMTP, STARTTLS and AUTH unless told otherwise."""

    kind: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)
    ca_file: Path | None = Field(None, description="trust this CA for STARTTLS (private CAs)")


class TelegramReceiver(_Receiver):
    """Telegram Bot API ``sendMessage``; ``base_url`` can point at a proxy or a test server."""

    kind: Literal["telegram"]
    base_url: str = Field("https://api.telegram.org", pattern=r"^https?://")
    token: SecretStr = SecretStr("")
    chat_id: str = Field(min_length=1)


class GatewayReceiver(_Receiver):
    """WhatsApp or SMS through a generic HTTP gateway: POST ``{channel, to, text}`` as JSON."""

    kind: Literal["gateway"]
    channel: Literal["whatsapp", "sms"]
    url: str = Field(pattern=r"^https?://")
    token: SecretStr | None = Field(None, description="sent as 'Authorization: Bearer ...'")
    to: list[str] = Field(min_length=1)


class ConsoleReceiver(_Receiver):
    """Print to the terminal (used automatically when no receiver is configured)."""

    kind: Literal["console"]


Receiver = Annotated[
    WebhookReceiver | EmailReceiver | TelegramReceiver | GatewayReceiver | ConsoleReceiver,
    Field(discriminator="kind"),
]


class AlertingSettings(BaseModel):
    """``kotaflow alert``: where the rules are, where state lives, whom to tell."""

    model_config = ConfigDict(extra="forbid")

    rules_file: Path | None = Field(
        None, description="default: the packaged Manggarai rules (processors/alerting/rules/)"
    )
    state_dir: Path | None = Field(None, description="default: <stack.state_dir>/alerting")
    group_id: str = "kotaflow-alerting"
    tick_s: float = Field(5.0, gt=0, le=300, description="wall-clock tick: no-data, repeats")
    max_records: int = Field(2000, ge=1, description="readings per getmany() call")
    poll_timeout_ms: int = Field(100, ge=1, le=60_000)
    dashboard_url: str | None = Field(
        None,
        description=f"link in every message, e.g. {DASHBOARD_URL_EXAMPLE}; unset: messages "
        "carry no link (start warns)",
    )
    notify_max_age_s: float = Field(
        900.0, gt=0, description="older level changes (a replayed backlog) are not notified"
    )
    write_influx: bool = Field(True, description="also write alert events to InfluxDB")
    influx_bucket: str | None = Field(None, description="default: influxdb.telemetry_bucket")
    influx_measurement: str = "alerts"
    receivers: dict[str, Receiver] = {}
    default_receivers: list[str] = Field(
        default_factory=list, description="for rules naming none; empty: every receiver"
    )
    routes: list[Route] = Field([], description="tried in order (kotaflow.alert_routes)")
    default_route: DefaultRoute = DefaultRoute()
    retry_initial_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(300.0, gt=0)
    ack_secret: SecretStr | None = Field(
        None, description="signs acknowledge links; unset: acknowledge with 'kotaflow alerts ack'"
    )
    ack_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="public address of the acknowledge endpoint, e.g. https://alert.example.id/ack",
    )
    ack_host: str = Field("127.0.0.1", description="where the acknowledge endpoint listens")
    ack_port: int = Field(0, ge=0, le=65535, description="acknowledge endpoint; 0 off")
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Prometheus for the alert stage; 0 off"
    )
    grafana_notifications: bool = Field(
        False,
        description="let Grafana's mirrored alert rules notify staff too (contact points); "
        "off: the alerting stage is the one source of notifications",
    )

    @field_validator("receivers")
    @classmethod
    def _receiver_names(cls, value: dict[str, object]) -> dict[str, object]:
        for name in value:
            if not name or name.startswith("_") or any(c.isspace() for c in name):
                raise ValueError(f"receiver name {name!r}: no spaces, must not start with '_'")
        return value

    @model_validator(mode="after")
    def _known_receivers(self) -> AlertingSettings:
        """Routes and defaults may name only configured receivers (typos page nobody)."""
        if not self.receivers:
            return self
        named = [("default_receivers", n) for n in self.default_receivers]
        named += [("default_route.receivers", n) for n in self.default_route.receivers or []]
        named += [("default_route.escalate_to", n) for n in self.default_route.escalate_to]
        for index, found in enumerate(self.routes):
            named += [(f"routes[{index}].receivers", n) for n in found.receivers]
            named += [(f"routes[{index}].escalate_to", n) for n in found.escalate_to]
        unknown = [f"{where}: {name!r}" for where, name in named if name not in self.receivers]
        if unknown:
            known = ", ".join(sorted(self.receivers))
            raise ValueError(f"unknown receiver(s) {'; '.join(unknown)} (configured: {known})")
        return self

    @field_validator("dashboard_url")
    @classmethod
    def _dashboard_placeholder(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            value.format(device="x")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"only the {{device}} placeholder is allowed ({err})") from None
        return value

    def state_path(self, stack_state_dir: Path) -> Path:
        return (self.state_dir or stack_state_dir / "alerting") / "alerting.sqlite3"
