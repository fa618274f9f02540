"""``kotaflow/`` is the foundation: no module of it but the CLI's roof imports a stage package.

The roof is the command line (:mod:`kotaflow.cli`) and the two commands that compose every
part of the pipeline: ``kotaflow status`` (:mod:`kotaflow.status`: the stages' status with
the local stack's services) and ``kotaflow run`` (:mod:`kotaflow.run`: every part started
and watched). They may import the parts (inside the command, so ``kotaflow --help`` stays
fast); nothing in the foundation may import them.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import kotaflow

STAGE_PACKAGES = ("ingest", "processors", "devices", "deploy", "benchmarks", "tests")
ROOF = ("kotaflow.cli", "kotaflow.__main__", "kotaflow.status", "kotaflow.run")
"""The command line and the commands that compose every part: the modules allowed to reach up."""

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


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at the top or inside a function (line, name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    return found


def test_no_foundation_module_imports_a_stage_or_the_roof_even_inside_a_function() -> None:
    """The probe above sees module-level imports only; an import inside a function reaches
    up just the same when it runs."""
    root = Path(kotaflow.__file__).parent
    wrong = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module in ROOF:
            continue
        for line, name in _imports(path):
            if name.split(".")[0] in STAGE_PACKAGES or name in ROOF:
                wrong.append(f"{module}:{line} imports {name}")
    assert wrong == [], "the foundation reaches up: " + "; ".join(wrong)
