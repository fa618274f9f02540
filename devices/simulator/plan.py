"""Who takes part in a simulation: which registry devices publish, in which format, how.

* devices: the registry's enabled devices, narrowed by ``--devices`` globs on id or type,
  minus those that cannot speak the chosen format (ChirpStack needs a DevEUI);
* behind an edge (``--behind-edge``): the devices matching ``--edge-devices`` (globs on id,
  type or kecamatan; none given: all) publish to the edge's local broker. A ``gateway``
  device there is left out: the edge itself reports as its gateway (edge/report.py);
* format: the chosen one, or with ``mixed`` each device its own: a device registered on
  The Things Stack (``tts_device_id``) uses TTS, another LoRaWAN device (DevEUI)
  ChirpStack, the rest native JSON or SenML (a coin per device, from the seed);
* silent devices: the ``silent`` share of the selection, which then sends nothing;
* wire units: a SenML device states a unit on every value, and about one metric in four
  uses an accepted non-canonical unit (degF, Pa, km/h, ...) to exercise the conversions.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from devices.catalogue import DeviceType
from devices.fleet import Fleet
from devices.registry import Device
from devices.simulator.faults import silent_devices
from devices.simulator.noise import key_of, uniform
from devices.simulator.options import FormatChoice, SimulationOptions
from devices.simulator.signals import Site
from kotaflow.wire.raw import PayloadFormat

_FORMATS: Mapping[FormatChoice, PayloadFormat] = MappingProxyType(
    {
        FormatChoice.NATIVE: PayloadFormat.NATIVE_JSON,
        FormatChoice.SENML: PayloadFormat.SENML_JSON,
        FormatChoice.CHIRPSTACK: PayloadFormat.CHIRPSTACK_V4,
        FormatChoice.TTS: PayloadFormat.TTS_V3,
    }
)

# Non-canonical units real devices use, per canonical unit (only those the catalogue
# converts are ever picked).
_ALTERNATE_UNITS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "Cel": ("K", "degF"),
        "%RH": ("/",),
        "hPa": ("Pa", "kPa", "mbar"),
        "m/s": ("km/h", "kn"),
        "cm": ("m", "mm"),
        "m3/s": ("l/s",),
        "ug/m3": ("mg/m3",),
        "l/s": ("m3/h", "l/min"),
        "bar": ("kPa", "psi"),
        "W": ("kW",),
        "kWh": ("Wh",),
        "V": ("mV",),
        "A": ("mA",),
    }
)
_ALTERNATE_UNIT_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class WireUnit:
    """A non-canonical unit a device sends a metric in: canonical = sent * factor + offset."""

    unit: str
    factor: float
    offset: float


@dataclass(frozen=True, slots=True)
class SimDevice:
    device: Device
    type: DeviceType
    format: PayloadFormat
    site: Site
    units: Mapping[str, WireUnit]
    behind_edge: bool = False
    """Publishes to the edge's local broker, not the central one."""

    @property
    def id(self) -> str:
        return self.device.id


@dataclass(frozen=True, slots=True)
class DevicePlan:
    devices: tuple[SimDevice, ...]
    """The devices that publish."""
    silent: tuple[str, ...]
    excluded: tuple[str, ...]
    """Selected devices that cannot use the chosen format, or gateways behind the edge."""

    def natural_rate(self) -> float:
        """Readings per second when every publishing device reports at its interval."""
        return sum(len(d.type.metrics) / d.type.interval_s for d in self.devices)

    def target_rate(self, options: SimulationOptions) -> float:
        """``--rate``, else the natural rate sped up by ``--time-scale``."""
        return options.rate or self.natural_rate() * options.time_scale


class PlanError(ValueError):
    """The options select no device that can publish."""


def plan_devices(fleet: Fleet, options: SimulationOptions) -> DevicePlan:
    chosen = [d for d in fleet.registry if d.enabled and _selected(d, options.devices)]
    if not chosen:
        raise PlanError(f"no enabled device matches --devices {','.join(options.devices)}")
    able = [d for d in chosen if _can_speak(d, options.format)]
    if not able:
        raise PlanError(f"none of the {len(chosen)} selected devices can send {options.format}")
    behind = _behind_edge(able, options)
    able = [d for d in able if not (d.id in behind and d.type == GATEWAY_TYPE)]
    excluded = tuple(d.id for d in chosen if d not in able)
    silent = silent_devices([d.id for d in able], options.faults.silent, options.seed)
    devices = tuple(
        _sim_device(fleet, d, options, d.id in behind) for d in able if d.id not in silent
    )
    return DevicePlan(devices, tuple(sorted(silent)), excluded)


GATEWAY_TYPE = "gateway"


def _behind_edge(able: list[Device], options: SimulationOptions) -> set[str]:
    if options.behind_edge is None:
        return set()
    patterns = options.edge_devices
    behind = {
        d.id
        for d in able
        if not patterns
        or any(fnmatch.fnmatchcase(d.kecamatan, p) or _selected(d, (p,)) for p in patterns)
    }
    if not behind - {d.id for d in able if d.type == GATEWAY_TYPE}:
        raise PlanError(f"--edge-devices {','.join(patterns)} matches no selected device")
    return behind


def _selected(device: Device, patterns: tuple[str, ...]) -> bool:
    return not patterns or any(
        fnmatch.fnmatchcase(device.id, p) or fnmatch.fnmatchcase(device.type, p) for p in patterns
    )


def _can_speak(device: Device, choice: FormatChoice) -> bool:
    return choice is not FormatChoice.CHIRPSTACK or device.dev_eui is not None


def format_of(device: Device, choice: FormatChoice, seed: int) -> PayloadFormat:
    if choice is not FormatChoice.MIXED:
        return _FORMATS[choice]
    if device.tts_device_id:
        return PayloadFormat.TTS_V3
    if device.dev_eui:
        return PayloadFormat.CHIRPSTACK_V4
    coin = uniform(key_of(seed, "format", device.id))
    return PayloadFormat.SENML_JSON if coin < 0.5 else PayloadFormat.NATIVE_JSON


def _sim_device(
    fleet: Fleet, device: Device, options: SimulationOptions, behind_edge: bool = False
) -> SimDevice:
    fmt = format_of(device, options.format, options.seed)
    device_type = fleet.type_of(device)
    units: dict[str, WireUnit] = {}
    if fmt is PayloadFormat.SENML_JSON:
        for metric in device_type.metrics.values():
            key = key_of(options.seed, "unit", device.id, metric.name)
            candidates = [u for u in _ALTERNATE_UNITS.get(metric.unit, ()) if metric.accepts(u)]
            if candidates and uniform(key) < _ALTERNATE_UNIT_SHARE:
                unit = candidates[int(uniform(key, 1) * len(candidates))]
                factor, offset = metric.conversions[unit]
                units[metric.name] = WireUnit(unit, factor, offset)
    return SimDevice(
        device=device,
        type=device_type,
        format=fmt,
        site=Site.of(device, options.seed),
        units=MappingProxyType(units),
        behind_edge=behind_edge,
    )
