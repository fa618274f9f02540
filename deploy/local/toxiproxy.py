"""Toxiproxy for the edge's weak-link tests: built once from the Go module proxy and cached.

``github.com/Shopify/toxiproxy/v2`` v2.5.0 (a real TCP proxy with an HTTP API for latency,
jitter, bandwidth caps, timeouts and resets) is built with ``go install`` into
``<cache>/toxiproxy/<version>/`` (about 15 s here) and reused after that, as the stack
caches its InfluxDB build. The binary ``go install`` makes is named ``server``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deploy.local.installers import run_logged
from deploy.local.service import Report, ServiceError

TOXIPROXY_VERSION = "v2.5.0"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"


def toxiproxy_dir(cache_dir: Path, version: str = TOXIPROXY_VERSION) -> Path:
    return cache_dir / "toxiproxy" / version


def ensure_toxiproxy(cache_dir: Path, report: Report, version: str = TOXIPROXY_VERSION) -> Path:
    """The cached ``toxiproxy-server`` binary, built with Go if it is not there yet."""
    target = toxiproxy_dir(cache_dir, version)
    binary = target / "server"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    go = shutil.which("go") or shutil.which("go", path="/usr/local/go/bin:/usr/lib/go/bin")
    if go is None:
        raise ServiceError("toxiproxy: no Go toolchain to build it (apt-get install golang)")
    report(f"toxiproxy: building {TOXIPROXY_MODULE}@{version} (once, ~15 s)")
    target.mkdir(parents=True, exist_ok=True)
    run_logged(
        [go, "install", f"{TOXIPROXY_MODULE}@{version}"],
        target / "build.log",
        report,
        what="toxiproxy build",
        env={"GOBIN": str(target), "CGO_ENABLED": "0"},
    )
    if not binary.is_file():
        raise ServiceError(f"toxiproxy: go install finished but {binary} is missing")
    return binary
