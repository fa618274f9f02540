"""Per-device calibration: ``calibrated = raw * scale + offset``, from the registry.

Decoders deliver values in canonical units, uncalibrated; the validate stage applies this
(pure) function so a calibration change needs no decoder change and replays stay exact.
"""

from __future__ import annotations

from devices.reading import Reading
from devices.registry import Calibration, Device


def calibrate(value: float, calibration: Calibration) -> float:
    """The one formula: ``value * scale + offset``."""
    return value * calibration.scale + calibration.offset


def apply_calibration(reading: Reading, device: Device) -> Reading:
    """``reading`` with ``device``'s calibration for its metric applied (same object if none)."""
    calibration = device.calibration.get(reading.metric)
    if calibration is None:
        return reading
    return reading._replace(value=calibrate(reading.value, calibration))
