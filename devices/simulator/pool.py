"""The simulator's connections: one per broker account, so the broker's ACL sees real identities.

A device that speaks MQTT itself (native JSON, SenML) publishes as its own account, whose
ACL lets it publish on its own topics only; LoRaWAN uplinks come from the network server,
so ChirpStack events go out as ``kotaflow-chirpstack`` and The Things Stack uplinks as
``kotaflow-tts``, as in the field (``devices.credentials.publishing_account``). The sample
fleet of 41 devices makes at most 43 connections, all driven by one event loop.

When the settings name one ``mqtt.username`` (or no credentials exist and the broker is
open), every account resolves to the same login and the pool holds a single connection. A
device the broker has no account for (a private copy of the registry, as tests and
benchmarks make) publishes through the ``kotaflow-gateway`` account, and a warning says so.

Devices behind an edge (``--behind-edge``) share one connection to the edge's local
broker (anonymous, or ``edge.local_username``), as a kecamatan's devices reach the gateway's
own Mosquitto; the edge forwards them with its own central account.

Flow control: all connections count into one :class:`PublishTally`, and the pool's
capacity is the smaller of ``max_inflight`` and the smallest Receive Maximum a broker
session granted, so no connection can exceed its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from devices.credentials import publishing_account
from devices.simulator.plan import SimDevice
from devices.simulator.publisher import MqttPublisher, PublishError, PublishTally
from kotaflow.mqtt import Account, MqttAccess, MqttAccessError, mqtt_access
from kotaflow.settings import Settings

log = logging.getLogger(__name__)


class PublisherPool:
    def __init__(
        self,
        settings: Settings,
        devices: Sequence[SimDevice],
        client_id: str,
        max_inflight: int,
        edge: MqttAccess | None = None,
    ) -> None:
        self.tally = PublishTally()
        self._max_inflight = max_inflight
        accesses = {
            sim.id: edge
            if sim.behind_edge and edge is not None
            else _access(settings, publishing_account(sim.format, sim.id))
            for sim in devices
        }
        gatewayed = sorted(
            d for d, a in accesses.items() if a is not edge and a.username == Account.GATEWAY
        )
        if gatewayed:
            log.warning(
                "%d devices have no broker account of their own; they publish as %s: %s",
                len(gatewayed),
                Account.GATEWAY,
                ", ".join(gatewayed[:5]) + (", ..." if len(gatewayed) > 5 else ""),
            )
        logins = {_connection(a, edge): a for a in accesses.values()}
        shared = len(logins) == 1  # one connection keeps the client id asked for
        publishers = {
            name: MqttPublisher(
                access, client_id if shared else f"{client_id}-{name}", max_inflight, self.tally
            )
            for name, access in logins.items()
        }
        self._route = {device: publishers[_connection(a, edge)] for device, a in accesses.items()}
        self._publishers = list(publishers.values())

    @property
    def connections(self) -> int:
        return len(self._publishers)

    @property
    def capacity(self) -> int:
        return min([self._max_inflight, *(p.capacity for p in self._publishers)])

    @property
    def inflight(self) -> int:
        return self.tally.inflight

    async def connect(self) -> None:
        """Connect every account at once; any refusal fails the run (all are closed)."""
        results = await asyncio.gather(
            *(p.connect() for p in self._publishers), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.close()
            raise failed[0]

    def publish(
        self, device_id: str, topic: str, payload: bytes, user_properties: Sequence[tuple[str, str]]
    ) -> None:
        """Queue one QoS 1 message on ``device_id``'s connection."""
        self._route[device_id].publish(topic, payload, user_properties)

    async def wait_for_capacity(self) -> None:
        """Until a message may be published (fewer than ``capacity`` in flight)."""
        while self.tally.inflight >= self.capacity:
            await self.tally.wait_progress()

    async def drain(self) -> None:
        """Until every published message is acknowledged (bound it with asyncio.timeout)."""
        while self.tally.inflight > 0:
            await self.tally.wait_progress()

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self._publishers))


EDGE_CONNECTION = "edge"


def _connection(access: MqttAccess, edge: MqttAccess | None) -> str:
    """One connection per central login, and one to the edge (its suffix of the client id)."""
    return EDGE_CONNECTION if access is edge else str(access.username)


def _access(settings: Settings, account: str) -> MqttAccess:
    """The account's access; a device without one falls back to the gateway account."""
    try:
        return mqtt_access(settings, account)
    except MqttAccessError as err:
        if account in set(Account):
            raise PublishError(str(err)) from None
        try:
            return mqtt_access(settings, Account.GATEWAY)
        except MqttAccessError:
            raise PublishError(str(err)) from None
