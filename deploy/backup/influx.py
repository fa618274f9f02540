"""The whole InfluxDB server through its HTTP backup and restore API (InfluxDB 2.7).

The API backs up metadata only for the whole server (``GET /api/v2/backup/metadata``: the
KV store with orgs, buckets, users and tokens, the SQL store, and a manifest of every bucket's
shards), then the data shard by shard (``GET /api/v2/backup/shards/{id}``, a TSM tar that
includes the write cache). Restore is the same "full" restore ``influx restore --full``
does: ``POST /api/v2/restore/kv`` replaces the server's metadata and recreates its shards
empty, ``/restore/sql`` the SQL store, ``/restore/shards/{id}`` each shard's files. So the
restored server has the backup's org, buckets *and tokens*: the tokens files restored beside
it keep working. Both directions need the operator (all-access) token.

We speak HTTP with httpx (as :mod:`deploy.local.influxdb` does) rather than influxdb-client's
generated services: shards are streamed to and from disk still gzip-compressed, and the
multipart metadata answer is split with the standard library.
"""

from __future__ import annotations

import csv
import email.parser
import email.policy
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from deploy.backup.manifest import BackupError, human_size
from deploy.influxdb.reconcile import raise_for_error as _ok  # one way to say which call failed
from deploy.local.service import Report

KV, SQL, BUCKETS, SHARD = "influxdb-kv", "influxdb-sql", "influxdb-buckets", "influxdb-shard"
"""Manifest kinds of the InfluxDB files, restored in this order."""

END_OF_TIME = "2262-04-11T00:00:00Z"
"""Flux ranges need a stop; readings stamped in the future still count."""


@dataclass(frozen=True)
class Saved:
    path: Path
    kind: str
    target: str


def client(url: str, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=url.rstrip("/"),
        headers={"Authorization": f"Token {token}"},
        timeout=httpx.Timeout(60.0, read=600.0),
    )


def server_version(http: httpx.Client) -> str:
    try:
        return str(http.get("/health").json().get("version", "unknown"))
    except (httpx.HTTPError, ValueError) as err:
        raise BackupError(f"influxdb: no answer on {http.base_url}: {err}") from None


def backup_server(http: httpx.Client, out: Path, report: Report) -> list[Saved]:
    """Write the server's metadata and every shard under ``out``; what was written."""
    out.mkdir(parents=True, exist_ok=True)
    report("influxdb: downloading metadata snapshot (KV, SQL, bucket manifest)")
    saved = _backup_metadata(http, out)
    buckets: list[dict[str, Any]] = json.loads((out / "buckets.json").read_text(encoding="utf-8"))
    for bucket in buckets:
        shards = list(_shard_ids(bucket))
        report(f"influxdb: bucket {bucket['bucketName']}: {len(shards)} shard(s)")
        for shard_id in shards:
            path = _backup_shard(http, out, shard_id)
            if path is None:
                report(f"influxdb: shard {shard_id} was removed (retention) during the backup")
            else:
                saved.append(Saved(path, SHARD, str(shard_id)))
    return saved


def restore_server(
    http: httpx.Client, files: dict[str, list[tuple[Path, str]]], report: Report
) -> str:
    """Full restore; returns the operator token of the restored metadata (now in effect)."""
    [(kv, _)] = files[KV]
    report(f"influxdb: restoring KV snapshot ({human_size(kv)}): orgs, buckets, users, tokens")
    answer = _ok(_post_file(http, "/api/v2/restore/kv", kv))
    token = str(answer.json().get("token", ""))
    if token:
        http.headers["Authorization"] = f"Token {token}"
    for sql, _ in files.get(SQL, []):
        report(f"influxdb: restoring SQL snapshot ({human_size(sql)})")
        _ok(_post_file(http, "/api/v2/restore/sql", sql))
    shards = files.get(SHARD, [])
    for done, (path, shard_id) in enumerate(shards, start=1):
        report(f"influxdb: restoring shard {shard_id} ({human_size(path)}) [{done}/{len(shards)}]")
        _ok(_post_file(http, f"/api/v2/restore/shards/{shard_id}", path))
    return token


