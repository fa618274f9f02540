"""``kotaflow/`` is the foundation: no module of it but the CLI imports a stage package."""

from __future__ import annotations

import json
import subprocess
import sys

STAGE_PACKAGES = ("ingest", "processors", "devices", "deploy", "benchmarks", "tests")
ROOF = ("kotaflow.cli", "kotaflow.__main__")
"""The command line registers every part's commands: the one module allowed to reach up."""

_PROBE = """
import importlib, json, pkgutil, sys
import kotaflow
names = sorted(
    m.name for m in pkgutil.walk_packages(kotaflow.__path__, "kotaflow.")
    if m.name not in {roof!r}
)
for name in names:
    importlib.import_module(name)
print(json.dumps({{"imported": names, "loaded": sorted(sys.modules)}}))
"""


def test_foundation_imports_no_stage_package() -> None:
    probe = _PROBE.format(roof=set(ROOF))
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(out.stdout)
    assert "kotaflow.wire.raw" in result["imported"]  # the walk found the subpackages
    reached = [m for m in result["loaded"] if m.split(".")[0] in STAGE_PACKAGES]
    assert reached == [], f"the foundation imports {reached}"
