"""Onboarding: ``devices add`` and ``devices import`` edit the registry file safely."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devices.credentials import CREDENTIALS_FILE
from devices.fleet import load_fleet
from devices.registry import PACKAGED_REGISTRY

GOOD = {
    "type": "weather",
    "name": "Imported site",
    "kecamatan": "Ruteng",
    "latitude": "-8.6",
    "longitude": "120.4",
    "elevation_m": "1000",
    "install_date": "2026-11-01",
}


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(PACKAGED_REGISTRY.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def kotaflow(*args: str) -> Any:
    from kotaflow.cli import app

    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    fields = sorted({k for r in rows for k in r})
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_import_adds_the_good_rows_and_reports_the_bad(registry: Path, tmp_path: Path) -> None:
    rows = [{**GOOD, "id": f"imp-{i:02d}"} for i in range(20)]
    rows.insert(3, {**GOOD, "id": "imp-bad-type", "type": "no_such_type"})
    rows.insert(9, {**GOOD, "id": "imp-bad-lat", "latitude": "-98.6"})
    rows.append({**GOOD, "id": "imp-bad-kec", "kecamatan": "Atlantis"})
    source = write_csv(tmp_path / "new.csv", rows)
    before = len(load_fleet(registry_file=registry).registry)
    broker = tmp_path / "broker"

    result = kotaflow(
        "devices", "import", str(source), "--registry", str(registry),
        "--credentials-dir", str(broker), "--json",
    )  # fmt: skip

    assert result.exit_code == 1  # some rows are errors
    outcomes = json.loads(result.stdout)["results"]
    errors = {r["device"]: r["reason"] for r in outcomes if r["result"] == "error"}
    assert set(errors) == {"imp-bad-type", "imp-bad-lat", "imp-bad-kec"}
    assert "no_such_type" in errors["imp-bad-type"]
    assert "latitude" in errors["imp-bad-lat"]
    assert "Atlantis" in errors["imp-bad-kec"]
    assert sum(r["result"] == "added" for r in outcomes) == 20
    fleet = load_fleet(registry_file=registry)
    assert len(fleet.registry) == before + 20
    assert all(fleet.device(f"imp-{i:02d}") is not None for i in range(20))
    assert fleet.device("imp-bad-kec") is None
    accounts = json.loads((broker / CREDENTIALS_FILE).read_text(encoding="utf-8"))["accounts"]
    assert {f"imp-{i:02d}" for i in range(20)} <= set(accounts)

    again = kotaflow(
        "devices", "import", str(source), "--registry", str(registry),
        "--credentials-dir", str(broker), "--json",
    )  # fmt: skip
    repeated = json.loads(again.stdout)["results"]
    assert sum(r["result"] == "unchanged" for r in repeated) == 20
    assert len(load_fleet(registry_file=registry).registry) == before + 20


def test_add_keeps_comments_and_order(registry: Path, tmp_path: Path) -> None:
    original = registry.read_text(encoding="utf-8")
    result = kotaflow(
        "devices", "add", "rtg-wx-77", "--type", "weather", "--name", "Pasar Baru",
        "--kecamatan", "Ruteng", "--latitude", "-8.61", "--longitude", "120.46",
        "--elevation-m", "1160", "--install-date", "2026-12-01", "--dev-eui",
        "0011223344556677", "--registry", str(registry),
        "--credentials-dir", str(tmp_path / "broker"), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = registry.read_text(encoding="utf-8")
    assert text.startswith(original)  # every comment, entry and quote as it was
    assert '    dev_eui: "0011223344556677"' in text.splitlines()
    device = load_fleet(registry_file=registry).device("rtg-wx-77")
    assert device is not None
    assert device.dev_eui == "0011223344556677"
    connection = json.loads(result.stdout)
    assert connection["password"]
    assert set(connection["example_payload"]["values"]) >= {"temperature", "humidity"}


def test_add_refuses_an_invalid_device_and_leaves_the_file(registry: Path) -> None:
    original = registry.read_text(encoding="utf-8")
    result = kotaflow(
        "devices", "add", "rtg-wx-78", "--type", "weather", "--name", "x",
        "--kecamatan", "Atlantis", "--latitude", "-8.61", "--longitude", "120.46",
        "--elevation-m", "1160", "--registry", str(registry),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Atlantis" in result.output
    assert registry.read_text(encoding="utf-8") == original


def test_add_asks_for_what_the_flags_do_not_give(registry: Path, tmp_path: Path) -> None:
    from kotaflow.cli import app

    answers = "weather\nPasar Baru\nRuteng\n-8.61\n120.46\n1160\n"
    result = CliRunner().invoke(
        app,
        ["devices", "add", "rtg-wx-79", "--registry", str(registry),
         "--credentials-dir", str(tmp_path / "broker")],
        input=answers,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    device = load_fleet(registry_file=registry).device("rtg-wx-79")
    assert device is not None
    assert (device.type, device.kecamatan, device.elevation_m) == ("weather", "Ruteng", 1160)


def test_add_and_import_name_a_missing_registry_file_without_a_traceback(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no-such-registry.yaml"
    added = kotaflow(
        "devices", "add", "rtg-wx-80", "--type", "weather", "--name", "x",
        "--kecamatan", "Ruteng", "--latitude", "-8.61", "--longitude", "120.46",
        "--elevation-m", "1160", "--registry", str(missing),
    )  # fmt: skip
    source = write_csv(tmp_path / "new.csv", [{**GOOD, "id": "imp-x"}])
    imported = kotaflow("devices", "import", str(source), "--registry", str(missing))
    for result in (added, imported):
        assert result.exit_code == 1
        assert "no-such-registry.yaml" in result.output
        assert "cannot read" in result.output
    assert not missing.exists()


def test_adding_a_registered_device_again_prints_its_password(
    registry: Path, tmp_path: Path
) -> None:
    args = (
        "devices", "add", "rtg-wx-81", "--type", "weather", "--name", "Pasar Baru",
        "--kecamatan", "Ruteng", "--latitude", "-8.61", "--longitude", "120.46",
        "--elevation-m", "1160", "--install-date", "2026-12-01", "--registry", str(registry),
        "--credentials-dir", str(tmp_path / "broker"), "--json",
    )  # fmt: skip
    first = json.loads(kotaflow(*args).stdout)
    again = kotaflow(*args)
    assert again.exit_code == 0, again.output
    connection = json.loads(again.stdout)
    assert connection["result"] == "unchanged"
    assert connection["password"] == first["password"]
