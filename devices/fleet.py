"""The catalogue and the registry together: what every consumer of device data loads.

``load_fleet(settings)`` reads ``settings.catalogue_file`` and ``settings.registry_file``
(falling back to the packaged ``devices/catalogue.yaml`` and sample
``devices/registry.yaml``), validates both and returns one immutable :class:`Fleet`. The
decoders, the validate stage, the alert helpers and the simulator share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devices.catalogue import Catalogue, DeviceType, Metric, load_catalogue
from devices.registry import Device, Registry, load_registry
from kotaflow.settings import Settings


@dataclass(frozen=True, slots=True)
class Fleet:
    catalogue: Catalogue
    registry: Registry

    def device(self, device_id: str) -> Device | None:
        return self.registry.get(device_id)

    def type_of(self, device: Device) -> DeviceType:
        return self.catalogue.types[device.type]

    def metrics_of(self, device: Device) -> Mapping[str, Metric]:
        """The metrics ``device`` reports (its type's), by name."""
        return self.catalogue.types[device.type].metrics


def load_fleet(
    settings: Settings | None = None,
    *,
    catalogue_file: Path | None = None,
    registry_file: Path | None = None,
) -> Fleet:
    """Load catalogue and registry; explicit paths win over settings, settings over packaged.

    Raises ``devices.sourcefile.DeviceFileError`` naming file, line and field of each problem.
    """
    catalogue_path = catalogue_file or (settings.catalogue_file if settings else None)
    registry_path = registry_file or (settings.registry_file if settings else None)
    catalogue = load_catalogue(catalogue_path)
    return Fleet(catalogue, load_registry(catalogue, registry_path))
