"""``kotaflow devices list|check|credentials|tls|add|import``: see the registered devices,
validate device files, generate the broker's accounts and ACL from the registry and the TLS
certificate devices connect to, onboard new devices (``devices/onboarding.py``)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deploy.local.tls import TlsFiles, ensure_tls_files
from devices.catalogue import load_catalogue
from devices.credentials import (
    CREDENTIALS_FILE,
    CredentialsError,
    describe,
    write_broker_files,
)
from devices.filecheck import check_device_file
from devices.fleet import Fleet, load_fleet
from devices.onboarding import (
    Onboarding,
    Outcome,
    RowResult,
    add_devices,
    connection_settings,
    rows_of,
    save,
)
from devices.registry import Registry
from devices.sourcefile import DeviceFileError
from kotaflow.context import settings_of
from kotaflow.mqtt import local_credentials_file, read_credentials
from kotaflow.settings import Settings

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
    last_seen: Annotated[
        bool,
        typer.Option(
            "--last-seen/--no-last-seen",
            help="Add last seen, battery and link quality from InfluxDB (when reachable).",
        ),
    ] = True,
) -> None:
    """List the registered devices, with when each was last heard from.

    The registry is settings.registry_file, else the packaged sample.

    Example: kotaflow devices list --json
    """
    settings = settings_of(ctx)
    try:
        fleet = load_fleet(settings)
    except DeviceFileError as err:
        raise _fail(err) from None
    seen = _last_seen(settings) if last_seen else None
    if as_json:
        listed = devices_json(fleet)
        if seen is not None:
            for item in listed:
                found = seen.get(item["id"])
                item["last_seen"] = _iso(found.last_seen_ms) if found else None
                item["battery"] = found.battery if found else None
                item["link"] = found.link if found else {}
        typer.echo(json.dumps(listed, indent=2))
        return
    table = Table(title=f"{fleet.registry.regency}: {len(fleet.registry)} devices")
    columns = ["id", "type", "kecamatan", "name", "dev_eui", "enabled", "metrics"]
    if seen is not None:
        columns += ["last seen (UTC)", "battery", "link"]
    for column in columns:
        table.add_column(column, no_wrap=column == "id")
    for device in fleet.registry:
        row = [
            device.id,
            device.type,
            device.kecamatan,
            device.name,
            device.dev_eui or "",
            "yes" if device.enabled else "no",
            ", ".join(fleet.metrics_of(device)),
        ]
        if seen is not None:
            found = seen.get(device.id)
            row += [
                _iso(found.last_seen_ms)[:19] if found else "never",
                f"{found.battery:g}" if found and found.battery is not None else "",
                " ".join(f"{k} {v:g}" for k, v in found.link.items()) if found else "",
            ]
        table.add_row(*row)
    Console().print(table)


def _last_seen(settings: Settings) -> dict[str, Any] | None:
    """Last seen per device from InfluxDB; None (and a note) when it cannot be read."""
    import asyncio

    from processors.status import last_seen

    try:
        return asyncio.run(asyncio.wait_for(last_seen(settings), 10))
    except Exception as err:  # the registry listing must not depend on InfluxDB
        errors.print(f"[yellow]note:[/yellow] last seen unavailable ({type(err).__name__}: {err})")
        return None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


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
        Path, typer.Argument(help="Where to keep ca.crt, ca.key, server.crt, server.key.")
    ],
    hosts: Annotated[
        list[str],
        typer.Option("--host", help="A name devices connect to (repeatable; DNS name or IP)."),
    ],
    ca_name: Annotated[
        str, typer.Option(help="The CA's name when it is made (compose's public service: its own).")
    ] = "kotaflow MQTT CA",
) -> None:
    """Make the CA devices trust and the broker's TLS certificate, in DIRECTORY.

    The same code as the local stack's and compose's Kafka certificate (deploy/local/tls.py):
    made once, kept, re-issued 30 days before it expires or when a new --host is asked for
    (then reload Mosquitto). The certificate also names localhost and 127.0.0.1, so clients
    on the broker's own host verify it too. Give devices DIRECTORY/ca.crt; the keys (0600)
    never leave DIRECTORY.

    Example: kotaflow devices tls /etc/mosquitto/kotaflow/tls --host mqtt.manggaraikab.go.id
    """
    files = ensure_tls_files(TlsFiles.in_folder(directory), hosts, typer.echo, ca_name)
    typer.echo(f"{files.ca_cert.parent}: CA {files.ca_cert.name}, {files.server_cert.name}")


RegistryToEdit = Annotated[
    Path | None, typer.Option(help="Registry file to edit (default: settings.registry_file).")
]
CredentialsDir = Annotated[
    Path | None,
    typer.Option(help="Write broker accounts here (default: the local stack's broker)."),
]


def _registry_to_edit(settings: Settings, registry: Path | None) -> Path:
    path = registry or settings.registry_file
    if path is None:
        errors.print(
            "[red]error:[/red] no registry file to edit: set registry_file "
            "(KOTAFLOW_REGISTRY_FILE) or pass --registry (the packaged sample is not edited)"
        )
        raise typer.Exit(2)
    return path


def _onboard(
    settings: Settings,
    registry: Path | None,
    credentials_dir: Path | None,
    rows: list[dict[str, Any]],
    dry_run: bool = False,
) -> tuple[Onboarding, str | None]:
    """Add the rows (registry first validated in memory, broker accounts written, then the
    registry file replaced); the outcome and where the accounts went."""
    path = _registry_to_edit(settings, registry)
    try:
        catalogue = load_catalogue(settings.catalogue_file)
        result = add_devices(path, catalogue, rows)
    except DeviceFileError as err:
        raise _fail(err) from None
    if dry_run or not result.added:
        return result, None
    try:
        where = _write_accounts(settings, path, result.registry, credentials_dir)
    except CredentialsError as err:
        errors.print(Text.assemble(("error: ", "red"), str(err)), soft_wrap=True)
        raise typer.Exit(1) from None
    save(path, result.text)
    return result, where


def _write_accounts(
    settings: Settings, path: Path, registry: Registry, credentials_dir: Path | None
) -> str | None:
    """The broker accounts of ``registry``: in ``credentials_dir`` if given, else the local
    stack's (its running broker reloads them); where they went, or None."""
    if credentials_dir is not None:
        write_broker_files(registry, credentials_dir)
        return str(credentials_dir)
    if not _local_broker_follows(settings, path):
        return None
    from deploy.local.mosquitto import Mosquitto

    broker = Mosquitto(settings)
    if broker.reload_accounts(lambda line: errors.print(line), registry) is None:
        return None
    return str(broker.credentials_file.parent)


