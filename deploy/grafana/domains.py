"""Which device types make up each domain dashboard, and how some metrics are read.

One line per domain; a test fails when a catalogue type belongs to no domain, so a new
device type cannot silently miss its dashboard.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from deploy.grafana.i18n import Text
from devices.catalogue import Catalogue, DeviceType


@dataclass(frozen=True, slots=True)
class Domain:
    name: str
    """Part of the dashboard uid: ``kotaflow-<name>``."""
    title: Text
    description: Text
    types: tuple[str, ...]
    latest: tuple[str, ...] = ()
    """Metrics shown side by side per device at the top, from each one's latest report
    (the edge gateways' backlog: one row per edge)."""


DOMAINS: tuple[Domain, ...] = (
    Domain(
        "air",
        Text("Kualitas udara", "Air quality"),
        Text(
            "Partikulat dan gas di stasiun kualitas udara, dengan kategori ISPU.",
            "Particulates and gases at the air-quality stations, with ISPU categories.",
        ),
        ("air_quality",),
    ),
    Domain(
        "weather",
        Text("Cuaca dan hujan", "Weather and rain"),
        Text(
            "Stasiun cuaca otomatis dan penakar hujan, dengan kelas intensitas hujan BMKG.",
            "Automatic weather stations and rain gauges, with BMKG rainfall classes.",
        ),
        ("weather", "rain_gauge"),
    ),
    Domain(
        "rivers",
        Text("Tinggi muka air sungai", "River levels"),
        Text(
            "Sensor radar di jembatan; status Waspada / Siaga / Awas sesuai aturan peringatan.",
            "Radar gauges on bridges; Waspada / Siaga / Awas status as the alert rules set it.",
        ),
        ("river_level",),
    ),
    Domain(
        "water",
        Text("Air bersih (PDAM)", "Water supply (PDAM)"),
        Text(
            "Debit, tekanan dan pemakaian harian di jaringan PDAM.",
            "Flow, pressure and daily consumption in the PDAM network.",
        ),
        ("water_meter",),
    ),
    Domain(
        "noise",
        Text("Kebisingan", "Noise"),
        Text(
            "Tingkat kebisingan dibandingkan dengan baku mutu KepMenLH 48/1996.",
            "Noise levels against the KepMenLH 48/1996 limits.",
        ),
        ("noise",),
    ),
    Domain(
        "energy",
        Text("Energi dan penerangan jalan", "Energy and street lighting"),
        Text(
            "Lampu jalan: status nyala, daya, energi harian, tegangan dan arus.",
            "Street lights: lamp state, power, daily energy, voltage and current.",
        ),
        ("streetlight",),
    ),
    Domain(
        "edge",
        Text("Gateway edge", "Edge gateways"),
        Text(
            "Gateway simpan-dan-teruskan di kecamatan: antrean (pesan, byte, umur tertua), "
            "tautan ke pusat, laju kirim. Gateway senyap: tautan putus atau gateway mati.",
            "Store-and-forward gateways in the kecamatan: backlog (messages, bytes, oldest "
            "age), central link, forward rate. A silent gateway: its link or the gateway is down.",
        ),
        ("gateway",),
        latest=("queue_messages", "queue_bytes", "oldest_age", "budget_used", "link_uptime"),
    ),
)

HEADLINE: Mapping[str, str] = MappingProxyType(
    {
        "air_quality": "pm25",
        "weather": "temperature",
        "rain_gauge": "rain_rate",
        "river_level": "water_level",
        "noise": "laeq",
        "water_meter": "water_pressure",
        "streetlight": "power",
        "gateway": "queue_messages",
    }
)
"""The metric the city map shows per device type (else the type's first metric)."""

COUNTERS = frozenset({"volume", "energy"})
"""Cumulative meter indexes: shown as their daily increase, not their level."""


def headline(device_type: DeviceType) -> str:
    chosen = HEADLINE.get(device_type.name, "")
    return chosen if chosen in device_type.metrics else next(iter(device_type.metrics))


def domain_metrics(catalogue: Catalogue, domain: Domain) -> list[str]:
    """The domain's metrics in catalogue order, each once."""
    seen: dict[str, None] = {}
    for type_name in domain.types:
        for metric in catalogue.types[type_name].metrics:
            seen.setdefault(metric, None)
    return list(seen)


def uncovered_types(catalogue: Catalogue) -> set[str]:
    return set(catalogue.types) - {t for d in DOMAINS for t in d.types}
