"""These tests pin what settings do by themselves: the caller's KOTAFLOW_* variables (a CI
run on other ports, say) must not leak in."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_ambient_kotaflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("KOTAFLOW_"):
            monkeypatch.delenv(name)
