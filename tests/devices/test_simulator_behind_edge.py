"""``--behind-edge`` / ``--edge-devices`` in the plan: who publishes to the edge's broker
(pure; the real run is tests/edge/test_simulate_behind_edge.py)."""

from __future__ import annotations

import pytest

from devices.fleet import Fleet, load_fleet
from devices.simulator.options import OptionsError, SimulationOptions, broker_address
from devices.simulator.plan import PlanError, plan_devices

EDGE = ("127.0.0.1", 1884)


@pytest.fixture(scope="module")
def packaged() -> Fleet:
    return load_fleet()


def test_edge_devices_are_chosen_by_kecamatan_id_or_type(packaged: Fleet) -> None:
    options = SimulationOptions(behind_edge=EDGE, edge_devices=("Reok", "nrg-*", "noise"))
    plan = plan_devices(packaged, options)
    behind = {d.id for d in plan.devices if d.behind_edge}
    expected = {
        d.id
        for d in packaged.registry
        if d.enabled
        and d.type != "gateway"
        and (d.kecamatan == "Reok" or d.id.startswith("nrg-") or d.type == "noise")
    }
    assert behind == expected
    assert {d.id for d in plan.devices} >= {d.id for d in packaged.registry if d.type == "noise"}


def test_a_gateway_behind_the_edge_is_left_to_the_edge(packaged: Fleet) -> None:
    plan = plan_devices(packaged, SimulationOptions(behind_edge=EDGE, edge_devices=("Reok",)))
    assert "reo-gw-01" in plan.excluded
    assert "reo-gw-01" not in {d.id for d in plan.devices}
    assert "nrg-gw-01" in {d.id for d in plan.devices if not d.behind_edge}


def test_without_edge_devices_every_device_is_behind_the_edge(packaged: Fleet) -> None:
    plan = plan_devices(packaged, SimulationOptions(devices=("rtg-*",), behind_edge=EDGE))
    assert plan.devices
    assert all(d.behind_edge for d in plan.devices)
    nothing = plan_devices(packaged, SimulationOptions(devices=("rtg-*",)))
    assert not any(d.behind_edge for d in nothing.devices)


def test_edge_devices_matching_nothing_is_refused(packaged: Fleet) -> None:
    options = SimulationOptions(devices=("rtg-*",), behind_edge=EDGE, edge_devices=("Reok",))
    with pytest.raises(PlanError, match="--edge-devices Reok matches no selected device"):
        plan_devices(packaged, options)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:1884", ("127.0.0.1", 1884)), ("edge.local:1883", ("edge.local", 1883)),
     ("[::1]:1883", ("::1", 1883))],
)  # fmt: skip
def test_broker_address(text: str, expected: tuple[str, int]) -> None:
    assert broker_address(text) == expected


@pytest.mark.parametrize("text", ["127.0.0.1", ":1883", "host:0", "host:http", "host:70000"])
def test_a_bad_edge_address_names_the_flag(text: str) -> None:
    with pytest.raises(OptionsError, match="--behind-edge must be HOST:PORT"):
        broker_address(text)


def test_edge_devices_need_an_edge() -> None:
    with pytest.raises(OptionsError, match="--edge-devices needs --behind-edge"):
        SimulationOptions(edge_devices=("Reok",))
