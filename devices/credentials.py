"""Broker accounts from the registry: who may publish or read which topics, and passwords.

``kotaflow devices credentials DIR`` (and ``kotaflow stack up`` for the local broker)
writes three files for Mosquitto:

* ``credentials.json`` (0600): user name -> password, for the clients and for handing a
  device its password; kotaflow reads it through ``mqtt.credentials_file``;
* ``passwd`` (0600): the same accounts as Mosquitto's PBKDF2-SHA512 hashes (``$7$``), made
  here so no password ever passes through a command line;
* ``acl``: what each account may do (Mosquitto denies everything else).

Accounts and rights (one rule table, :func:`acl_text`):

* each enabled device, user name = its registry id: publish on ``kotaflow/<id>/telemetry``
  and ``kotaflow/<id>/senml`` only;
* ``kotaflow-chirpstack``: publish ChirpStack's ``application/#`` and ``kotaflow-tts``: The
  Things Stack's ``v3/#`` (LoRaWAN uplinks come from the network server, keyed by DevEUI
  or network-server id, so the network server's integration holds the account);
* ``kotaflow-gateway``: publish on every device topic (multi-device gateways; tests and
  benchmarks with made-up devices);
* ``kotaflow-bridge``: read every device topic, and read and write its own
  ``kotaflow-bridge/#`` (the marker that ends its session backlog, ingest/mqtt.py);
* ``kotaflow-health``: connect, nothing else;
* ``kotaflow-edge-<kecamatan>`` (:func:`edge_account`), one per kecamatan with enabled
  devices: publish exactly the topics of that kecamatan's devices (their own two topics,
  their ChirpStack and The Things Stack uplink topics when they have a DevEUI), for the
  store-and-forward gateway there (edge/).

Rights are listed per device rather than with a ``pattern ... %u`` rule, so only
registered, enabled devices can publish at all and no service account gains device rights.
Passwords already in the directory are kept (re-running is harmless); new accounts get
random ones, removed devices lose theirs, ``rotate`` replaces chosen ones.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from devices.registry import Registry
from devices.topics import SUBSCRIPTIONS, device_topic
from kotaflow.mqtt import Account, credentials_json, read_credentials
from kotaflow.secretfiles import write_private, write_private_if_changed
from kotaflow.wire.raw import PayloadFormat

CREDENTIALS_FILE = "credentials.json"
PASSWD_FILE = "passwd"
ACL_FILE = "acl"
PBKDF2_ITERATIONS = 101
"""Mosquitto 2.0's own default for ``$7$`` hashes (mosquitto_passwd writes the same)."""
SALT_BYTES = 12
BRIDGE_OWN_TREE = "kotaflow-bridge/#"
NETWORK_SERVER_TREES = {Account.CHIRPSTACK: "application/#", Account.TTS: "v3/#"}


class CredentialsError(ValueError):
    """The registry cannot be turned into broker accounts (the message says why)."""


@dataclass(frozen=True, slots=True)
class CredentialsReport:
    """What :func:`write_broker_files` did, without any password."""

    accounts: int
    added: tuple[str, ...]
    removed: tuple[str, ...]
    rotated: tuple[str, ...]
    changed: bool
    """True when ``passwd`` or ``acl`` changed: a running broker must reload them."""


def publishing_account(fmt: PayloadFormat, device_id: str) -> Account | str:
    """The account a message in ``fmt`` from ``device_id`` is published with in the field."""
    if fmt is PayloadFormat.CHIRPSTACK_V4:
        return Account.CHIRPSTACK
    if fmt is PayloadFormat.TTS_V3:
        return Account.TTS
    return device_id


def device_accounts(registry: Registry) -> list[str]:
    """Enabled devices, each an account named by its id; refuses ids taken by a service."""
    taken = sorted(d.id for d in registry if d.id in set(Account))
    if taken:
        raise CredentialsError(
            f"{registry.source}: device id(s) {', '.join(taken)} are kotaflow's own broker "
            "account names; rename the device(s)"
        )
    return [d.id for d in registry if d.enabled]


EDGE_ACCOUNT_PREFIX = "kotaflow-edge-"


def edge_account(kecamatan: str) -> str:
    """The edge gateway account of a kecamatan: ``Satar Mese Barat`` ->
    ``kotaflow-edge-satar-mese-barat``."""
    return EDGE_ACCOUNT_PREFIX + re.sub(r"[^a-z0-9]+", "-", kecamatan.lower()).strip("-")


