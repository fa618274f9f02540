"""Run the long install steps of the local stack (apt, Maven, a one-off tool) visibly.

Each step's full output goes to a log file; the few lines a person wants to see (what is
being fetched, how far along) go to the ``report`` callback. A failed step raises
:class:`ServiceError` with the log's tail and its path, so nobody has to rerun it by hand
to learn why it failed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from deploy.local.service import Report, ServiceError, file_tail

Progress = Callable[[str], str | None]
"""Maps one output line of a step to a progress line to report, or None to keep quiet."""

APT_LOCK_WAIT_S = 300
"""Other engineers may run apt at the same time: wait for dpkg's lock instead of failing."""


def run_logged(
    argv: Sequence[str],
    log: Path,
    report: Report,
    *,
    what: str,
    progress: Progress | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> None:
    """Run ``argv`` to completion, appending its output to ``log``; raise if it fails."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8", errors="replace") as sink:
        sink.write(f"$ {' '.join(argv)}\n")
        sink.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                text=True,
                errors="replace",
            )
        except OSError as err:
            raise ServiceError(f"{what}: cannot run {argv[0]}: {err}") from None
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            shown = progress(line.rstrip()) if progress else None
            if shown:
                report(shown)
        code = proc.wait()
        sink.write(f"(exit {code})\n")
    if code != 0:
        raise ServiceError(f"{what} failed (exit {code}). Log: {log}\n{file_tail(log)}")


def apt_install(packages: Sequence[str], report: Report, log: Path) -> None:
    """Install Debian packages (after one ``apt-get update``); needs root."""
    if os.geteuid() != 0:
        raise ServiceError(
            f"{', '.join(packages)} missing and installing needs root: "
            f"sudo apt-get install -y {' '.join(packages)}"
        )
    if shutil.which("apt-get") is None:
        raise ServiceError(f"{', '.join(packages)} missing and this is not a Debian system")
    lock_wait = f"DPkg::Lock::Timeout={APT_LOCK_WAIT_S}"
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    report(f"apt: updating package lists (log {log})")
    run_logged(["apt-get", "-o", lock_wait, "update"], log, report, what="apt-get update", env=env)
    report(f"apt: installing {' '.join(packages)}")
    run_logged(
        ["apt-get", "-o", lock_wait, "install", "-y", "--no-install-recommends", *packages],
        log,
        report,
        what=f"apt-get install {' '.join(packages)}",
        progress=_apt_progress,
        env=env,
    )


def _apt_progress(line: str) -> str | None:
    if line.startswith(("Get:", "Setting up ")):
        return f"apt: {line}"
    return None


def ensure_chromium(state_dir: Path, report: Report) -> str:
    """The headless browser the page tests drive: Debian's ``chromium``, installed once if
    missing (the log goes to ``<state>/chromium-install.log``); returns its path."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        state_dir.mkdir(parents=True, exist_ok=True)
        apt_install(["chromium"], report, state_dir / "chromium-install.log")
        found = shutil.which("chromium")
    if found is None:
        raise ServiceError("chromium: installed, but no `chromium` on PATH")
    return found
