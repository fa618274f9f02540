"""The simulator's MQTT publisher without a broker: its hand-packed MQTT 5 properties are
byte-identical to paho's, and an unreachable broker is a clear error, not a hang."""

from __future__ import annotations

import socket

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.simulator.publisher import MqttPublisher, PackedProperties, PublishError
from kotaflow.mqtt import MqttAccess


@pytest.mark.parametrize(
    "pairs",
    [
        [("kf-sim", "5c1e0f2a/17")],
        [("k" * 70, "v" * 90)],  # a length above 127: two-byte variable length
        [("kf-sim", "run/1"), ("süd", "ñandú")],
    ],
)
def test_packed_user_properties_match_paho(pairs: list[tuple[str, str]]) -> None:
    paho = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    paho.UserProperty = pairs
    assert PackedProperties(pairs).pack() == paho.pack()


@pytest.mark.asyncio
async def test_unreachable_broker_is_a_publish_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    publisher = MqttPublisher(MqttAccess("127.0.0.1", port, 10), "test-sim-nobody", 10)
    with pytest.raises(PublishError, match=f"127.0.0.1:{port}"):
        await publisher.connect(wait_s=5.0)
