"""``kotaflow backup DIR`` and ``kotaflow restore DIR`` (see :mod:`deploy.backup`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deploy.backup import run
from deploy.backup.manifest import BackupError
from deploy.local.service import ServiceError
from kotaflow.context import AppContext, settings_of

console = Console(stderr=True, highlight=False)

TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--influx-token-file",
        help="File with InfluxDB's operator (all-access) token; default: the local stack's.",
    ),
]


def _report(line: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {line}")


def backup(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="New or empty directory for the backup.")],
    influx_token_file: TokenFile = None,
) -> None:
    """Back up InfluxDB, the alerting state, broker credentials and the settings files in use.

    The directory gets mode 0700: it holds tokens, passwords and the CA key.

    Example: kotaflow backup /var/backups/kotaflow/$(date +%F)
    """
    root = ctx.find_root().obj
    config_file = root.config_file if isinstance(root, AppContext) else None
    try:
        run.backup(settings_of(ctx), config_file, directory, _report, influx_token_file)
    except (BackupError, ServiceError, OSError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None


def restore(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="A directory `kotaflow backup` wrote.")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace InfluxDB data, alert state and differing files."),
    ] = False,
    files_dir: Annotated[
        Path | None,
        typer.Option(
            "--files-dir", help="Write the settings/registry/rules files here, not where they were."
        ),
    ] = None,
    influx_token_file: TokenFile = None,
) -> None:
    """Restore a backup into the stack the settings name, after checking every checksum.

    Refuses to replace anything that holds data unless --force. Stop `kotaflow alert` and the
    processors first; start the stack (`kotaflow stack up`) so InfluxDB is up.

    Example: kotaflow restore /var/backups/kotaflow/2026-12-04 --files-dir /etc/kotaflow
    """
    try:
        run.restore(
            settings_of(ctx),
            directory,
            _report,
            force=force,
            files_dir=files_dir,
            token_path=influx_token_file,
        )
    except (BackupError, ServiceError, OSError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(1) from None
