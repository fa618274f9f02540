"""The fleet watcher: an edited registry is taken up without a restart, a bad edit never."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devices.registry import PACKAGED_REGISTRY
from devices.watch import FleetWatcher
from kotaflow.settings import Settings

NEW_DEVICE = """\
  - id: rtg-aq-99
    type: air_quality
    name: "Added while running"
    kecamatan: Ruteng
    latitude: -8.6
    longitude: 120.46
    elevation_m: 1100
    install_date: 2026-12-01
"""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(PACKAGED_REGISTRY.read_text(encoding="utf-8"), encoding="utf-8")
    return path


def touch_later(path: Path, text: str) -> None:
    """Write ``text`` with a modification time surely different from the last one."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_added_device_is_taken_up_at_the_next_check(registry: Path) -> None:
    clock = Clock()
    watch = FleetWatcher(Settings(registry_file=registry), check_every_s=2.0, clock=clock)
    assert watch.fleet.device("rtg-aq-99") is None
    touch_later(registry, registry.read_text(encoding="utf-8") + NEW_DEVICE)
    assert watch.poll() is None  # not time to look yet
    clock.now = 2.0
    fleet = watch.poll()
    assert fleet is not None
    assert fleet.device("rtg-aq-99") is not None
    assert watch.fleet is fleet
    assert (watch.reloads, watch.refusals) == (1, 0)
    clock.now = 4.0
    assert watch.poll() is None  # unchanged files: nothing reloaded


def test_bad_edit_keeps_the_registry_in_force(registry: Path) -> None:
    clock = Clock()
    watch = FleetWatcher(Settings(registry_file=registry), check_every_s=1.0, clock=clock)
    before = watch.fleet
    touch_later(registry, registry.read_text(encoding="utf-8") + NEW_DEVICE.replace("Ruteng", ""))
    clock.now = 1.0
    assert watch.poll() is None
    assert watch.fleet is before
    assert watch.refusals == 1
    clock.now = 2.0
    assert watch.poll() is None
    assert watch.refusals == 1  # refused once per change, not at every look


def test_request_reloads_at_once(registry: Path) -> None:
    clock = Clock()
    watch = FleetWatcher(Settings(registry_file=registry), check_every_s=60.0, clock=clock)
    watch.request()
    assert watch.poll() is not None


@pytest.mark.asyncio
async def test_follow_hands_each_new_fleet_on(registry: Path) -> None:
    import asyncio

    from devices.watch import follow

    watch = FleetWatcher(Settings(registry_file=registry), check_every_s=0.05)
    stop = asyncio.Event()
    seen: list[int] = []

    def changed(fleet: object) -> None:
        seen.append(1)
        stop.set()

    edited = PACKAGED_REGISTRY.read_text(encoding="utf-8") + NEW_DEVICE
    task = asyncio.create_task(follow(watch, changed, stop))
    await asyncio.to_thread(touch_later, registry, edited)
    await asyncio.wait_for(task, 10)
    assert seen == [1]
    assert watch.fleet.device("rtg-aq-99") is not None
