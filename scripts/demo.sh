#!/usr/bin/env bash
# The end-to-end demo (README's first command): a local Mosquitto, the emulated AWS IoT endpoint
# and awslink between them, on this machine. Shows telemetry arriving in the "cloud", an outage
# during which messages are buffered, the ordered drain when the cloud returns, the status topic
# and the metrics lines. Cleans up every process it started.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { printf '\033[31mdemo failed: %s\033[0m\n' "$*" >&2; exit 1; }

# Polls "$@" every 0.2 s until it succeeds, at most $TIMEOUT seconds (default 20).
wait_for() {
  local deadline=$((SECONDS + ${TIMEOUT:-20}))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

say "1. system packages"
missing=""
for tool in cmake pkg-config mosquitto mosquitto_sub openssl python3; do
  command -v "$tool" >/dev/null || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  echo "missing:$missing — installing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq cmake libssl-dev pkg-config mosquitto mosquitto-clients openssl python3 >/dev/null
else
  echo "all present"
fi

say "2. build awslink and the AWS IoT emulator"
cargo build --quiet -p awslink -p aws-iot-emulator --bins
BIN=target/debug

WORK=$(mktemp -d -t awslink-demo.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
echo "working directory: $WORK"

say "3. a demo CA, a server certificate for localhost and a device certificate (CN=demo-gateway)"
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=awslink demo CA" -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
  -extfile server.ext -out server.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=demo-gateway" \
  -keyout device.key -out device.csr 2>/dev/null
openssl x509 -req -in device.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out device.pem 2>/dev/null
chmod 600 ./*.key
cd - >/dev/null
ls "$WORK"/*.pem

LOCAL_PORT=$(free_port); CLOUD_PORT=$(free_port); PRIVATE_PORT=$(free_port)

say "4. local Mosquitto on 127.0.0.1:$LOCAL_PORT (persistence on, like config/mosquitto.conf)"
mkdir -p "$WORK/mosquitto"
cat > "$WORK/mosquitto.conf" <<EOF
listener $LOCAL_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $WORK/mosquitto/
max_queued_messages 1000000
user root
EOF
mosquitto -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)
wait_for mosquitto_pub -h 127.0.0.1 -p "$LOCAL_PORT" -t demo/ping -m x || fail "local Mosquitto did not start"

start_emulator() {
  $BIN/aws-iot-emulator --listen "127.0.0.1:$CLOUD_PORT" --ca-cert "$WORK/ca.pem" \
    --server-cert "$WORK/server.pem" --server-key "$WORK/server.key" --broker-port "$PRIVATE_PORT" \
    >>"$WORK/emulator.log" 2>&1 &
  EMULATOR_PID=$!
  PIDS+=("$EMULATOR_PID")
  wait_for mosquitto_pub -h 127.0.0.1 -p "$PRIVATE_PORT" -t demo/ping -m x || fail "emulator did not start (see $WORK/emulator.log)"
}

# Records what "AWS IoT" receives: a subscriber on the emulator's private broker.
watch_cloud() {
  : > "$WORK/cloud.txt"
  mosquitto_sub -h 127.0.0.1 -p "$PRIVATE_PORT" -t 'telemetry/#' -t 'event/#' -v >>"$WORK/cloud.txt" 2>/dev/null &
  SUB_PID=$!
  PIDS+=("$SUB_PID")
}

status() { mosquitto_sub -h 127.0.0.1 -p "$LOCAL_PORT" -t edge/connection/remote/status -C 1 -W 2 2>/dev/null; }

say "5. the emulated AWS IoT endpoint on localhost:$CLOUD_PORT (mutual TLS, AWS limits, shadows)"
start_emulator
watch_cloud
echo "emulator up; its private broker is 127.0.0.1:$PRIVATE_PORT"

say "6. awslink"
cat > "$WORK/awslink.json" <<EOF
{
  "address": "mqtts://localhost:$CLOUD_PORT",
  "caCert": "$WORK/ca.pem",
  "cert": "$WORK/device.pem",
  "key": "$WORK/device.key",
  "tenantId": "demo-tenant",
  "localAddress": "tcp://127.0.0.1:$LOCAL_PORT",
  "metricsIntervalSecs": 2,
  "buffer": { "path": "$WORK/buffer" },
  "reconnect": { "minDelayMs": 1500, "maxDelayMs": 5000 }
}
EOF
$BIN/awslink config check --config "$WORK/awslink.json"
$BIN/awslink run --config "$WORK/awslink.json" 2>"$WORK/awslink.log" &
PIDS+=($!)
wait_for sh -c "mosquitto_sub -h 127.0.0.1 -p $LOCAL_PORT -t edge/connection/remote/status -C 1 -W 2 | grep -q '\"connected\":true'" \
  || fail "awslink did not connect (see $WORK/awslink.log)"
echo "status: $(status)"

say "7. a device publishes telemetry locally (Hono topics) ..."
for i in 1 2 3; do
  payload="{\"temperature\":2$i.5,\"n\":$i}"
  echo "  mosquitto_pub -t telemetry -m '$payload'"
  mosquitto_pub -h 127.0.0.1 -p "$LOCAL_PORT" -q 1 -t telemetry -m "$payload"
done
lines_at_least() { [ "$(wc -l < "$WORK/cloud.txt")" -ge "$1" ]; }
wait_for lines_at_least 3 || fail "telemetry did not arrive"
echo "... and AWS IoT received (topic payload):"
sed 's/^/  /' "$WORK/cloud.txt"

say "8. the cloud goes away"
kill "$EMULATOR_PID" "$SUB_PID"; wait "$EMULATOR_PID" "$SUB_PID" 2>/dev/null || true
wait_for sh -c "mosquitto_sub -h 127.0.0.1 -p $LOCAL_PORT -t edge/connection/remote/status -C 1 -W 2 | grep -q '\"connected\":false'" \
  || fail "status did not turn disconnected"
echo "status: $(status)"

say "9. the device keeps publishing while offline (awslink journals every message on disk)"
for i in 1 2 3 4 5; do
  mosquitto_pub -h 127.0.0.1 -p "$LOCAL_PORT" -q 1 -t event -m "offline-$i"
  echo "  published event offline-$i"
done

say "10. the cloud comes back: the buffered messages drain in order"
start_emulator
watch_cloud
TIMEOUT=30 wait_for lines_at_least 5 || fail "buffered messages did not arrive"
sed 's/^/  /' "$WORK/cloud.txt"
wait_for sh -c "mosquitto_sub -h 127.0.0.1 -p $LOCAL_PORT -t edge/connection/remote/status -C 1 -W 2 | grep -q '\"connected\":true'"
echo "status: $(status)"

say "11. metrics (log target awslink::metrics, every metricsIntervalSecs)"
TIMEOUT=10 wait_for grep -q "buffer queued=0" "$WORK/awslink.log"
grep 'awslink::metrics' "$WORK/awslink.log" | tail -4 | sed 's/^/  /'

say "demo complete — stopping everything"
