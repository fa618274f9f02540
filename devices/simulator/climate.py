"""The weather over Manggarai regency, as pure functions of time: what every device shares.

Ruteng sits at about 1,200 m on Flores; its climate is cool and wet (WITA = UTC+8):

* temperature follows the sun: coldest just before sunrise (~06:00, 13-16 degC), warmest
  early afternoon (~14:00, 22-24 degC), colder at altitude (-6.5 degC per km);
* the wet season (November-April) brings afternoon convective storms most days, the dry
  season (June-September) only a few; a storm is 1-4 rain cells (bursts) over 0.5-3 h;
* rain cools the air and saturates it, and leaves the ground (and rivers) wet for hours;
* station pressure is the sea-level pressure reduced for altitude plus the semidiurnal
  atmospheric tide (+/-1 hPa, peaks near 10:00 and 22:00);
* the wind blows from the west-north-west in the wet-season monsoon and from the
  east-south-east in the dry-season trades, strongest in the afternoon.

Each day's weather (min/max temperature, storms, pressure level) is drawn from the seed and
the day number, so any instant can be computed on its own and a run replays exactly.
Times are Unix seconds (UTC); :func:`local_hour` converts to WITA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from devices.simulator.noise import between, key_of, normal, smooth, uniform

WITA_OFFSET_S = 8 * 3600
DAY_S = 86400
REFERENCE_ELEVATION_M = 1200.0
"""Ruteng's elevation: the monthly temperatures below are for it."""
LAPSE_RATE_C_PER_M = 0.0065

# Month (1-12) -> (mean daily minimum, mean daily maximum) in Ruteng, degC.
_MONTHLY_TEMPERATURE = (
    (16.0, 22.5),
    (16.0, 22.5),
    (16.0, 23.0),
    (15.5, 23.5),
    (15.0, 23.5),
    (14.0, 23.0),
    (13.0, 22.5),
    (13.0, 23.0),
    (14.0, 24.0),
    (15.0, 24.5),
    (16.0, 24.0),
    (16.0, 23.0),
)
# Month -> chance of an afternoon storm on a given day.
_MONTHLY_STORM_CHANCE = (0.8, 0.8, 0.75, 0.55, 0.3, 0.15, 0.1, 0.08, 0.12, 0.3, 0.6, 0.8)
_WET_MONTHS = frozenset((11, 12, 1, 2, 3, 4))
_WETNESS_DECAY_S = 2 * 3600.0
_SUNRISE_H = 6.0
_WARMEST_H = 14.0


def local_hour(t: float) -> float:
    """Hour of the day in WITA, 0 <= h < 24."""
    return ((t + WITA_OFFSET_S) % DAY_S) / 3600.0


