#!/usr/bin/env bash
# Formats the Kafka broker's KRaft storage once, with kotaflow's SCRAM user already in the
# metadata log, so the SASL_SSL listener accepts the clients' first login (KIP-900: in KRaft,
# `kafka-storage.sh format --add-scram` is how SCRAM credentials exist before any client, the
# broker itself included, connects). Run by the `kafka-storage` job of deploy/compose.yaml in
# the apache/kafka image, with the broker's own KAFKA_* variables, before the broker starts.
#
# The image's entrypoint formats the storage on every start without SCRAM users and goes on
# when the storage is "already formatted", so a storage formatted here first is kept as is.
# Re-running this on formatted storage changes nothing: from then on users and passwords are
# managed with kafka-configs.sh --alter over the SASL_SSL listener (README, Security).
#
# The password is read from the compose secret and handed to the storage tool in a 0600
# argument file (argparse's @file), never on a command line.
set -euo pipefail

KAFKA_HOME=${KAFKA_HOME:-/opt/kafka}
DOCKER_CONFIGS=${KAFKA_DOCKER_CONFIGS:-/etc/kafka/docker}
MOUNTED_CONFIGS=${KAFKA_MOUNTED_CONFIGS:-/mnt/shared/config}
DATA_DIR=${KAFKA_LOG_DIRS:?set KAFKA_LOG_DIRS as for the broker}
PASSWORD_FILE=${SCRAM_PASSWORD_FILE:?the SCRAM password file}
USER_NAME=${SCRAM_USER:?the SCRAM user}
: "${CLUSTER_ID:?set CLUSTER_ID as for the broker}"

if [ -e "$DATA_DIR/meta.properties" ]; then
  echo "kafka-storage: $DATA_DIR is formatted already; nothing to do"
  exit 0
fi

# The broker reads the same file for its own (inter-broker) login through Kafka's
# DirectoryConfigProvider, which keeps every byte: a trailing newline would be part of its
# password but not of the clients' (kotaflow strips it). Characters are limited to what the
# --add-scram syntax ([name=...,password=...]) and a JAAS option ("...") take unquoted.
if [ ! -s "$PASSWORD_FILE" ]; then
  echo "kafka-storage: $PASSWORD_FILE is missing or empty" >&2
  exit 1
fi
if [ "$(wc -l < "$PASSWORD_FILE")" -ne 0 ]; then
  echo "kafka-storage: $PASSWORD_FILE ends with a newline; write it with: openssl rand -hex 32 | tr -d '\\n' > FILE" >&2
  exit 1
fi
password=$(cat "$PASSWORD_FILE")
case $password in
  *[!A-Za-z0-9._~+/=-]*)
    echo "kafka-storage: the SCRAM password may only hold letters, digits and ._~+/=-" >&2
    exit 1
    ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 0700 "$work"

# server.properties exactly as the broker will get it: the image's own renderer
# (KafkaDockerWrapper, what /etc/kafka/docker/run calls) from the KAFKA_* variables. It
# formats storage too, without SCRAM users, so it formats a scratch directory here.
if ! KAFKA_LOG_DIRS="$work/scratch" "$KAFKA_HOME/bin/kafka-run-class.sh" \
  kafka.docker.KafkaDockerWrapper setup \
  --default-configs-dir "$DOCKER_CONFIGS" \
  --mounted-configs-dir "$MOUNTED_CONFIGS" \
  --final-configs-dir "$work" > "$work/setup.log" 2>&1; then
  cat "$work/setup.log" >&2
  exit 1
fi
sed -i "s|^log\.dirs=.*|log.dirs=$DATA_DIR|" "$work/server.properties"

# 8192 iterations, as the local stack's SCRAM user (deploy/local/kafka.py).
(umask 077 && printf '%s\n' --add-scram \
  "SCRAM-SHA-512=[name=$USER_NAME,iterations=8192,password=$password]" > "$work/scram.args")
echo "kafka-storage: formatting $DATA_DIR with SCRAM-SHA-512 user $USER_NAME"
# The tool prints the bootstrap records, the user's salted keys among them: not for the log.
"$KAFKA_HOME/bin/kafka-storage.sh" format --cluster-id "$CLUSTER_ID" \
  --config "$work/server.properties" "@$work/scram.args" | sed '/^Bootstrap metadata:/d'
