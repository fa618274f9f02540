"""One comparison's figures over interleaved rounds: medians, ratios, the printed table.

Every round measures each peer once, side by side; a figure's cell is the median over the
rounds, and a ratio (kotaflow / peer) is the median of the per-round ratios, so a round
in which this shared VM ran slow for both peers cancels out. A peer that could not run
shows "not run" and why, never a number.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

KOTAFLOW = "kotaflow"
COUNTS = ("", "windows", "readings")
"""Units of figures shown as plain counts (the unit is in the row's name)."""


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    unit: str
    ratio: bool = True
    """Whether a kotaflow / peer ratio means something for this figure."""


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratios(ours: Sequence[float | None], theirs: Sequence[float | None]) -> list[float]:
    """Per-round kotaflow / peer ratios of the rounds where both were measured."""
    return [a / b for a, b in zip(ours, theirs, strict=True) if a is not None and b]


def cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit in COUNTS:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.3g} {unit}"


@dataclass
class Comparison:
    """Figures of several peers over rounds, for one of the three tables."""

    key: str
    title: str
    peers: Sequence[str]
    rows: Sequence[Row]
    rounds: int = 0
    values: dict[tuple[str, str], list[float | None]] = field(default_factory=dict)
    """(peer, figure) -> value per round (None: not measured that round)."""
    not_run: dict[str, str] = field(default_factory=dict)
    configurations: dict[str, str] = field(default_factory=dict)
    """peer -> how it was configured (printed under the table, kept in the JSON)."""
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    """Configuration files in full (name -> text), kept in the JSON only."""

    def add(self, peer: str, figures: dict[str, float | None]) -> None:
        """One round's figures of ``peer`` (call once per peer per round, rounds in order)."""
        for row in self.rows:
            self.values.setdefault((peer, row.figure), []).append(figures.get(row.figure))

    def skip(self, peer: str, reason: str) -> None:
        """``peer`` could not run in a round (the first reason is kept)."""
        self.not_run.setdefault(peer, reason)
        self.add(peer, {})

    def _measured(self, peer: str, figure: str) -> list[float]:
        return [v for v in self.values.get((peer, figure), []) if v is not None]

    def medians(self) -> dict[str, dict[str, float | None]]:
        return {
            peer: {row.figure: median(self._measured(peer, row.figure)) for row in self.rows}
            for peer in self.peers
        }

    def ratio(self, peer: str, figure: str) -> float | None:
        ours = self.values.get((KOTAFLOW, figure), [])
        theirs = self.values.get((peer, figure), [])
        return median(ratios(ours, theirs)) if ours and len(ours) == len(theirs) else None

    def others(self) -> list[str]:
        return [p for p in self.peers if p != KOTAFLOW]

    def columns(self) -> list[str]:
        cols = ["figure", *self.peers]
        cols += [f"{KOTAFLOW} / {p}" for p in self.others()]
        return cols

    def cells(self) -> list[list[str]]:
        meds = self.medians()
        out = []
        for row in self.rows:
            line = [f"{row.figure} ({row.unit})" if row.unit else row.figure]
            for peer in self.peers:
                value = meds[peer][row.figure]
                not_run = value is None and peer in self.not_run
                line.append("not run" if not_run else cell(value, row.unit))
            for peer in self.others():
                r = self.ratio(peer, row.figure) if row.ratio else None
                line.append(cell(r, "x") if r is not None else "")
            out.append(line)
        return out

    def section(self) -> dict[str, Any]:
        """The table as printed, plus its numbers (schema: see benchmarks/report.py)."""
        notes = [f"{peer} not run: {why}" for peer, why in self.not_run.items()]
        notes += self.notes
        notes += [f"{peer}: {how}" for peer, how in self.configurations.items()]
        return {
            "key": self.key,
            "title": f"{self.title} (median of {self.rounds} round{'s' * (self.rounds != 1)})",
            "columns": self.columns(),
            "rows": self.cells(),
            "notes": notes,
            "data": {
                "rounds": self.rounds,
                "medians": self.medians(),
                "ratios": {
                    peer: {row.figure: self.ratio(peer, row.figure) for row in self.rows}
                    for peer in self.others()
                },
                "per_round": {
                    f"{peer}: {figure}": values for (peer, figure), values in self.values.items()
                },
                "not_run": dict(self.not_run),
                "configurations": dict(self.configurations),
                "configuration_files": dict(self.files),
            },
        }
