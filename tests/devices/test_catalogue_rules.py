"""Catalogue semantics: unit conversions, ranges, aliases, unit->metric lookups."""

from __future__ import annotations

import pytest

from devices.catalogue import Catalogue, load_catalogue


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def canonical(catalogue: Catalogue, metric: str, value: float, unit: str) -> float:
    factor, offset = catalogue.metrics[metric].conversions[unit]
    return value * factor + offset


@pytest.mark.parametrize(
    ("metric", "value", "unit", "expected"),
    [
        ("temperature", 212.0, "degF", 100.0),
        ("temperature", -40.0, "degF", -40.0),
        ("temperature", 273.15, "K", 0.0),
        ("pressure", 101_325.0, "Pa", 1013.25),
        ("pressure", 88.0, "kPa", 880.0),
        ("wind_speed", 36.0, "km/h", 10.0),
        ("water_level", 1.25, "m", 125.0),
        ("rain", 1.0, "in", 25.4),
        ("flow", 3.6, "m3/h", 1.0),
        ("water_pressure", 250.0, "kPa", 2.5),
        ("energy", 1500.0, "Wh", 1.5),
        ("humidity", 0.42, "/", 42.0),
        ("co2", 0.0004, "/", 400.0),
    ],
)
def test_conversions_reach_the_canonical_unit(
    catalogue: Catalogue, metric: str, value: float, unit: str, expected: float
) -> None:
    assert canonical(catalogue, metric, value, unit) == pytest.approx(expected)


def test_every_type_declares_interval_and_ranges(catalogue: Catalogue) -> None:
    for device_type in catalogue.types.values():
        assert device_type.interval_s > 0
        for metric in device_type.metrics.values():
            assert metric.minimum < metric.maximum


def test_units_identify_a_metric_only_when_unambiguous(catalogue: Catalogue) -> None:
    air = catalogue.types["air_quality"]
    assert air.by_unit["Cel"].name == "temperature"
    assert "ug/m3" not in air.by_unit  # pm25, pm10, no2 and o3 all use it
    assert catalogue.types["streetlight"].by_unit["V"].name == "voltage"
    assert catalogue.types["weather"].lookup["temp"].name == "temperature"
