#!/bin/sh
# One-shot setup after InfluxDB's first start (compose service `influxdb-tokens`, run in the
# influxdb image for its `influx` CLI): the rollups bucket, and one least-privilege token per
# part, written to files for the services that need them (kotaflow services: uid 10001):
#
#   $TOKENS_DIR/store.token      write telemetry                    (stage store)
#   $TOKENS_DIR/aggregate.token  read telemetry, rollups; write rollups  (stage aggregate)
#   $TOKENS_DIR/alert.token      write telemetry (alert events)     (kotaflow alert)
#   $TOKENS_DIR/health.token     write rollups (pipeline health)    (every process)
#   $TOKENS_DIR/grafana.token    read telemetry and rollups         (Grafana, uid 472)
#
# kotaflow picks <role>.token from processing.influx_token_dir (compose: this directory).
# The same org, buckets, retention and roles as the local stack (deploy/local/influxdb.py,
# stage_rights). InfluxDB 2.x has no separate delete right: a write token may also delete
# in its bucket (docs/security.md). An existing pipeline.token (read+write on both buckets,
# from before per-stage tokens) is kept for old configs but no longer issued.
# Idempotent: existing buckets and token files are kept; delete a file to issue a new token.
set -eu
: "${INFLUX_HOST:=http://influxdb:8086}"
: "${INFLUX_TOKEN:?the admin token (KOTAFLOW_INFLUX_ADMIN_TOKEN)}"
: "${INFLUX_ORG:=kotaflow}"
: "${TOKENS_DIR:=/run/kotaflow-tokens}"
TELEMETRY="${KOTAFLOW_TELEMETRY_BUCKET:-telemetry}"
ROLLUPS="${KOTAFLOW_ROLLUPS_BUCKET:-rollups}"
export INFLUX_HOST INFLUX_TOKEN INFLUX_ORG

json_value() {  # the first "KEY": "value" of the CLI's indented JSON
    sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" | head -n 1
}

bucket() {  # bucket NAME RETENTION -> id (created when missing)
    id=$(influx bucket list --name "$1" --json 2>/dev/null | json_value id || true)
    if [ -z "$id" ]; then
        id=$(influx bucket create --name "$1" --retention "$2" --json | json_value id)
        echo "created bucket $1 (retention $2)" >&2
    fi
    echo "$id"
}

token() {  # token FILE UID DESCRIPTION influx-auth-flags...
    file=$1 owner=$2 description=$3
    shift 3
    if [ -s "$file" ]; then
        echo "kept $file" >&2
        return
    fi
    influx auth create --org "$INFLUX_ORG" --description "$description" "$@" --json \
        | json_value token > "$file.new"
    test -s "$file.new"
    chown "$owner" "$file.new"
    chmod 0400 "$file.new"
    mv "$file.new" "$file"
    echo "wrote $file" >&2
}

mkdir -p "$TOKENS_DIR"
telemetry_id=$(bucket "$TELEMETRY" 90d)
rollups_id=$(bucket "$ROLLUPS" 730d)
token "$TOKENS_DIR/store.token" 10001 "kotaflow store: write $TELEMETRY" \
    --write-bucket "$telemetry_id"
token "$TOKENS_DIR/aggregate.token" 10001 \
    "kotaflow aggregate: read $TELEMETRY, $ROLLUPS; write $ROLLUPS" \
    --read-bucket "$telemetry_id" --read-bucket "$rollups_id" --write-bucket "$rollups_id"
token "$TOKENS_DIR/alert.token" 10001 "kotaflow alert: write $TELEMETRY" \
    --write-bucket "$telemetry_id"
token "$TOKENS_DIR/health.token" 10001 "kotaflow health: write $ROLLUPS" \
    --write-bucket "$rollups_id"
token "$TOKENS_DIR/grafana.token" 472 "kotaflow grafana: read $TELEMETRY, $ROLLUPS" \
    --read-bucket "$telemetry_id" --read-bucket "$rollups_id"
