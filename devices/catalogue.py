"""The device catalogue: which device types exist and what each metric means.

The catalogue (``devices/catalogue.yaml``, or ``settings.catalogue_file``) defines, once:

* ``conversions``: for each canonical unit, the other units it accepts and how to convert
  them (``canonical = value * factor + offset``, e.g. ``degF -> Cel``);
* ``metrics``: each metric's canonical unit (SenML / RFC 8798 names where they exist), its
  physical valid range and whether it is a boolean (0/1) metric;
* ``types``: each device type's metrics and expected reporting interval.

The YAML is validated with pydantic once, at load; the result is compiled into plain,
frozen lookups (:class:`Metric`, :class:`DeviceType`) that the decoders use on the hot path
without any per-reading model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from devices.sourcefile import DeviceFileError, Problem, SourceFile, pydantic_problems, read_yaml

PACKAGED_CATALOGUE = Path(__file__).with_name("catalogue.yaml")

MetricName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
UnitName = Annotated[str, Field(min_length=1, max_length=32)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _nonzero(value: float) -> float:
    if value == 0:
        raise ValueError("must not be 0: every value would become the offset")
    return value


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Multiplier = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_nonzero)]
"""The ``k`` of ``value * k + offset`` (unit conversions here, calibrations in the registry)."""


class UnitConversion(_Strict):
    """``canonical = value * factor + offset``."""

    factor: Multiplier
    offset: FiniteFloat = 0.0


class MetricSpec(_Strict):
    unit: str = Field(max_length=32, description="canonical unit; empty for 0/1 metrics")
    description: str
    min: FiniteFloat
    max: FiniteFloat
    boolean: bool = False
    aliases: list[str] = Field(
        default_factory=list, description="other names devices use, e.g. temp, pm2_5"
    )


class DeviceTypeSpec(_Strict):
    description: str
    interval_s: int = Field(gt=0, description="expected reporting interval")
    metrics: list[MetricName] = Field(min_length=1)


class CatalogueSpec(_Strict):
    """The catalogue file as written (version 1)."""

    version: Literal[1]
    conversions: dict[UnitName, dict[UnitName, UnitConversion]] = {}
    metrics: dict[MetricName, MetricSpec]
    types: dict[MetricName, DeviceTypeSpec]


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric, compiled for the hot path."""

    name: str
    unit: str
    description: str
    minimum: float
    maximum: float
    boolean: bool
    conversions: Mapping[str, tuple[float, float]]
    """Accepted non-canonical unit -> (factor, offset)."""

    def accepts(self, unit: str) -> bool:
        return unit == self.unit or unit in self.conversions

    @property
    def accepted_units(self) -> tuple[str, ...]:
        return (self.unit, *sorted(self.conversions))


@dataclass(frozen=True, slots=True)
class DeviceType:
    name: str
    description: str
    interval_s: int
    metrics: Mapping[str, Metric]
    """Canonical metric name -> metric."""
    lookup: Mapping[str, Metric]
    """Canonical names and aliases -> metric (what decoders look names up in)."""
    by_unit: Mapping[str, Metric]
    """Unit -> the one metric of this type that accepts it (ambiguous units left out).

    Lets a SenML record that names only its device (RFC 8428 examples do) still say which
    metric it carries, through its unit."""


@dataclass(frozen=True, slots=True)
class Catalogue:
    """All device types and metrics; build it with :func:`load_catalogue`."""

    types: Mapping[str, DeviceType]
    metrics: Mapping[str, Metric]
    source: str

    def type(self, name: str) -> DeviceType:
        """The device type ``name``; KeyError if the catalogue has none."""
        return self.types[name]


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Load and validate a catalogue (the packaged one when ``path`` is None).

    Raises :class:`DeviceFileError` listing every problem with file and line.
    """
    source = read_yaml(path or PACKAGED_CATALOGUE)
    catalogue, problems = check_catalogue(source)
    if catalogue is None:
        raise DeviceFileError(problems)
    return catalogue


def check_catalogue(source: SourceFile) -> tuple[Catalogue | None, list[Problem]]:
    """Validate a parsed catalogue file: the catalogue if valid, and every problem found."""
    problems = source.duplicate_problems()
    try:
        spec = CatalogueSpec.model_validate(source.data)
    except ValidationError as err:
        return None, problems + pydantic_problems(source, err)
    problems += _cross_check(spec, source)
    if problems:
        return None, sorted(problems, key=lambda p: p.line)
    return _compile(spec, str(source.path)), []


def _cross_check(spec: CatalogueSpec, source: SourceFile) -> list[Problem]:
    problems = []
    for unit, accepted in spec.conversions.items():
        if unit in accepted:
            problems.append(
                source.problem(("conversions", unit, unit), "a unit cannot convert to itself")
            )
    for name, metric in spec.metrics.items():
        if not metric.min < metric.max:
            problems.append(source.problem(("metrics", name, "min"), "min must be below max"))
        if metric.boolean and (metric.min, metric.max) != (0, 1):
            problems.append(
                source.problem(("metrics", name, "boolean"), "a boolean metric ranges 0..1")
            )
    names: dict[str, str] = {}
    for name, metric in spec.metrics.items():
        for index, alias in enumerate(metric.aliases):
            owner = names.get(alias) or (alias if alias in spec.metrics else None)
            if owner is not None:
                problems.append(
                    source.problem(
                        ("metrics", name, "aliases", index),
                        f"alias {alias!r} is already the name or an alias of {owner!r}",
                    )
                )
            names[alias] = name
    for type_name, device_type in spec.types.items():
        seen: set[str] = set()
        for index, metric_name in enumerate(device_type.metrics):
            where = ("types", type_name, "metrics", index)
            if metric_name not in spec.metrics:
                problems.append(
                    source.problem(where, f"unknown metric {metric_name!r} (not under metrics:)")
                )
            if metric_name in seen:
                problems.append(source.problem(where, f"metric {metric_name!r} listed twice"))
            seen.add(metric_name)
    return problems


def _compile(spec: CatalogueSpec, source: str) -> Catalogue:
    metrics = {
        name: Metric(
            name=name,
            unit=m.unit,
            description=m.description,
            minimum=m.min,
            maximum=m.max,
            boolean=m.boolean,
            conversions=MappingProxyType(
                {u: (c.factor, c.offset) for u, c in spec.conversions.get(m.unit, {}).items()}
            ),
        )
        for name, m in spec.metrics.items()
    }
    types = {name: _compile_type(name, t, metrics, spec.metrics) for name, t in spec.types.items()}
    return Catalogue(MappingProxyType(types), MappingProxyType(metrics), source)


def _compile_type(
    name: str,
    spec: DeviceTypeSpec,
    metrics: Mapping[str, Metric],
    metric_specs: Mapping[str, MetricSpec],
) -> DeviceType:
    own = {m: metrics[m] for m in spec.metrics}
    lookup = dict(own)
    for metric_name in spec.metrics:
        for alias in metric_specs[metric_name].aliases:
            lookup[alias] = own[metric_name]
    claims: dict[str, list[Metric]] = {}
    for metric in own.values():
        for unit in metric.accepted_units:
            if unit:
                claims.setdefault(unit, []).append(metric)
    by_unit = {unit: found[0] for unit, found in claims.items() if len(found) == 1}
    return DeviceType(
        name=name,
        description=spec.description,
        interval_s=spec.interval_s,
        metrics=MappingProxyType(own),
        lookup=MappingProxyType(lookup),
        by_unit=MappingProxyType(by_unit),
    )