def edge_topics(registry: Registry) -> dict[str, list[str]]:
    """Edge account -> the topics its kecamatan's enabled devices publish on."""
    topics: dict[str, list[str]] = {}
    for device in registry:
        if not device.enabled:
            continue
        own = topics.setdefault(edge_account(device.kecamatan), [])
        own += [
            device_topic(f, device.id)
            for f in (PayloadFormat.NATIVE_JSON, PayloadFormat.SENML_JSON)
        ]
        if device.dev_eui is not None:
            own.append(f"application/+/device/{device.dev_eui}/event/up")
            own.append(f"v3/+/devices/{device.ns_device_id}/up")
    return dict(sorted(topics.items()))


def acl_text(registry: Registry) -> str:
    """Mosquitto's ACL file: each account's rights, nothing for anyone else."""
    blocks = [
        f"# Generated by `kotaflow devices credentials` from {registry.source}; do not edit.\n"
        "# Who may do what: devices/credentials.py. Anything not listed is refused.",
        _block(Account.BRIDGE, "read", SUBSCRIPTIONS) + f"\ntopic readwrite {BRIDGE_OWN_TREE}",
        _block(Account.GATEWAY, "write", SUBSCRIPTIONS),
        *(_block(account, "write", [tree]) for account, tree in NETWORK_SERVER_TREES.items()),
    ]
    for device_id in device_accounts(registry):
        own = [
            device_topic(f, device_id)
            for f in (PayloadFormat.NATIVE_JSON, PayloadFormat.SENML_JSON)
        ]
        blocks.append(_block(device_id, "write", own))
    blocks += [_block(account, "write", own) for account, own in edge_topics(registry).items()]
    return "\n\n".join(blocks) + "\n"


def _block(user: str, access: str, topics: Iterable[str]) -> str:
    return "\n".join([f"user {user}", *(f"topic {access} {topic}" for topic in topics)])


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """Mosquitto 2.0's password hash: ``$7$<iterations>$<salt>$<PBKDF2-HMAC-SHA512>``."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    encode = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${encode(salt).decode()}${encode(digest).decode()}"


def passwd_text(passwords: dict[str, str]) -> str:
    return "".join(f"{user}:{mosquitto_hash(pw)}\n" for user, pw in sorted(passwords.items()))


def write_broker_files(
    registry: Registry, directory: Path, rotate: Iterable[str] = ()
) -> CredentialsReport:
    """Bring ``credentials.json``, ``passwd`` and ``acl`` in ``directory`` up to date."""
    wanted = [str(a) for a in Account] + device_accounts(registry) + list(edge_topics(registry))
    rotate = set(rotate)
    unknown = sorted(rotate - set(wanted))
    if unknown:
        raise CredentialsError(f"cannot rotate unknown account(s): {', '.join(unknown)}")
    old = _existing_passwords(directory / CREDENTIALS_FILE)
    passwords = {
        user: old[user] if user in old and user not in rotate else secrets.token_urlsafe(24)
        for user in wanted
    }
    credentials = directory / CREDENTIALS_FILE
    passwd = directory / PASSWD_FILE
    accounts_changed = write_private_if_changed(credentials, credentials_json(passwords))
    if accounts_changed or not passwd.is_file():
        write_private(passwd, passwd_text(passwords))
    acl_changed = write_private_if_changed(directory / ACL_FILE, acl_text(registry))
    return CredentialsReport(
        accounts=len(passwords),
        added=tuple(u for u in wanted if u not in old),
        removed=tuple(sorted(set(old) - set(wanted))),
        rotated=tuple(sorted(rotate)),
        changed=accounts_changed or acl_changed,
    )


def _existing_passwords(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    return {user: pw.get_secret_value() for user, pw in read_credentials(path).items()}


def describe(report: CredentialsReport) -> str:
    """One line for people: counts and names, never a password."""
    parts = [f"{report.accounts} accounts"]
    for label, names in (("new", report.added), ("removed", report.removed)):
        if names:
            shown = ", ".join(names) if len(names) <= 10 else f"{len(names)} accounts"
            parts.append(f"{label}: {shown}")
    if report.rotated:
        parts.append(f"new password: {', '.join(report.rotated)}")
    return "; ".join(parts)
