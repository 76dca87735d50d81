#!/usr/bin/env bash
# awslink vs. a Mosquitto bridge, side by side (issue 8). Same brokers, certificates and load for
# (a) a carefully configured Mosquitto bridge, in the local broker ("bridge", as users deploy it)
# and as its own Mosquitto between the local broker and the cloud, where awslink sits
# ("bridge-hop": the same number of hops), and (b) awslink in `batched` and `fsync` mode.
#
#   bash bench/run.sh                 # everything (~16 min)
#   bash bench/run.sh --quick         # smaller counts, shorter outage (~7 min)
#   bash bench/run.sh --scenario 1    # one scenario (repeatable: --scenario 1 --scenario 5)
#   bash bench/run.sh --quick --scenario 6 --scenario 7   # opt-in, at AWS limits: commands during a
#            drain (#14), cost and drain with batching (#18); backlog 100,000 (--quick 5,000)
#   options: --no-build, --no-profile, --systems "bridge bridge-hop batched fsync", --rounds N (scenario 1
#            runs N times, the systems interleaved; the table shows each metric's median),
#            --backlog N (scenarios 6 and 7: messages buffered offline)
#   env: PROFILE_SYSTEM=fsync (profile that mode instead of batched), PERF_FREQ (the profile's
#        sampling rate, default 999 Hz), S3_DOWN_MODE=eof, KEEP=1,
#        S6_SYSTEMS (default "bridge batched"), S7_SYSTEMS (default "bridge batched batching")
#
# Honours CARGO_TARGET_DIR (default: the workspace target/). For the profile of scenario 1 it uses
# an awslink built with symbols from $PROF_TARGET_DIR (default: $CARGO_TARGET_DIR-prof) if present
# and not older than the release binary, otherwise the stripped release binary (build the former with:
#   CARGO_TARGET_DIR=<dir>-prof CARGO_PROFILE_RELEASE_STRIP=false \
#     CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -p awslink).
# Prints the table and writes bench/results/<date>.json (+ <date>.md, <date>-perf.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

QUICK=0 BUILD=1 PROFILE=1 SCENARIOS="" SYSTEMS="bridge bridge-hop batched fsync" ROUNDS=3 BACKLOG=""
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --no-profile) PROFILE=0 ;;
    --scenario) SCENARIOS="$SCENARIOS ${2//,/ }"; shift ;;
    --systems) SYSTEMS="$2"; shift ;;
    --rounds) ROUNDS="$2"; shift ;;
    --backlog) BACKLOG="$2"; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
SCENARIOS=${SCENARIOS:-"1 2 3 4 5"}
has() { [[ " $SCENARIOS " == *" $1 "* ]]; }
# Footprint (5) is measured during the runs of scenarios 1 (RSS, CPU) and 3 (disk per message).
if has 5; then has 1 || SCENARIOS="$SCENARIOS 1"; has 3 || SCENARIOS="$SCENARIOS 3"; fi

if [ $QUICK = 1 ]; then
  S1_COUNT=20000 S1_LAT_COUNT=6000 S2_COUNT=1000 S3_OUTAGE=15 S3_PRE=3 S3_POST=10 S4_COUNT=8000 PROBE_COUNT=500
else
  S1_COUNT=100000 S1_LAT_COUNT=20000 S2_COUNT=5000 S3_OUTAGE=60 S3_PRE=5 S3_POST=20 S4_COUNT=20000 PROBE_COUNT=2000
fi
# Scenarios 6 and 7 (opt-in: at 100 publishes/s a 100,000 backlog takes 17 min per unbatched system).
BACKLOG=${BACKLOG:-$([ $QUICK = 1 ] && echo 5000 || echo 100000)}
S6_SYSTEMS=${S6_SYSTEMS:-bridge batched} S7_SYSTEMS=${S7_SYSTEMS:-bridge batched batching}
S6_COMMANDS=20
# The sinks of 6 and 7 wait this long without arrivals: more than awslink's keep-alive (60 s) +
# its reconnect delay, so a drain that stalls on a throttled publish and recovers by reconnecting
# is measured rather than cut off.
S67_IDLE=150
# How the cloud is away in scenario 3: refuse (port closed) or eof (TCP accepted, closed at once).
S3_DOWN_MODE=${S3_DOWN_MODE:-refuse}
SIZE=200 LAT_RATE=2000 S2_RATE=1000 S3_RATE=100 S4_RATE=2000

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROF_TARGET_DIR=${PROF_TARGET_DIR:-$TARGET_DIR-prof}
BIN=$TARGET_DIR/release
if [ $BUILD = 1 ]; then
  cargo build --release --quiet -p awslink -p aws-iot-emulator -p awslink-bench
fi
for b in awslink aws-iot-emulator awslink-bench; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build first or drop --no-build)" >&2; exit 1; }
done
for t in mosquitto mosquitto_pub mosquitto_sub openssl jq python3; do
  command -v "$t" >/dev/null || { echo "needs $t on PATH" >&2; exit 1; }
done
TOOL=$BIN/awslink-bench

DATE=$(date -u +%Y-%m-%dT%H-%M-%SZ)
RESULTS=$ROOT/bench/results
mkdir -p "$RESULTS"
WORK=$(mktemp -d -t awslink-bench.XXXXXX)
M=$WORK/measurements.jsonl
: > "$M"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.3
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { printf '\033[1m[%s] %s\033[0m\n' "$(date +%T)" "$*" >&2; }
fail() { printf '\033[31mbench failed: %s\033[0m\n' "$*" >&2; exit 1; }

# Polls "$@" every 0.1 s until it succeeds, at most $TIMEOUT seconds (default 20).
wait_for() {
  local deadline=$((SECONDS + ${TIMEOUT:-20}))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }
