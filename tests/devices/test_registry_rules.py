"""Registry validation beyond single fields, and the calibration the validate stage applies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from payload_builders import device_entry as entry

from devices.calibration import apply_calibration
from devices.catalogue import load_catalogue
from devices.reading import Reading
from devices.registry import check_registry, load_registry
from devices.sourcefile import DeviceFileError, read_yaml


def problems_of(tmp_path: Path, *devices: dict[str, Any]) -> list[str]:
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump({"version": 1, "regency": "T", "devices": list(devices)}), encoding="utf-8"
    )
    _, problems = check_registry(read_yaml(path), load_catalogue())
    return [f"{p.field}: {p.reason}" for p in problems]


def test_duplicate_deveui_and_tts_ids_are_found(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        entry(id="aa", type="noise", dev_eui="0004A30B00000001"),
        entry(id="bb", type="noise", dev_eui="0004a30b00000001", tts_device_id="aa"),
    )
    assert found == [
        "devices[1].dev_eui: duplicate DevEUI '0004a30b00000001' (first used by devices[0], "
        "line 2)",
        "devices[1].tts_device_id: duplicate TTS device id 'aa' (first used by devices[0], line 2)",
    ]


def test_on_off_metrics_cannot_be_calibrated(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path, entry(id="sl", type="streetlight", calibration={"lamp_on": {"offset": 1}})
    )
    assert found == [
        "devices[0].calibration.lamp_on: 'lamp_on' is an on/off metric and cannot be calibrated"
    ]


def test_bad_fields_are_reported_for_every_device(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        entry(id="Bad Id", type="noise"),
        entry(id="ok", type="noise", latitude=-95, tts_device_id="-x"),
        entry(id="z", type="noise", calibration={"laeq": {"scale": 0}}, colour="red"),
    )
    assert [f.split(":")[0] for f in found] == [
        "devices[0].id",
        "devices[1].latitude",
        "devices[1].tts_device_id",
        "devices[2].calibration.laeq.scale",
        "devices[2].colour",
    ]


def test_load_registry_raises_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("version: 2\nregency: T\ndevices: []\n", encoding="utf-8")
    with pytest.raises(DeviceFileError, match=r"r\.yaml:1: version: Input should be 1"):
        load_registry(load_catalogue(), path)


def test_calibration_scales_then_offsets_and_leaves_others_alone() -> None:
    device = load_registry(load_catalogue()).by_id["rtg-aq-01"]  # pm25: offset -1.2, scale 1.04
    raw = Reading("rtg-aq-01", "pm25", 50.0, 1, ("receive_time",))
    calibrated = apply_calibration(raw, device)
    assert calibrated.value == pytest.approx(50.0 * 1.04 - 1.2)
    assert (calibrated.metric, calibrated.ts_ms, calibrated.flags) == ("pm25", 1, raw.flags)
    untouched = Reading("rtg-aq-01", "co2", 420.0, 1)
    assert apply_calibration(untouched, device) is untouched
