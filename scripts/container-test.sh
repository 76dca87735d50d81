#!/usr/bin/env bash
# The container contract, proven with a real container (podman, as root): the image users get
# (docker/Dockerfile's runtime stage, fed with the release binary through its `prebuilt` target)
# runs next to a Mosquitto and the AWS IoT emulator (tests/emulator), both on the host loopback,
# the containers on `--network host`. It shows:
#   1. awslink runs as uid 10001;
#   2. the image's HEALTHCHECK is healthy (`podman healthcheck run`);
#   3. `kill -9` of awslink in a `--restart=always` container: the container comes back and every
#      message published meanwhile reaches the emulator;
#   4. `podman stop`: exit 0 within 5 s, the retained status says CONNECTION_CLOSED;
#   5. a new container on the same buffer volume drains what the old one had queued (queued while
#      the cloud was away; the local Mosquitto is restarted empty in between, so the volume is
#      the only place the messages can come from).
# Where podman cannot run containers at all it says so and exits 0 (nothing is claimed then).
# Needs root, podman, runc, debootstrap (first run only: the base image is kept in podman's
# storage), mosquitto, mosquitto-clients, jq, cargo. Every wait polls with a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

T0=$SECONDS
ID=awslink-ct-$$
BASE_IMAGE=localhost/debian:bookworm-slim
IMAGE=localhost/awslink:container-test
VOLUME=$ID-buffer
WORK=$(mktemp -d /tmp/awslink-ct.XXXXXX)
PIDS=()
CONTAINERS=()

