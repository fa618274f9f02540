"""Fixtures for the Grafana tests: the bundle built once from the packaged fleet and rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.grafana.bundle import Bundle, build_bundle
from deploy.grafana.context import BuildContext, load_context
from deploy.grafana.provisioning import Rendered, render
from kotaflow.settings import Settings


@pytest.fixture(scope="session")
def context(settings: Settings) -> BuildContext:
    return load_context(settings)


@pytest.fixture(scope="session")
def bundle(settings: Settings) -> Bundle:
    return build_bundle(settings)


@pytest.fixture(scope="session")
def rendered(bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Rendered]:
    out = tmp_path_factory.mktemp("provisioning")
    return out, render(bundle, out)
