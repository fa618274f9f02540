"""``kotaflow devices list|check|credentials|tls``: see the registered devices, validate device
files, generate the broker's accounts and ACL from the registry and the TLS certificate the
devices connect to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deploy.local.tls import ensure_tls
from devices.catalogue import load_catalogue
from devices.credentials import CredentialsError, describe, write_broker_files
from devices.filecheck import check_device_file
from devices.fleet import Fleet, load_fleet
from devices.sourcefile import DeviceFileError
from kotaflow.context import settings_of

app = typer.Typer(
    help="The device catalogue and registry.\n\n"
    "Example: kotaflow devices list --json | jq '.[] | select(.dev_eui != null) | .id'",
    no_args_is_help=True,
)
errors = Console(stderr=True, highlight=False)


def _fail(err: DeviceFileError) -> typer.Exit:
    for problem in err.problems:
        # one problem per line, never wrapped, never read as markup: editors and grep want it
        errors.print(Text.assemble(("error: ", "red"), str(problem)), soft_wrap=True)
    return typer.Exit(1)


@app.command("list")
def list_devices(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the registered devices (settings.registry_file, else the packaged sample).

    Example: kotaflow devices list --json
    """
    try:
        fleet = load_fleet(settings_of(ctx))
    except DeviceFileError as err:
        raise _fail(err) from None
    if as_json:
        typer.echo(json.dumps(devices_json(fleet), indent=2))
        return
    table = Table(title=f"{fleet.registry.regency}: {len(fleet.registry)} devices")
    for column in ("id", "type", "kecamatan", "name", "dev_eui", "enabled", "metrics"):
        table.add_column(column)
    for device in fleet.registry:
        table.add_row(
            device.id,
            device.type,
            device.kecamatan,
            device.name,
            device.dev_eui or "",
            "yes" if device.enabled else "no",
            ", ".join(fleet.metrics_of(device)),
        )
    Console().print(table)


def devices_json(fleet: Fleet) -> list[dict[str, Any]]:
    """What ``devices list --json`` prints: one object per device."""
    return [
        {
            "id": d.id,
            "type": d.type,
            "name": d.name,
            "kecamatan": d.kecamatan,
            "latitude": d.latitude,
            "longitude": d.longitude,
            "dev_eui": d.dev_eui,
            "tts_device_id": d.tts_device_id,
            "enabled": d.enabled,
            "metrics": list(fleet.metrics_of(d)),
        }
        for d in fleet.registry
    ]


@app.command()
def check(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A registry or catalogue YAML file.")],
) -> None:
    """Validate a registry or a catalogue file (detected from its content).

    Prints FILE:LINE: FIELD: REASON for each problem and exits with 1 if there is any.
    A registry is checked against settings.catalogue_file (else the packaged catalogue).

    Example: kotaflow devices check devices/registry.yaml
    """
    try:
        kind, problems = check_device_file(
            file, lambda: load_catalogue(settings_of(ctx).catalogue_file)
        )
    except DeviceFileError as err:
        errors.print("[red]error:[/red] the catalogue to check against is invalid")
        raise _fail(err) from None
    if problems:
        raise _fail(DeviceFileError(problems))
    typer.echo(f"{file}: valid {kind}")


@app.command()
def credentials(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Argument(help="Where to write credentials.json, passwd, acl.")
    ],
    rotate: Annotated[
        list[str] | None,
        typer.Option("--rotate", help="Give this account a new password (repeatable)."),
    ] = None,
) -> None:
    """Write Mosquitto's password and ACL files and the account passwords from the registry.

    Every enabled device gets an account named by its id that may publish only on its own
    topics; kotaflow's services get theirs (see devices/credentials.py). Passwords already
    in DIRECTORY are kept. Point Mosquitto's password_file and acl_file at passwd and acl
    (then `kill -HUP` it), and kotaflow's mqtt.credentials_file at credentials.json. No
    password is printed: hand one to a device with
    `jq -r '.accounts["rtg-aq-01"]' DIRECTORY/credentials.json`.

    Example: kotaflow devices credentials /etc/mosquitto/kotaflow --rotate rtg-aq-01
    """
    try:
        fleet = load_fleet(settings_of(ctx))
        report = write_broker_files(fleet.registry, directory, rotate or ())
    except DeviceFileError as err:
        raise _fail(err) from None
    except CredentialsError as err:
        errors.print(Text.assemble(("error: ", "red"), str(err)), soft_wrap=True)
        raise typer.Exit(1) from None
    typer.echo(f"{directory}: {describe(report)}")


@app.command("tls")
def tls(
    directory: Annotated[
        Path, typer.Argument(help="Where to keep tls/ca.crt, tls/server.crt, tls/server.key.")
    ],
    hosts: Annotated[
        list[str],
        typer.Option("--host", help="A name devices connect to (repeatable; DNS name or IP)."),
    ],
) -> None:
    """Make the CA devices trust and the broker's TLS certificate, in DIRECTORY/tls.

    The same code as the local stack's and compose's Kafka certificate (deploy/local/tls.py):
    made once, kept, re-issued 30 days before it expires or when a new --host is asked for
    (then reload Mosquitto). The certificate also names localhost and 127.0.0.1, so clients
    on the broker's own host verify it too. Give devices DIRECTORY/tls/ca.crt; the keys
    (0600) never leave DIRECTORY.

    Example: kotaflow devices tls /etc/mosquitto/kotaflow --host mqtt.manggaraikab.go.id
    """
    files = ensure_tls(directory, hosts, typer.echo)
    typer.echo(f"{files.ca_cert.parent}: CA {files.ca_cert.name}, {files.server_cert.name}")
