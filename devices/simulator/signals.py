"""What each metric of a simulated device reads at a given instant: one model per metric.

A model is a pure function of an :class:`Instant` (the regency's :class:`Climate`, the
device's :class:`Site`, the time, and the time since the device's previous report). The
shapes, in WITA local time:

* weather: diurnal temperature (13-24 degC in Ruteng, lower up the mountains), humidity
  inverse to it, pressure with its tide, monsoon/trade winds, afternoon storms;
* rain gauges: rain rate in bursts during storms, rain depth since the previous report;
* rivers: the stage rises a few hours after a storm (a unit hydrograph scaled by the storm's
  depth) and recedes over a day; discharge from a rating curve;
* air quality: PM2.5/PM10, NO2, CO and CO2 peak at the traffic hours (07-08, 17-19), rain
  washes particles out, ozone peaks after midday, dry-season burning raises the background;
* noise: quiet nights (~40 dBA), busy days, loudest at the traffic hours, rain on roofs;
* water supply: morning and evening demand peaks, pressure falling as flow rises, a
  cumulative meter index;
* streetlights: on from 18:00 to 06:00 (timer), power, mains voltage sagging at the evening
  peak, current, a cumulative energy index;
* battery voltage slowly falling from the install date;
* edge gateways: the uplink down now and then for an hour or two (more in wet weather),
  the queue growing meanwhile (what ``kotaflow edge`` reports about itself).

Cumulative meters (``volume``, ``energy``) are integrals in closed form, so they never run
backwards even for late readings computed out of order. Metrics with no model here (a
user's own catalogue) get a flat mid-range signal; a test keeps the packaged catalogue
fully modelled.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from types import MappingProxyType
from typing import Generic, TypeVar

from devices.catalogue import Metric
from devices.registry import Device
from devices.simulator.climate import (
    DAY_S,
    WITA_OFFSET_S,
    Climate,
    Weather,
    lapse,
    local_day,
    local_hour,
    pressure_factor,
)
from devices.simulator.noise import between, key_of, smooth, uniform

T = TypeVar("T")

_LAMP_OFF_H = 6.0
_LAMP_ON_H = 18.0
"""Streetlight controllers run on a timer: on at 18:00, off at 06:00 (each a few minutes off)."""
_STANDBY_W = 3.0
_BASEFLOW_DECAY_S = 36 * 3600.0


@dataclass(frozen=True, slots=True)
class Site:
    """A device's place and quirks: everything its signals depend on besides the weather."""

    device_id: str
    elevation_m: float
    install_t: float
    key: int
    lapse_c: float
    pressure_factor: float
    traffic: float
    """How exposed the site is to traffic (air quality, noise): 0.5 quiet .. 1.6 busy."""
    rain_factor: float
    wind_factor: float
    noise_offset_db: float
    river_base_cm: float
    river_gain_cm_per_mm: float
    river_lag_s: float
    rating_m3_s: float
    water_mean_l_s: float
    water_static_bar: float
    volume_start_m3: float
    lamp_watts: float
    energy_start_kwh: float
    timer_skew_h: float
    battery_fresh_v: float
    battery_drain_v_per_day: float

    @classmethod
    def of(cls, device: Device, seed: int) -> Site:
        key = key_of(seed, "site", device.id)
        return cls(
            device_id=device.id,
            elevation_m=device.elevation_m,
            install_t=_install_time(device.install_date),
            key=key,
            lapse_c=lapse(device.elevation_m),
            pressure_factor=pressure_factor(device.elevation_m),
            traffic=between(key, 1, 0.5, 1.6),
            rain_factor=between(key, 2, 0.7, 1.3),
            wind_factor=between(key, 3, 0.7, 1.3),
            noise_offset_db=between(key, 4, -4.0, 6.0),
            river_base_cm=between(key, 5, 25.0, 60.0),
            river_gain_cm_per_mm=between(key, 6, 0.8, 2.5),
            river_lag_s=between(key, 7, 2.0, 6.0) * 3600.0,
            rating_m3_s=between(key, 8, 4.0, 30.0),
            water_mean_l_s=between(key, 9, 4.0, 40.0),
            water_static_bar=between(key, 10, 3.0, 5.5),
            volume_start_m3=between(key, 11, 1.0e4, 5.0e5),
            lamp_watts=between(key, 12, 400.0, 1500.0),
            energy_start_kwh=between(key, 13, 100.0, 5000.0),
            timer_skew_h=between(key, 14, -4.0, 4.0) / 60.0,
            battery_fresh_v=between(key, 15, 3.55, 3.68),
            battery_drain_v_per_day=between(key, 16, 0.0002, 0.0006),
        )


