"""InfluxDB 2.x in the local stack: built from source once, run on loopback, set up once.

No registry we can reach ships ``influxd``, so :meth:`InfluxDB.install` runs
``build_influxdb.sh`` (Go module source + Rust libflux) and caches the binary under
``<cache>/influxdb/<version>/``. :meth:`InfluxDB.start` runs it with every file (bolt, sqlite,
TSM engine, log) under ``<state>/influxdb/`` and then reconciles the setup the pipeline and
Grafana rely on with the code every install uses (:mod:`deploy.influxdb.reconcile`): org,
buckets with retention, and tokens with the least rights each part needs. The tokens land in
:data:`TOKENS_FILE` (mode 0600) so settings find them without copying by hand. Every step is
idempotent; nothing here deletes data.

This module touches only its own cache and state directories and the HTTP API of the
``influxd`` it started.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from deploy.influxdb.reconcile import (
    initial_setup,
    plan_of,
    reconcile,
    setup_allowed,
)
from deploy.local.installers import run_logged
from deploy.local.service import (
    Paths,
    Report,
    ServiceError,
    ServiceStatus,
    read_pid,
    require_free_port,
    spawn,
    stop_pid,
    wait_until,
)
from kotaflow.secretfiles import write_private
from kotaflow.settings import Settings

NAME = "influxdb"
VERSION = "v2.7.12"
"""The newest 2.7.x release on the Go module proxy when this was written; bump deliberately."""

TOKENS_FILE = Path(NAME) / "tokens.json"
"""Where the org, bucket ids and tokens are saved, relative to ``settings.stack.state_dir``."""

OPERATOR = "operator"
"""The all-access token's role; the others are :func:`deploy.influxdb.reconcile.stage_rights`."""

BUILD_SCRIPT = Path(__file__).with_name("build_influxdb.sh")
COLD_BUILD_ESTIMATE = "10-25 minutes on 2 cores, ~3 GB of Go and cargo caches"
START_TIMEOUT_S = 90.0
ADMIN_USER = "kotaflow-admin"

# Keep the server's footprint modest: a small write cache, and a soft heap limit so Go's GC
# works harder before the process grows.
CACHE_MAX_MEMORY = str(256 * 1024 * 1024)
GOMEMLIMIT = "1GiB"


@dataclass(frozen=True)
class InfluxAccess:
    """Everything a client of the local InfluxDB needs; saved as JSON in :data:`TOKENS_FILE`."""

    url: str
    org: str
    org_id: str = ""
    buckets: dict[str, str] = field(default_factory=dict)
    """Bucket name -> bucket id."""
    tokens: dict[str, str] = field(default_factory=dict)
    """Role (:data:`OPERATOR`, :data:`PIPELINE`, :data:`GRAFANA`) -> token."""
    admin_user: str = ADMIN_USER
    admin_password: str = ""

    def token(self, role: str) -> str:
        try:
            return self.tokens[role]
        except KeyError:
            raise ServiceError(f"no {role} token in the InfluxDB tokens file") from None


def tokens_path(state_dir: Path) -> Path:
    return state_dir / TOKENS_FILE


def load_access(state_dir: Path) -> InfluxAccess | None:
    """The saved setup, or None before the first ``stack up`` has run the setup."""
    path = tokens_path(state_dir)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ServiceError(f"cannot read InfluxDB tokens file {path}: {err}") from None
    return InfluxAccess(**data)


def token_file(state_dir: Path, role: str) -> Path:
    """A file holding just one role's token, for settings that take a token file path."""
    return tokens_path(state_dir).with_name(f"{role}.token")


def save_access(state_dir: Path, access: InfluxAccess) -> None:
    """Write :data:`TOKENS_FILE` and one ``<role>.token`` per token, each mode 0600."""
    write_private(tokens_path(state_dir), json.dumps(asdict(access), indent=2) + "\n")
    for role, token in access.tokens.items():
        write_private(token_file(state_dir, role), token + "\n")


