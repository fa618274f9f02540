"""An isolated end-to-end pipeline for alerting checks: device MQTT publish -> bridge ->
validate -> evaluator -> notification, on the running local stack.

Used by the end-to-end test and by ``benchmarks/alert_bench.py``. Everything it creates is
its own: Kafka topics and consumer groups with a unique suffix, an MQTT client id and share
group, a one-device registry, a state directory, a rule file. It starts ``kotaflow bridge``,
``kotaflow process --stage validate`` and ``kotaflow alert`` as child processes with that
configuration, exactly as an operator would, and stops them (and only them) on exit, then
wipes the bridge's persistent MQTT session and deletes the topics.

Other bridges on the same broker also receive the test device's messages and will
dead-letter them as an unknown device; that is harmless.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from deploy.local.kafka_topics import ensure_topics, run_sync
from kotaflow.mqtt import Account, mqtt_access, wipe_mqtt_session
from kotaflow.settings import Settings, load_settings
from processors.alerting.state_store import AlertStore
from tests.support.isolated_kafka import delete_topics

E2E_RULES = """
version: 1
rules:
  - name: sungai_e2e
    kind: threshold
    title: {id: Tinggi muka air sungai, en: River level}
    metric: water_level
    scope: {types: [river_level]}
    levels:
      - {name: Siaga, at_least: 250, clear_below: 240, severity: major}
    labels: {team: bpbd}
    repeat: 1d
"""


@dataclass
class Pipeline:
    settings: Settings
    config_file: Path
    device: str
    folder: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    mqtt: mqtt.Client | None = None

    def publish(self, cm: float) -> float:
        """Publish one native-JSON reading as the device would; the time it was sent (s)."""
        assert self.mqtt is not None
        sent = time.time()
        body = json.dumps({"ts": int(sent * 1000), "values": {"water_level": cm}})
        info = self.mqtt.publish(f"kotaflow/{self.device}/telemetry", body, qos=1)
        info.wait_for_publish(10)
        return sent

    def seen_by_evaluator(self) -> bool:
        store = AlertStore(self.settings.alerting.state_path(self.settings.stack.state_dir))
        try:
            devices, _, _ = store.load()
        finally:
            store.close()
        return any(device == self.device for device, _ in devices)

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                logs = "\n".join(
                    f"--- {p.name}\n{p.read_text(encoding='utf-8')[-3000:]}"
                    for p in self.folder.glob("*.log")
                )
                raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}\n{logs}")


def _config(
    base: Settings,
    folder: Path,
    webhook_url: str,
    device: str,
    alerting: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    uid = folder.name
    registry = folder / "registry.yaml"
    registry.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "regency": "Manggarai",
                "kecamatan": ["Reok"],
                "devices": [
                    {
                        "id": device,
                        "type": "river_level",
                        "name": "Jembatan Wae Pesi (uji)",
                        "kecamatan": "Reok",
                        "latitude": -8.29,
                        "longitude": 120.45,
                        "elevation_m": 5,
                        "install_date": "2025-01-01",
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    rules = folder / "rules.yaml"
    rules.write_text(E2E_RULES, encoding="utf-8")
    return {
        "registry_file": str(registry),
        "metrics_port": 0,
        "mqtt": base.mqtt.model_dump(  # no login: each part takes its account from the stack
            mode="json", include={"host", "port", "tls", "tls_port", "ca_file", "credentials_file"}
        ),
        "kafka": {
            "bootstrap_servers": base.kafka.bootstrap_servers,
            "topics": {
                "raw": f"e2e.raw.{uid}",
                "readings": f"e2e.readings.{uid}",
                "deadletter": f"e2e.deadletter.{uid}",
                "alerts": f"e2e.alerts.{uid}",
            },
        },
        "stack": {"state_dir": str(base.stack.state_dir), "cache_dir": str(base.stack.cache_dir)},
        "bridge": {
            "client_id": f"e2e-{uid}",
            "session_expiry_s": 120,
            "metrics_port": 0,
            "linger_ms": 0,
        },
        "processing": {
            "validation": {"group_id": f"e2e-validate-{uid}", "poll_timeout_ms": 50, "linger_ms": 0}
        },
        "alerting": {
            "rules_file": str(rules),
            "state_dir": str(folder / "state"),
            "group_id": f"e2e-alert-{uid}",
            "tick_s": 0.5,
            "poll_timeout_ms": 50,
            "write_influx": False,
            "retry_initial_s": 0.1,
            "receivers": {"hook": {"kind": "webhook", "url": webhook_url, "language": "id"}},
            "default_route": {"group_window": 0},
            **(alerting or {}),
        },
    }


@contextmanager
def pipeline(
    root: Path,
    webhook_url: str,
    ready_timeout_s: float = 120.0,
    alerting: Mapping[str, Any] | None = None,
) -> Iterator[Pipeline]:
    """Start bridge, validate and alert for a fresh device; yield once a reading gets through.

    ``alerting`` overrides settings of the alert stage (routes, ``default_route``: grouping
    is off unless given)."""
    base = load_settings()
    folder = root / uuid.uuid4().hex[:10]
    folder.mkdir(parents=True)
    device = f"e2e-rl-{folder.name}"
    config = _config(base, folder, webhook_url, device, alerting)
    config_file = folder / "kotaflow.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    settings = load_settings(config_file)
    topics = settings.kafka.topics
    ensure_topics(
        settings.kafka,
        {topics.raw: 3, topics.readings: 3, topics.deadletter: 1, topics.alerts: 1},
        lambda _: None,
    )
    run = Pipeline(settings, config_file, device, folder)
    env = {**os.environ, "KOTAFLOW_CONFIG": str(config_file)}
    env = {k: v for k, v in env.items() if not k.startswith("KOTAFLOW_") or k == "KOTAFLOW_CONFIG"}
    try:
        for name, argv in (
            ("alert", ["alert"]),
            ("validate", ["process", "--stage", "validate"]),
            ("bridge", ["bridge"]),
        ):
            with (folder / f"{name}.log").open("ab") as log:
                run.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "kotaflow", *argv],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )
                )
        access = mqtt_access(settings, Account.GATEWAY)  # the device is made up for the run
        client = access.client(f"{device}-sim")
        client.connect(access.host, access.port)
        client.loop_start()
        run.mqtt = client
        deadline = time.monotonic() + ready_timeout_s
        while not run.seen_by_evaluator():
            run.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"no reading reached the evaluator; logs in {folder}")
            run.publish(100.0)
            time.sleep(0.5)  # pacing the warm-up publishes, not waiting for a result
        yield run
    finally:
        if run.mqtt is not None:
            run.mqtt.loop_stop()
            run.mqtt.disconnect()
        for proc in reversed(run.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in run.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        wipe_mqtt_session(settings, settings.bridge.client_id)  # the bridge's persistent one
        run_sync(
            delete_topics(settings, [topics.raw, topics.readings, topics.deadletter, topics.alerts])
        )