def _install_time(day: date) -> float:
    return datetime.combine(day, time(), UTC).timestamp() - WITA_OFFSET_S


class _once(Generic[T]):  # noqa: N801 - used like @property
    """A cached property without ``functools.cached_property``'s lock (hot path)."""

    def __init__(self, compute: Callable[[Instant], T]) -> None:
        self._compute = compute
        self._name = compute.__name__

    def __get__(self, instant: Instant, owner: type[Instant]) -> T:
        value = self._compute(instant)
        instant.__dict__[self._name] = value
        return value


class Instant:
    """One device at one moment. Shared intermediates are computed at most once."""

    def __init__(self, climate: Climate, site: Site, t: float, dt: float) -> None:
        self.climate = climate
        self.site = site
        self.t = t
        self.dt = dt
        """Seconds since the device's previous report (for rain depth)."""
        self.weather: Weather = climate.at(t)

    def wander(self, salt: int, period: float) -> float:
        """Smooth per-device noise in [-1, 1]."""
        return smooth(self.site.key ^ salt, self.t, period)

    @property
    def hour(self) -> float:
        return self.weather.hour

    @property
    def wetness(self) -> float:
        return self.weather.wetness

    @property
    def dry_season(self) -> float:
        return self.weather.dry_season

    @_once
    def temperature(self) -> float:
        return self.weather.temperature + self.site.lapse_c + 0.3 * self.wander(0x54, 900.0)

    @_once
    def humidity(self) -> float:
        return min(100.0, self.weather.humidity + 1.5 * self.wander(0x48, 600.0))

    @_once
    def traffic(self) -> float:
        """Traffic intensity, 0.1 at night .. ~1.3 at the rush hours."""
        h = self.hour
        daytime = 0.4 * math.exp(-(((h - 13.5) / 5.5) ** 4))
        rush = math.exp(-(((h - 7.5) / 0.55) ** 2)) + math.exp(-(((h - 18.0) / 0.85) ** 2))
        return 0.08 + daytime + rush

    @_once
    def water_level(self) -> float:
        return _river_stage(self)

    @_once
    def flow(self) -> float:
        return _water_flow(self)

    @_once
    def lamp_on(self) -> bool:
        h = (self.hour - self.site.timer_skew_h) % 24.0
        return h >= _LAMP_ON_H or h < _LAMP_OFF_H

    @_once
    def voltage(self) -> float:
        evening_peak = math.exp(-(((self.hour - 19.5) / 1.8) ** 2))
        return 223.0 - 9.0 * evening_peak + 3.0 * self.wander(0x56, 1800.0)

    @_once
    def power(self) -> float:
        if not self.lamp_on:
            return _STANDBY_W
        return (
            self.site.lamp_watts
            * math.pow(self.voltage / 220.0, 1.2)
            * (1.0 + 0.01 * self.wander(0x70, 60))
        )

    @_once
    def laeq(self) -> float:
        return _sound_level(self)

    @_once
    def pm25(self) -> float:
        return _fine_particles(self)

    def site_rain_rate(self, t: float) -> float:
        rate = self.climate.at(t).rain_rate * self.site.rain_factor
        rate *= 1.0 + 0.25 * smooth(self.site.key ^ 0x52, t, 120.0)
        return rate if rate >= 0.05 else 0.0


