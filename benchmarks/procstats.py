"""What a process costs: peak resident memory and CPU seconds (Linux ``/proc``, rusage).

Read a child's figures while it still runs (``/proc/<pid>`` goes away at exit): CPU
seconds cover all its threads; peak RSS is the kernel's high-water mark (``VmHWM``), so a
short spike during a backlog counts even if it was freed again.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ProcessCost:
    """One process of a scenario: its peak RSS and the CPU it used during the measurement."""

    name: str
    peak_rss_mb: float
    cpu_s: float


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (all threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kb(pid: int) -> int:
    """``pid``'s peak resident set size in kB (0 if the kernel does not say)."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cost_of(name: str, pid: int, cpu_before: float = 0.0) -> ProcessCost:
    """``pid``'s cost now; ``cpu_before`` (its CPU seconds when measuring began) is subtracted."""
    return ProcessCost(name, peak_rss_kb(pid) / 1024, cpu_seconds(pid) - cpu_before)


def own_cost(name: str) -> ProcessCost:
    """This process's cost since it started (for work run in a dedicated child process).

    Peak RSS is ``VmHWM``, not rusage's ``ru_maxrss``: Linux carries ``ru_maxrss`` over
    ``execve``, so a spawned child would report its parent's peak at fork time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return ProcessCost(name, peak_rss_kb(os.getpid()) / 1024, usage.ru_utime + usage.ru_stime)
