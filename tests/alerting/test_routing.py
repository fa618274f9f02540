"""Where events go (pure) and how they look in InfluxDB line protocol."""

from __future__ import annotations

from kotaflow.alerting_settings import AlertingSettings, ConsoleReceiver, WebhookReceiver
from kotaflow.wire.alerts import AlertEvent, Change, Severity
from processors.alerting.routing import route
from processors.alerting.sinks import alert_line
from tests.alerting.helpers import T0


def _event(
    change: Change = Change.FIRED, notify: bool = True, receivers: tuple[str, ...] = ()
) -> AlertEvent:
    return AlertEvent(
        id="river/rl-1/1", rule="river", device="rl-1", type="river_level", kecamatan="Reok",
        metric="water_level", unit="cm", change=change, level="Siaga", previous_level=None,
        severity=Severity.MAJOR, value=262.0, threshold=250.0, at_ms=T0, started_ms=T0,
        receivers=receivers, notify=notify,
    )  # fmt: skip


def _hook(name: str) -> WebhookReceiver:
    return WebhookReceiver(kind="webhook", url=f"http://127.0.0.1:9/{name}")


def test_without_receivers_notifications_go_to_the_terminal() -> None:
    out = route([_event()], AlertingSettings(), T0)
    assert [o.destination for o in out] == ["_kafka", "_influxdb", "_console"]


def test_rule_receivers_then_defaults_then_all() -> None:
    cfg = AlertingSettings(
        receivers={"a": _hook("a"), "b": _hook("b"), "c": ConsoleReceiver(kind="console")},
        default_receivers=["b"],
        write_influx=False,
    )
    assert [o.destination for o in route([_event(receivers=("a",))], cfg, T0)] == ["_kafka", "a"]
    assert [o.destination for o in route([_event()], cfg, T0)] == ["_kafka", "b"]
    silenced = route([_event(notify=False)], cfg, T0)
    assert [o.destination for o in silenced] == ["_kafka"]
    reminder = route([_event(Change.REMINDER)], cfg, T0)
    assert [o.destination for o in reminder] == ["b"]


def test_influx_line_for_grafana_annotations() -> None:
    text = 'Tinggi "muka" air\nNilai: 262 cm'
    line = alert_line("alerts", _event(), "[SIAGA] Sungai", text)
    assert line == (
        "alerts,device=rl-1,kecamatan=Reok,rule=river,severity=major,status=firing,"
        'type=river_level change="fired",id="river/rl-1/1",level="Siaga",silenced=false,'
        'text="Tinggi \\"muka\\" air | Nilai: 262 cm",title="[SIAGA] Sungai",value=262.0,'
        f"threshold=250.0 {T0}"
    )