MetricModel = Callable[[Instant], float]


# --- weather -------------------------------------------------------------------------


def _pressure(i: Instant) -> float:
    return i.weather.sea_level_hpa * i.site.pressure_factor + 0.15 * i.wander(0x50, 1800.0)


def _wind_speed(i: Instant) -> float:
    return max(0.0, i.weather.wind_speed * i.site.wind_factor + 0.4 * i.wander(0x57, 60.0))


def _wind_direction(i: Instant) -> float:
    return (i.weather.wind_direction + 15.0 * i.wander(0x44, 120.0)) % 360.0


def _rain_rate(i: Instant) -> float:
    return i.site_rain_rate(i.t)


def _rain(i: Instant) -> float:
    """Depth since the previous report: the rate at mid-interval times the interval."""
    return i.site_rain_rate(i.t - i.dt / 2.0) * i.dt / 3600.0


# --- rivers --------------------------------------------------------------------------


def _river_stage(i: Instant) -> float:
    site = i.site
    base = site.river_base_cm * (0.55 + 0.45 * (1.0 - i.dry_season))
    rise = 0.0
    for storm in i.climate.storms_near(i.t, days_back=4):
        since = i.t - storm.start
        if since <= 0:
            continue
        x = since / site.river_lag_s
        # Unit hydrograph (peak 1 at the lag) plus a slow baseflow tail.
        response = math.pow(x, 1.5) * math.exp(1.5 * (1.0 - x)) + 0.15 * math.exp(
            -since / (36 * 3600.0)
        )
        rise += site.river_gain_cm_per_mm * site.rain_factor * storm.depth_mm * response
    return base + rise + 1.2 * i.wander(0x4C, 1800.0)


def _river_flow(i: Instant) -> float:
    level_m = max(i.water_level, 0.0) / 100.0
    return i.site.rating_m3_s * math.pow(level_m, 1.7)


# --- air quality ---------------------------------------------------------------------


def _fine_particles(i: Instant) -> float:
    background = 7.0 + 11.0 * i.dry_season
    cooking = 5.0 * math.exp(-(((i.hour - 18.5) / 1.0) ** 2))
    value = background * (1.0 - 0.6 * i.wetness) + 32.0 * i.site.traffic * i.traffic + cooking
    return max(1.0, value * (1.0 + 0.12 * i.wander(0x25, 300.0)))


def _pm10(i: Instant) -> float:
    return i.pm25 * (1.5 + 0.4 * (1.0 - i.wetness)) + 2.0 * (1.0 + i.wander(0x10, 300.0))


def _co2(i: Instant) -> float:
    inversion = math.exp(-(((i.hour - 4.0) / 2.5) ** 2))
    return 417.0 + 45.0 * i.site.traffic * i.traffic + 25.0 * inversion + 4.0 * i.wander(0xC2, 300)


def _no2(i: Instant) -> float:
    return max(1.0, 6.0 + 40.0 * i.site.traffic * i.traffic + 3.0 * i.wander(0x42, 300.0))


def _o3(i: Instant) -> float:
    sunny = math.exp(-(((i.hour - 13.5) / 2.5) ** 2)) * (1.0 - 0.5 * i.wetness)
    titration = 5.0 * i.site.traffic * i.traffic
    return max(2.0, 12.0 + 50.0 * sunny - titration + 3.0 * i.wander(0x03, 600.0))


def _co(i: Instant) -> float:
    return max(0.05, 0.15 + 1.4 * i.site.traffic * i.traffic + 0.05 * i.wander(0xC0, 300.0))


# --- noise ---------------------------------------------------------------------------


def _sound_level(i: Instant) -> float:
    activity = 12.0 * math.exp(-(((i.hour - 13.5) / 6.0) ** 4))
    rain_on_roofs = min(6.0, i.site_rain_rate(i.t) / 3.0)
    value = 38.0 + activity + 18.0 * i.traffic * math.sqrt(i.site.traffic) + i.site.noise_offset_db
    return value + rain_on_roofs + 1.5 * i.wander(0x4E, 60.0)