# rec SCENARIO METRIC SYSTEM VALUE [UNIT]: one measurement (VALUE is JSON: a number, null, "text").
rec() {
  local v=$4
  [ -n "$v" ] || v=null
  jq -nc --arg s "$1" --arg m "$2" --arg y "$3" --argjson v "$v" --arg u "${5:-}" \
    '{scenario:$s, metric:$m, system:$y, value:$v, unit:$u}' >> "$M"
}
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# The private part of the RSS (heap, stacks): RSS also counts the pages of shared libraries and
# of the binary that this process has touched, which are shared with every other process that
# maps them (libcrypto alone is ~3-4 MB of both Mosquitto's and awslink's RSS).
anon_kib() { awk '/^RssAnon/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
CLK_TCK=$(getconf CLK_TCK)

log "work directory $WORK, binaries $BIN"

# ---- certificates (as scripts/demo.sh): CA, server for localhost, device CN=dev --------------
CERTS=$WORK/certs
mkdir -p "$CERTS"
(
  cd "$CERTS"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=awslink bench CA" -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=dev" \
    -keyout device.key -out device.csr 2>/dev/null
  openssl x509 -req -in device.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -out device.pem 2>/dev/null
  chmod 600 ./*.key
)

# ---- machine ----------------------------------------------------------------------------------
disk_dev=$(df --output=source "$WORK" | tail -1)
jq -n --arg nproc "$(nproc)" \
  --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" \
  --arg kernel "$(uname -r)" --arg mem "$(free -h | awk '/^Mem:/ {print $2}')" \
  --arg disk "$disk_dev $(lsblk -dno NAME,ROTA,SIZE,MODEL "$disk_dev" 2>/dev/null | tr -s ' ' || true) fs=$(df --output=fstype "$WORK" | tail -1)" \
  --arg mosquitto "$(mosquitto -h 2>/dev/null | head -1)" --arg date "$DATE" \
  --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg quick "$QUICK" \
  --arg rev "$(git describe --always --dirty 2>/dev/null || echo unknown)" \
  '{date:$date, nproc:($nproc|tonumber), cpu:$cpu, kernel:$kernel, memory:$mem, disk:$disk,
    mosquitto:$mosquitto, loadavg_at_start:$load, quick:($quick=="1"), git:$rev}' > "$WORK/machine.json"

# ---- one stack: emulator (+ sink on its private broker), optional outage proxy, local broker
# ---- (bridging for "bridge"), a second bridging Mosquitto for "bridge-hop", awslink for
# ---- "batched"/"fsync" -------------------------------------------------------------------------

# broker_conf NAME PORT: the careful local-broker settings every Mosquitto of the edge shares.
broker_conf() {
  mkdir -p "$D/$1"
  cat <<EOF
listener $2 127.0.0.1
allow_anonymous true
user root
persistence true
persistence_location $D/$1/
autosave_interval 1
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 100
log_dest file $D/$1.log
log_type error
log_type warning
log_type notice
log_type information
EOF
}

# The bridge to the cloud as a careful user configures it for AWS IoT Core.
cloud_bridge_conf() {
  cat <<EOF

connection aws
address localhost:$CLOUD_PORT
bridge_cafile $CERTS/ca.pem
bridge_certfile $CERTS/device.pem
bridge_keyfile $CERTS/device.key
bridge_insecure false
bridge_protocol_version mqttv311
remote_clientid dev
try_private false
notifications false
cleansession false
start_type automatic
restart_timeout 1 5
keepalive_interval 60
topic "" out 1 telemetry telemetry/bench/dev
EOF
  # Scenario 6: command responses too (command///res/<id>/<status> → command//dev/res/…).
  [ -z "${BRIDGE_COMMANDS:-}" ] || echo 'topic res/# out 1 command/// command//dev/'
}
# start_stack SYSTEM DIR LIMITS(on|off) PROXY(0|1)
start_stack() {
  SYS=$1 D=$2 LIMITS=$3 USE_PROXY=$4
  mkdir -p "$D"
  EMU_PORT=$(free_port) PRIV_PORT=$(free_port) LOCAL_PORT=$(free_port)
  local flags=(--no-shadows)
  [ "$LIMITS" = off ] && flags+=(--no-limits)
  RUST_LOG=warn "$BIN/aws-iot-emulator" --listen "127.0.0.1:$EMU_PORT" --ca-cert "$CERTS/ca.pem" \
    --server-cert "$CERTS/server.pem" --server-key "$CERTS/server.key" --broker-port "$PRIV_PORT" \
    --stats-file "$D/emu-stats.json" "${flags[@]}" >"$D/emulator.log" 2>&1 &
  EMU_PID=$!; PIDS+=("$EMU_PID")
  wait_for grep -q "listening on" "$D/emulator.log" || fail "emulator did not start ($D/emulator.log)"
  CLOUD_PORT=$EMU_PORT
  if [ "$USE_PROXY" = 1 ]; then
    CLOUD_PORT=$(free_port)
    "$TOOL" proxy --listen-port "$CLOUD_PORT" --target-port "$EMU_PORT" --down-file "$D/cloud-down" \
      --mode "$S3_DOWN_MODE" --ready-file "$D/proxy-ready" >"$D/proxy.log" 2>&1 &
    PIDS+=($!)
    wait_for test -f "$D/proxy-ready" || fail "proxy did not start"
  fi
  broker_conf mosquitto "$LOCAL_PORT" > "$D/mosquitto.conf"
  if [ "$SYS" = bridge ]; then cloud_bridge_conf >> "$D/mosquitto.conf"; fi
  start_mosquitto
  if [ "$SYS" = bridge-hop ]; then
    # Its own Mosquitto, between the local broker and the cloud: takes `telemetry` from the
    # local broker (a persistent QoS 1 session there, like awslink's intake) and bridges it on.
    HOP_PORT=$(free_port)
    {
      broker_conf hop "$HOP_PORT"
      cat <<EOF

connection local
address 127.0.0.1:$LOCAL_PORT
remote_clientid bench-hop
bridge_protocol_version mqttv311
try_private false
notifications false
cleansession false
start_type automatic
restart_timeout 1 5
keepalive_interval 60
topic telemetry in 1
topic bench/hop-ready in 1
EOF
      cloud_bridge_conf
    } > "$D/hop.conf"
    start_hop
  elif [ "$SYS" != bridge ]; then
    local quota='{}' dur=$SYS batching='[]'
    [ "$LIMITS" = off ] && quota='{"publishPerSecond": 100000, "bytesPerSecond": 1099511627776}'
    # "batching": awslink (batched durability) with telemetry batching on (#18), defaults.
    if [ "$SYS" = batching ]; then dur=batched batching='[{"filter": "telemetry/#"}]'; fi
    jq -n --arg addr "mqtts://localhost:$CLOUD_PORT" --arg ca "$CERTS/ca.pem" \
      --arg cert "$CERTS/device.pem" --arg key "$CERTS/device.key" \
      --arg local "tcp://127.0.0.1:$LOCAL_PORT" --arg buf "$D/journal" --arg dur "$dur" \
      --argjson quota "$quota" --argjson batching "$batching" \
      '{address:$addr, caCert:$ca, cert:$cert, key:$key, tenantId:"bench", localAddress:$local,
        logLevel:"WARN", metricsIntervalSecs:0,
        buffer:{path:$buf, durability:$dur}, quota:$quota,
        reconnect:{minDelayMs:1000, maxDelayMs:5000}}
       + (if $batching == [] then {} else {batching:$batching} end)' > "$D/awslink.json"
    start_awslink
  fi
  TIMEOUT=30 wait_for jq -e '.connections_open >= 1' "$D/emu-stats.json" \
    || fail "$SYS did not connect to the emulator (see $D)"
  case $SYS in
    bridge) FWD_PID=$MOSQ_PID ;;
    bridge-hop) FWD_PID=$HOP_PID ;;
    *) FWD_PID=$AWSLINK_PID ;;
  esac
}

# broker_running NAME PORT PID: ready once THIS mosquitto logged "running" (after binding its
# listener) and is alive: another process listening on PORT never counts.
broker_running() {
  kill -0 "$3" 2>/dev/null || return 2
  tail -n +$((LOG_FROM + 1)) "$D/$1.log" 2>/dev/null | grep -q " running" &&
    mosquitto_pub -h 127.0.0.1 -p "$2" -t bench/ping -m x && kill -0 "$3"
}

# start_broker NAME PORT: mosquitto -c $D/NAME.conf, its pid in BROKER_PID once it is ready.
start_broker() {
  # Lines already in the log (a restart appends): only later ones may say "running". No pipe
  # from cat: under pipefail a missing log (the first start) would end the script.
  LOG_FROM=0
  if [ -f "$D/$1.log" ]; then LOG_FROM=$(wc -l < "$D/$1.log"); fi
  mosquitto -c "$D/$1.conf" >>"$D/$1.out" 2>&1 &
  BROKER_PID=$!; PIDS+=("$BROKER_PID")
  wait_for broker_running "$1" "$2" "$BROKER_PID" ||
    fail "mosquitto $1 (pid $BROKER_PID) did not start on port $2: $(tail -n +$((LOG_FROM + 1)) "$D/$1.log" 2>/dev/null)"
}

start_mosquitto() { start_broker mosquitto "$LOCAL_PORT"; MOSQ_PID=$BROKER_PID; }

# The same-hop bridge is ready once its subscriptions on the local broker are in place: it
# subscribes to `telemetry` and then to `bench/hop-ready`, which holds a retained message (put
# there before the hop starts, so the local broker hands it over with the retain flag and the hop
# keeps it). Finding it retained on the hop means `telemetry` is subscribed too.
start_hop() {
  mosquitto_pub -h 127.0.0.1 -p "$LOCAL_PORT" -q 1 -r -t bench/hop-ready -m ready
  start_broker hop "$HOP_PORT"; HOP_PID=$BROKER_PID
  TIMEOUT=30 wait_for sh -c "mosquitto_sub -h 127.0.0.1 -p $HOP_PORT -t bench/hop-ready -C 1 -W 1 | grep -q ready" \
    || fail "the same-hop bridge did not subscribe on the local broker (see $D/hop.log)"
}

start_awslink() {
  "$AWSLINK" run --config "$D/awslink.json" >>"$D/awslink.log" 2>&1 &
  AWSLINK_PID=$!; PIDS+=("$AWSLINK_PID")
  wait_for sh -c "mosquitto_sub -h 127.0.0.1 -p $LOCAL_PORT -t edge/connection/remote/status -C 1 -W 2 | grep -q '\"connected\":true'" \
    || fail "awslink did not connect (see $D/awslink.log)"
}

stop_stack() {
  local pid n=0
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  # A wedged process (see RESULTS.md: mosquitto spinning in keepalive__check) ignores SIGTERM.
  while [ $n -lt 50 ]; do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1; n=$((n + 1))
  done
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}

# start_sink NAME EXPECT IDLE MAX [FILTER]: arrivals in $D/NAME.csv, its summary in $D/NAME-sink.json
start_sink() {
  "$TOOL" sink --port "$PRIV_PORT" --expect "$2" --idle-secs "$3" --max-secs "$4" --filter "${5:-telemetry/#}" \
    --ready-file "$D/$1.ready" --out "$D/$1.csv" --summary "$D/$1-sink.json" >"$D/$1.log" 2>&1 &
  SINK_PID=$!; PIDS+=("$SINK_PID")
  wait_for test -f "$D/$1.ready" || fail "sink did not start"
}

# loadgen NAME ARGS...: runs in the foreground, summary in $D/NAME.json
loadgen() {
  local name=$1; shift
  "$TOOL" loadgen --port "$LOCAL_PORT" --size "$SIZE" --summary "$D/$name.json" "$@" >"$D/$name.log" 2>&1
}

analyze() { # analyze OUT EXPECT [more args]
  local out=$1 expect=$2; shift 2
  "$TOOL" analyze --expect "$expect" --out "$out" "$@"
}

AWSLINK=$BIN/awslink

# The emulator's private broker ("the cloud" Mosquitto): its child process, or 0.
child_mosquitto() {
  local p
  for p in $(cat /proc/"$1"/task/*/children 2>/dev/null || true); do
    if [ "$(cat "/proc/$p/comm" 2>/dev/null || true)" = mosquitto ]; then echo "$p"; return 0; fi
  done
  echo 0
}

