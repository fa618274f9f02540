"""Messages in Bahasa Indonesia and English carry device, kecamatan, value, threshold, WITA
time and the dashboard link."""

from __future__ import annotations

from kotaflow.alerting_settings import Language
from kotaflow.wire.alerts import AlertEvent, Change, Severity
from processors.alerting.templates import format_time, render
from tests.alerting.helpers import T0

DASH = "http://grafana.local/d/device?var-device={device}"


def _event(change: Change = Change.FIRED, **extra: object) -> AlertEvent:
    fields: dict[str, object] = {
        "id": "river/rl-1/1",
        "rule": "river",
        "device": "rl-1",
        "type": "river_level",
        "kecamatan": "Reok",
        "metric": "water_level",
        "unit": "cm",
        "change": change,
        "level": "Siaga",
        "previous_level": "Waspada",
        "severity": Severity.MAJOR,
        "value": 262.5,
        "threshold": 250.0,
        "at_ms": T0,
        "started_ms": T0,
        "title": {"id": "Tinggi muka air sungai", "en": "River level"},
    }
    fields.update(extra)
    return AlertEvent(**fields)  # type: ignore[arg-type]


def test_time_is_shown_in_wita() -> None:
    assert format_time(T0, Language.ID) == "28 November 2025 11.20 WITA"
    assert format_time(T0, Language.EN) == "28 Nov 2025 11:20 WITA"


def test_indonesian_escalation_message() -> None:
    message = render(_event(Change.ESCALATED), Language.ID, "Muara Wae Pesi, Reo", DASH)
    assert message.title == "[SIAGA] Tinggi muka air sungai: Muara Wae Pesi, Reo, Reok"
    assert "naik dari Waspada ke Siaga" in message.text
    assert "Nilai: 262,5 cm (ambang 250 cm)" in message.text
    assert "Perangkat: Muara Wae Pesi, Reo (rl-1), Kecamatan Reok" in message.text
    assert "Waktu: 28 November 2025 11.20 WITA" in message.text
    assert "Dasbor: http://grafana.local/d/device?var-device=rl-1" in message.text


def test_english_resolved_message() -> None:
    event = _event(Change.RESOLVED, value=120.0, threshold=240.0)
    message = render(event, Language.EN, "Wae Pesi", DASH)
    assert message.title.startswith("[RESOLVED] River level: Wae Pesi, Reok")
    assert "Value: 120 cm (clears at 240 cm)" in message.text


def test_nodata_message_names_last_seen_time() -> None:
    event = _event(nodata=True, unit="min", value=47.0, threshold=45.0, last_seen_ms=T0)
    message = render(event, Language.ID, "Pos hujan", DASH)
    assert "Tidak ada data sejak 28 November 2025 11.20 WITA (batas 45 menit)" in message.text
