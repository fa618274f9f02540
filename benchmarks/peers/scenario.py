"""``kotaflow bench peers``: kotaflow side by side with Telegraf and a Quix Streams app.

Three comparisons, each peer configured at-least-once, in interleaved rounds (each round
runs every comparison once with every peer, the peers' order alternating between rounds);
each table shows the median of the rounds and the median of the per-round kotaflow / peer
ratios, so the swings of this shared VM hit both sides of a ratio alike.

1. MQTT -> Kafka, N queued QoS 1 messages (:mod:`benchmarks.peers.mqtt_kafka`).
2. A Kafka backlog -> raw points + 1-minute rollups in InfluxDB
   (:mod:`benchmarks.peers.backlog`), with the Quix Streams app
   (:mod:`benchmarks.peers.quix_peer`).
3. End to end at steady rates (:mod:`benchmarks.peers.e2e`).

Telegraf is built on first use (:func:`benchmarks.peers.telegraf.ensure_telegraf`).
"""

from __future__ import annotations

from benchmarks.peers import backlog, e2e, mqtt_kafka
from benchmarks.peers.table import KOTAFLOW, Comparison, Row
from benchmarks.peers.telegraf import (
    TELEGRAF_VERSION,
    InfluxSink,
    MqttSource,
    ensure_telegraf,
    kafka_to_influx_config,
    mqtt_forward_config,
    mqtt_parse_config,
)
from benchmarks.report import Figure, ScenarioResult, Target
from kotaflow.settings import Settings

ROUNDS = {True: 2, False: 3}
MQTT_MESSAGES = {True: 100_000, False: 200_000}
BACKLOG_MESSAGES = {True: 100_000, False: 200_000}
E2E_DURATION_S = {True: 10.0, False: 30.0}


def comparisons(quick: bool) -> tuple[Comparison, Comparison, Comparison]:
    n = MQTT_MESSAGES[quick]
    first = Comparison(
        "mqtt-kafka",
        f"1. MQTT -> Kafka, {n:,} queued QoS 1 messages",
        mqtt_kafka.PEERS,
        [Row("throughput", "msg/s"), Row("CPU per message", "µs")],
    )
    second = Comparison(
        "backlog",
        f"2. Kafka backlog of {BACKLOG_MESSAGES[quick]:,} messages -> raw points + "
        "1-minute rollups in InfluxDB",
        backlog.PEERS,
        [
            Row("throughput", "readings/s"),
            Row("CPU per reading", "µs"),
            Row("CPU per reading, whole run with start-up", "µs"),
            Row("raw readings stored", "readings", ratio=False),
            Row("1-minute rollup rows written", "", ratio=False),
            Row("complete event-time 1-minute windows", "windows", ratio=False),
            Row("complete windows, share of the backlog's", "%", ratio=False),
            Row("start to first InfluxDB write", "s"),
        ],
    )
    rows = []
    for rate in e2e.rates(quick):
        at = f"at {rate:,.0f}/s"
        rows += [
            Row(f"{at}: p50 publish -> queryable", "ms"),
            Row(f"{at}: p99 publish -> queryable", "ms"),
            Row(f"{at}: CPU per 1,000 readings", "s"),
            Row(f"{at}: readings stored / sent", "%", ratio=False),
            Row(f"{at}: offered by the simulator", "readings/s", ratio=False),
        ]
    third = Comparison(
        "e2e",
        f"3. End to end, devices -> MQTT -> Kafka -> InfluxDB, {E2E_DURATION_S[quick]:.0f} s "
        "per rate",
        e2e.PEERS,
        rows,
    )
    return first, second, third


async def scenario(settings: Settings, quick: bool) -> ScenarioResult:
    """The ``peers`` scenario of ``kotaflow bench``."""
    telegraf = ensure_telegraf(settings.stack.cache_dir, _say)
    first, second, third = comparisons(quick)
    rounds = ROUNDS[quick]
    for r in range(rounds):
        _say(f"round {r + 1} of {rounds}: MQTT -> Kafka")
        one = await mqtt_kafka.run_round(
            settings, telegraf, MQTT_MESSAGES[quick], _order(mqtt_kafka.PEERS, r)
        )
        for peer in first.peers:
            first.add(peer, mqtt_kafka.figures(one.runs[peer]))
        _say(f"round {r + 1} of {rounds}: Kafka backlog -> InfluxDB")
        two = await backlog.run_round(
            settings, telegraf, BACKLOG_MESSAGES[quick], _order(backlog.PEERS, r)
        )
        for peer in second.peers:
            if peer in two.judged:
                second.add(peer, backlog.figures(two, peer))
            else:
                second.skip(peer, two.not_run.get(peer, "did not run"))
        second.notes[:] = [
            f"backlog: {two.messages:,} messages, {two.readings:,} readings, "
            f"{two.windows:,} event-time (device, metric) 1-minute windows"
        ]
        peer_notes = {f"{p}: {n}" for p, j in two.judged.items() for n in j.run.notes}
        second.notes += sorted(peer_notes)
        figures_by_peer: dict[str, dict[str, float | None]] = {p: {} for p in third.peers}
        for rate in e2e.rates(quick):
            for peer in _order(e2e.PEERS, r):
                _say(f"round {r + 1} of {rounds}: end to end at {rate:,.0f}/s, {peer}")
                run = await e2e.run_one(settings, peer, telegraf, rate, E2E_DURATION_S[quick])
                at = f"at {rate:,.0f}/s"
                for name, value in e2e.figures(run).items():
                    figures_by_peer[peer][f"{at}: {name}"] = value
        for peer in third.peers:
            third.add(peer, figures_by_peer[peer])
        for table in (first, second, third):
            table.rounds = r + 1
    _configurations(settings, first, second, third)
    return _result(quick, first, second, third)


