"""The contract every local-stack service implements, and the process plumbing they share.

A service installs what it needs once (cached outside the repository), starts a daemon
whose data and log live under the stack's state directory, and reports its health. All
steps are idempotent: ``install`` and ``start`` do nothing when their work is already done.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template
from typing import Any, Protocol

from kotaflow.settings import Settings

START_MARKER = "--- kotaflow stack: start"
"""Written to a daemon's log before each start, so errors quote only the latest run."""

Report = Callable[[str], None]
"""Receives one line of human-readable progress (shown by the CLI, logged by tests)."""


class ServiceError(RuntimeError):
    """A service could not be installed or started; the message says why and where to look."""


@dataclass
class ServiceStatus:
    name: str
    healthy: bool
    address: str
    version: str | None = None
    pid: int | None = None
    log: str | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Service(Protocol):
    """One daemon of the local stack."""

    name: str

    def install(self, report: Report) -> None:
        """Fetch or build what is missing (cached); a no-op when already installed."""

    def start(self, report: Report) -> None:
        """Start the daemon if it is not running and wait until it is healthy."""

    def stop(self, report: Report) -> None:
        """Stop the daemon if this stack started it."""

    def status(self) -> ServiceStatus:
        """Health, address and version, without side effects."""


@dataclass(frozen=True)
class Paths:
    """Where one service keeps its files: ``<state>/<name>/`` and ``<cache>/<name>/``."""

    state: Path
    cache: Path

    @classmethod
    def for_service(cls, settings: Settings, name: str) -> Paths:
        return cls(settings.stack.state_dir / name, settings.stack.cache_dir / name)

    @property
    def pidfile(self) -> Path:
        return self.state / "pid"

    @property
    def log(self) -> Path:
        return self.state / "log" / "service.log"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def render_template(template: Path, **fields: object) -> str:
    """Fill a ``${name}`` config template shipped beside the service's module."""
    return Template(template.read_text(encoding="utf-8")).substitute(fields)


def note_config_drift(service: str, rendered: Path, wanted: str, report: Report) -> None:
    """A running daemon keeps the config it started with: say so when the template moved on
    (in a setting: a reworded comment changes nothing the daemon reads)."""
    try:
        current = rendered.read_text(encoding="utf-8")
    except OSError:
        return
    if _settings_lines(current) != _settings_lines(wanted):
        report(
            f"{service}: {rendered} differs from what `up` would write now (template or "
            f"settings changed); `kotaflow stack down && kotaflow stack up` applies it"
        )


def _settings_lines(config: str) -> list[str]:
    return [line for line in config.splitlines() if line.strip() and not line.startswith("#")]


def require_free_port(host: str, port: int, service: str, setting: str) -> None:
    """Refuse to start when someone else (not this stack) already listens on our port."""
    if port_open(host, port):
        raise ServiceError(
            f"{service}: {host}:{port} is already taken by a process this stack did not start "
            f"(another {service}, or another state directory's stack). Stop it, or choose "
            f"another port with {setting}."
        )


def read_pid(pidfile: Path, expect: str | None = None) -> int | None:
    """The pid recorded in ``pidfile`` if that process is still alive.

    With ``expect``, the process's command line must also contain that text: after a reboot
    the recorded pid may belong to an unrelated process, which we must neither trust nor kill.
    """
    try:
        pid = int(pidfile.read_text(encoding="utf-8").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    if expect is not None and expect not in _cmdline(pid):
        return None
    return pid


def spawn(argv: Sequence[str], paths: Paths, env: dict[str, str] | None = None) -> int:
    """Start a daemon detached from our session, stdout/stderr appended to its log."""
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    with paths.log.open("ab") as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        log.write(f"{START_MARKER} {stamp}: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    paths.pidfile.write_text(str(proc.pid), encoding="utf-8")
    return proc.pid


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, paths: Paths, pid: int | None = None
) -> None:
    """Poll ``check`` until true; on timeout or daemon death raise with the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not _alive(pid):
            raise ServiceError(f"{what}: process exited early; log {paths.log}:\n{log_tail(paths)}")
        time.sleep(0.2)
    raise ServiceError(
        f"{what}: not ready after {timeout:.0f}s. Log: {paths.log}\n{log_tail(paths)}"
    )


def stop_pid(paths: Paths, timeout: float = 30.0, expect: str | None = None) -> bool:
    """SIGTERM the recorded daemon, SIGKILL after ``timeout``; True if one was running."""
    pid = read_pid(paths.pidfile, expect)
    if pid is None:
        paths.pidfile.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM) if _is_group_leader(pid) else os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    paths.pidfile.unlink(missing_ok=True)
    return True


def log_tail(paths: Paths, lines: int = 20) -> str:
    """The end of a daemon's log, from its latest start on (older runs would mislead)."""
    return file_tail(paths.log, lines, since=START_MARKER)


def file_tail(path: Path, lines: int = 20, since: str | None = None) -> str:
    """The last ``lines`` lines of a log, after the last line starting with ``since``."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log yet)"
    if since is not None:
        starts = [i for i, line in enumerate(text) if line.startswith(since)]
        text = text[starts[-1] :] if starts else text
    return "\n".join(text[-lines:])


def require_command(command: str, hint: str) -> str:
    found = shutil.which(command)
    if found is None:
        raise ServiceError(f"{command} not found: {hint}")
    return found


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return _proc_state(pid) != "Z"


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def _is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


@contextmanager
def exclusive(lock_path: Path, report: Report, waiting: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (released if the process dies); say
    ``waiting`` first if someone else holds it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            report(f"{waiting} (lock {lock_path})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield
