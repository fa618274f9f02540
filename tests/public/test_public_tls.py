"""``kotaflow public`` serving HTTPS itself, with a certificate from the project's CA code
(deploy/local/tls.py, what `kotaflow devices tls` and compose's public-tls job run)."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from deploy.local.tls import TlsFiles, ensure_tls_files
from kotaflow.settings import PublicSettings, Settings
from processors.public.service import PublicOptions, running, tls_context


def _certificate(folder: Path) -> TlsFiles:
    return ensure_tls_files(TlsFiles.in_folder(folder), ["localhost"], lambda _: None, "test CA")


def test_half_a_tls_setup_is_refused_not_served_as_http(tmp_path: Path) -> None:
    files = _certificate(tmp_path)
    assert tls_context(PublicOptions()) is None
    with pytest.raises(ValueError, match="both tls_cert_file and tls_key_file"):
        tls_context(PublicOptions(tls_cert_file=files.server_cert))
    settings = PublicSettings(tls_cert_file=files.server_cert, tls_key_file=files.server_key)
    context = tls_context(PublicOptions.of(settings))
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.services
@pytest.mark.asyncio
async def test_the_service_answers_https_verified_against_the_ca_and_no_plaintext(
    public_influx: Settings, tmp_path: Path
) -> None:
    files = _certificate(tmp_path / "tls")
    options = PublicOptions(
        host="127.0.0.1",
        port=0,
        interval_s=30.0,
        tls_cert_file=files.server_cert,
        tls_key_file=files.server_key,
    )
    async with running(public_influx, options) as (url, _):
        assert url.startswith("https://127.0.0.1:")
        port = url.rsplit(":", 1)[-1]
        trusting = ssl.create_default_context(cafile=str(files.ca_cert))
        async with httpx.AsyncClient(verify=trusting) as http:
            answer = await http.get(f"https://localhost:{port}/api/v1/licence")
            assert answer.status_code == 200
            assert answer.json()
            page = await http.get(f"https://localhost:{port}/")
            assert page.status_code == 200
            assert "<html" in page.text
        async with httpx.AsyncClient() as stranger:  # the system's CAs do not know ours
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await stranger.get(f"https://localhost:{port}/api/v1/licence")
        async with httpx.AsyncClient() as plain:  # no plaintext HTTP on the port
            with pytest.raises(httpx.TransportError):
                await plain.get(f"http://127.0.0.1:{port}/api/v1/licence")
