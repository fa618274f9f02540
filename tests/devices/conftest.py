"""Fixtures for the device tests: small fleets built from YAML, with the packaged catalogue."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from payload_builders import BuildFleet, device_entry

from devices.fleet import Fleet, load_fleet

TEST_DEVICES: list[dict[str, Any]] = [
    {
        "id": "t-wx-01",
        "type": "weather",
        "dev_eui": "a84041000000beef",
        "tts_device_id": "tts-wx-01",
        "calibration": {"temperature": {"offset": -0.5, "scale": 1.0}},
    },
    {"id": "t-wx-02", "type": "weather", "dev_eui": "a84041000000c0de"},
    {"id": "t-sl-01", "type": "streetlight", "dev_eui": "0004a30b00000001"},
    {"id": "t-wx-off", "type": "weather", "dev_eui": "a84041000000dead", "enabled": False},
]


@pytest.fixture(scope="session")
def build_fleet(tmp_path_factory: pytest.TempPathFactory) -> BuildFleet:
    """``build_fleet(*entries)``: a fleet of exactly these devices (packaged catalogue)."""
    tmp_path = tmp_path_factory.mktemp("fleets")

    def build(*entries: dict[str, Any]) -> Fleet:
        path = tmp_path / f"registry-{len(list(tmp_path.iterdir()))}.yaml"
        devices = [device_entry(**e) for e in entries]
        path.write_text(
            yaml.safe_dump({"version": 1, "regency": "Test", "devices": devices}), encoding="utf-8"
        )
        return load_fleet(registry_file=path)

    return build


@pytest.fixture(scope="session")
def fleet(build_fleet: BuildFleet) -> Fleet:
    return build_fleet(*TEST_DEVICES)
