#!/bin/sh
# Start Mosquitto with the password file written from the environment (container only).
#
#   KOTAFLOW_MQTT_BRIDGE_PASSWORD   user kotaflow-bridge  (the ingest bridge)
#   KOTAFLOW_MQTT_GATEWAY_PASSWORD  user kotaflow-gateway (gateways, network servers)
#   KOTAFLOW_MQTT_HEALTH_PASSWORD   user kotaflow-health  (the container health check)
#   KOTAFLOW_MQTT_DEVICE_PASSWORDS  optional "id:password id:password ..." per-device users
#
# The file is rewritten on every start, so rotating a password is: change .env, restart.
# MOSQUITTO_DATA / MOSQUITTO_CONF move it off the image's paths (tests/deploy runs it so).
set -eu
passwd="${MOSQUITTO_DATA:-/mosquitto/data}/passwd"
conf="${MOSQUITTO_CONF:-/mosquitto/config/mosquitto.conf}"
umask 077
: > "$passwd.new"
add() { mosquitto_passwd -b "$passwd.new" "$1" "$2"; }
add kotaflow-bridge "${KOTAFLOW_MQTT_BRIDGE_PASSWORD:?set KOTAFLOW_MQTT_BRIDGE_PASSWORD}"
add kotaflow-gateway "${KOTAFLOW_MQTT_GATEWAY_PASSWORD:?set KOTAFLOW_MQTT_GATEWAY_PASSWORD}"
add kotaflow-health "${KOTAFLOW_MQTT_HEALTH_PASSWORD:?set KOTAFLOW_MQTT_HEALTH_PASSWORD}"
for pair in ${KOTAFLOW_MQTT_DEVICE_PASSWORDS:-}; do
    add "${pair%%:*}" "${pair#*:}"
done
if id mosquitto > /dev/null 2>&1; then
    chown mosquitto:mosquitto "$passwd.new"
fi
mv "$passwd.new" "$passwd"
exec mosquitto -c "$conf"
