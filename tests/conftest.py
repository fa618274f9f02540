"""Shared fixtures. Tests marked ``services`` talk to the real local stack, started once."""

from __future__ import annotations

import logging

import pytest

from kotaflow.settings import Settings, load_settings

log = logging.getLogger("tests.stack")


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Settings:
    """The local stack, up and healthy (idempotent: a running stack is left as it is)."""
    from deploy.local import stack as local_stack

    statuses = local_stack.up(settings, log.info)
    unhealthy = [s for s in statuses if not s.healthy]
    if unhealthy:
        pytest.fail(f"local stack unhealthy: {unhealthy}")
    return settings
