"""A test's own pipeline on the shared stack: topics, consumer groups, InfluxDB buckets with
least-privilege tokens, and device ids carrying the test's tag; plus the same settings as
environment variables for ``kotaflow`` child processes.

Shared by the processor tests' fixtures (tests/processors/conftest.py) and the end-to-end
scenarios (tests/support/edge_scenario.py), so no test imports another test's helpers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from devices.registry import PACKAGED_REGISTRY
from kotaflow.settings import Settings
from tests.support.isolated_kafka import isolated, isolation_env, stage_topics

if TYPE_CHECKING:
    from tests.conftest import ScratchLedger

PARTITIONS = 4


def env_for(settings: Settings) -> dict[str, str]:
    """The isolation of ``settings`` as environment variables, for ``kotaflow process``
    (and bridge) subprocesses."""
    p, influx = settings.processing, settings.influxdb
    token = {"KOTAFLOW_INFLUXDB__TOKEN": influx.token.get_secret_value()} if influx.token else {}
    if p.influx_token_dir is not None:
        token["KOTAFLOW_PROCESSING__INFLUX_TOKEN_DIR"] = str(p.influx_token_dir)
    return {
        **isolation_env(settings),
        **token,
        "KOTAFLOW_REGISTRY_FILE": str(settings.registry_file or ""),
        "KOTAFLOW_PROCESSING__VALIDATION__FLUSH_INTERVAL_S": str(p.validation.flush_interval_s),
        "KOTAFLOW_PROCESSING__STORE__FLUSH_INTERVAL_S": str(p.store.flush_interval_s),
        "KOTAFLOW_PROCESSING__AGGREGATE__FLUSH_INTERVAL_S": str(p.aggregate.flush_interval_s),
        "KOTAFLOW_PROCESSING__AGGREGATE__ROLLUP_INTERVAL_S": str(p.aggregate.rollup_interval_s),
        "KOTAFLOW_PROCESSING__AGGREGATE__GRACE_S": str(p.aggregate.grace_s),
    }


def private_pipeline(
    base: Settings, ledger: ScratchLedger | None = None, tokens: Path | None = None
) -> Iterator[Settings]:
    """Private topics and groups; with ``ledger``, private InfluxDB buckets too, and a
    least-privilege token per stage on them in ``tokens``. All removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    mine = isolated(base, tag)
    try:
        if ledger is not None:
            ledger.tags.add(device_tag(mine))
            mine = ledger.scratch(mine, tag, tokens)
        asyncio.run(stage_topics(mine, create=True, partitions=PARTITIONS))
        yield mine
    finally:  # also after a failed creation: one of the three may exist (never raises)
        asyncio.run(stage_topics(mine, create=False))
        if ledger is not None:
            ledger.drop(base, tag)


def device_tag(settings: Settings) -> str:
    """The prefix of a test's private device ids, from its private topic names."""
    return "t" + settings.kafka.topics.raw.split(".")[1][:8]


def private_fleet(settings: Settings, directory: Path, tag: str) -> Settings:
    """``settings`` whose registry holds the packaged devices renamed ``<tag>-<id>``.

    The ids say which test wrote a point, should one ever leak out of its buckets.
    """
    data = yaml.safe_load(PACKAGED_REGISTRY.read_text(encoding="utf-8"))
    for device in data["devices"]:
        device["id"] = f"{tag}-{device['id']}"
        device.pop("dev_eui", None)
        device.pop("tts_device_id", None)
    path = directory / "registry.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return settings.model_copy(update={"registry_file": path})


def quick_flushes(s: Settings) -> Settings:
    """``s`` with stages that flush, and 1-minute windows that close, within seconds."""
    p = s.processing
    processing = p.model_copy(
        update={
            "store": p.store.model_copy(update={"flush_interval_s": 0.5}),
            "aggregate": p.aggregate.model_copy(
                update={"flush_interval_s": 0.5, "rollup_interval_s": 2.0, "grace_s": 2.0}
            ),
            "validation": p.validation.model_copy(update={"flush_interval_s": 0.2}),
            "health": p.health.model_copy(update={"interval_s": 1.0}),
        }
    )
    return s.model_copy(update={"processing": processing})