def _lamax(i: Instant) -> float:
    spike = uniform(i.site.key ^ 0x4D, int(i.t // 60)) ** 3  # a motorbike now and then
    return i.laeq + 8.0 + 16.0 * spike + 1.5 * i.wander(0x4F, 30.0)


# --- water supply --------------------------------------------------------------------

# Relative demand at each hour 0..24 (24 == 0), mean 1 over the day: the morning peak
# (bathing, cooking) is the highest, the evening one second, the night lowest.
_DEMAND = (
    0.35, 0.3, 0.3, 0.35, 0.6, 1.3, 1.9, 1.8, 1.4, 1.1, 1.0, 1.0,
    1.05, 1.0, 0.9, 0.95, 1.2, 1.55, 1.6, 1.3, 1.0, 0.75, 0.55, 0.4, 0.35,
)  # fmt: skip
_DEMAND_MEAN = sum((a + b) / 2 for a, b in itertools.pairwise(_DEMAND)) / 24.0
_DEMAND_CUMULATIVE = tuple(
    sum((a + b) / 2 for a, b in itertools.pairwise(_DEMAND[: k + 1])) / _DEMAND_MEAN
    for k in range(25)
)
"""Integral of the normalised demand from midnight to each hour, in hours."""


def _demand(hour: float) -> float:
    k = int(hour)
    frac = hour - k
    return (_DEMAND[k] + (_DEMAND[k + 1] - _DEMAND[k]) * frac) / _DEMAND_MEAN


def _demand_hours(t: float) -> float:
    """Integral of the normalised demand from the epoch to ``t``, in hours (closed form)."""
    day = local_day(t)
    h = local_hour(t)
    k = int(h)
    a, frac = _DEMAND[k], h - k
    partial = (a * frac + (_DEMAND[k + 1] - a) * frac * frac / 2.0) / _DEMAND_MEAN
    return day * 24.0 + _DEMAND_CUMULATIVE[k] + partial


def _water_flow(i: Instant) -> float:
    return max(0.0, i.site.water_mean_l_s * _demand(i.hour) * (1.0 + 0.06 * i.wander(0xF1, 300)))


def _water_pressure(i: Instant) -> float:
    load = i.flow / i.site.water_mean_l_s
    return max(0.2, i.site.water_static_bar - 0.4 * load * load + 0.05 * i.wander(0xB4, 120.0))


def _volume(i: Instant) -> float:
    hours = _demand_hours(i.t) - _demand_hours(i.site.install_t)
    return i.site.volume_start_m3 + i.site.water_mean_l_s * 3.6 * max(0.0, hours)


# --- streetlights --------------------------------------------------------------------


def _lit_hours(t: float, skew_h: float) -> float:
    """Hours lit from the epoch to ``t`` under the 18:00-06:00 timer (closed form)."""
    shifted = t - skew_h * 3600.0
    day = local_day(shifted)
    h = local_hour(shifted)
    today = min(h, _LAMP_OFF_H) + max(0.0, h - _LAMP_ON_H)
    return day * (24.0 - _LAMP_ON_H + _LAMP_OFF_H) + today


def _current(i: Instant) -> float:
    return i.power / i.voltage


def _energy(i: Instant) -> float:
    site = i.site
    lit = _lit_hours(i.t, site.timer_skew_h) - _lit_hours(site.install_t, site.timer_skew_h)
    elapsed_h = max(0.0, (i.t - site.install_t) / 3600.0)
    lit = min(max(0.0, lit), elapsed_h)
    return site.energy_start_kwh + (site.lamp_watts * lit + _STANDBY_W * (elapsed_h - lit)) / 1000


# --- device health -------------------------------------------------------------------


def _battery(i: Instant) -> float:
    days = max(0.0, (i.t - i.site.install_t) / DAY_S)
    cold = 0.004 * (15.0 - i.temperature)
    value = i.site.battery_fresh_v - i.site.battery_drain_v_per_day * days - cold
    return min(3.7, max(2.9, value + 0.003 * i.wander(0xBA, 600.0)))


GATEWAY_MESSAGE_BYTES = 200.0
"""About what one queued device message costs an edge (docs/edge.md, sizing)."""
GATEWAY_BUDGET_BYTES = float(1 << 30)


def _uplink_down(i: Instant) -> float:
    """Share of the time an edge's uplink is down: now and then for an hour or two, more
    often in wet weather (storms take GSM/radio links down)."""
    slow = i.wander(0x6A, 2 * 3600.0)
    return min(1.0, max(0.0, slow - 0.55) / 0.45 * (0.6 + 0.4 * i.wetness))


def _gateway_queue(i: Instant) -> float:
    """Messages waiting: a backlog that grows while the uplink is down, a few in flight."""
    return float(round(600.0 * _uplink_down(i) + 2.0 * (1.0 + i.wander(0x6B, 120.0))))


def _gateway_forward_rate(i: Instant) -> float:
    return (1.0 - _uplink_down(i)) * (0.1 + 0.03 * (1.0 + i.wander(0x6C, 600.0)))


MODELS: Mapping[str, MetricModel] = MappingProxyType(
    {
        "temperature": lambda i: i.temperature,
        "humidity": lambda i: i.humidity,
        "pressure": _pressure,
        "wind_speed": _wind_speed,
        "wind_direction": _wind_direction,
        "rain_rate": _rain_rate,
        "rain": _rain,
        "water_level": lambda i: i.water_level,
        "river_flow": _river_flow,
        "pm25": lambda i: i.pm25,
        "pm10": _pm10,
        "co2": _co2,
        "no2": _no2,
        "o3": _o3,
        "co": _co,
        "laeq": lambda i: i.laeq,
        "lamax": _lamax,
        "flow": lambda i: i.flow,
        "water_pressure": _water_pressure,
        "volume": _volume,
        "lamp_on": lambda i: 1.0 if i.lamp_on else 0.0,
        "power": lambda i: i.power,
        "voltage": lambda i: i.voltage,
        "current": _current,
        "energy": _energy,
        "battery": _battery,
        "queue_messages": _gateway_queue,
        "queue_bytes": lambda i: _gateway_queue(i) * GATEWAY_MESSAGE_BYTES,
        "oldest_age": lambda i: 1.0 + 3600.0 * _uplink_down(i),
        "budget_used": lambda i: (
            100.0 * _gateway_queue(i) * GATEWAY_MESSAGE_BYTES / GATEWAY_BUDGET_BYTES
        ),
        "link_uptime": lambda i: 100.0 * (1.0 - _uplink_down(i)),
        "link_drops": lambda i: float(round(3.0 * _uplink_down(i))),
        "forward_rate": _gateway_forward_rate,
        "receive_rate": lambda i: 0.1 + 0.03 * (1.0 + i.wander(0x6D, 600.0)),
        "refused": lambda _i: 0.0,
    }
)
"""Every modelled metric, by catalogue name."""


def _flat(metric: Metric) -> MetricModel:
    span = metric.maximum - metric.minimum

    def model(i: Instant) -> float:
        return metric.minimum + span * (0.3 + 0.05 * i.wander(key_of(metric.name) & 0xFFFF, 600))

    return model


def sample(
    climate: Climate, site: Site, metrics: Iterable[Metric], t: float, dt: float
) -> dict[str, float]:
    """The true values of ``metrics`` at ``t``, each inside its physical range."""
    instant = Instant(climate, site, t, dt)
    values: dict[str, float] = {}
    for metric in metrics:
        model = MODELS.get(metric.name) or _flat(metric)
        value = model(instant)
        values[metric.name] = min(metric.maximum, max(metric.minimum, value))
    return values