def value_counts(http: httpx.Client, org_id: str, bucket: str) -> dict[str, int]:
    """Field values per measurement in ``bucket``: what a restore must find again."""
    flux = (
        f'from(bucket: "{bucket}") |> range(start: 0, stop: {END_OF_TIME}) '
        '|> group(columns: ["_measurement"]) |> count()'
    )
    counts: dict[str, int] = {}
    for row in query_rows(http, org_id, flux):
        counts[row["_measurement"]] = counts.get(row["_measurement"], 0) + int(row["_value"])
    return counts


def user_buckets(http: httpx.Client) -> list[dict[str, str]]:
    """Every org's buckets except the system ones (``_monitoring``, ``_tasks``)."""
    found: list[dict[str, str]] = []
    offset = 0
    while True:
        page = _ok(http.get("/api/v2/buckets", params={"limit": 100, "offset": offset}))
        buckets = page.json().get("buckets", [])
        found += [
            {"org_id": str(b["orgID"]), "name": str(b["name"])}
            for b in buckets
            if not str(b["name"]).startswith("_")
        ]
        if len(buckets) < 100:
            return found
        offset += 100


def query_rows(http: httpx.Client, org_id: str, flux: str) -> Iterator[dict[str, str]]:
    response = _ok(
        http.post(
            "/api/v2/query",
            params={"orgID": org_id},
            json={"query": flux, "type": "flux"},
            headers={"Accept": "application/csv"},
        )
    )
    # Tables whose columns differ come as separate CSV blocks, each with its own header.
    block: list[str] = []
    for line in [*response.text.splitlines(), ""]:
        if line.strip():
            block.append(line)
        elif block:
            yield from csv.DictReader(io.StringIO("\n".join(block)))
            block = []


def _backup_metadata(http: httpx.Client, out: Path) -> list[Saved]:
    with http.stream("GET", "/api/v2/backup/metadata") as response:
        _ok_stream(response)
        content_type = response.headers.get("content-type", "")
        body = response.read()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    names = {
        "kv": ("kv.bolt", KV),
        "sql": ("sql.sqlite", SQL),
        "buckets": ("buckets.json", BUCKETS),
    }
    saved = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name not in names:
            raise BackupError(f"influxdb: backup metadata holds an unexpected part {name!r}")
        filename, kind = names[str(name)]
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        (out / filename).write_bytes(payload)
        saved.append(Saved(out / filename, kind, str(name)))
    if {s.kind for s in saved} != {KV, SQL, BUCKETS}:
        raise BackupError("influxdb: backup metadata lacks its KV, SQL or bucket part")
    return saved


def _shard_ids(bucket: dict[str, Any]) -> Iterator[int]:
    for policy in bucket.get("retentionPolicies", []):
        for group in policy.get("shardGroups", []):
            if group.get("deletedAt"):
                continue
            for shard in group.get("shards", []):
                yield int(shard["id"])


def _backup_shard(http: httpx.Client, out: Path, shard_id: int) -> Path | None:
    with http.stream(
        "GET", f"/api/v2/backup/shards/{shard_id}", headers={"Accept-Encoding": "gzip"}
    ) as response:
        if response.status_code == 404:
            return None
        _ok_stream(response)
        gzipped = response.headers.get("content-encoding") == "gzip"
        path = out / f"shard-{shard_id}.tar{'.gz' if gzipped else ''}"
        with path.open("wb") as target:
            for chunk in response.iter_raw():
                target.write(chunk)
    return path


def _post_file(http: httpx.Client, url: str, path: Path) -> httpx.Response:
    headers = {"Content-Type": "application/octet-stream"}
    if path.suffix == ".gz":
        headers["Content-Encoding"] = "gzip"
    with path.open("rb") as body:
        return http.post(url, content=body, headers=headers)


def _ok_stream(response: httpx.Response) -> None:
    if response.is_error:
        response.read()
        _ok(response)
