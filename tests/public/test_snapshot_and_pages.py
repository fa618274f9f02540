"""Snapshot -> statuses -> pages and API bodies, without any service."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Mapping
from datetime import timedelta

from deploy.grafana.i18n import Lang
from processors.public import opendata, pages
from processors.public.publicity import PRIVATE_METRICS, is_public
from processors.public.ratelimit import RateLimit
from processors.public.snapshot import DeviceState, PublicContext, build_snapshot
from tests.public.conftest import NOW, snapshot_of

PRIVATE = ("rtg-wm-01", "rtg-sl-01", "rjg-wm-01", "reo-sl-01")


def _state(
    public: PublicContext,
    device: str,
    values: Mapping[str, Mapping[str, float]],
    rain: Mapping[str, float] | None = None,
) -> DeviceState:
    return next(s for s in snapshot_of(public, values, rain).devices if s.device.id == device)


def _word(public: PublicContext, device: str, metric: str, value: float) -> str | None:
    verdict = _state(public, device, {device: {metric: value}}).verdict
    return verdict.label.id if verdict else None


def test_river_gauge_above_its_siaga_level_is_siaga(public: PublicContext) -> None:
    state = _state(public, "reo-rl-02", values={"reo-rl-02": {"water_level": 260}})
    assert state.verdict is not None
    assert state.verdict.label.id == "Siaga"
    assert _word(public, "reo-rl-02", "water_level", 100) == "Normal"
    assert _word(public, "reo-rl-02", "water_level", 151) == "Waspada"
    assert _word(public, "reo-rl-02", "water_level", 351) == "Awas"


def test_gauge_with_its_own_registry_levels_is_judged_by_them(public: PublicContext) -> None:
    state = _state(public, "reo-rl-01", values={"reo-rl-01": {"water_level": 200}})
    assert state.verdict is not None
    assert state.verdict.label.id == "Siaga III"


def test_air_station_shows_the_worse_ispu_category_of_pm25_and_pm10(
    public: PublicContext,
) -> None:
    baik = _state(public, "rtg-aq-01", values={"rtg-aq-01": {"pm25": 10, "pm10": 20}})
    assert baik.verdict is not None
    assert (baik.verdict.label.id, baik.verdict.colour) == (
        "Baik",
        "green",
    )
    worse = _state(public, "rtg-aq-01", values={"rtg-aq-01": {"pm25": 30, "pm10": 200}})
    assert worse.verdict is not None
    assert worse.verdict.label.id == "Tidak Sehat"


def test_todays_rain_gets_its_bmkg_daily_class(public: PublicContext) -> None:
    classes = {
        0.0: "Tidak hujan",
        10.0: "Hujan ringan",
        30.0: "Hujan sedang",
        60.0: "Hujan lebat",
        160.0: "Hujan ekstrem",
    }
    for mm, word in classes.items():
        state = _state(public, "rtg-rg-01", values={}, rain={"rtg-rg-01": mm})
        assert state.verdict is not None
        assert state.verdict.label.id == word, mm


def test_silent_device_says_since_when_in_wita(public: PublicContext) -> None:
    snapshot = snapshot_of(public, {}, silent=["reo-rl-02"])
    state = next(s for s in snapshot.devices if s.device.id == "reo-rl-02")
    assert state.silent
    assert state.verdict is None
    html = pages.kecamatan_page(snapshot, "Reok", NOW, Lang.ID, stale=False)
    assert "Tidak ada data sejak 11.00 WITA" in html  # 03:00 UTC
    english = pages.kecamatan_page(snapshot, "Reok", NOW, Lang.EN, stale=False)
    assert "No data since 11:00 WITA" in english


def test_page_in_both_languages(public: PublicContext) -> None:
    snapshot = snapshot_of(public, {"reo-rl-02": {"water_level": 260}})
    indonesian = pages.regency_page(snapshot, NOW, Lang.ID, stale=False)
    english = pages.regency_page(snapshot, NOW, Lang.EN, stale=False)
    assert '<html lang="id">' in indonesian
    assert "Kabupaten Manggarai" in indonesian
    assert "Diperbarui 14.00 WITA" in indonesian
    assert ">Siaga<" in indonesian
    assert '<html lang="en">' in english
    assert "Manggarai Regency" in english
    assert "Updated 14:00 WITA" in english
    assert "Siaga (standby)" in english
    assert 'href="/?lang=en"' in indonesian
    assert 'href="/kecamatan/reok?lang=en"' in english
    assert "<script" not in indonesian + english


def test_stale_snapshot_says_data_from_when(public: PublicContext) -> None:
    snapshot = snapshot_of(public, {})
    later = NOW + timedelta(minutes=20)
    html = pages.regency_page(snapshot, later, Lang.ID, stale=True)
    assert "Data dari 14.00 WITA" in html
    assert "Data dari" not in pages.regency_page(snapshot, later, Lang.ID, stale=False)


def test_private_devices_and_metrics_never_appear(public: PublicContext) -> None:
    values = {device: {"flow": 5.0, "power": 9.0} for device in PRIVATE}
    values["reo-rl-02"] = {"battery": 3.1, "water_level": 100.0}
    snapshot = snapshot_of(public, values)
    bodies = [
        pages.regency_page(snapshot, NOW, Lang.ID, stale=False),
        pages.regency_page(snapshot, NOW, Lang.EN, stale=False),
        json.dumps(opendata.current(snapshot, stale=False)),
        opendata.current_csv(snapshot),
        json.dumps(opendata.dictionary(public.devices, public.regency)),
        *(json.dumps(opendata.fiware(snapshot, m)) for m in opendata.FIWARE_TYPES),
    ]
    for body in bodies:
        for device in (*PRIVATE, "rtg-aq-04"):  # rtg-aq-04 is disabled
            assert device not in body
        assert "battery" not in body
        assert "PDAM" not in body
    rows = list(csv.DictReader(io.StringIO(opendata.current_csv(snapshot))))
    assert not {r["metric"] for r in rows} & PRIVATE_METRICS


def test_registry_flag_overrides_the_type_default(public: PublicContext) -> None:
    station = next(d for d in public.devices if d.device.id == "rtg-aq-01").device
    assert is_public(station)
    assert not is_public(station.model_copy(update={"public": False}))
    water = station.model_copy(update={"type": "water_meter", "public": True})
    assert is_public(water)
    assert not is_public(water.model_copy(update={"public": None}))


def test_first_view_is_far_under_50_kb(public: PublicContext) -> None:
    snapshot = snapshot_of(public, {}, silent=["reo-rl-01"])
    for lang in Lang:
        raw = pages.regency_page(snapshot, NOW, lang, stale=True).encode()
        assert len(gzip.compress(raw)) < 50_000
        assert len(raw) < 50_000  # even without gzip


def test_api_current_matches_the_snapshot_and_states_the_licence(
    public: PublicContext,
) -> None:
    snapshot = snapshot_of(public, {"rtg-aq-01": {"pm25": 12.5}}, {"rtg-rg-01": 3.0})
    body = opendata.current(snapshot, stale=False)
    assert body["licence"]["id"] == "CC-BY-4.0"
    station = next(d for d in body["devices"] if d["device"] == "rtg-aq-01")
    assert station["values"]["pm25"] == {
        "value": 12.5,
        "unit": "ug/m3",
        "time": "2026-12-04T05:58:00Z",
    }
    gauge = next(d for d in body["devices"] if d["device"] == "rtg-rg-01")
    assert gauge["rain_today_mm"] == 3.0
    assert gauge["status"]["id"] == "Hujan ringan"


def test_fiware_shapes(public: PublicContext) -> None:
    snapshot = snapshot_of(public, {"rtg-aq-01": {"pm25": 12.5}, "reo-rl-02": {"water_level": 260}})
    air = {e["id"]: e for e in opendata.fiware(snapshot, "AirQualityObserved")}
    entity = air["urn:ngsi-ld:AirQualityObserved:rtg-aq-01"]
    assert entity["type"] == "AirQualityObserved"
    assert entity["pm25"] == 12.5
    assert entity["location"]["coordinates"] == [120.4658, -8.6118]
    water = {e["id"]: e for e in opendata.fiware(snapshot, "WaterObserved")}
    assert water["urn:ngsi-ld:WaterObserved:reo-rl-02"]["height"] == 2.6
    weather = opendata.fiware(snapshot, "WeatherObserved")
    assert all(e["type"] == "WeatherObserved" for e in weather)
    assert weather


def test_rate_limit_allows_a_burst_then_the_rate() -> None:
    limit = RateLimit(rate_per_s=2.0, burst=3.0)
    assert [limit.allow("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.allow("a", 0.0) > 0
    assert limit.allow("b", 0.0) == 0.0  # another client is not held back
    assert limit.allow("a", 0.5) == 0.0  # one token back after 1/rate s


def test_active_public_warnings_lead_the_pages(public: PublicContext) -> None:
    since = NOW - timedelta(minutes=30)
    alerts = [
        ("tinggi_muka_air", "reo-rl-02", "Siaga", "major", since),
        ("ispu_pm25", "rtg-aq-01", "Tidak Sehat", "warning", since),
        ("baterai_lemah", "reo-rl-02", "Lemah", "info", since),  # device health: internal
        ("perangkat_senyap", "reo-rl-02", "Senyap", "warning", since),  # no-data: internal
        ("tinggi_muka_air", "rtg-wm-01", "Siaga", "major", since),  # a private device
    ]
    base = snapshot_of(public, {})
    snapshot = build_snapshot(public, [], {}, NOW, alerts)
    assert [(a.rule, a.device.id) for a in snapshot.warnings] == [
        ("tinggi_muka_air", "reo-rl-02"),  # most severe first
        ("ispu_pm25", "rtg-aq-01"),
    ]
    reok = pages.kecamatan_page(snapshot, "Reok", NOW, Lang.ID, stale=False)
    assert "Peringatan aktif" in reok
    assert "Tinggi muka air sungai" in reok
    assert "sejak 13.30 WITA" in reok
    assert "Kualitas udara PM2.5" not in reok  # Langke Rembong's warning stays there
    english = pages.kecamatan_page(snapshot, "Reok", NOW, Lang.EN, stale=False)
    assert "River level" in english
    assert "Siaga (standby)" in english
    for body in (reok, json.dumps(opendata.current(snapshot, stale=False))):
        assert "Lemah" not in body
        assert "Senyap" not in body
        assert "rtg-wm-01" not in body
    assert "Tidak ada peringatan aktif" in pages.regency_page(base, NOW, Lang.ID, stale=False)
