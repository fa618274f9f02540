"""Load ``deploy/compose.yaml`` the way ``docker compose config`` does, without a Docker engine.

``docker compose config`` is compose-go's loader (schema validation, interpolation,
normalisation) plus printing. When the ``docker compose`` plugin works here it is used;
otherwise ``composecheck/`` - a 40-line Go program around the same compose-go loader - is
built once (Go module proxy) and cached under the stack's cache directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

SOURCE = Path(__file__).with_name("composecheck")


def docker_compose() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    return [docker, "compose", "-f"] if probe.returncode == 0 else None


def go_binary() -> str | None:
    return shutil.which("go") or next(
        (p for p in ("/usr/local/go/bin/go",) if Path(p).is_file()), None
    )


def composecheck(cache_dir: Path) -> list[str] | None:
    """The built checker (``[path]``), or None without Go."""
    go = go_binary()
    if go is None:
        return None
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    target = cache_dir / "composecheck" / digest.hexdigest()[:16] / "composecheck"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly", "CGO_ENABLED": "0"}
        subprocess.run(
            [go, "build", "-o", str(target), "."], cwd=SOURCE, env=env, check=True, timeout=600
        )
    return [str(target)]


def load(
    compose_file: Path, env: dict[str, str], cache_dir: Path, overrides: Sequence[Path] = ()
) -> subprocess.CompletedProcess[str] | None:
    """``config`` output of the first loader available, or None when there is none;
    ``overrides`` are merged over ``compose_file`` (``docker compose -f a -f b``)."""
    command = docker_compose()
    if command is not None:
        command = [*command, str(compose_file)]
        for override in overrides:
            command += ["-f", str(override)]
        command += ["config"]
    else:
        checker = composecheck(cache_dir)
        if checker is None:
            return None
        command = [*checker, str(compose_file), *map(str, overrides)]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KOTAFLOW_", "GRAFANA_"))}
    return subprocess.run(
        command, env={**base, **env}, capture_output=True, text=True, check=False, timeout=120
    )
