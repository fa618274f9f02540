"""The bridge's CPU per message at low, steady rates: what a regency's real traffic costs.

The ``bridge`` scenario measures a drain (hundreds of messages per read, batched); field
traffic is the opposite: a few messages every few milliseconds, so whatever the bridge pays
per wake-up, per Kafka batch or per timer is paid for a burst of one or two messages.

Method: one ``kotaflow bridge`` child (private topics, session and lease group, rate limit
off) is started and left to settle; then, for each rate, a paho publisher in this process
sends QoS 1 messages from :data:`DEVICES` made-up devices, evenly spaced (each one at its
own time, as independent devices send), for a warm-up and then a measured window. The
bridge's CPU seconds (all threads, ``/proc``) and its ``acked_total`` (every ack means
Kafka, ``acks=all``, had the record) are read at both ends of the window:
CPU per message = ΔCPU / Δacked. Rate 0 is the idle floor (CPU per second, no messages).

Old against new, side by side in one run (``--tree`` runs the bridge from another checkout,
``PYTHONPATH`` first, same virtualenv; rounds alternate the order)::

    git worktree add --detach /tmp/kotaflow-old <commit>
    uv run python -m benchmarks.bridge_steady --tree old=/tmp/kotaflow-old --tree new=. \\
        --rates 0,100,360,2000 --seconds 15 --rounds 3

Needs the local stack (``kotaflow stack up``); also the ``bridge-steady`` scenario of
``kotaflow bench`` (this checkout only).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bridge_bench import _client_tool, _free_port, _py_spy, _scrape, _topics
from benchmarks.children import add_tree_option, spawn_kotaflow, stop, trees_of, wait_log
from benchmarks.isolation import mosquitto_cli_env, wipe_mqtt_session
from benchmarks.procstats import cpu_seconds
from benchmarks.report import Figure, ScenarioResult
from kotaflow.mqtt import Account, mqtt_access
from kotaflow.settings import Settings, load_settings

DEVICES = 40
PAYLOAD_BYTES = 160
RATES = (0.0, 20.0, 100.0, 360.0, 2000.0)
"""msg/s; at ~5.5 readings per message (the simulator's mix) 20 and 360 msg/s carry the
issue's 100 and 2,000 readings/s."""
QUICK_S, FULL_S = 8.0, 20.0
WARM_UP_S = 3.0
SETTLE_S = 3.0
"""After the bridge subscribed: its start-up (lease, producer, first metadata) is over."""


@dataclass(frozen=True, slots=True)
class RatePoint:
    """One rate's window on one bridge."""

    tree: str
    rate: float
    seconds: float
    acked: int
    cpu_s: float

    @property
    def us_per_message(self) -> float | None:
        return 1e6 * self.cpu_s / self.acked if self.acked else None

    @property
    def cpu_ms_per_s(self) -> float:
        return 1000 * self.cpu_s / self.seconds


class PacedPublisher:
    """QoS 1 messages at ``rate`` per second from made-up devices, each device its own
    ``mosquitto_pub`` (its own connection, as field devices have), each message sent at
    its own time: the bridge sees them one by one, not in the bursts of one client."""

    def __init__(self, settings: Settings, tag: str, folder: Path) -> None:
        tool = _client_tool(settings, "mosquitto_pub")
        env = mosquitto_cli_env(mqtt_access(settings, Account.GATEWAY), folder)
        self._procs = [
            subprocess.Popen(
                [tool, "-V", "5", "-q", "1", "-t", f"kotaflow/s{tag}-d{d:03d}/telemetry", "-l"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                env=env,
            )
            for d in range(DEVICES)
        ]
        self._pad = "x" * max(0, PAYLOAD_BYTES - 60)
        self.sent = 0

    def run(self, rate: float, seconds: float) -> None:
        """Publish for ``seconds`` (sleeps while the rate is 0)."""
        if rate <= 0:
            time.sleep(seconds)
            return
        start = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            pipe = self._procs[self.sent % DEVICES].stdin
            assert pipe is not None
            pipe.write(f'{{"id":"{self.sent}","t":21.5,"rh":80,"pad":"{self._pad}"}}\n'.encode())
            pipe.flush()
            self.sent += 1
        rest = start + seconds - time.monotonic()
        if rest > 0:
            time.sleep(rest)

    def close(self) -> None:
        for proc in self._procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _bridge_env(raw: str, dead: str, client_id: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return env | {
        "KOTAFLOW_KAFKA__TOPICS__RAW": raw,
        "KOTAFLOW_KAFKA__TOPICS__DEADLETTER": dead,
        "KOTAFLOW_BRIDGE__CLIENT_ID": client_id,
        "KOTAFLOW_BRIDGE__SESSION_EXPIRY_S": "300",
        "KOTAFLOW_BRIDGE__METRICS_PORT": str(port),
        "KOTAFLOW_BRIDGE__RATE_PER_S": "1000000",
        "KOTAFLOW_BRIDGE__RATE_BURST": "1000000",
    }


def _acked(port: int) -> int:
    return int(_scrape(port).get("kotaflow_bridge_acked_total", 0))


def measure_tree(
    settings: Settings,
    name: str,
    tree: Path | None,
    rates: list[float],
    seconds: float,
    work: Path,
    py_spy: Path | None = None,
) -> list[RatePoint]:
    """Start a bridge from ``tree`` (None: this checkout) and measure every rate on it;
    ``py_spy``: record each rate's window to ``<py_spy>-<tree>-<rate>.txt``."""
    rid = uuid.uuid4().hex[:8]
    raw, dead = f"kotaflow.raw.steady-{rid}", f"kotaflow.deadletter.steady-{rid}"
    client_id = f"bench-steady-{rid}"
    port = _free_port()
    asyncio.run(_topics(settings, create=[raw, dead]))
    log = work / f"bridge-{name}-{rid}.log"
    env = _bridge_env(raw, dead, client_id, port)
    child = spawn_kotaflow(f"kotaflow bridge ({name})", ["bridge"], env, log, tree=tree)
    publisher: PacedPublisher | None = None
    points = []
    try:
        wait_log(log, "MQTT subscribed", child.proc, 120)
        time.sleep(SETTLE_S)
        publisher = PacedPublisher(settings, rid, work / f"pub-{rid}")
        for rate in rates:
            publisher.run(rate, WARM_UP_S)
            spy = None
            if py_spy is not None:
                spy = _py_spy(child.proc.pid, f"{py_spy}-{name}-{rate:g}.txt")
            acked0, cpu0, t0 = _acked(port), cpu_seconds(child.proc.pid), time.monotonic()
            publisher.run(rate, seconds)
            time.sleep(0.2)  # the window's last acks (linger + Kafka round trip)
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                spy.wait(timeout=60)
            acked1, cpu1, t1 = _acked(port), cpu_seconds(child.proc.pid), time.monotonic()
            child.check_alive()
            points.append(RatePoint(name, rate, t1 - t0, acked1 - acked0, cpu1 - cpu0))
        return points
    finally:
        if publisher is not None:
            publisher.close()
        stop(child.proc)
        wipe_mqtt_session(settings, client_id)
        asyncio.run(_topics(settings, delete=[raw, dead]))


def run_rounds(
    settings: Settings,
    trees: list[tuple[str, Path | None]],
    rates: list[float],
    seconds: float,
    rounds: int,
    py_spy: Path | None = None,
) -> list[RatePoint]:
    """Every tree once per round, the order alternating between rounds."""
    work = Path(tempfile.mkdtemp(prefix="kotaflow-steady-"))
    points: list[RatePoint] = []
    try:
        for r in range(rounds):
            order = trees if r % 2 == 0 else list(reversed(trees))
            for name, tree in order:
                print(f"round {r + 1}/{rounds}: {name}", flush=True)
                points += measure_tree(settings, name, tree, rates, seconds, work, py_spy)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return points


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def table(points: list[RatePoint], names: list[str], rates: list[float]) -> str:
    """Median per tree and rate: µs CPU per message (idle: ms CPU per second)."""
    head = f"{'msg/s':>7} | " + " | ".join(f"{n:>22}" for n in names)
    if len(names) == 2:
        head += f" | {names[1] + '/' + names[0]:>9}"
    lines = [head, "-" * len(head)]
    for rate in rates:
        cells: list[float | None] = []
        for name in names:
            mine = [p for p in points if p.tree == name and p.rate == rate]
            if rate <= 0:
                cells.append(_median([p.cpu_ms_per_s for p in mine]))
            else:
                cells.append(_median([u for p in mine if (u := p.us_per_message) is not None]))
        unit = "ms CPU/s" if rate <= 0 else "µs/msg"
        text = [f"{c:>13.1f} {unit:>8}" if c is not None else f"{'-':>22}" for c in cells]
        line = f"{rate:>7.0f} | " + " | ".join(text)
        if len(cells) == 2 and cells[0] and cells[1] is not None:
            line += f" | {cells[1] / cells[0]:>9.2f}"
        lines.append(line)
    return "\n".join(lines)


async def scenario(settings: Settings, quick: bool) -> ScenarioResult:
    """The ``bridge-steady`` scenario of ``kotaflow bench`` (this checkout's bridge)."""
    seconds = QUICK_S if quick else FULL_S
    rates = list(RATES)
    points = await asyncio.to_thread(run_rounds, settings, [("bridge", None)], rates, seconds, 1)
    figures = []
    for p in points:
        if p.rate <= 0:
            figures.append(Figure("bridge idle CPU", p.cpu_ms_per_s, "ms/s"))
        elif p.us_per_message is not None:
            figures.append(
                Figure(f"bridge CPU per message at {p.rate:.0f} msg/s", p.us_per_message, "µs")
            )
    return ScenarioResult(
        "bridge-steady",
        quick,
        {"rates": rates, "seconds": seconds, "devices": DEVICES, "payload_bytes": PAYLOAD_BYTES},
        throughput=figures,
        notes=[
            f"{p.rate:.0f} msg/s: {p.acked:,} acked in {p.seconds:.1f} s, {p.cpu_s:.2f} s CPU"
            for p in points
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_tree_option(parser, "the bridge")
    parser.add_argument("--rates", default=",".join(f"{r:g}" for r in RATES))
    parser.add_argument("--seconds", type=float, default=FULL_S, help="measured window per rate")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="PREFIX",
        help="record each window with py-spy (all threads, GIL holder) to PREFIX-<tree>-<rate>.txt",
    )
    args = parser.parse_args()
    trees = trees_of(args.tree, "bridge")
    rates = [float(r) for r in args.rates.split(",")]
    settings = load_settings()
    points = run_rounds(settings, trees, rates, args.seconds, args.rounds, args.py_spy)
    for p in points:
        us = p.us_per_message
        print(
            f"  {p.tree:>8} {p.rate:>6.0f} msg/s: acked {p.acked:>6} in {p.seconds:5.1f} s, "
            f"CPU {p.cpu_s:6.3f} s" + (f" = {us:7.1f} µs/msg" if us is not None else "")
        )
    print(
        f"median of {args.rounds} round(s), {args.seconds:.0f} s per rate, load {os.getloadavg()}"
    )
    print(table(points, [n for n, _ in trees], rates))


if __name__ == "__main__":
    main()