say() { echo "[container-test +$((SECONDS - T0))s] $*"; }
skip() {
  echo "container-test: SKIPPED, nothing proven: $*"
  exit 0
}
fail() {
  echo "container-test: FAILED: $*" >&2
  for c in "${CONTAINERS[@]}"; do
    echo "--- podman logs $c (last 30 lines)" >&2
    podman logs --tail 30 "$c" >&2 2>&1 || true
  done
  for f in "$WORK"/*.log; do
    [ -f "$f" ] && { echo "--- $f (last 15 lines)" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}
cleanup() {
  local c p
  for c in "${CONTAINERS[@]}"; do podman rm -f -v -t 0 "$c" >/dev/null 2>&1 || true; done
  podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# wait_for WHAT SECONDS CMD...: polls CMD every 0.1 s until it succeeds, fails after SECONDS.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "timed out after $2 s waiting for $what"
    sleep 0.1
  done
}
ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---- can podman run containers here? ----------------------------------------------------------
[ "$(id -u)" = 0 ] || skip "not root (this script runs podman as root)"
for tool in podman runc; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (apt-get install podman runc)"
done
for tool in mosquitto mosquitto_pub mosquitto_sub jq python3 cargo; do
  command -v "$tool" >/dev/null || fail "$tool is missing"
done
# Measured on these machines: crun/runc cannot set RLIMIT_NPROC (no default ulimits then), crun
# refuses the hybrid cgroup layout (runc), and there is no systemd (cgroupfs, file events).
export CONTAINERS_CONF=$WORK/containers.conf
cat >"$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
podman info >"$WORK/podman-info.txt" 2>&1 || skip "podman does not work here: $(tail -n 3 "$WORK/podman-info.txt")"

if podman image exists "$BASE_IMAGE"; then
  say "base image $BASE_IMAGE already in podman's storage"
else
  command -v debootstrap >/dev/null || skip "no $BASE_IMAGE and no debootstrap to make it (apt-get install debootstrap)"
  say "no image can be pulled here: debootstrap --variant=minbase bookworm"
  t=$SECONDS
  debootstrap --variant=minbase bookworm "$WORK/rootfs" >"$WORK/debootstrap.log" 2>&1 ||
    skip "debootstrap failed: $(tail -n 3 "$WORK/debootstrap.log")"
  tar -C "$WORK/rootfs" -c . | podman import - "$BASE_IMAGE" >/dev/null
  rm -rf "$WORK/rootfs"
  say "base image imported as $BASE_IMAGE in $((SECONDS - t)) s"
fi
podman run --rm --network host "$BASE_IMAGE" true >"$WORK/podman-run.txt" 2>&1 ||
  skip "podman cannot run a container here: $(tail -n 3 "$WORK/podman-run.txt")"

# ---- binaries and the image --------------------------------------------------------------------
t=$SECONDS
cargo build --release --locked -p awslink >"$WORK/cargo-release.log" 2>&1 || fail "cargo build --release -p awslink"
cargo build --locked -p aws-iot-emulator >"$WORK/cargo-emulator.log" 2>&1 || fail "cargo build -p aws-iot-emulator"
say "release build of awslink (+ emulator) in $((SECONDS - t)) s"
EMULATOR=target/debug/aws-iot-emulator

t=$SECONDS
mkdir -p "$WORK/context/config"
cp target/release/awslink "$WORK/context/awslink"
cp config/awslink.example.json "$WORK/context/config/"
podman build --format docker --pull=never --network host -f docker/Dockerfile --target prebuilt \
  --build-arg RUNTIME_IMAGE="$BASE_IMAGE" -t "$IMAGE" "$WORK/context" >"$WORK/podman-build.log" 2>&1 ||
  fail "podman build of docker/Dockerfile --target prebuilt"
say "image $IMAGE built in $((SECONDS - t)) s"

# ---- the gateway's Mosquitto and the cloud, on the host loopback ------------------------------
LOCAL_PORT=$(free_port)
MOSQ_PID=
# Starts the local Mosquitto (no persistence: a restart forgets every session) on LOCAL_PORT. Ready
# when THIS process logged "running" (after binding) and is alive; a lost port race (another
# listener took the port) retries on a new port unless KEEP_PORT=1.
start_mosquitto() {
  local n
  for n in 1 2 3 4 5; do
    cat >"$WORK/mosquitto.conf" <<EOF
listener $LOCAL_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
user root
log_dest file $WORK/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
EOF
    : >"$WORK/mosquitto.log"
    mosquitto -c "$WORK/mosquitto.conf" >/dev/null 2>&1 &
    MOSQ_PID=$!
    PIDS+=("$MOSQ_PID")
    local deadline=$((SECONDS + 10))
    while kill -0 "$MOSQ_PID" 2>/dev/null && ! grep -q " running" "$WORK/mosquitto.log"; do
      [ $SECONDS -lt $deadline ] || fail "mosquitto did not start"
      sleep 0.1
    done
    kill -0 "$MOSQ_PID" 2>/dev/null && return 0
    grep -q "Address already in use" "$WORK/mosquitto.log" || fail "mosquitto exited: $(cat "$WORK/mosquitto.log")"
    [ "${KEEP_PORT:-0}" = 1 ] && fail "another listener took port $LOCAL_PORT"
    LOCAL_PORT=$(free_port)
  done
  fail "mosquitto lost the port race 5 times"
}
stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

mkdir -p "$WORK/certs" "$WORK/etc"
"$EMULATOR" --write-test-certs "$WORK/certs" --device-cn ct-device >/dev/null
EMU_PORT=$(free_port)
PRIV_PORT=$(free_port)
EMU_PID=
start_emulator() {
  : >"$WORK/emulator.log"
  RUST_LOG=warn "$EMULATOR" --listen "127.0.0.1:$EMU_PORT" --broker-port "$PRIV_PORT" --no-shadows \
    --ca-cert "$WORK/certs/ca.pem" --server-cert "$WORK/certs/server.pem" \
    --server-key "$WORK/certs/server.key" >"$WORK/emulator.log" 2>&1 &
  EMU_PID=$!
  PIDS+=("$EMU_PID")
  wait_for "the emulator to listen" 15 emulator_listening
}
emulator_listening() {
  kill -0 "$EMU_PID" 2>/dev/null || fail "the emulator exited: $(cat "$WORK/emulator.log")"
  grep -q "listening on" "$WORK/emulator.log"
}
# cloud_subscriber FILE: everything on telemetry/# at the emulator's private broker ("AWS").
cloud_subscriber() {
  mosquitto_sub -h 127.0.0.1 -p "$PRIV_PORT" -q 1 -t 'telemetry/#' -F '%p' >"$1" 2>"$WORK/cloud-sub.log" &
  PIDS+=($!)
  CLOUD_SUB=$!
  # Subscribed once a retained probe published after the subscription comes back.
  local mark
  mark="ready-$RANDOM$RANDOM"
  wait_for "the cloud subscriber" 10 probe_cloud "$1" "$mark"
}
probe_cloud() {
  mosquitto_pub -h 127.0.0.1 -p "$PRIV_PORT" -q 1 -t telemetry/ct-probe -m "$2" && grep -q "$2" "$1"
}

start_mosquitto
start_emulator
say "local Mosquitto on 127.0.0.1:$LOCAL_PORT, emulator on 127.0.0.1:$EMU_PORT (its broker :$PRIV_PORT)"

cp "$WORK/certs/ca.pem" "$WORK/certs/client.pem" "$WORK/certs/client.key" "$WORK/etc/"
write_config() {
  jq -n --arg addr "mqtts://localhost:$EMU_PORT" --arg local "tcp://127.0.0.1:$LOCAL_PORT" \
    '{address:$addr, caCert:"/etc/awslink/ca.pem", cert:"/etc/awslink/client.pem",
      key:"/etc/awslink/client.key", tenantId:"tenant", localAddress:$local,
      localClientId:"awslink-ct", logLevel:"INFO", keepAliveSecs:5, metricsIntervalSecs:1,
      buffer:{path:"/var/lib/awslink"},
      reconnect:{minDelayMs:100, maxDelayMs:1000, resetAfterMs:5000}}' >"$WORK/etc/config.json"
}
write_config
chown -R 10001:10001 "$WORK/etc"
chmod 600 "$WORK/etc/client.key"
podman volume create "$VOLUME" >/dev/null

# run_awslink NAME: a detached container as users run it (restart policy, journal volume).
run_awslink() {
  CONTAINERS+=("$1")
  # Without systemd podman logs that it cannot add the healthcheck's timer; the check itself
  # runs by hand below.
  podman run -d --name "$1" --network host --restart=always \
    -v "$WORK/etc:/etc/awslink:ro" -v "$VOLUME:/var/lib/awslink" "$IMAGE" >/dev/null 2>>"$WORK/podman-run.log" ||
    fail "podman run $1: $(tail -n 3 "$WORK/podman-run.log")"
}
status() { mosquitto_sub -h 127.0.0.1 -p "$LOCAL_PORT" -t edge/connection/remote/status -C 1 -W 2; }
connected() { status | grep -q '"connected":true'; }
# queued N: awslink's metrics document says N messages wait in its journal.
queued() {
  mosquitto_sub -h 127.0.0.1 -p "$LOCAL_PORT" -t edge/awslink/metrics -C 1 -W 3 |
    jq -e --argjson n "$1" '.buffer.queued == $n'
}
# publish PREFIX FROM TO: QoS 1 messages PREFIX-FROM … PREFIX-TO on the local topic telemetry.
publish() {
  seq "$2" "$3" | sed "s/^/$1-/" | mosquitto_pub -h 127.0.0.1 -p "$LOCAL_PORT" -q 1 -t telemetry -l
}
# arrived FILE PREFIX N: all of PREFIX-1 … PREFIX-N are in FILE.
arrived() { [ "$(grep -c "^$2-" "$1" | tr -d ' ')" -ge "$3" ] && missing "$1" "$2" "$3" | grep -q '^0$'; }
missing() {
  seq 1 "$3" | sed "s/^/$2-/" | sort >"$WORK/want"
  grep "^$2-" "$1" | sort -u >"$WORK/got" || true
  comm -23 "$WORK/want" "$WORK/got" | wc -l
}
host_pid() { podman inspect -f '{{.State.Pid}}' "$1"; }

# ---- 1, 2: uid 10001, healthy --------------------------------------------------------------------
A=$ID-a
run_awslink "$A"
wait_for "awslink in $A to report connected" 30 connected
uid_line=$(podman exec "$A" grep '^Uid:' /proc/1/status)
cmd=$(podman exec "$A" cat /proc/1/cmdline | tr '\0' ' ')
[ "$(echo "$uid_line" | awk '{print $2 $3 $4 $5}')" = 10001100011000110001 ] ||
  fail "awslink runs as '$uid_line', not uid 10001"
case $cmd in awslink\ run*) ;; *) fail "PID 1 in the container is '$cmd', not awslink" ;; esac
say "1. PID 1 of $A is '$cmd' with $uid_line (real, effective, saved, fs = 10001)"
health=$(podman healthcheck run "$A" 2>&1) || fail "podman healthcheck run: '$health'"
[ "$(podman inspect -f '{{.State.Health.Status}}' "$A")" = healthy ] || fail "health is not healthy"
say "2. podman healthcheck run $A: exit 0, State.Health.Status=healthy"

# ---- 3: kill -9 under --restart=always --------------------------------------------------------
cloud_subscriber "$WORK/cloud-1.txt"
# One long-lived QoS 1 publisher on the local Mosquitto; send() notes when each message left.
mkfifo "$WORK/pub.fifo"
mosquitto_pub -h 127.0.0.1 -p "$LOCAL_PORT" -q 1 -t telemetry -l <"$WORK/pub.fifo" 2>"$WORK/pub.log" &
PUB_PID=$!
PIDS+=("$PUB_PID")
exec 7>"$WORK/pub.fifo"
now_ms() { echo "${EPOCHREALTIME/./}" | cut -c1-13; }
I=0
send() { # send COUNT: the next COUNT messages k-I
  local n
  for ((n = 0; n < $1; n++)); do
    I=$((I + 1))
    echo "k-$I" >&7
    echo "$I $(now_ms)" >>"$WORK/sent.txt"
  done
}
restarted() { [ "$(podman inspect -f '{{.RestartCount}} {{.State.Running}}' "$A")" = "1 true" ]; }
send 100
wait_for "k-1..k-100 at the emulator" 30 arrived "$WORK/cloud-1.txt" k 100
pid_before=$(host_pid "$A")
kill -9 "$pid_before"
t_kill=$(now_ms)
# Keep publishing while awslink is dead and podman restarts it, then some more.
deadline=$((SECONDS + 30))
while :; do
  send 25
  restarted && break
  [ $SECONDS -lt $deadline ] || fail "$A was not restarted within 30 s"
done
t_back=$(podman inspect -f '{{.State.StartedAt.UnixMilli}}' "$A")
wait_for "the restarted awslink to report connected" 30 connected
send $((300 - I))
N=$I
exec 7>&-
wait "$PUB_PID" || fail "the publisher failed: $(cat "$WORK/pub.log")"
dead=$(awk -v a="$t_kill" -v b="$t_back" '$2 > a && $2 < b' "$WORK/sent.txt" | wc -l | tr -d ' ')
[ "$dead" -gt 0 ] || fail "no message was published while awslink was down"
wait_for "k-1..k-$N at the emulator" 60 arrived "$WORK/cloud-1.txt" k $N
[ "$(host_pid "$A")" != "$pid_before" ] || fail "same awslink pid after the restart"
say "3. kill -9 of awslink (host pid $pid_before): $A back after $((t_back - t_kill)) ms (RestartCount 1), $N of $N messages at the emulator ($dead of them published while awslink was dead)"

# ---- 4: podman stop ------------------------------------------------------------------------------
t=$(ms)
podman stop -t 10 "$A" >/dev/null 2>>"$WORK/podman-run.log"
took=$(($(ms) - t))
code=$(podman inspect -f '{{.State.ExitCode}}' "$A")
[ "$code" = 0 ] || fail "podman stop: exit code $code"
[ "$took" -lt 5000 ] || fail "podman stop took $took ms"
st=$(status)
echo "$st" | grep -q '"cause":"CONNECTION_CLOSED"' || fail "status after stop: $st"
say "4. podman stop $A: exit 0 after $took ms; status $st"
podman rm -v "$A" >/dev/null 2>>"$WORK/podman-run.log"

# ---- 5: a new container drains the old one's queue --------------------------------------------
stop_pid "$EMU_PID"
say "the cloud is away (emulator stopped)"
B=$ID-b
run_awslink "$B"
M=200
publish d 1 $M
wait_for "$B to journal d-1..d-$M" 30 queued $M
t=$(ms)
podman stop -t 10 "$B" >/dev/null 2>>"$WORK/podman-run.log"
took=$(($(ms) - t))
code=$(podman inspect -f '{{.State.ExitCode}}' "$B")
# Stopped while its cloud link keeps retrying an unreachable endpoint: the same contract.
[ "$code" = 0 ] && [ "$took" -lt 5000 ] ||
  fail "$B (cloud unreachable, reconnecting) exited $code $took ms after podman stop, not 0 within 5 s"
podman rm -v "$B" >/dev/null 2>>"$WORK/podman-run.log"
say "$B queued $M messages in the volume while the cloud was away, stopped in $took ms (exit 0)"
stop_pid "$MOSQ_PID"
KEEP_PORT=1 start_mosquitto # empty: no session, nothing queued for awslink any more
start_emulator
cloud_subscriber "$WORK/cloud-2.txt"
C=$ID-c
t=$(ms)
run_awslink "$C"
wait_for "d-1..d-$M at the emulator from $C" 60 arrived "$WORK/cloud-2.txt" d $M
say "5. new container $C on volume $VOLUME, cloud back: $M of $M queued messages at the emulator in $(($(ms) - t)) ms"
wait_for "$C to report an empty journal" 10 queued 0

say "PASSED in $((SECONDS - T0)) s"
