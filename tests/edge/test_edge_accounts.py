"""The central side's edge accounts, from the registry: exactly the kecamatan's topics."""

from __future__ import annotations

from pathlib import Path

from devices.catalogue import load_catalogue
from devices.credentials import acl_text, edge_account, edge_topics, write_broker_files
from devices.registry import load_registry
from kotaflow.mqtt import read_credentials


def test_an_edge_account_is_named_by_its_kecamatan() -> None:
    assert edge_account("Satar Mese Barat") == "kotaflow-edge-satar-mese-barat"
    assert edge_account("Langke Rembong") == "kotaflow-edge-langke-rembong"


def test_an_edge_may_publish_exactly_its_kecamatans_device_topics() -> None:
    registry = load_registry(load_catalogue())
    topics = edge_topics(registry)
    for device in registry:
        mine = topics.get(edge_account(device.kecamatan), [])
        own = f"kotaflow/{device.id}/telemetry"
        if device.enabled:
            assert own in mine
        for account, others in topics.items():
            if account != edge_account(device.kecamatan):
                assert own not in others
    lora = next(d for d in registry if d.dev_eui is not None and d.enabled)
    assert f"application/+/device/{lora.dev_eui}/event/up" in topics[edge_account(lora.kecamatan)]
    text = acl_text(registry)
    block = text.split(f"user {edge_account(lora.kecamatan)}\n")[1].split("\n\n")[0]
    assert all(line.startswith("topic write ") for line in block.splitlines())


def test_edge_accounts_get_passwords_with_the_device_accounts(tmp_path: Path) -> None:
    registry = load_registry(load_catalogue())
    write_broker_files(registry, tmp_path)
    accounts = read_credentials(tmp_path / "credentials.json")
    assert set(edge_topics(registry)) <= set(accounts)
    passwd = (tmp_path / "passwd").read_text()
    assert all(f"{a}:$7$" in passwd for a in edge_topics(registry))


def test_an_edge_may_publish_as_its_own_gateway_and_no_other() -> None:
    registry = load_registry(load_catalogue())
    topics = edge_topics(registry)
    gateways = [d for d in registry if d.type == "gateway" and d.enabled]
    assert gateways, "the sample registry has gateway devices"
    for gateway in gateways:
        own = f"kotaflow/{gateway.id}/telemetry"
        for account, allowed in topics.items():
            assert (own in allowed) == (account == edge_account(gateway.kecamatan)), account
