"""The simulator's signal models look like Manggarai: pure, seeded, no services.

Each test samples the packaged sample registry's devices over simulated days and checks
the shape the issue asks for (diurnal highland temperature, afternoon wet-season storms,
rivers rising after rain, traffic-hour PM2.5, ...), never exact numbers.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from devices.fleet import Fleet, load_fleet
from devices.simulator.climate import Climate, local_hour
from devices.simulator.signals import MODELS, Instant, Site, sample

SEED = 7
WITA = timedelta(hours=8)
HOUR = 3600.0


@pytest.fixture(scope="module")
def packaged() -> Fleet:
    return load_fleet()


def local_midnight(year: int, month: int, day: int) -> float:
    """Unix time of 00:00 WITA on that date."""
    return (datetime(year, month, day, tzinfo=UTC) - WITA).timestamp()


def series(
    fleet: Fleet, device_id: str, start: float, hours: float, step_s: float, seed: int = SEED
) -> Iterator[tuple[float, dict[str, float]]]:
    """(time, values) of a device every ``step_s`` (the step is also its report interval)."""
    device = fleet.registry.by_id[device_id]
    climate, site = Climate(seed), Site.of(device, seed)
    metrics = list(fleet.metrics_of(device).values())
    t = start
    while t < start + hours * HOUR:
        yield t, sample(climate, site, metrics, t, step_s)
        t += step_s


def hourly_means(points: list[tuple[float, float]]) -> dict[int, float]:
    by_hour: dict[int, list[float]] = {}
    for t, value in points:
        by_hour.setdefault(int(local_hour(t)), []).append(value)
    return {h: statistics.fmean(v) for h, v in by_hour.items()}


def test_every_packaged_metric_has_a_signal_model(packaged: Fleet) -> None:
    assert set(packaged.catalogue.metrics) <= set(MODELS)


def test_models_stay_inside_physical_ranges_without_clamping(packaged: Fleet) -> None:
    climate = Climate(SEED)
    start = local_midnight(2027, 1, 10)
    for device in packaged.registry:
        site = Site.of(device, SEED)
        for step in range(0, 3 * 24 * 4):  # three wet-season days, every 15 min
            instant = Instant(climate, site, start + step * 900.0, 300.0)
            for metric in packaged.metrics_of(device).values():
                value = MODELS[metric.name](instant)
                assert metric.minimum <= value <= metric.maximum, (device.id, metric.name, value)


def test_ruteng_temperature_is_coldest_before_dawn_and_warmest_early_afternoon(
    packaged: Fleet,
) -> None:
    lows, highs, low_hours, high_hours = [], [], [], []
    for day in range(10):
        start = local_midnight(2027, 8, 1) + day * 24 * HOUR
        points = [(t, v["temperature"]) for t, v in series(packaged, "rtg-wx-02", start, 24, 600)]
        coldest = min(points, key=lambda p: p[1])
        warmest = max(points, key=lambda p: p[1])
        lows.append(coldest[1])
        highs.append(warmest[1])
        low_hours.append(local_hour(coldest[0]))
        high_hours.append(local_hour(warmest[0]))
    assert 11.0 <= statistics.fmean(lows) <= 17.0
    assert 20.0 <= statistics.fmean(highs) <= 26.0
    assert all(3.0 <= h <= 8.0 for h in low_hours), low_hours
    assert all(11.0 <= h <= 16.5 for h in high_hours), high_hours


def test_temperature_falls_with_altitude(packaged: Fleet) -> None:
    start = local_midnight(2027, 3, 5)
    coast = statistics.fmean(
        v["temperature"] for _, v in series(packaged, "reo-wx-01", start, 48, 900)
    )
    town = statistics.fmean(
        v["temperature"] for _, v in series(packaged, "rtg-wx-02", start, 48, 900)
    )
    # Reo (6 m) and Ruteng (1,172 m): about 6.5 degC per km.
    assert 6.0 <= coast - town <= 9.0


def test_humidity_moves_against_temperature(packaged: Fleet) -> None:
    start = local_midnight(2027, 7, 12)
    points = list(series(packaged, "rtg-wx-01", start, 72, 900))
    correlation = statistics.correlation(
        [v["temperature"] for _, v in points], [v["humidity"] for _, v in points]
    )
    assert correlation < -0.7
    assert all(30.0 <= v["humidity"] <= 100.0 for _, v in points)


def test_wet_season_brings_afternoon_storms_and_the_dry_season_few() -> None:
    climate = Climate(SEED)

    def storm_days(month: int) -> list[int]:
        first = int(local_midnight(2027, month, 1) // 86400) + 1
        return [len(climate.day(d).storms) for d in range(first, first + 28)]

    wet, dry = storm_days(1), storm_days(7)
    assert sum(1 for n in wet if n) >= 14
    assert sum(1 for n in dry if n) <= 7
    first = int(local_midnight(2027, 1, 1) // 86400) + 1
    afternoon = [
        local_hour(storm.start)
        for d in range(first, first + 60)
        for storm in climate.day(d).storms[:1]  # the first storm of a day is the convective one
    ]
    assert afternoon
    assert all(12.0 <= h <= 18.0 for h in afternoon)


def test_rain_gauge_depth_adds_up_to_the_rain_rate(packaged: Fleet) -> None:
    start = local_midnight(2027, 1, 14)
    points = list(series(packaged, "rtg-rg-01", start, 24 * 5, 300))
    depth = sum(v["rain"] for _, v in points)
    integral = sum(v["rain_rate"] * 300 / 3600 for _, v in points)
    assert depth > 5.0, "five wet-season days without rain at all"
    assert depth == pytest.approx(integral, rel=0.15)
    rates = [v["rain_rate"] for _, v in points]
    assert max(rates) > 5.0  # bursts
    assert sum(1 for r in rates if r == 0.0) > len(rates) / 2  # but mostly dry


def test_river_rises_hours_after_a_storm_and_recedes(packaged: Fleet) -> None:
    climate = Climate(SEED)
    first = int(local_midnight(2027, 1, 1) // 86400) + 1
    day = next(
        d
        for d in range(first + 3, first + 365)
        if climate.day(d).storms
        and climate.day(d).storms[0].depth_mm > 10.0
        and not any(climate.day(d + k).storms for k in (-1, 1, 2))
    )
    storm = climate.day(day).storms[0]
    before = storm.start - 2 * HOUR
    points = [(t, v["water_level"]) for t, v in series(packaged, "reo-rl-02", before, 60, 600)]
    base = points[0][1]
    peak_t, peak = max(points, key=lambda p: p[1])
    assert peak - base > 10.0, "a >10 mm storm should raise the river by >10 cm"
    assert storm.start + 0.5 * HOUR <= peak_t <= storm.end + 8 * HOUR
    late = [level for t, level in points if t > peak_t + 36 * HOUR]
    assert max(late) < base + (peak - base) * 0.4, "the river should recede within a day"
    flows = [v["river_flow"] for _, v in series(packaged, "reo-rl-02", peak_t, 0.2, 600)]
    assert flows[0] > 0.0


def test_pm25_peaks_at_the_traffic_hours(packaged: Fleet) -> None:
    start = local_midnight(2027, 8, 2)  # dry season: little washout
    points = [(t, v["pm25"]) for t, v in series(packaged, "rtg-aq-01", start, 24 * 7, 600)]
    mean = hourly_means(points)
    rush = statistics.fmean([mean[7], mean[17], mean[18]])
    assert rush > 2.0 * statistics.fmean([mean[2], mean[3]])
    assert rush > 1.5 * statistics.fmean([mean[11], mean[12], mean[13]])


def test_noise_is_quiet_at_night_and_loudest_at_rush_hours(packaged: Fleet) -> None:
    start = local_midnight(2027, 5, 3)
    points = [(t, v["laeq"]) for t, v in series(packaged, "rtg-ns-02", start, 24 * 3, 300)]
    mean = hourly_means(points)
    assert mean[2] < 48.0
    assert mean[7] > 58.0
    assert mean[18] > 58.0
    assert max(mean, key=lambda h: mean[h]) in (7, 8, 17, 18, 19)
    lamax = [v["lamax"] for _, v in series(packaged, "rtg-ns-02", start, 24, 300)]
    laeq = [v["laeq"] for _, v in series(packaged, "rtg-ns-02", start, 24, 300)]
    assert all(mx > eq for mx, eq in zip(lamax, laeq, strict=True))


def test_water_demand_peaks_morning_and_evening_and_pressure_dips(packaged: Fleet) -> None:
    start = local_midnight(2027, 4, 20)
    points = list(series(packaged, "rtg-wm-02", start, 24 * 3, 900))
    flow = hourly_means([(t, v["flow"]) for t, v in points])
    pressure = hourly_means([(t, v["water_pressure"]) for t, v in points])
    assert max(flow, key=lambda h: flow[h]) in (5, 6, 7)
    assert flow[18] > 1.3 * flow[12] > 1.3 * flow[3]
    assert min(pressure, key=lambda h: pressure[h]) in (5, 6, 7)
    volumes = [v["volume"] for _, v in points]
    assert all(b > a for a, b in itertools.pairwise(volumes))


def test_streetlights_are_lit_at_night_only(packaged: Fleet) -> None:
    start = local_midnight(2027, 6, 10)
    points = list(series(packaged, "rtg-sl-01", start, 48, 900))
    for t, v in points:
        h = local_hour(t)
        if h >= 18.2 or h < 5.8:
            assert v["lamp_on"] == 1.0, h
            assert v["power"] > 300.0, h
        elif 6.2 <= h < 17.8:
            assert v["lamp_on"] == 0.0, h
            assert v["power"] < 10.0, h
        assert v["current"] == pytest.approx(v["power"] / v["voltage"])
    energy = [v["energy"] for _, v in points]
    assert all(b >= a for a, b in itertools.pairwise(energy))
    night = energy[4 * 6] - energy[0]  # 00:00-06:00
    day = energy[4 * 17] - energy[4 * 7]  # 07:00-17:00
    assert night > 20 * day


def test_signals_are_a_function_of_seed_and_time(packaged: Fleet) -> None:
    start = local_midnight(2027, 2, 1)
    one = list(series(packaged, "rtg-aq-02", start, 6, 300, seed=1))
    again = list(series(packaged, "rtg-aq-02", start, 6, 300, seed=1))
    other = list(series(packaged, "rtg-aq-02", start, 6, 300, seed=2))
    assert one == again
    assert one != other
    # Random access: a single instant computed alone equals the same instant in a series.
    device = packaged.registry.by_id["rtg-aq-02"]
    t, values = one[17]
    alone = sample(Climate(1), Site.of(device, 1), packaged.metrics_of(device).values(), t, 300)
    assert alone == values