# ---- scenario 1 (+ footprint RSS/CPU of scenario 5) --------------------------------------------
scenario1() {
  local sys=$1 round=$2 D=$WORK/s1-$1-r$2
  log "scenario 1 [$sys] round $round/$ROUNDS: $S1_COUNT x ${SIZE} B as fast as possible, then $S1_LAT_COUNT at $LAT_RATE msg/s"
  start_stack "$sys" "$D" off 0
  sleep 2
  local fwd=$FWD_PID rss_idle mosq_rss_idle anon_idle
  rss_idle=$(rss_kib "$fwd"); mosq_rss_idle=$(rss_kib "$MOSQ_PID"); anon_idle=$(anon_kib "$fwd")
  # Every long-lived process of the set-up, sampled before and after the throughput run (for
  # "bridge" the forwarder is the local Mosquitto itself, so it has no row of its own).
  local roles=(local_mosquitto emulator cloud_mosquitto) pids i
  pids=("$MOSQ_PID" "$EMU_PID" "$(child_mosquitto "$EMU_PID")")
  if [ "$sys" != bridge ]; then roles+=(forwarder); pids+=("$fwd"); fi
  local pcpu0=() prss0=()
  for i in "${!pids[@]}"; do pcpu0+=("$(cpu_ticks "${pids[$i]}")"); prss0+=("$(rss_kib "${pids[$i]}")"); done
  # throughput
  start_sink tput "$S1_COUNT" 20 300
  local c0 m0; c0=$(cpu_ticks "$fwd"); m0=$(cpu_ticks "$MOSQ_PID")
  loadgen tput --count "$S1_COUNT" --timeout-secs 240 || fail "loadgen failed ($D/tput.log)"
  wait "$SINK_PID" || true
  local c1 m1; c1=$(cpu_ticks "$fwd"); m1=$(cpu_ticks "$MOSQ_PID")
  # Recorded at the end of the scenario (after its own rows): "metric|value|unit" each.
  local total=0 cpu prow=()
  for i in "${!pids[@]}"; do
    cpu=$(python3 -c "print(round(($(cpu_ticks "${pids[$i]}")-${pcpu0[$i]})/$CLK_TCK*100000/$S1_COUNT, 2))")
    total=$(python3 -c "print(round($total+$cpu, 2))")
    prow+=("proc_cpu_s_per_100k:${roles[$i]}|$cpu|CPU s per 100k (throughput run), this process alone")
    prow+=("proc_rss_before_kib:${roles[$i]}|${prss0[$i]}|KiB before the throughput run")
    prow+=("proc_rss_after_kib:${roles[$i]}|$(rss_kib "${pids[$i]}")|KiB after the throughput run")
  done
  # The clients exit before they can be sampled: they report their own getrusage.
  local tool usage
  for tool in loadgen:tput.json sink:tput-sink.json; do
    usage=$D/${tool#*:}
    cpu=$(jq '.usage.cpu_s // 0' "$usage" 2>/dev/null || echo 0)
    cpu=$(python3 -c "print(round($cpu*100000/$S1_COUNT, 2))")
    total=$(python3 -c "print(round($total+$cpu, 2))")
    prow+=("proc_cpu_s_per_100k:${tool%%:*}|$cpu|CPU s per 100k (throughput run), this process alone")
    prow+=("proc_rss_max_kib:${tool%%:*}|$(jq '.usage.max_rss_kib // null' "$usage" 2>/dev/null || echo null)|KiB peak (the client's own getrusage)")
  done
  prow+=("proc_cpu_s_per_100k:all|$total|CPU s per 100k, every process of the set-up")
  analyze "$D/tput-analysis.json" "$S1_COUNT" --events "$D/tput.csv"
  rec 1 throughput_msg_s "$sys" "$(jq .throughput_msg_s "$D/tput-analysis.json")" "msg/s end to end"
  rec 1 ingest_msg_s "$sys" "$(jq .rate_achieved "$D/tput.json")" "msg/s acked by local broker"
  rec 1 lost_in_throughput_run "$sys" "$(jq .lost "$D/tput-analysis.json")" msgs
  local per100k; per100k=$(python3 -c "print(round(($c1-$c0)/$CLK_TCK*100000/$S1_COUNT, 2))")
  local mper100k; mper100k=$(python3 -c "print(round(($m1-$m0)/$CLK_TCK*100000/$S1_COUNT, 2))")
  # latency at a fixed rate, sampling RSS
  start_sink lat "$S1_LAT_COUNT" 20 300
  local peak=0 mpeak=0 r
  loadgen lat --count "$S1_LAT_COUNT" --start-seq 1000000 --rate "$LAT_RATE" &
  local lg=$!
  while kill -0 "$lg" 2>/dev/null; do
    r=$(rss_kib "$fwd"); [ "$r" -gt "$peak" ] && peak=$r
    r=$(rss_kib "$MOSQ_PID"); [ "$r" -gt "$mpeak" ] && mpeak=$r
    sleep 0.5
  done
  wait "$lg" || fail "loadgen failed ($D/lat.log)"
  wait "$SINK_PID" || true
  analyze "$D/lat-analysis.json" "$S1_LAT_COUNT" --start-seq 1000000 --events "$D/lat.csv"
  rec 1 latency_p50_ms "$sys" "$(jq .latency.p50_ms "$D/lat-analysis.json")" "ms at $LAT_RATE msg/s"
  rec 1 latency_p99_ms "$sys" "$(jq .latency.p99_ms "$D/lat-analysis.json")" "ms at $LAT_RATE msg/s"
  rec 1 latency_max_ms "$sys" "$(jq .latency.max_ms "$D/lat-analysis.json")" "ms at $LAT_RATE msg/s"
  if [ "$sys" = bridge ]; then
    rec 5 rss_idle_kib "$sys" "$rss_idle" "KiB (forwarder process)"
    rec 5 rss_anon_idle_kib "$sys" "$anon_idle" "KiB private (RssAnon) of the forwarder, idle"
    rec 5 rss_at_2000_kib "$sys" "$peak" "KiB peak"
    rec 5 cpu_s_per_100k "$sys" "$per100k" "CPU s (forwarder process)"
  else
    rec 5 rss_idle_kib "$sys" "$rss_idle" "KiB (forwarder process)"
    rec 5 rss_anon_idle_kib "$sys" "$anon_idle" "KiB private (RssAnon) of the forwarder, idle"
    rec 5 rss_at_2000_kib "$sys" "$peak" "KiB peak"
    rec 5 cpu_s_per_100k "$sys" "$per100k" "CPU s (forwarder process)"
    rec 5 edge_rss_idle_kib "$sys" "$((rss_idle + mosq_rss_idle))" "KiB edge total (awslink + local mosquitto)"
    rec 5 edge_rss_at_2000_kib "$sys" "$((peak + mpeak))" "KiB edge total (awslink + local mosquitto)"
    rec 5 edge_cpu_s_per_100k "$sys" "$(python3 -c "print(round($per100k+$mper100k, 2))")" "CPU s edge total (awslink + local mosquitto)"
    rec 5 local_broker_cpu_s_per_100k "$sys" "$mper100k" "CPU s (the local mosquitto alone; for the bridge: the bridging broker)"
  fi
  [ "$sys" = bridge ] && {
    rec 5 edge_rss_idle_kib "$sys" "$rss_idle" "KiB edge total (awslink + local mosquitto)"
    rec 5 edge_rss_at_2000_kib "$sys" "$peak" "KiB edge total (awslink + local mosquitto)"
    rec 5 edge_cpu_s_per_100k "$sys" "$per100k" "CPU s edge total (awslink + local mosquitto)"
    rec 5 local_broker_cpu_s_per_100k "$sys" "$per100k" "CPU s (the local mosquitto alone; for the bridge: the bridging broker)"
  }
  local row metric value unit
  for row in "${prow[@]}"; do
    IFS='|' read -r metric value unit <<<"$row"
    rec 5 "$metric" "$sys" "$value" "$unit"
  done
  stop_stack
}

disk_probe() {
  log "raw disk: append($SIZE B) + fdatasync and sled insert($SIZE B) + flush, $PROBE_COUNT rounds each"
  "$TOOL" flush-probe --mode file --dir "$WORK/flush-probe" --count "$PROBE_COUNT" --size "$SIZE" --out "$WORK/fdatasync-probe.json"
  rm -rf "$WORK/flush-probe"
  "$TOOL" flush-probe --mode sled --dir "$WORK/flush-probe" --count "$PROBE_COUNT" --size "$SIZE" --out "$WORK/flush-probe.json"
  rm -rf "$WORK/flush-probe"
  rec 1 throughput_msg_s "disk fdatasync" "$(jq .flushes_per_s "$WORK/fdatasync-probe.json")" "msg/s end to end"
  rec 1 throughput_msg_s "disk flush" "$(jq .flushes_per_s "$WORK/flush-probe.json")" "msg/s end to end"
}

profile_s1() {
  local bin=$BIN/awslink sym="stripped release binary: dso-level only"
  if [ -x "$PROF_TARGET_DIR/release/awslink" ] && ! [ "$BIN/awslink" -nt "$PROF_TARGET_DIR/release/awslink" ]; then
    bin=$PROF_TARGET_DIR/release/awslink sym="built with symbols ($PROF_TARGET_DIR)"
  elif [ -x "$PROF_TARGET_DIR/release/awslink" ]; then
    # A symbol build older than the release binary is of older code: profiling it would
    # describe code that is not the one measured.
    log "profile: $PROF_TARGET_DIR/release/awslink is older than $BIN/awslink; profiling the stripped release binary (rebuild the symbol build, see the top of this file)"
  fi
  command -v perf >/dev/null || { log "perf not found: no profile"; return; }
  local D=$WORK/s1-profile
  local psys=${PROFILE_SYSTEM:-batched}
  log "profile: scenario 1 throughput, awslink $psys under perf ($sym)"
  AWSLINK=$bin start_stack "$psys" "$D" off 0
  start_sink tput "$S1_COUNT" 20 300
  perf record -F "${PERF_FREQ:-999}" -g -o "$D/perf.data" -p "$AWSLINK_PID" >"$D/perf.log" 2>&1 &
  local perf_pid=$!
  sleep 1
  loadgen tput --count "$S1_COUNT" || fail "loadgen failed under perf"
  wait "$SINK_PID" || true
  kill -INT "$perf_pid"; wait "$perf_pid" || true
  local out=$RESULTS/$DATE-perf-$psys.txt
  # top N lines of a perf report (head closing the pipe must not fail the script: pipefail)
  report() { local n=$1; shift; { perf report -i "$D/perf.data" --stdio "$@" 2>/dev/null || true; } | grep -v '^#' | grep -v '^$' | head -"$n" || true; }
  {
    echo "# perf record -F ${PERF_FREQ:-999} -g -p <awslink $psys>, scenario 1 throughput ($S1_COUNT x $SIZE B); binary: $sym"
    echo "## by thread (comm), self time"
    report 20 --no-children --sort comm -g none --percent-limit 0.5
    echo "## by shared object, self time"
    report 12 --no-children --sort dso -g none --percent-limit 0.5
    echo "## top symbols, self time"
    report 40 --no-children --sort dso,symbol -g none --percent-limit 0.5
    echo "## top symbols inside the awslink binary (Rust, sled, paho C), self time"
    report 40 --no-children --sort symbol -g none --dsos awslink --percent-limit 0.2
    echo "## inclusive (with a frame-pointer build the Rust call chains are complete too)"
    report 60 --children --sort symbol -g none --percent-limit 2
  } > "$out"
  analyze "$D/tput-analysis.json" "$S1_COUNT" --events "$D/tput.csv"
  rec 1 throughput_under_perf_msg_s "$psys" "$(jq .throughput_msg_s "$D/tput-analysis.json")" "msg/s (perf attached)"
  log "profile written to $out"
  stop_stack
}

# ---- scenario 2: AWS limits on -----------------------------------------------------------------
scenario2() {
  local sys=$1 D=$WORK/s2-$sys
  log "scenario 2 [$sys]: AWS limits on, $S2_COUNT msgs offered at $S2_RATE msg/s"
  start_stack "$sys" "$D" on 0
  local max=$(( S2_COUNT / 90 + 40 ))
  start_sink s2 "$S2_COUNT" 15 "$max"
  local t0; t0=$(now_ns)
  loadgen s2 --count "$S2_COUNT" --rate "$S2_RATE" --timeout-secs 120 || fail "loadgen failed ($D/s2.log)"
  wait "$SINK_PID" || true
  analyze "$D/s2-analysis.json" "$S2_COUNT" --events "$D/s2.csv"
  sleep 0.5
  rec 2 delivered "$sys" "$(jq .delivered "$D/s2-analysis.json")" msgs
  rec 2 lost "$sys" "$(jq .lost "$D/s2-analysis.json")" "msgs not delivered by the deadline"
  rec 2 throttled_by_endpoint "$sys" "$(jq .publishes_throttled "$D/emu-stats.json")" "publishes dropped"
  local lost; lost=$(jq .lost "$D/s2-analysis.json")
  if [ "$lost" = 0 ]; then
    rec 2 time_to_deliver_all_s "$sys" "$(jq .elapsed_s "$D/s2-analysis.json")" s
  else
    rec 2 time_to_deliver_all_s "$sys" '"never"' s
  fi
  rec 2 duplicates "$sys" "$(jq .duplicates "$D/s2-analysis.json")" msgs
  stop_stack
}

# ---- scenario 3: outage and drain (+ disk bytes per buffered message of scenario 5) ------------
scenario3() {
  local sys=$1 D=$WORK/s3-$sys
  local total=$(( (S3_PRE + S3_OUTAGE + S3_POST) * S3_RATE ))
  log "scenario 3 [$sys]: $S3_RATE msg/s for $((S3_PRE + S3_OUTAGE + S3_POST)) s, cloud away for $S3_OUTAGE s"
  start_stack "$sys" "$D" off 1
  start_sink s3 "$total" $((S3_OUTAGE + 30)) $((S3_PRE + S3_OUTAGE + S3_POST + 200))
  loadgen s3 --count "$total" --rate "$S3_RATE" --timeout-secs $((S3_PRE + S3_OUTAGE + S3_POST + 90)) &
  local lg=$!
  sleep "$S3_PRE"
  local store=$D/journal
  [ "$sys" = bridge ] && store=$D/mosquitto
  [ "$sys" = bridge-hop ] && store=$D/hop
  sleep 1.2 # a mosquitto autosave
  local du0; du0=$(du -sb "$store" | cut -f1)
  local down_ns; down_ns=$(now_ns)
  touch "$D/cloud-down"
  sleep "$S3_OUTAGE"
  local up_ns; up_ns=$(now_ns)
  local du1; du1=$(du -sb "$store" | cut -f1)
  rm -f "$D/cloud-down"
  wait "$lg" || log "loadgen: the local broker did not acknowledge every message ($D/s3.log)"
  wait "$SINK_PID" || true
  echo "down_ns=$down_ns up_ns=$up_ns" > "$D/outage.txt"
  analyze "$D/s3-analysis.json" "$total" --up-ns "$up_ns" --events "$D/s3.csv"
  local buffered; buffered=$(python3 -c "print(round(($up_ns-$down_ns)/1e9*$S3_RATE))")
  rec 3 lost "$sys" "$(jq .lost "$D/s3-analysis.json")" "msgs (cloud away: $S3_DOWN_MODE)"
  rec 3 local_broker_never_acked "$sys" "$(jq .unacked "$D/s3.json")" "publishes the local broker never acknowledged"
  rec 3 duplicates "$sys" "$(jq .duplicates "$D/s3-analysis.json")" msgs
  rec 3 drain_s "$sys" "$(jq .drain.drain_s "$D/s3-analysis.json")" "s after the cloud came back"
  rec 3 reconnect_s "$sys" "$(jq .drain.reconnect_s "$D/s3-analysis.json")" "s from cloud back to first arrival"
  rec 3 drain_after_reconnect_s "$sys" "$(jq .drain.drain_after_reconnect_s "$D/s3-analysis.json")" "s from first arrival to backlog done"
  rec 3 backlog_msg_s_after_reconnect "$sys" "$(jq .drain.backlog_msg_s_after_reconnect "$D/s3-analysis.json")" "msg/s backlog drain rate"
  rec 3 live_delivered_during_drain "$sys" \
    "$(jq .drain.live_published_during_drain_delivered_before_backlog_done "$D/s3-analysis.json")" \
    "live msgs delivered before the backlog was done"
  rec 3 live_p50_latency_during_drain_ms "$sys" "$(jq .drain.live_latency_during_drain.p50_ms "$D/s3-analysis.json")" "ms, live msgs published while draining"
  rec 3 live_max_latency_during_drain_ms "$sys" "$(jq .drain.live_latency_during_drain.max_ms "$D/s3-analysis.json")" "ms, live msgs published while draining"
  rec 3 reordered "$sys" "$(jq .reordered "$D/s3-analysis.json")" msgs
  rec 5 disk_bytes_per_buffered_msg "$sys" "$(python3 -c "print(round(($du1-$du0)/max(1,$buffered), 1))")" \
    "bytes ($SIZE B payload; journal dir / mosquitto.db growth)"
  stop_stack
}

# ---- scenario 4: kill -9 mid-stream ------------------------------------------------------------
scenario4() {
  local sys=$1 D=$WORK/s4-$sys
  log "scenario 4 [$sys]: $S4_COUNT at $S4_RATE msg/s, kill -9 of the forwarder after 3 s, restart"
  start_stack "$sys" "$D" off 0
  start_sink s4 "$S4_COUNT" 30 300
  loadgen s4 --count "$S4_COUNT" --rate "$S4_RATE" --timeout-secs 120 &
  local lg=$!
  sleep 3
  kill -9 "$FWD_PID"; wait "$FWD_PID" 2>/dev/null || true
  local t; t=$(now_ns)
  case $sys in
    bridge) start_mosquitto ;;
    bridge-hop) start_hop ;;
    *) start_awslink ;;
  esac
  rec 4 restart_s "$sys" "$(python3 -c "print(round(($(now_ns)-$t)/1e9, 2))")" "s until ready again"
  wait "$lg" || log "loadgen reported unacknowledged messages ($D/s4.log)"
  wait "$SINK_PID" || true
  analyze "$D/s4-analysis.json" "$S4_COUNT" --events "$D/s4.csv"
  rec 4 lost "$sys" "$(jq .lost "$D/s4-analysis.json")" msgs
  rec 4 duplicates "$sys" "$(jq .duplicates "$D/s4-analysis.json")" msgs
  rec 4 loadgen_retries "$sys" "$(jq .retried "$D/s4.json" 2>/dev/null || echo null)" "publishes repeated by the load generator"
  stop_stack
}