def _local_broker_follows(settings: Settings, path: Path) -> bool:
    """The local broker's accounts follow settings.registry_file only."""
    return settings.registry_file is not None and (
        path.resolve() == settings.registry_file.resolve()
    )


def _accounts_of_registered(
    settings: Settings, registry: Path | None, credentials_dir: Path | None
) -> str | None:
    """Where the accounts of a device already registered are (nothing was written now)."""
    if credentials_dir is not None:
        return str(credentials_dir)
    if not _local_broker_follows(settings, _registry_to_edit(settings, registry)):
        return None
    return str(local_credentials_file(settings.stack.state_dir).parent)


def _password(settings: Settings, where: str | None, device: str) -> str | None:
    if where is None:
        return None
    found = read_credentials(Path(where) / CREDENTIALS_FILE).get(device)
    return found.get_secret_value() if found is not None else None


def _results_table(results: list[RowResult]) -> Table:
    table = Table(title="devices")
    for column in ("row", "device", "result", "reason"):
        table.add_column(column, overflow="fold")
    styles = {Outcome.ADDED: "green", Outcome.UNCHANGED: "dim", Outcome.ERROR: "red"}
    for r in results:
        table.add_row(str(r.row), r.device, Text(r.outcome.value, styles[r.outcome]), r.reason)
    return table


