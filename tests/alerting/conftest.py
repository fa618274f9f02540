"""Real receivers on loopback for the alerting tests.

* :func:`smtp_server`: aiosmtpd (a real SMTP server) with STARTTLS required before AUTH,
  a throw-away self-signed certificate for 127.0.0.1, and one user.
* :func:`http_receiver`: an aiohttp server recording every POST (webhook, Telegram Bot API
  path, WhatsApp/SMS gateway); it can be told to answer 503 to simulate an outage.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

SMTP_USER, SMTP_PASSWORD = "kotaflow", "rahasia-ruteng"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


async def await_for(
    check: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: Path
    messages: list[Message] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[Message]:
        with self.lock:
            return list(self.messages)


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        with self._server.lock:
            self._server.messages.append(message_from_bytes(content))
        return "250 OK"


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def smtp_server(tls_cert: tuple[Path, Path]) -> Iterator[SmtpServer]:
    cert, key = tls_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpServer("127.0.0.1", free_port(), cert)

    def authenticate(
        smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            SMTP_USER.encode(),
            SMTP_PASSWORD.encode(),
        )
        if ok:
            with server.lock:
                server.logins.append(SMTP_USER)
        return AuthResult(success=ok)

    controller = Controller(
        _Handler(server),
        hostname=server.host,
        port=server.port,
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=authenticate,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()


@dataclass
class Post:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float


@dataclass
class HttpReceiver:
    url: str
    posts: list[Post] = field(default_factory=list)
    failing: bool = False
    failures: int = 0
    status_when_failing: int = 503

    def on(self, path: str) -> list[Post]:
        return [post for post in self.posts if post.path == path]


@pytest_asyncio.fixture
async def http_receiver() -> AsyncIterator[HttpReceiver]:
    port = free_port()
    receiver = HttpReceiver(f"http://127.0.0.1:{port}")

    async def handle(request: web.Request) -> web.Response:
        if receiver.failing:
            receiver.failures += 1
            return web.Response(status=receiver.status_when_failing, text="down for maintenance")
        body = json.loads(await request.read() or b"{}")
        receiver.posts.append(Post(request.path, body, dict(request.headers), time.time()))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield receiver
    finally:
        await runner.cleanup()


def mail_receiver(server: SmtpServer) -> Any:
    """An e-mail receiver for ``server`` (STARTTLS with its CA, AUTH)."""
    from pydantic import SecretStr

    from kotaflow.alerting_settings import EmailReceiver

    return EmailReceiver(
        kind="email",
        host=server.host,
        port=server.port,
        username=SMTP_USER,
        password=SecretStr(SMTP_PASSWORD),
        sender="kotaflow@manggaraikab.test",
        to=["pusdalops@bpbd.test"],
        ca_file=server.ca_file,
    )


def own_topics(stack: Any, prefix: str) -> tuple[Any, dict[str, int]]:
    """Fresh readings/alerts/dead-letter topics for one test (created): (topics, to delete)."""
    from deploy.local.kafka_topics import ensure_topics

    uid = uuid.uuid4().hex[:10]
    topics = stack.kafka.topics.model_copy(
        update={
            "readings": f"test.{prefix}.readings.{uid}",
            "alerts": f"test.{prefix}.alerts.{uid}",
            "deadletter": f"test.{prefix}.deadletter.{uid}",
        }
    )
    wanted = {topics.readings: 3, topics.alerts: 1, topics.deadletter: 1}
    ensure_topics(stack.kafka, wanted, lambda _: None)
    return topics, wanted


@asynccontextmanager
async def running(settings: Any) -> AsyncIterator[Any]:
    """The alerting service (:func:`processors.alerting.service.build`) until the block ends."""
    from processors.alerting.service import build

    service = build(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        await asyncio.wait_for(service.stage.ready.wait(), 60)
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


@asynccontextmanager
async def producer(settings: Any) -> AsyncIterator[Any]:
    from aiokafka import AIOKafkaProducer

    client = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()