def _order(peers: tuple[str, ...], round_no: int) -> tuple[str, ...]:
    """kotaflow first in even rounds, last in odd ones."""
    return peers if round_no % 2 == 0 else (*peers[1:], peers[0])


def _say(line: str) -> None:
    print(f"peers: {line}", flush=True)


def _configurations(settings: Settings, *tables: Comparison) -> None:
    """What each peer was configured to do, printed under its table; the Telegraf files in
    full (with placeholders for this run's names) go to the JSON."""
    first, second, third = tables
    brokers = settings.kafka.bootstrap_servers
    source = MqttSource("tcp://HOST:PORT", "kotaflow-bridge", "CLIENT_ID", ("TOPICS",))
    sink = InfluxSink("URL", "ORG", "RAW_BUCKET", "ROLLUP_BUCKET")
    first.configurations = {
        KOTAFLOW: "kotaflow bridge, MQTT 5 persistent session, manual acks after Kafka "
        "(acks=all, idempotent, zstd), default settings",
        "telegraf": f"Telegraf {TELEGRAF_VERSION} mqtt_consumer (persistent_session, qos 1, "
        "max_undelivered_messages 10000) -> outputs.kafka (required_acks -1, idempotent, "
        "zstd), payload forwarded byte for byte (value parser -> template serializer)",
    }
    first.files = {"telegraf.conf": mqtt_forward_config(source, brokers, "TOPIC")}
    second.configurations = {
        KOTAFLOW: "kotaflow process --stage validate --stage store --stage aggregate, "
        "default settings (commit after write; rollups 1m/1h/1d)",
        "telegraf": f"Telegraf {TELEGRAF_VERSION} kafka_consumer (json_v2, "
        "max_undelivered_messages 10000, commit after write) -> influxdb_v2 raw + "
        "basicstats period 60 s, grace 2h -> influxdb_v2 rollups; batch 5000, flush 100 ms",
        "quix": "Quix Streams 3.28.1 app (benchmarks/peers/quix_*.py), see its notes",
    }
    second.files = {
        "telegraf.conf": kafka_to_influx_config(
            brokers, "TOPIC", "GROUP", sink, line_protocol=False
        )
    }
    third.configurations = {
        KOTAFLOW: "kotaflow bridge + kotaflow process (every stage), default settings",
        "telegraf": "two Telegraf processes: mqtt_consumer (json_v2, the run's devices) -> "
        "outputs.kafka (line protocol, acks=all), and kafka_consumer -> influxdb_v2 + "
        "basicstats as in 2.",
    }
    third.files = {
        "telegraf-mqtt-kafka.conf": mqtt_parse_config(source, brokers, "TOPIC", "DEVICES*"),
        "telegraf-kafka-influxdb.conf": kafka_to_influx_config(
            brokers, "TOPIC", "GROUP", sink, line_protocol=True
        ),
    }


def _result(quick: bool, *tables: Comparison) -> ScenarioResult:
    first, second, third = tables
    ratio_figures = [
        ("MQTT -> Kafka msg/s, kotaflow / Telegraf", first.ratio("telegraf", "throughput")),
        ("backlog readings/s, kotaflow / Telegraf", second.ratio("telegraf", "throughput")),
        (
            "backlog CPU per reading, kotaflow / Telegraf",
            second.ratio("telegraf", "CPU per reading"),
        ),
        ("backlog readings/s, kotaflow / Quix", second.ratio("quix", "throughput")),
    ]
    meds = {t.key: t.medians() for t in tables}
    targets = [
        Target(ratio_figures[1][0], ratio_figures[1][1], 1.0, "x"),
        Target(ratio_figures[2][0], ratio_figures[2][1], 1.0, "x", "<="),
        Target(ratio_figures[3][0], ratio_figures[3][1], 2.0, "x"),
        Target(
            "kotaflow start to first InfluxDB write",
            meds["backlog"][KOTAFLOW]["start to first InfluxDB write"],
            1.5,
            "s",
            "<=",
        ),
    ]
    for rate in (2_000.0, 100.0):
        at = f"at {rate:,.0f}/s"
        cpu = third.ratio("telegraf", f"{at}: CPU per 1,000 readings")
        ratio_figures.append((f"e2e {at}: CPU per reading, kotaflow / Telegraf", cpu))
        targets.append(Target(ratio_figures[-1][0], cpu, 1.0, "x", "<="))
        p99 = meds["e2e"][KOTAFLOW].get(f"{at}: p99 publish -> queryable")
        targets.append(Target(f"kotaflow e2e {at}: p99", p99, 300, "ms", "<="))
    if not quick:
        stored = meds["e2e"][KOTAFLOW].get("at 10,000/s: readings stored / sent")
        targets.append(Target("kotaflow e2e at 10,000/s: stored / sent", stored, 100, "%"))
    return ScenarioResult(
        "peers",
        quick,
        {
            "rounds": first.rounds,
            "mqtt_messages": MQTT_MESSAGES[quick],
            "backlog_messages": BACKLOG_MESSAGES[quick],
            "e2e_rates": list(e2e.rates(quick)),
            "e2e_duration_s": E2E_DURATION_S[quick],
            "telegraf": TELEGRAF_VERSION,
        },
        throughput=[Figure(name, value, "x") for name, value in ratio_figures if value is not None],
        targets=targets,
        notes=[
            "ratios: median of per-round kotaflow / peer ratios; targets from issue 23",
            "tables below: medians over the rounds; configurations under each table",
        ],
        sections=[t.section() for t in tables],
    )
