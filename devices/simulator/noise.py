"""Deterministic, random-access randomness: the same (key, index) always gives the same draw.

The simulator's signals are pure functions of time, so that any instant can be computed on
its own (a late burst needs readings from hours ago) and a run is reproducible from its
seed. ``random.Random`` is sequential; these helpers hash instead (SplitMix64), which makes
"the noise of device X at minute 1234" a single cheap call. Keys come from :func:`key_of`,
which is stable across processes (unlike ``hash()`` of a string).
"""

from __future__ import annotations

import hashlib
import math

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_TO_UNIT = 1.0 / (1 << 53)


def key_of(*parts: str | int) -> int:
    """A stable 64-bit key for a tuple of names and numbers (e.g. seed, device id, metric)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def mix64(value: int) -> int:
    """SplitMix64's finaliser: a bijective scramble of 64 bits."""
    z = (value + _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def uniform(key: int, index: int = 0) -> float:
    """A uniform draw in [0, 1) for (key, index)."""
    return (mix64(key ^ ((index * _GOLDEN) & _MASK)) >> 11) * _TO_UNIT


def between(key: int, index: int, low: float, high: float) -> float:
    """A uniform draw in [low, high) for (key, index)."""
    return low + (high - low) * uniform(key, index)


def normal(key: int, index: int = 0) -> float:
    """A standard normal draw for (key, index) (Box-Muller on two hashed uniforms)."""
    u1 = uniform(key, 2 * index) or _TO_UNIT
    u2 = uniform(key, 2 * index + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def smooth(key: int, t: float, period: float) -> float:
    """Smooth value noise in [-1, 1]: random lattice values every ``period``, eased between.

    Used for slow wander (cloud cover, sensor drift, gusts) that must not jump between two
    readings a few seconds apart.
    """
    x = t / period
    cell = math.floor(x)
    frac = x - cell
    ease = frac * frac * (3.0 - 2.0 * frac)
    # uniform(key, cell) and uniform(key, cell + 1), inlined: this is the hottest function.
    ends = []
    for index in (cell, cell + 1):
        z = ((key ^ ((index * _GOLDEN) & _MASK)) + _GOLDEN) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        ends.append(((z ^ (z >> 31)) >> 11) * _TO_UNIT * 2.0 - 1.0)
    a, b = ends
    return a + (b - a) * ease