# ---- scenarios 6 and 7: a backlog buffered offline, drained at AWS's limits --------------------

# offline_backlog SYS D: the stack with AWS limits on behind the proxy, the cloud taken away,
# $BACKLOG x $SIZE B JSON readings on `telemetry` acknowledged by the local broker.
offline_backlog() {
  start_stack "$1" "$2" on 1
  touch "$D/cloud-down"
  TIMEOUT=30 wait_for jq -e '.connections_open == 0' "$D/emu-stats.json" || fail "the proxy did not cut $1"
  loadgen backlog --count "$BACKLOG" --format json --timeout-secs $((BACKLOG / 500 + 120)) \
    || fail "loadgen failed ($D/backlog.log)"
  sleep 2 # awslink takes the last ones off the local broker (the bridge has them queued already)
}

# Scenario 6 (#14): command responses published during the drain, local publish → cloud sink.
scenario6() {
  local sys=$1 D=$WORK/s6-$1 i
  log "scenario 6 [$sys]: $BACKLOG buffered offline, AWS limits on; $S6_COMMANDS command responses, one a second, during the drain"
  BRIDGE_COMMANDS=1 offline_backlog "$sys" "$D"
  local max=$((BACKLOG / 90 + 90))
  start_sink s6 "$BACKLOG" "$S67_IDLE" "$max"
  local tel_sink=$SINK_PID
  start_sink cmd "$S6_COMMANDS" "$max" "$max" 'command/#'
  local cmd_sink=$SINK_PID
  rm -f "$D/cloud-down"
  local up_ns; up_ns=$(now_ns)
  local t0=$SECONDS
  for i in $(seq 1 "$S6_COMMANDS"); do
    while [ $((SECONDS - t0)) -lt "$i" ]; do sleep 0.05; done
    "$TOOL" loadgen --port "$LOCAL_PORT" --topic "command///res/$i/200" --count 1 \
      --start-seq $((10000000 + i)) --size 100 --format json --client-id bench-cmd \
      --summary "$D/cmd-$i.json" >"$D/cmd-$i.log" 2>&1 || log "command response $i not acknowledged locally"
  done
  wait "$cmd_sink" || true
  wait "$tel_sink" || true
  analyze "$D/cmd-analysis.json" "$S6_COMMANDS" --start-seq 10000001 --events "$D/cmd.csv"
  analyze "$D/s6-analysis.json" "$BACKLOG" --up-ns "$up_ns" --events "$D/s6.csv"
  rec 6 command_responses_delivered "$sys" "$(jq .delivered "$D/cmd-analysis.json")" "of $S6_COMMANDS, one a second during the drain"
  rec 6 command_p50_ms "$sys" "$(jq .latency.p50_ms "$D/cmd-analysis.json")" "ms local publish → cloud sink"
  rec 6 command_p99_ms "$sys" "$(jq .latency.p99_ms "$D/cmd-analysis.json")" "ms local publish → cloud sink"
  rec 6 command_max_ms "$sys" "$(jq .latency.max_ms "$D/cmd-analysis.json")" "ms local publish → cloud sink"
  rec 6 backlog_delivered "$sys" "$(jq .delivered "$D/s6-analysis.json")" "of $BACKLOG"
  local drain='"never"'
  [ "$(jq .lost "$D/s6-analysis.json")" = 0 ] && drain=$(jq .drain.drain_s "$D/s6-analysis.json")
  rec 6 backlog_drain_s "$sys" "$drain" "s after the cloud came back (never: not all arrived)"
  rec 6 throttled_by_endpoint "$sys" "$(jq .publishes_throttled "$D/emu-stats.json")" "publishes dropped"
  stop_stack
}

