"""The HTTP face of ``kotaflow public`` (aiohttp): pages, open-data API, caching headers.

Why aiohttp: it is already locked (the alert stage's acknowledge endpoint runs on it) and
is both framework and server, so the service adds no dependency. Per visitor the service
only looks up a body rendered once per snapshot and language (gzip included); it answers
``If-None-Match`` / ``If-Modified-Since`` with 304, and holds each client to a token bucket
(429 with ``Retry-After``). Only GET/HEAD routes exist: there is no write path.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from aiohttp import web

from deploy.grafana.i18n import Lang
from processors.alerting.templates import WITA
from processors.public import opendata, pages
from processors.public.queries import ROLLUP_WINDOWS
from processors.public.ratelimit import RateLimit
from processors.public.refresh import Keeper
from processors.public.wording import lang_of, slug

log = logging.getLogger("kotaflow.public")
KEEPER: web.AppKey[Keeper] = web.AppKey("keeper", Keeper)
HTML, JSON, CSV = "text/html", "application/json", "text/csv"


@dataclass(frozen=True, slots=True)
class Body:
    raw: bytes
    gzipped: bytes
    etag: str
    content_type: str
    modified: datetime | None


def make_body(text: str, content_type: str, modified: datetime | None) -> Body:
    raw = text.encode()
    etag = '"' + hashlib.blake2b(raw, digest_size=12).hexdigest() + '"'
    return Body(raw, gzip.compress(raw, 6, mtime=0), etag, content_type, modified)


def _not_modified(request: web.Request, body: Body) -> bool:
    match = request.headers.get("If-None-Match")
    if match is not None:
        return body.etag in {tag.strip().removeprefix("W/") for tag in match.split(",")}
    since = request.headers.get("If-Modified-Since")
    if since and body.modified is not None:
        try:
            return body.modified.replace(microsecond=0) <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


def respond(request: web.Request, body: Body, max_age_s: int) -> web.Response:
    headers = {
        "ETag": body.etag,
        "Cache-Control": f"public, max-age={max_age_s}",
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    if body.modified is not None:
        headers["Last-Modified"] = format_datetime(body.modified.astimezone(UTC), usegmt=True)
    if _not_modified(request, body):
        return web.Response(status=304, headers=headers)
    payload = body.raw
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        payload, headers["Content-Encoding"] = body.gzipped, "gzip"
    return web.Response(
        body=payload, headers=headers, content_type=body.content_type, charset="utf-8"
    )


class Bodies:
    """Bodies rendered once per snapshot version (and language / stale state)."""

    def __init__(self, keeper: Keeper, stale_after_s: float) -> None:
        self.keeper = keeper
        self.stale_after_s = stale_after_s
        self._cache: dict[tuple[Any, ...], Body] = {}
        self._version = -1

    def stale(self, now: datetime) -> bool:
        snapshot = self.keeper.snapshot
        if snapshot is None:
            return False
        age = (now - snapshot.data_at).total_seconds()
        return self.keeper.failing is not None or age > self.stale_after_s

    def get(
        self, key: tuple[Any, ...], render: Callable[[datetime, bool], tuple[str, str]]
    ) -> Body:
        now = datetime.now(UTC)
        stale = self.stale(now)
        if self.keeper.version != self._version:
            self._cache.clear()
            self._version = self.keeper.version
        full_key = (*key, stale, now.astimezone(WITA).date())
        body = self._cache.get(full_key)
        if body is None:
            text, content_type = render(now, stale)
            modified = self.keeper.snapshot.data_at if self.keeper.snapshot else None
            body = self._cache[full_key] = make_body(text, content_type, modified)
        return body


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def build_app(
    keeper: Keeper,
    *,
    limit: RateLimit | None = None,
    trust_forwarded: bool = False,
) -> web.Application:
    """The application over ``keeper`` (which the caller refreshes)."""
    max_age = max(1, int(keeper.interval_s))
    bodies = Bodies(keeper, stale_after_s=3 * keeper.interval_s)
    rollup_bodies: dict[tuple[str, str, str, str | None], tuple[object, Body]] = {}
    """Rendered once per rows the keeper fetched (bounded: public keys only)."""
    limit = limit or RateLimit()

    def client_of(request: web.Request) -> str:
        forwarded = request.headers.get("X-Forwarded-For") if trust_forwarded else None
        if forwarded:
            return forwarded.rsplit(",", 1)[-1].strip()
        return request.remote or "?"

    @web.middleware
    async def limited(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        wait = limit.allow(client_of(request), time.monotonic())
        if wait > 0:
            return web.Response(
                status=429, text="too many requests\n", headers={"Retry-After": str(int(wait) + 1)}
            )
        return await handler(request)

    def lang(request: web.Request) -> Lang:
        return lang_of(request.query.get("lang"))

    def need_snapshot() -> None:
        if keeper.snapshot is None:
            raise web.HTTPServiceUnavailable(
                text="no data yet: the service is starting\n", headers={"Retry-After": "5"}
            )

    async def regency(request: web.Request) -> web.Response:
        chosen = lang(request)
        body = bodies.get(
            ("regency", chosen),
            lambda now, stale: (pages.regency_page(keeper.snapshot, now, chosen, stale), HTML),
        )
        return respond(request, body, max_age)

    async def kecamatan(request: web.Request) -> web.Response:
        need_snapshot()
        snapshot = keeper.snapshot
        assert snapshot is not None
        name = next((k for k in snapshot.kecamatan if slug(k) == request.match_info["name"]), None)
        if name is None:
            raise web.HTTPNotFound(text="no such kecamatan (or none of its devices is public)\n")
        chosen = lang(request)
        body = bodies.get(
            ("kecamatan", name, chosen),
            lambda now, stale: (pages.kecamatan_page(snapshot, name, now, chosen, stale), HTML),
        )
        return respond(request, body, max_age)

    async def current(request: web.Request) -> web.Response:
        need_snapshot()
        snapshot = keeper.snapshot
        assert snapshot is not None
        if request.match_info.get("ext") == ".csv":
            body = bodies.get(("csv",), lambda *_: (opendata.current_csv(snapshot), CSV))
        else:
            body = bodies.get(
                ("json",),
                lambda _, stale: (_json(opendata.current(snapshot, stale=stale)), JSON),
            )
        return respond(request, body, max_age)

    async def fiware(request: web.Request) -> web.Response:
        need_snapshot()
        snapshot = keeper.snapshot
        assert snapshot is not None
        model = request.match_info["model"]
        if model not in opendata.FIWARE_TYPES:
            raise web.HTTPNotFound(text=f"models: {', '.join(opendata.FIWARE_TYPES)}\n")
        body = bodies.get(
            ("fiware", model), lambda *_: (_json(opendata.fiware(snapshot, model)), JSON)
        )
        return respond(request, body, max_age)

    async def rollups(request: web.Request) -> web.Response:
        device, metric = request.match_info["device"], request.match_info["metric"]
        window = request.query.get("window", "1h")
        public = next((p for p in keeper.public.devices if p.device.id == device), None)
        if public is None or metric not in public.metrics:
            raise web.HTTPNotFound(text="no such public device and metric\n")
        if window not in ROLLUP_WINDOWS:
            raise web.HTTPBadRequest(text=f"window: one of {', '.join(ROLLUP_WINDOWS)}\n")
        try:
            fetched = await keeper.rollups(device, metric, window)
        except Exception as err:
            log.warning("rollups not read", extra={"why": repr(err)[:300]})
            raise web.HTTPServiceUnavailable(
                text="rollups cannot be read right now\n", headers={"Retry-After": "30"}
            ) from None
        key = (device, metric, window, request.match_info.get("ext"))
        known = rollup_bodies.get(key)
        if known is not None and known[0] is fetched:  # the keeper's cached rows: same body
            return respond(request, known[1], max_age)
        rows = opendata.rollups(fetched)
        if key[3] == ".csv":
            text, kind = opendata.rollups_csv(rows), CSV
        else:
            unit = public.metrics[metric].unit
            meta = {"device": device, "metric": metric, "unit": unit, "window": window}
            text, kind = (
                _json(
                    {**meta, "licence": opendata.licence(keeper.public.regency), "rollups": rows}
                ),
                JSON,
            )
        body = make_body(text, kind, None)
        rollup_bodies[key] = (fetched, body)
        return respond(request, body, max_age)

    async def dictionary(request: web.Request) -> web.Response:
        body = bodies.get(
            ("dictionary",),
            lambda *_: (
                _json(opendata.dictionary(keeper.public.devices, keeper.public.regency)),
                JSON,
            ),
        )
        return respond(request, body, max_age)

    async def licence(request: web.Request) -> web.Response:
        body = bodies.get(
            ("licence",), lambda *_: (_json(opendata.licence(keeper.public.regency)), JSON)
        )
        return respond(request, body, max_age)

    async def index(request: web.Request) -> web.Response:
        links = {
            "current": "/api/v1/current",
            "current_csv": "/api/v1/current.csv",
            "rollups": "/api/v1/rollups/{device}/{metric}[.csv]?window=1h|1d",
            "dictionary": "/api/v1/dictionary",
            "licence": "/api/v1/licence",
            "fiware": {m: f"/api/v1/fiware/{m}" for m in opendata.FIWARE_TYPES},
        }
        body = bodies.get(("index",), lambda *_: (_json(links), JSON))
        return respond(request, body, max_age)

    app = web.Application(middlewares=[limited])
    app[KEEPER] = keeper
    app.router.add_get("/", regency)
    app.router.add_get("/kecamatan/{name}", kecamatan)
    app.router.add_get("/api/v1/", index)
    app.router.add_get(r"/api/v1/current{ext:(\.csv)?}", current)
    app.router.add_get(r"/api/v1/rollups/{device}/{metric:[a-z0-9_]+}{ext:(\.csv)?}", rollups)
    app.router.add_get("/api/v1/dictionary", dictionary)
    app.router.add_get("/api/v1/licence", licence)
    app.router.add_get("/api/v1/fiware/{model}", fiware)
    return app
