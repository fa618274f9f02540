"""``kotaflow devices check`` and ``devices list``: precise messages, exit codes, JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from devices.catalogue import PACKAGED_CATALOGUE
from devices.registry import PACKAGED_REGISTRY
from kotaflow.cli import app

BROKEN_REGISTRY = """\
version: 1
regency: Manggarai
kecamatan: [Langke Rembong, Reok]
devices:
  - id: rtg-aq-01
    type: air_quality
    name: Pasar Inpres
    kecamatan: Langke Rembong
    latitude: -8.6118
    longitude: 120.4658
    elevation_m: 1168
    install_date: 2025-02-10
  - id: rtg-aq-01
    type: air_quality
    name: Pasar Inpres again
    kecamatan: Langke Rembong
    latitude: -8.6118
    longitude: 120.4658
    elevation_m: 1168
    install_date: 2025-02-10
  - id: reo-xx-01
    type: tide_gauge
    name: Pelabuhan Reo
    kecamatan: Reok
    latitude: -8.3172
    longitude: 120.4531
    elevation_m: 2
    install_date: 2025-02-10
  - id: reo-rl-01
    type: river_level
    name: Wae Pesi
    kecamatan: Reok
    latitude: -8.3224
    longitude: 120.4468
    elevation_m: 4
    install_date: 2025-06-03
    dev_eui: "24e124b54766690"
  - id: reo-rl-02
    type: river_level
    name: Wae Neuring
    kecamatan: Reo
    latitude: -8.3390
    longitude: 120.4712
    elevation_m: 18
    install_date: 2025-06-04
    calibration:
      water_level: {offset: 2.5, scale: 1.0}
      temperature: {offset: 1.0}
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_check_broken_registry_names_file_line_field_and_reason(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(BROKEN_REGISTRY, encoding="utf-8")
    result = runner.invoke(app, ["devices", "check", str(path)])
    assert result.exit_code == 1
    lines = [line.removeprefix("error: ") for line in result.output.splitlines()]
    assert (
        f"{path}:13: devices[1].id: duplicate device id 'rtg-aq-01' (first used by "
        "devices[0], line 5)" in lines
    )
    assert any(
        line.startswith(f"{path}:22: devices[2].type: unknown device type 'tide_gauge' (known: ")
        for line in lines
    )
    assert (
        f"{path}:37: devices[3].dev_eui: Value error, a DevEUI is exactly 16 "
        "hexadecimal digits" in lines
    )
    assert (
        f"{path}:41: devices[4].kecamatan: unknown kecamatan 'Reo' (not in the kecamatan: "
        "list)" in lines
    )
    assert (
        f"{path}:48: devices[4].calibration.temperature: type 'river_level' has no "
        "metric 'temperature'" in lines
    )
    assert len(lines) == 5


def test_check_reports_unquoted_numeric_deveui_and_duplicate_keys(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "version: 1\nregency: T\ndevices:\n"
        "  - {id: a, type: noise, name: A, kecamatan: X, latitude: 0, longitude: 0,\n"
        "     elevation_m: 1, install_date: 2025-01-01, dev_eui: 1234567890123456}\n"
        "regency: U\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["devices", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:6: regency: duplicate key (YAML keeps only one)" in result.output
    assert (
        f"{path}:5: devices[0].dev_eui: Value error, YAML read this DevEUI as a number: "
        "quote it" in result.output
    )


def test_check_broken_catalogue(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_text(
        "version: 1\n"
        "metrics:\n"
        "  laeq: {unit: dBA, min: 140, max: 20, description: noise}\n"
        "types:\n"
        "  noise:\n"
        "    description: sound level meter\n"
        "    interval_s: 60\n"
        "    metrics: [laeq, lamax]\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["devices", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:3: metrics.laeq.min: min must be below max" in result.output
    assert (
        f"{path}:8: types.noise.metrics[1]: unknown metric 'lamax' (not under metrics:)"
        in result.output
    )


def test_check_reports_invalid_yaml_with_its_line(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("version: 1\ndevices:\n  - id: [unclosed\n", encoding="utf-8")
    result = runner.invoke(app, ["devices", "check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:4: (document): not valid YAML" in result.output


def test_check_refuses_a_file_that_is_neither(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "k.yaml"
    path.write_text("mqtt:\n  port: 1883\n", encoding="utf-8")
    result = runner.invoke(app, ["devices", "check", str(path)])
    assert result.exit_code == 1
    assert "neither a registry" in result.output


@pytest.mark.parametrize(
    ("path", "kind"), [(PACKAGED_REGISTRY, "registry"), (PACKAGED_CATALOGUE, "catalogue")]
)
def test_check_accepts_the_packaged_files(runner: CliRunner, path: Path, kind: str) -> None:
    result = runner.invoke(app, ["devices", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"valid {kind}" in result.output


def test_list_json_has_each_device_with_its_metrics(runner: CliRunner) -> None:
    result = runner.invoke(app, ["devices", "list", "--json"])
    assert result.exit_code == 0, result.output
    devices = json.loads(result.stdout)
    assert len(devices) == len({d["id"] for d in devices}) >= 30
    for device in devices:
        assert {"id", "type", "kecamatan", "dev_eui", "metrics"} <= device.keys()
        assert device["metrics"]
    gauge = next(d for d in devices if d["id"] == "reo-rl-01")
    assert gauge["kecamatan"] == "Reok"
    assert gauge["dev_eui"] is not None
    assert gauge["metrics"] == ["water_level", "river_flow", "battery"]


def test_list_table_and_help_examples(runner: CliRunner) -> None:
    table = runner.invoke(app, ["devices", "list"])
    assert table.exit_code == 0
    assert "rtg-aq-01" in table.output
    for command in (["devices", "list", "--help"], ["devices", "check", "--help"]):
        assert "Example: kotaflow devices" in runner.invoke(app, command).output
