"""The edge queue file without services: order, budget, and the delete-after-ack rule."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge.queue import ROW_OVERHEAD, EdgeQueue, Incoming, Level, QueueFullError


def message(device: str, n: int, size: int = 20) -> Incoming:
    payload = f'{{"n":{n}}}'.encode().ljust(size, b" ")
    return Incoming(f"kotaflow/{device}/telemetry", payload, 1, False, 1_700_000_000_000 + n)


def test_messages_come_out_in_arrival_order_per_device(tmp_path: Path) -> None:
    q = EdgeQueue(tmp_path / "q.db", 1 << 20)
    q.append([message(d, n) for n in range(50) for d in ("a", "b")])
    rows = q.take(0, 1000)
    for device in ("a", "b"):
        numbers = [
            int(r.payload.split(b":")[1].split(b"}")[0]) for r in rows if f"/{device}/" in r.topic
        ]
        assert numbers == list(range(50))
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)


def test_properties_survive_the_file(tmp_path: Path) -> None:
    q = EdgeQueue(tmp_path / "q.db", 1 << 20)
    m = Incoming("kotaflow/a/senml", b"[]", 1, True, 5, "application/senml+json", (("k", "v"),))
    q.append([m])
    (row,) = q.take(0, 10)
    assert (row.content_type, row.user_properties, row.retain, row.rx_ms) == (
        "application/senml+json",
        (("k", "v"),),
        True,
        5,
    )


def test_a_sequence_is_never_reused_after_the_last_row_is_deleted(tmp_path: Path) -> None:
    q = EdgeQueue(tmp_path / "q.db", 1 << 20)
    q.append([message("a", 1)])
    (first,) = q.take(0, 10)
    q.delete([first.seq])
    q.close()
    q = EdgeQueue(tmp_path / "q.db", 1 << 20)
    q.append([message("a", 2)])
    (second,) = q.take(0, 10)
    assert second.seq > first.seq


def test_only_confirmed_rows_are_deleted_and_the_rest_come_back_after_a_restart(
    tmp_path: Path,
) -> None:
    q = EdgeQueue(tmp_path / "q.db", 1 << 20)
    q.append([message("a", n) for n in range(10)])
    rows = q.take(0, 10)
    q.delete(r.seq for r in rows[:4])  # four PUBACKs came, six were in flight at the crash
    q.close()
    q = EdgeQueue(tmp_path / "q.db", 1 << 20)
    assert [r.seq for r in q.take(0, 100)] == [r.seq for r in rows[4:]]
    assert q.messages == 6
    assert q.bytes == sum(r.size for r in rows[4:])


def test_the_budget_alarms_long_before_it_refuses(tmp_path: Path) -> None:
    one = message("a", 0).size()
    assert one == len("kotaflow/a/telemetry") + 20 + ROW_OVERHEAD
    q = EdgeQueue(tmp_path / "q.db", budget_bytes=one * 100, alarm_fraction=0.5)
    q.append([message("a", n) for n in range(49)])
    assert q.level() is Level.OK
    q.append([message("a", 49)])
    assert q.level() is Level.ALARM
    q.append([message("a", n) for n in range(50, 100)])
    assert q.level() is Level.FULL
    with pytest.raises(QueueFullError, match="budget"):
        q.append([message("a", 100)])
    assert q.messages == 100  # the refused batch wrote nothing
    q.delete(r.seq for r in q.take(0, 60))
    assert q.level() is Level.OK


def test_refused_messages_are_kept_aside_with_their_reason(tmp_path: Path) -> None:
    q = EdgeQueue(tmp_path / "q.db", 1 << 20)
    q.append([message("a", 1), message("a", 2)])
    first, second = q.take(0, 10)
    q.refuse([(first.seq, "Not authorized")])
    assert [r.seq for r in q.take(0, 10)] == [second.seq]
    assert q.stats().refused == 1
    assert q.messages == 1


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from edge.queue import EdgeQueue, Incoming
    q = EdgeQueue(Path(sys.argv[1]), 1 << 30)
    n = 0
    while True:
        batch = [Incoming(f"kotaflow/d{i % 7}/telemetry", str(n + i).encode(), 1, False, n + i)
                 for i in range(50)]
        q.append(batch)
        n += 50
        print(n, flush=True)  # the gateway acks the local broker at this point
    """
)


def test_every_committed_batch_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert child.stdout is not None
    acked = 0
    for line in child.stdout:
        acked = int(line)
        if acked >= 2_000:
            break
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    q = EdgeQueue(path, 1 << 30)
    rows = q.take(0, 10**6)
    assert len(rows) >= acked
    numbers = [int(r.payload) for r in rows]
    assert numbers == list(range(len(rows)))  # nothing missing, nothing out of order