# Scenario 7 (#18): time to drain and billed units, counted from what the cloud side received.
scenario7() {
  local sys=$1 D=$WORK/s7-$1
  log "scenario 7 [$sys]: $BACKLOG x $SIZE B buffered offline, drained at AWS limits"
  offline_backlog "$sys" "$D"
  start_sink s7 "$BACKLOG" "$S67_IDLE" $((BACKLOG / 90 + 90))
  rm -f "$D/cloud-down"
  local up_ns; up_ns=$(now_ns)
  wait "$SINK_PID" || true
  analyze "$D/s7-analysis.json" "$BACKLOG" --up-ns "$up_ns" --events "$D/s7.csv"
  local lost; lost=$(jq .lost "$D/s7-analysis.json")
  rec 7 delivered "$sys" "$(jq .delivered "$D/s7-analysis.json")" "of $BACKLOG"
  rec 7 lost "$sys" "$lost" "msgs not delivered by the deadline"
  rec 7 duplicates "$sys" "$(jq .duplicates "$D/s7-analysis.json")" msgs
  if [ "$lost" = 0 ]; then
    rec 7 drain_s "$sys" "$(jq .drain.drain_s "$D/s7-analysis.json")" "s cloud back → all arrived"
    rec 7 drain_after_reconnect_s "$sys" "$(jq .drain.drain_after_reconnect_s "$D/s7-analysis.json")" "s first arrival → all arrived"
  else
    rec 7 drain_s "$sys" '"never"' "s cloud back → all arrived"
    rec 7 drain_after_reconnect_s "$sys" '"never"' "s first arrival → all arrived"
  fi
  rec 7 reconnect_s "$sys" "$(jq .drain.reconnect_s "$D/s7-analysis.json")" "s cloud back → first arrival"
  rec 7 cloud_publishes "$sys" "$(jq .publishes "$D/s7-sink.json")" "publishes received by the cloud side"
  rec 7 billed_units "$sys" "$(jq .billed_units "$D/s7-sink.json")" "Σ ⌈(payload+topic)/5120⌉ over received publishes"
  rec 7 billed_units_per_1000_msgs "$sys" \
    "$(jq '(.billed_units * 100000 / ([.distinct, 1] | max)) | round / 100' "$D/s7-sink.json")" "per 1,000 distinct messages delivered"
  rec 7 throttled_by_endpoint "$sys" "$(jq .publishes_throttled "$D/emu-stats.json")" "publishes dropped"
  stop_stack
}

