"""Quix Streams for the ``peers`` benchmark: a venv of its own, installed once and cached.

Quix Streams 3.28.1 (librdkafka through confluent-kafka, RocksDB state) is a peer we
measure against, never a dependency of kotaflow: it goes into a separate virtual
environment under ``<cache>/quixstreams/<version>/venv`` (made with ``uv`` when there is
one, else ``venv`` + ``pip``, from the interpreter running kotaflow, so nothing is
downloaded but the packages from PyPI) and stays out of ``pyproject.toml`` and
``uv.lock``. The peer app (``benchmarks/peers/quix_app.py``) runs with that venv's
``python``.

Idempotent: a marker written after the last step says the venv is complete, so an
interrupted install is redone from scratch; a lock file serialises two installs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from deploy.local.installers import run_logged
from deploy.local.service import Report, ServiceError, exclusive

QUIXSTREAMS_VERSION = "3.28.1"
INFLUXDB_CLIENT_VERSION = "1.50.0"
"""The same influxdb-client as kotaflow's lock: the peer's sink writes with it."""
MARKER = "installed"


def quixstreams_dir(cache_dir: Path, version: str = QUIXSTREAMS_VERSION) -> Path:
    return cache_dir / "quixstreams" / version


def requirements(version: str = QUIXSTREAMS_VERSION) -> list[str]:
    return [f"quixstreams=={version}", f"influxdb-client=={INFLUXDB_CLIENT_VERSION}"]


def ensure_quixstreams(cache_dir: Path, report: Report, version: str = QUIXSTREAMS_VERSION) -> Path:
    """The ``python`` of the cached Quix Streams venv, installed first if it is missing."""
    target = quixstreams_dir(cache_dir, version)
    python = target / "venv" / "bin" / "python"
    if (target / MARKER).is_file() and python.is_file():
        return python
    target.mkdir(parents=True, exist_ok=True)
    waiting = "quixstreams: waiting for another install to finish"
    with exclusive(target / "install.lock", report, waiting):
        if (target / MARKER).is_file() and python.is_file():  # another process did it
            return python
        _install(target, python, version, report)
    return python


def _install(target: Path, python: Path, version: str, report: Report) -> None:
    venv, log = target / "venv", target / "install.log"
    shutil.rmtree(venv, ignore_errors=True)  # a half-made venv from an interrupted install
    base = str(Path(sys.executable).resolve())
    packages = requirements(version)
    uv = shutil.which("uv")
    report(f"quixstreams: installing {' '.join(packages)} into {venv} (once; log {log})")
    if uv is not None:
        run_logged(
            [uv, "venv", "--quiet", "--python", base, str(venv)],
            log,
            report,
            what="quixstreams: uv venv",
        )
        run_logged(
            [uv, "pip", "install", "--python", str(python), *packages],
            log,
            report,
            what="quixstreams: uv pip install",
            progress=_progress,
        )
    else:
        run_logged([base, "-m", "venv", str(venv)], log, report, what="quixstreams: venv")
        run_logged(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", *packages],
            log,
            report,
            what="quixstreams: pip install",
            progress=_progress,
        )
    found = _installed_version(python)
    if found != version:
        raise ServiceError(f"quixstreams: venv has version {found!r}, not {version}; log {log}")
    (target / MARKER).write_text(" ".join(packages) + "\n", encoding="utf-8")
    report(f"quixstreams: {version} ready ({python})")


def _installed_version(python: Path) -> str:
    probe = "import influxdb_client, quixstreams; print(quixstreams.__version__)"
    done = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise ServiceError(f"quixstreams: the venv cannot import it:\n{done.stderr[-2000:]}")
    return done.stdout.strip()


def _progress(line: str) -> str | None:
    """uv says ``Resolved``/``Prepared``/``Installed``; pip ``Collecting``/``Successfully``."""
    if line.lstrip().startswith(("Resolved", "Prepared", "Installed", "Collecting", "Success")):
        return f"quixstreams: {line.strip()}"
    return None
