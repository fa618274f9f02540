"""The bridge against the real Mosquitto and Kafka: nothing published at QoS 1 is lost."""

from __future__ import annotations

import json
import logging

import pytest
from bridge_support import BridgeRun, Publisher, TopicReader, ids_of, traffic, wait_for_log
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kotaflow.mqtt import Account, mqtt_access

log = logging.getLogger("tests.bridge")

pytestmark = [pytest.mark.services, pytest.mark.asyncio]

DEVICES = 50
PER_DEVICE = 400  # 20,000 messages


@pytest.mark.timeout(300)
async def test_twenty_thousand_qos1_messages_all_reach_kafka(bridge_run: BridgeRun) -> None:
    run = bridge_run
    run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    publisher = Publisher(run.settings, f"test-pub-{run.rid}")
    publisher.publish(traffic(run, DEVICES, PER_DEVICE))
    publisher.finish()
    expected = {f"{run.device(d)}:{s}" for d in range(DEVICES) for s in range(PER_DEVICE)}

    async with TopicReader(run.settings, run.raw_topic) as reader:
        await reader.until(lambda: expected <= set(ids_of(reader.records)), timeout_s=240)
        seen = ids_of(reader.records)
        # MQTT 5 properties take paho's own decode path; they end up in the headers.
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = "application/json"
        props.UserProperty = ("fw", "1.2.3")
        with_props = Publisher(run.settings, f"test-pub2-{run.rid}")
        with_props.publish(
            [(f"kotaflow/{run.device(0)}/telemetry", b'{"id":"with-props"}')], properties=props
        )
        with_props.finish()
        await reader.until(lambda: "with-props" in ids_of(reader.records), timeout_s=60)

    duplicates = sum(n - 1 for key, n in seen.items() if key in expected)
    log.info("delivered %d unique, %d duplicates", len(expected), duplicates)
    assert expected <= set(seen)
    (tagged,) = [dict(h) for _, v, h, _ in reader.records if v == b'{"id":"with-props"}']
    assert tagged["kf.ct"] == b"application/json"
    assert tagged["kf.up.fw"] == b"1.2.3"
    ours = [
        r for r in reader.records if r[0] is not None and r[0].startswith(b"t" + run.rid.encode())
    ]
    for key, value, headers, _ in ours[:100]:
        found = dict(headers)
        device = json.loads(value)["id"].split(":")[0]
        assert key == device.encode() == found["kf.device"]
        assert found["kf.format"] == b"native-json"
        assert found["kf.topic"] == f"kotaflow/{device}/telemetry".encode()


@pytest.mark.timeout(120)
async def test_qos0_messages_reach_kafka_marked_as_qos0(bridge_run: BridgeRun) -> None:
    """QoS 0 takes the bulk path too but needs no ack: it must not hold up QoS 1 acks."""
    run = bridge_run
    run.spawn_bridge(1)
    wait_for_log(run, 1, "MQTT subscribed")
    access = mqtt_access(run.settings, Account.GATEWAY)
    client = access.client(f"test-q0-{run.rid}")
    client.connect(access.host, access.port, clean_start=True)
    client.loop_start()
    try:
        for n in range(50):
            topic = f"kotaflow/{run.device(n % 5)}/telemetry"
            client.publish(topic, json.dumps({"id": f"q0:{n}"}).encode(), qos=0)
        client.publish(
            f"kotaflow/{run.device(0)}/telemetry", b'{"id":"q1:after"}', qos=1
        ).wait_for_publish(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()
    expected = {f"q0:{n}" for n in range(50)} | {"q1:after"}
    async with TopicReader(run.settings, run.raw_topic) as reader:
        await reader.until(lambda: expected <= set(ids_of(reader.records)), timeout_s=60)
    mine = f"t{run.rid}".encode()  # the bridge also carries other users' device traffic
    qos = {
        json.loads(v)["id"]: dict(h)["kf.qos"]
        for key, v, h, _ in reader.records
        if key is not None and key.startswith(mine)
    }
    assert {qos[i] for i in expected - {"q1:after"}} == {b"0"}
    assert qos["q1:after"] == b"1"
