"""The local stack's TLS: a private CA and one server certificate for the loopback brokers.

Mosquitto's TLS listener and Kafka's SASL_SSL listener present the same server certificate,
issued by a CA made for this state directory alone. Clients verify both against
``<state>/tls/ca.crt``, which kotaflow's settings find by themselves (``kotaflow.mqtt``,
``kotaflow.kafka``); nothing is ever trusted without verification. Made once with the
``cryptography`` package (no key ever on a command line), kept across restarts; the server
certificate is re-issued when it nears expiry or does not name the hosts asked for. Private
keys are 0600 and never leave the state directory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deploy.local.service import Report
from kotaflow.mqtt import local_ca_file
from kotaflow.secretfiles import write_private

CA_DAYS = 3650
SERVER_DAYS = 365
RENEW_BEFORE_DAYS = 30
LOOPBACK_NAMES = ("127.0.0.1", "localhost")
LOCAL_CA_NAME = "kotaflow local stack CA"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Where the CA and the server's certificate and key are (all under ``<state>/tls``)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    server_pem: Path
    """Key (PKCS#8) and certificate chain in one file: Kafka's PEM key store."""

    @classmethod
    def of(cls, state_dir: Path) -> TlsFiles:
        return cls.in_folder(local_ca_file(state_dir).parent)

    @classmethod
    def in_folder(cls, folder: Path) -> TlsFiles:
        ca_cert = folder / local_ca_file(Path()).name
        return cls(
            ca_cert=ca_cert,
            ca_key=folder / "ca.key",
            server_cert=folder / "server.crt",
            server_key=folder / "server.key",
            server_pem=folder / "server.pem",
        )


def ensure_tls(state_dir: Path, hosts: Sequence[str], report: Report) -> TlsFiles:
    """The local stack's CA and a valid server certificate naming ``hosts`` and loopback,
    in ``<state>/tls`` (idempotent)."""
    return ensure_tls_files(TlsFiles.of(state_dir), hosts, report, LOCAL_CA_NAME)


def ensure_tls_files(
    files: TlsFiles, hosts: Sequence[str], report: Report, ca_name: str
) -> TlsFiles:
    """The CA (named ``ca_name`` when it is made) and a valid server certificate naming
    ``hosts`` and loopback, in ``files`` (idempotent)."""
    # Names the current certificate has stay: each broker asks for its own host only.
    names = sorted(set(hosts) | set(LOOPBACK_NAMES) | _current_names(files))
    if not (files.ca_cert.is_file() and files.ca_key.is_file()):
        _new_ca(files, ca_name)
        report(f"tls: made the CA {ca_name!r} ({files.ca_cert})")
    if not _server_cert_fits(files, names):
        _new_server_cert(files, names)
        report(f"tls: issued a server certificate for {', '.join(names)}")
    return files


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_ca(files: TlsFiles, common_name: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    write_private(files.ca_key, _key_pem(key))
    write_private(files.ca_cert, cert.public_bytes(serialization.Encoding.PEM))
    files.ca_cert.chmod(0o644)  # the CA certificate is public: any client may read it


def _new_server_cert(files: TlsFiles, names: Sequence[str]) -> None:
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.ca_key} is not the EC key this module makes")
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        # Client auth too: the nodes of a Kafka cluster present it to each other's
        # controller listener, which requires a client certificate (compose's 3 brokers).
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    chain = cert_pem + files.ca_cert.read_bytes()
    write_private(files.server_key, _key_pem(key))
    write_private(files.server_cert, chain)
    write_private(files.server_pem, _key_pem(key) + chain)


def _server_cert_fits(files: TlsFiles, names: Sequence[str]) -> bool:
    """Issued by our CA, names every host asked for, and not about to expire."""
    try:
        ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        if not (files.server_key.is_file() and files.server_pem.is_file()):
            return False
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    remaining = cert.not_valid_after_utc - _now()
    return (
        cert.issuer == ca.subject
        and remaining > dt.timedelta(days=RENEW_BEFORE_DAYS)
        and all(_general_name(n) in san for n in names)
    )


def _current_names(files: TlsFiles) -> set[str]:
    try:
        cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return set()
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return ips | set(san.get_values_for_type(x509.DNSName))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
