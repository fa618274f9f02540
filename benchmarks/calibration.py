"""How fast this machine runs Python right now, to put a run's figures in context.

The development machine is a shared VM: the same benchmark measured 66,000 and 100,000
readings per CPU-second minutes apart, with the load average unchanged. CPU time alone
cannot show that (a slow core still reports full seconds), so every result records the
rate of a fixed piece of pure-Python work shaped like our hot paths (dict lookups, small
tuples, ``bytes`` joins, float ``repr``), taken as the best of a few short rounds.
Divide a throughput figure by this index to compare runs from different moments.
"""

from __future__ import annotations

import time

ROUNDS = 10
OPS_PER_ROUND = 20_000


def python_speed() -> float:
    """Thousands of hot-path-like operations per second (best of ``ROUNDS``)."""
    table = {f"device-{i}": (i, f"metric-{i}".encode()) for i in range(64)}
    keys = list(table)
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        out = 0
        for n in range(OPS_PER_ROUND):
            number, head = table[keys[n & 63]]
            record = b"".join((head, repr(n / 7).encode(), b","))
            pair = (number, len(record))
            out += pair[1]
        best = min(best, time.perf_counter() - started)
    return OPS_PER_ROUND / best / 1000
