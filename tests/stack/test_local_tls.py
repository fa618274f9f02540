"""The local stack's CA and server certificate (``deploy/local/tls.py``), without a broker:
made once, private keys private, one certificate that serves every broker's host. The
brokers presenting it and clients verifying it are pinned by the security tests."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography import x509

from deploy.local.tls import TlsFiles, ensure_tls


def _names(files: TlsFiles) -> set[str]:
    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n.value) for n in san}


def test_the_server_certificate_is_issued_by_the_stacks_ca_for_loopback(tmp_path: Path) -> None:
    lines: list[str] = []
    files = ensure_tls(tmp_path, ["127.0.0.1"], lines.append)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    x509.load_pem_x509_certificate(files.server_cert.read_bytes()).verify_directly_issued_by(ca)
    assert _names(files) == {"127.0.0.1", "localhost"}
    for key in (files.ca_key, files.server_key, files.server_pem):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert b"PRIVATE KEY" in files.server_pem.read_bytes()
    assert len(lines) == 2  # made a CA, issued a certificate


def test_a_second_call_changes_nothing_and_hosts_accumulate(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path, ["127.0.0.1"], lambda _line: None)
    before = files.server_cert.read_bytes()
    lines: list[str] = []
    ensure_tls(tmp_path, ["127.0.0.1"], lines.append)
    assert lines == []
    assert files.server_cert.read_bytes() == before
    ensure_tls(tmp_path, ["10.0.0.5"], lambda _line: None)  # another broker's host
    ensure_tls(tmp_path, ["127.0.0.1"], lines.append)
    assert _names(files) == {"10.0.0.5", "127.0.0.1", "localhost"}
    assert lines == []