@app.command()
def add(
    ctx: typer.Context,
    device_id: Annotated[str, typer.Argument(help="The new device's id (its broker user).")],
    device_type: Annotated[
        str, typer.Option("--type", prompt="Type (catalogue)", help="A catalogue type.")
    ],
    name: Annotated[str, typer.Option(prompt="Name", help="Where it is, for people.")],
    kecamatan: Annotated[str, typer.Option(prompt=True, help="Its kecamatan (district).")],
    latitude: Annotated[float, typer.Option(prompt=True, help="Degrees, WGS 84.")],
    longitude: Annotated[float, typer.Option(prompt=True, help="Degrees, WGS 84.")],
    elevation_m: Annotated[
        float, typer.Option("--elevation-m", prompt="Elevation (m)", help="Metres above sea.")
    ],
    install_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default: today).")] = None,
    dev_eui: Annotated[str | None, typer.Option(help="LoRaWAN DevEUI, 16 hex digits.")] = None,
    tts_device_id: Annotated[str | None, typer.Option(help="The Things Stack id.")] = None,
    registry: RegistryToEdit = None,
    credentials_dir: CredentialsDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Register a device, create its broker account and print how it connects.

    The entry is validated and appended to the registry (comments and order kept). Asks
    for what the flags do not give.

    Example: kotaflow devices add rtg-aq-09 --type air_quality --name "Pasar Baru"
    --kecamatan Ruteng --latitude -8.61 --longitude 120.46 --elevation-m 1160
    """
    settings = settings_of(ctx)
    row: dict[str, Any] = {
        "id": device_id,
        "type": device_type,
        "name": name,
        "kecamatan": kecamatan,
        "latitude": latitude,
        "longitude": longitude,
        "elevation_m": elevation_m,
        "install_date": install_date or date.today().isoformat(),
    }
    if dev_eui:
        row["dev_eui"] = dev_eui
    if tts_device_id:
        row["tts_device_id"] = tts_device_id
    result, where = _onboard(settings, registry, credentials_dir, [row])
    (outcome,) = result.results
    if outcome.outcome is Outcome.ERROR:
        errors.print(Text.assemble(("error: ", "red"), f"{device_id}: {outcome.reason}"))
        raise typer.Exit(1)
    device = result.registry.get(device_id)
    assert device is not None
    if outcome.outcome is Outcome.UNCHANGED:
        where = _accounts_of_registered(settings, registry, credentials_dir)
    catalogue = load_catalogue(settings.catalogue_file)
    connection = connection_settings(
        settings, catalogue, device, _password(settings, where, device_id)
    )
    connection["result"] = outcome.outcome.value
    if as_json:
        typer.echo(json.dumps(connection, indent=2))
        return
    typer.echo(f"{device_id}: {outcome.outcome.value}")
    if where is None and outcome.outcome is Outcome.ADDED:
        typer.echo(
            "no broker account written (no local broker for this registry): run "
            "`kotaflow devices credentials DIR` for your broker and reload it"
        )
    for key, value in connection.items():
        if key not in ("device", "result"):
            typer.echo(f"{key:>16}: {json.dumps(value) if isinstance(value, dict) else value}")


@app.command("import")
def import_devices(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A .csv (header row of field names) or .json.")],
    registry: RegistryToEdit = None,
    credentials_dir: CredentialsDir = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check only, change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Add many devices: one result per row (added, unchanged, error with the reason).

    A row is added whole or not at all; the registry file is replaced once, after the
    broker accounts are written. Exits 1 if any row is an error.

    Example: kotaflow devices import new-devices.csv --dry-run
    """
    settings = settings_of(ctx)
    try:
        rows = rows_of(file)
    except (OSError, ValueError) as err:
        errors.print(Text.assemble(("error: ", "red"), str(err)))
        raise typer.Exit(2) from None
    result, where = _onboard(settings, registry, credentials_dir, rows, dry_run)
    if as_json:
        out = {
            "dry_run": dry_run,
            "accounts": where,
            "results": [r.as_json() for r in result.results],
        }
        typer.echo(json.dumps(out, indent=2))
    else:
        Console().print(_results_table(result.results))
        counts = {o: sum(r.outcome is o for r in result.results) for o in Outcome}
        typer.echo(", ".join(f"{n} {o.value}" for o, n in counts.items()))
    if any(r.outcome is Outcome.ERROR for r in result.results):
        raise typer.Exit(1)