def local_day(t: float) -> int:
    """Day number (days since 1970-01-01 in WITA)."""
    return int((t + WITA_OFFSET_S) // DAY_S)


def day_start(day: int) -> float:
    """Unix time of local midnight starting ``day``."""
    return day * DAY_S - WITA_OFFSET_S


def month_of(day: int) -> int:
    """Calendar month (1-12) of a local day number."""
    # Civil-from-days (H. Hinnant), avoiding datetime on the hot path.
    z = day + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    return mp + 3 if mp < 10 else mp - 9


def wet_season_weight(day: int) -> float:
    """1 deep in the wet season (January), 0 deep in the dry season (July), smooth between."""
    return 0.5 + 0.5 * math.cos(2.0 * math.pi * ((day % 365.25) - 15.0) / 365.25)


@dataclass(frozen=True, slots=True)
class RainCell:
    """One burst of a storm: Gaussian in time, ``peak_mm_h`` at ``centre``."""

    centre: float
    width_s: float
    peak_mm_h: float

    def rate(self, t: float) -> float:
        z = (t - self.centre) / self.width_s
        return self.peak_mm_h * math.exp(-z * z) if -4.0 < z < 4.0 else 0.0

    @property
    def depth_mm(self) -> float:
        """Total rain of the cell: the integral of its rate."""
        return self.peak_mm_h * self.width_s * math.sqrt(math.pi) / 3600.0


@dataclass(frozen=True, slots=True)
class Storm:
    start: float
    end: float
    cells: tuple[RainCell, ...]

    @property
    def depth_mm(self) -> float:
        return sum(c.depth_mm for c in self.cells)

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2.0


@dataclass(frozen=True, slots=True)
class DayWeather:
    day: int
    t_min: float
    t_max: float
    sea_level_hpa: float
    storms: tuple[Storm, ...]
    wet: bool


@dataclass(frozen=True, slots=True)
class Weather:
    """The regional weather at one instant (at Ruteng's elevation); sites adjust it."""

    hour: float
    temperature: float
    humidity: float
    sea_level_hpa: float
    wind_speed: float
    wind_direction: float
    rain_rate: float
    """mm/h over the regency; a site scales it by its own factor."""
    wetness: float
    """0 (dry for hours) .. 1 (raining now): how wet the air and ground are."""
    dry_season: float
    """0 deep in the wet season .. 1 deep in the dry season."""


class Climate:
    """The regency's weather for one seed.

    Days are drawn on demand; :meth:`at` snapshots are cached per :data:`RESOLUTION_S`
    bucket, since the weather does not change between two readings seconds apart and many
    devices ask for the same instant (both caches are bounded).
    """

    RESOLUTION_S = 10.0
    _CACHE_DAYS = 64
    _CACHE_SNAPSHOTS = 4096

    def __init__(self, seed: int) -> None:
        self._key = key_of(seed, "climate")
        self._days: dict[int, DayWeather] = {}
        self._snapshots: dict[int, Weather] = {}

    def at(self, t: float) -> Weather:
        """The weather at ``t`` (to :data:`RESOLUTION_S`)."""
        bucket = int(t // self.RESOLUTION_S)
        found = self._snapshots.get(bucket)
        if found is None:
            if len(self._snapshots) >= self._CACHE_SNAPSHOTS:
                self._snapshots.clear()
            found = self._snapshots[bucket] = self._weather(bucket * self.RESOLUTION_S)
        return found

    def day(self, day: int) -> DayWeather:
        found = self._days.get(day)
        if found is None:
            if len(self._days) >= self._CACHE_DAYS:
                self._days.clear()
            found = self._days[day] = self._draw_day(day)
        return found

    def _draw_day(self, day: int) -> DayWeather:
        key = key_of(self._key, day)
        month = month_of(day)
        t_min, t_max = _MONTHLY_TEMPERATURE[month - 1]
        storms: list[Storm] = []
        if uniform(key, 1) < _MONTHLY_STORM_CHANCE[month - 1]:
            storms.append(self._draw_storm(key, day, afternoon=True))
            if month in _WET_MONTHS and uniform(key, 2) < 0.15:
                storms.append(self._draw_storm(key_of(key, "night"), day, afternoon=False))
        rainy = bool(storms)
        return DayWeather(
            day=day,
            t_min=t_min + 0.8 * normal(key, 3) + (0.6 if rainy else -0.4),
            t_max=t_max + 0.9 * normal(key, 4) - (1.5 if rainy else 0.0),
            sea_level_hpa=1010.0 + 1.5 * normal(key, 5) - (1.0 if rainy else 0.0),
            storms=tuple(storms),
            wet=month in _WET_MONTHS,
        )

    @staticmethod
    def _draw_storm(key: int, day: int, afternoon: bool) -> Storm:
        start_h = between(key, 10, 12.5, 17.5) if afternoon else between(key, 10, 0.5, 4.0)
        duration = between(key, 11, 0.5, 3.0) * 3600.0
        start = day_start(day) + start_h * 3600.0
        # Storm intensity is heavy-tailed: median ~10 mm/h, the odd one near 80 mm/h.
        intensity = min(90.0, 10.0 * math.exp(0.8 * normal(key, 12)))
        cells = []
        for i in range(1 + int(uniform(key, 13) * 4)):
            cells.append(
                RainCell(
                    centre=start + duration * between(key, 20 + i, 0.1, 0.9),
                    width_s=duration * between(key, 30 + i, 0.08, 0.25),
                    peak_mm_h=intensity * between(key, 40 + i, 0.3, 1.0),
                )
            )
        return Storm(start, start + duration, tuple(cells))

    def storms_near(self, t: float, days_back: int = 1) -> list[Storm]:
        """Storms of the day of ``t`` and ``days_back`` days before (those that can matter)."""
        today = local_day(t)
        out: list[Storm] = []
        for d in range(today - days_back, today + 1):
            out.extend(self.day(d).storms)
        return out

    def _weather(self, t: float) -> Weather:
        storms = self.storms_near(t)
        rain_rate = sum(c.rate(t) for s in storms for c in s.cells)
        wetness = _wetness(storms, t)
        h = local_hour(t)
        today = self.day(local_day(t))
        temperature = self._temperature(today, h, t, wetness)
        span = max(today.t_max - today.t_min, 1.0)
        warmth = (temperature - today.t_min) / span
        humidity = 96.0 - 34.0 * warmth + 10.0 * wetness + 2.0 * smooth(self._key ^ 0x48, t, 900)
        tide = 1.1 * math.cos(4.0 * math.pi * (h - 10.0) / 24.0)
        drift = 0.8 * smooth(self._key ^ 0x50, t, 6 * 3600.0)
        afternoon = math.exp(-(((h - 14.0) / 3.5) ** 2))
        gust_front = 3.0 * min(1.0, rain_rate / 20.0)
        speed = (2.0 if today.wet else 3.0) * (0.45 + 0.9 * afternoon) + gust_front
        speed += 0.8 * smooth(self._key ^ 0x57, t, 600.0)
        prevailing = 290.0 if today.wet else 115.0
        return Weather(
            hour=h,
            temperature=temperature,
            humidity=min(100.0, max(30.0, humidity)),
            sea_level_hpa=today.sea_level_hpa + tide + drift,
            wind_speed=max(0.0, speed),
            wind_direction=(prevailing + 35.0 * smooth(self._key ^ 0x44, t, 3600.0)) % 360.0,
            rain_rate=rain_rate,
            wetness=wetness,
            dry_season=1.0 - wet_season_weight(today.day),
        )

    def _temperature(self, today: DayWeather, h: float, t: float, wetness: float) -> float:
        """Air temperature at Ruteng's elevation, degC."""
        if _SUNRISE_H <= h < _WARMEST_H:  # warming: half a cosine from min to max
            phase = (h - _SUNRISE_H) / (_WARMEST_H - _SUNRISE_H)
            base = today.t_min + (today.t_max - today.t_min) * (1 - math.cos(math.pi * phase)) / 2
        else:  # cooling from a max to the next morning's min over 16 h
            if h >= _WARMEST_H:
                peak, low = today.t_max, self.day(today.day + 1).t_min
                phase = (h - _WARMEST_H) / (24.0 - _WARMEST_H + _SUNRISE_H)
            else:
                peak, low = self.day(today.day - 1).t_max, today.t_min
                phase = (h + 24.0 - _WARMEST_H) / (24.0 - _WARMEST_H + _SUNRISE_H)
            base = low + (peak - low) * (1 + math.cos(math.pi * phase)) / 2
        cooling = (2.5 if _SUNRISE_H <= h < 19.0 else 0.5) * wetness
        return base - cooling + 0.4 * smooth(self._key ^ 0x7E, t, 1800.0)


def _wetness(storms: list[Storm], t: float) -> float:
    wet = 0.0
    for storm in storms:
        if storm.start <= t <= storm.end:
            return 1.0
        if t > storm.end:
            wet = max(wet, math.exp(-(t - storm.end) / _WETNESS_DECAY_S))
    return wet


def lapse(elevation_m: float) -> float:
    """Temperature difference from Ruteng's, degC, at ``elevation_m``."""
    return LAPSE_RATE_C_PER_M * (REFERENCE_ELEVATION_M - elevation_m)


def pressure_factor(elevation_m: float) -> float:
    """Station pressure / sea-level pressure at ``elevation_m`` (standard atmosphere)."""
    return math.pow(1.0 - 0.0065 * elevation_m / 288.15, 5.255)