def bind_address(url: str) -> tuple[str, int]:
    """host and port of the configured URL; the local server only ever binds to loopback."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 8086
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ServiceError(f"influxdb.url {url} is not loopback: the local stack binds 127.0.0.1")
    return ("127.0.0.1" if host == "localhost" else host), port


class InfluxDB:
    """The ``influxdb`` service of the local stack (see :class:`deploy.local.service.Service`)."""

    name = NAME

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = Paths.for_service(settings, NAME)
        self.url = settings.influxdb.url.rstrip("/")
        self.host, self.port = bind_address(self.url)

    @property
    def binary(self) -> Path:
        return self.paths.cache / VERSION / "influxd"

    @property
    def data_dir(self) -> Path:
        return self.paths.state / "data"

    def install(self, report: Report) -> None:
        if self.binary.is_file():
            return
        out = self.binary.parent
        log = out / "build.log"
        report(
            f"influxdb: {VERSION} is not built yet. Building influxd from source, once per "
            f"machine ({COLD_BUILD_ESTIMATE}; Go + Rust). Cached in {out}; later starts take "
            f"seconds. Full log: {log}"
        )
        run_logged(
            ["bash", str(BUILD_SCRIPT), "--version", VERSION, "--out", str(out)],
            log,
            report,
            what=f"building influxd {VERSION}",
            progress=_build_progress,
        )
        if not self.binary.is_file():
            raise ServiceError(f"influxdb: build finished without {self.binary}; log {log}")

    def start(self, report: Report) -> None:
        pid = self._pid()
        if pid is None:
            if not self.binary.is_file():
                raise ServiceError("influxdb: not built yet; run `kotaflow stack up` to build it")
            require_free_port(self.host, self.port, NAME, "KOTAFLOW_INFLUXDB__URL")
            self.data_dir.mkdir(parents=True, exist_ok=True)
            report(f"influxdb: starting influxd {VERSION} on {self.url} (log {self.paths.log})")
            pid = spawn(self._argv(), self.paths, env=self._env())
        else:
            report(f"influxdb: already running (pid {pid}) on {self.url}")
        wait_until(self._healthy, START_TIMEOUT_S, f"influxdb on {self.url}", self.paths, pid)
        _Setup(self, report).reconcile()

    def stop(self, report: Report) -> None:
        if stop_pid(self.paths, expect=str(self.data_dir)):
            report("influxdb: stopped")

    def status(self) -> ServiceStatus:
        health = self._health()
        healthy = health.get("status") == "pass"
        pid = self._pid()
        problem = "not running" if pid is None else str(health.get("message", "unhealthy"))
        return ServiceStatus(
            name=NAME,
            healthy=healthy,
            address=self.url,
            version=health.get("version"),
            pid=pid,
            log=str(self.paths.log),
            detail="" if healthy else problem,
            extra={"tokens_file": str(tokens_path(self.settings.stack.state_dir))},
        )

    def _pid(self) -> int | None:
        # The data directory is in our command line; a recycled pid after a reboot is not.
        return read_pid(self.paths.pidfile, expect=str(self.data_dir))

    def _argv(self) -> list[str]:
        return [
            str(self.binary),
            "run",
            f"--http-bind-address={self.host}:{self.port}",
            f"--bolt-path={self.data_dir / 'influxd.bolt'}",
            f"--sqlite-path={self.data_dir / 'influxd.sqlite'}",
            f"--engine-path={self.data_dir / 'engine'}",
            "--reporting-disabled",
            "--log-level=info",
            f"--storage-cache-max-memory-size={CACHE_MAX_MEMORY}",
        ]

    def _env(self) -> dict[str, str]:
        # influxd otherwise reads config.{yaml,toml,json} from its working directory.
        return {"INFLUXD_CONFIG_PATH": str(self.paths.state), "GOMEMLIMIT": GOMEMLIMIT}

    def _health(self) -> dict[str, Any]:
        try:
            body: dict[str, Any] = httpx.get(f"{self.url}/health", timeout=2.0).json()
        except (httpx.HTTPError, ValueError) as err:
            return {"status": "fail", "message": f"no answer on {self.url}: {err}"}
        return body

    def _healthy(self) -> bool:
        return self._health().get("status") == "pass"


class _Setup:
    """Brings the server to the state kotaflow expects with the shared setup
    (:func:`deploy.influxdb.reconcile.reconcile`), after the local initial setup.

    The operator token is chosen here and saved before ``POST /api/v2/setup`` so that a crash
    mid-way never leaves a server nobody holds a token for.
    """

    def __init__(self, service: InfluxDB, report: Report) -> None:
        self.service = service
        self.report = report
        self.state_dir = service.settings.stack.state_dir
        self.plan = plan_of(service.settings)

    def reconcile(self) -> None:
        with httpx.Client(base_url=self.service.url, timeout=30.0) as http:
            access = self._onboard(http)
            http.headers["Authorization"] = f"Token {access.token(OPERATOR)}"
            result = reconcile(http, self.plan)
        for line in [f"created {what}" for what in result.created] + [
            f"drifted {what}" for what in result.drifted
        ]:
            self.report(f"influxdb: {line}")
        done = InfluxAccess(
            url=self.service.url,
            org=self.plan.org,
            org_id=result.org_id,
            buckets=result.buckets,
            tokens={**access.tokens, **result.tokens},
            admin_user=access.admin_user,
            admin_password=access.admin_password,
        )
        if done != access:
            save_access(self.state_dir, done)
            self.report(f"influxdb: org, buckets and tokens saved to {tokens_path(self.state_dir)}")

    def _onboard(self, http: httpx.Client) -> InfluxAccess:
        saved = load_access(self.state_dir)
        if not setup_allowed(http):
            if saved is None:
                raise ServiceError(
                    "influxdb: the server is already set up but "
                    f"{tokens_path(self.state_dir)} is missing, so no token is known. "
                    "Reset the local data with: kotaflow stack down --purge"
                )
            return saved
        access = saved or InfluxAccess(
            url=self.service.url,
            org=self.plan.org,
            tokens={OPERATOR: secrets.token_urlsafe(48)},
            admin_password=secrets.token_urlsafe(24),
        )
        save_access(self.state_dir, access)
        initial_setup(
            http, self.plan, access.admin_user, access.admin_password, access.token(OPERATOR)
        )
        self.report(f"influxdb: initial setup done (org {self.plan.org}, user {access.admin_user})")
        return access


def _build_progress(line: str) -> str | None:
    """The build script marks its steps and heartbeats with ``==>``; the rest goes to the log."""
    return f"influxdb build: {line[4:]}" if line.startswith("==>") else None
