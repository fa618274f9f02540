"""Fault injection: which messages go wrong, how, and which devices stay silent.

``--faults malformed=0.01,out_of_range=0.01,duplicate=0.01,late=0.01,skew=0.01,silent=0.05``
gives the share of *messages* of each faulty kind and the share of *devices* that send
nothing. Shares are honoured exactly, not just on average: messages are dealt in blocks of
:data:`BLOCK` whose fault counts follow the running target (``round(share * n)``), and the
order inside a block is shuffled from the seed. A test can therefore assert counts, and
the faults still land on random devices at random moments.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum

from devices.simulator.noise import key_of

BLOCK = 200


class Kind(StrEnum):
    """What a published message is. Every message has exactly one kind."""

    NORMAL = "normal"
    MALFORMED = "malformed"
    """Not JSON, wrong shape, wrong types or NaN: rejected by the decoder."""
    OUT_OF_RANGE = "out_of_range"
    """One value outside its metric's physical range; the others are fine."""
    DUPLICATE = "duplicate"
    """The device's previous message again, byte for byte."""
    LATE = "late"
    """Buffered readings 1-24 h old, sent together (accepted: within the age limit)."""
    SKEW = "skew"
    """Timestamps 6-60 min in the future (device clock wrong): rejected."""


class Malformation(StrEnum):
    """How a malformed message is broken."""

    TRUNCATED = "truncated"
    NOT_JSON = "not_json"
    BAD_SHAPE = "bad_shape"
    BAD_TYPE = "bad_type"
    NAN = "nan"


FAULT_KINDS: tuple[Kind, ...] = tuple(k for k in Kind if k is not Kind.NORMAL)


@dataclass(frozen=True, slots=True)
class FaultMix:
    """Shares of faulty messages by kind, and of silent devices."""

    malformed: float = 0.0
    out_of_range: float = 0.0
    duplicate: float = 0.0
    late: float = 0.0
    skew: float = 0.0
    silent: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            share = getattr(self, f.name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"fault share {f.name}={share} must be between 0 and 1")
        if self.faulty_share > 1.0:
            raise ValueError(f"fault shares of messages add up to {self.faulty_share:g} > 1")
        if self.silent >= 1.0:
            raise ValueError("silent=1 would leave no device sending")

    @classmethod
    def parse(cls, spec: str) -> FaultMix:
        """``"malformed=0.01,silent=0.05"`` -> FaultMix; ValueError naming what is wrong."""
        names = {f.name for f in fields(cls)}
        shares: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, value = item.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in names:
                known = ", ".join(sorted(names))
                raise ValueError(f"bad fault {item!r}: expected KIND=SHARE with KIND in {known}")
            if name in shares:
                raise ValueError(f"fault {name!r} given twice")
            try:
                shares[name] = float(value)
            except ValueError:
                raise ValueError(f"bad fault {item!r}: {value.strip()!r} is not a number") from None
        return cls(**shares)

    def share(self, kind: Kind) -> float:
        """Share of messages of ``kind`` (normal: what the faults leave)."""
        if kind is Kind.NORMAL:
            return 1.0 - self.faulty_share
        return float(getattr(self, kind.value))

    @property
    def faulty_share(self) -> float:
        return sum(self.share(k) for k in FAULT_KINDS)

    def __str__(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name):g}" for f in fields(self))


class FaultPlan:
    """Deals message kinds: exact shares per block, shuffled order, reproducible from a seed."""

    def __init__(self, mix: FaultMix, seed: int) -> None:
        self._mix = mix
        self._seed = seed
        self._block: list[Kind] = []
        self._blocks = 0

    def next_kind(self) -> Kind:
        if not self._block:
            self._block = self._deal(self._blocks)
            self._blocks += 1
        return self._block.pop()

    def _deal(self, index: int) -> list[Kind]:
        block: list[Kind] = []
        for kind in FAULT_KINDS:
            share = self._mix.share(kind)
            block += [kind] * (round(share * BLOCK * (index + 1)) - round(share * BLOCK * index))
        block += [Kind.NORMAL] * (BLOCK - len(block))
        random.Random(key_of(self._seed, "faults", index)).shuffle(block)
        return block


def silent_devices(device_ids: Sequence[str], share: float, seed: int) -> frozenset[str]:
    """The ``round(share * n)`` devices that send nothing, drawn from the seed."""
    count = round(share * len(device_ids))
    ordered = sorted(device_ids)
    random.Random(key_of(seed, "silent")).shuffle(ordered)
    return frozenset(ordered[:count])