for s in 1 2 3 4; do
  has $s || continue
  if [ $s = 1 ]; then
    disk_probe
    # Rounds interleave the systems, so a slow minute of this shared machine hits all of them.
    for round in $(seq 1 "$ROUNDS"); do
      for sys in $SYSTEMS; do scenario1 "$sys" "$round"; done
    done
  else
    for sys in $SYSTEMS; do "scenario$s" "$sys"; done
  fi
  if [ $s = 1 ] && [ $PROFILE = 1 ]; then profile_s1; fi
done
if has 6; then for sys in $S6_SYSTEMS; do scenario6 "$sys"; done; fi
if has 7; then for sys in $S7_SYSTEMS; do scenario7 "$sys"; done; fi
if has 5; then
  rec 5 stripped_binary_bytes fsync "$(stat -c %s "$BIN/awslink")" "bytes (stripped executable; both link the system libssl)"
  rec 5 stripped_binary_bytes batched "$(stat -c %s "$BIN/awslink")" "bytes (stripped executable; both link the system libssl)"
  rec 5 stripped_binary_bytes bridge "$(stat -c %s "$(command -v mosquitto)")" "bytes (stripped executable; both link the system libssl)"
  rec 5 stripped_binary_bytes bridge-hop "$(stat -c %s "$(command -v mosquitto)")" "bytes (stripped executable; both link the system libssl)"
fi

"$TOOL" report --measurements "$M" --machine "$WORK/machine.json" \
  --out "$RESULTS/$DATE.json" --markdown "$RESULTS/$DATE.md"
log "results: $RESULTS/$DATE.json"
