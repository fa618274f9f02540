"""The packaged catalogue and sample registry load, and their lookups answer."""

from __future__ import annotations

from pathlib import Path

from devices.fleet import load_fleet
from kotaflow.settings import Settings
from kotaflow.wire.raw import DeviceKeyKind

MANGGARAI_KECAMATAN = {
    "Langke Rembong",
    "Ruteng",
    "Wae Rii",
    "Cibal",
    "Cibal Barat",
    "Reok",
    "Reok Barat",
    "Satar Mese",
    "Satar Mese Barat",
    "Satar Mese Utara",
    "Lelak",
    "Rahong Utara",
}


def test_packaged_catalogue_has_the_issue_device_types() -> None:
    types = load_fleet().catalogue.types
    assert {
        "air_quality",
        "weather",
        "rain_gauge",
        "river_level",
        "noise",
        "water_meter",
        "streetlight",
    } <= set(types)
    temperature = types["weather"].metrics["temperature"]
    assert temperature.unit == "Cel"
    assert temperature.accepts("degF")
    assert types["rain_gauge"].interval_s == 300


def test_sample_registry_covers_every_kecamatan_with_lorawan_devices() -> None:
    registry = load_fleet().registry
    assert 30 <= len(registry) <= 50
    assert {d.kecamatan for d in registry} == MANGGARAI_KECAMATAN
    assert len(registry.by_dev_eui) >= 10
    assert any(d.tts_device_id for d in registry)
    assert any(not d.enabled for d in registry)


def test_registry_finds_devices_by_each_key_kind() -> None:
    registry = load_fleet().registry
    lora = next(d for d in registry if d.dev_eui and d.tts_device_id)
    assert lora.dev_eui is not None
    assert registry.find(lora.id, DeviceKeyKind.DEVICE_ID) is lora
    assert registry.find(lora.dev_eui.upper(), DeviceKeyKind.DEV_EUI) is lora
    assert registry.find(lora.ns_device_id, DeviceKeyKind.NS_DEVICE_ID) is lora
    plain = next(d for d in registry if not d.tts_device_id)
    assert registry.find(plain.id, DeviceKeyKind.NS_DEVICE_ID) is plain
    assert registry.find("nope", DeviceKeyKind.DEVICE_ID) is None


def test_settings_paths_override_the_packaged_files(tmp_path: Path) -> None:
    registry_file = tmp_path / "r.yaml"
    registry_file.write_text(
        "version: 1\nregency: Test\ndevices:\n"
        "  - {id: t-1, type: noise, name: T, kecamatan: X, latitude: -8.6,"
        " longitude: 120.4, elevation_m: 1000, install_date: 2025-01-01}\n",
        encoding="utf-8",
    )
    fleet = load_fleet(Settings(registry_file=registry_file))
    assert [d.id for d in fleet.registry] == ["t-1"]
    assert fleet.registry.regency == "Test"
