#!/usr/bin/env bash
# Single-node Apache Kafka 4.x (KRaft, combined broker+controller) for development and
# tests, run from jars that Maven fetches (no Docker, no distribution tarball).
#
#   scripts/kafka/kafka.sh start      fetch jars if needed, format storage on first use,
#                                     start the broker, wait until it serves metadata,
#                                     print the bootstrap address (127.0.0.1:PORT)
#   scripts/kafka/kafka.sh stop       SIGTERM (20 s) then SIGKILL; data and ports kept,
#                                     so the next `start` brings back the same broker
#   scripts/kafka/kafka.sh status     exit 0 if running and answering, 3 if not
#   scripts/kafka/kafka.sh bootstrap  print the bootstrap address; exit 1 if not running
#   scripts/kafka/kafka.sh restart    stop + start (same data, same ports)
#   scripts/kafka/kafka.sh clean      stop and delete the runtime dir (data, logs, ports)
#   scripts/kafka/kafka.sh fetch      only fetch the jars
#
# Environment:
#   TRUSTLOG_CACHE          jar cache root        (default: <repo>/.cache)
#   TRUSTLOG_KAFKA_DIR      runtime dir           (default: <repo>/.kafka)
#   TRUSTLOG_KAFKA_HEAP     JVM heap options      (default: -Xms256m -Xmx512m)
#   TRUSTLOG_KAFKA_START_TIMEOUT  seconds to wait for readiness (default: 90)
#   JAVA                    java binary (>= 17)   (default: java on PATH)
#   MVN                     maven binary          (default: mvn on PATH)
#   PYTHON                  python 3 for the stdlib helpers (default: python3)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../lib/service.sh
source "$SCRIPT_DIR/../lib/service.sh"   # REPO, SERVICE, log, die, lock_runtime, stop_pid, ...
POM="$SCRIPT_DIR/pom.xml"
UTIL="$SCRIPT_DIR/kafka_util.py"
PY="${PYTHON:-python3}"
JAVA="${JAVA:-java}"
MVN="${MVN:-mvn}"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM" | head -n1)"
[[ -n "$KAFKA_VERSION" ]] || die "no <kafka.version> in $POM"

CACHE_ROOT="${TRUSTLOG_CACHE:-$REPO/.cache}"
CACHE="$CACHE_ROOT/kafka-$KAFKA_VERSION"
JARS="$CACHE/jars"
MARKER="$JARS/.complete"

RUNTIME="${TRUSTLOG_KAFKA_DIR:-$REPO/.kafka}"
CONF="$RUNTIME/server.properties"
DATA="$RUNTIME/data"
LOGS="$RUNTIME/logs"
PIDFILE="$RUNTIME/kafka.pid"
BOOTFILE="$RUNTIME/bootstrap"
OWNER_MARK="$RUNTIME/.trustlog-kafka"
START_TIMEOUT="${TRUSTLOG_KAFKA_START_TIMEOUT:-90}"

pom_sum() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$POM"; else shasum -a 256 "$POM"; fi | cut -d' ' -f1
}
now() { echo "${EPOCHREALTIME:-$SECONDS}"; }

fetch_jars() {
  if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$(pom_sum)" ]]; then
    return 0
  fi
  command -v "$MVN" >/dev/null 2>&1 || die "maven ($MVN) not found; it is needed once to fetch the Kafka jars"
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.fetch.lock"
  command -v flock >/dev/null 2>&1 && flock -w 900 8
  if [[ -f "$MARKER" && "$(cat "$MARKER")" == "$(pom_sum)" ]]; then   # another process did it
    exec 8>&-; return 0
  fi
  log "fetching Kafka $KAFKA_VERSION jars with Maven into $JARS (once) ..."
  local tmp="$CACHE/jars.tmp.$$"
  rm -rf "$tmp"
  local t0=$SECONDS
  if ! "$MVN" -q -B -Dstyle.color=never -f "$POM" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" \
        >"$CACHE/mvn.log" 2>&1 </dev/null 9>&-; then
    rm -rf "$tmp"
    tail -n 40 "$CACHE/mvn.log" >&2
    die "maven failed to fetch the Kafka jars (full log: $CACHE/mvn.log)"
  fi
  ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "maven produced no kafka_2.13-$KAFKA_VERSION.jar"; }
  rm -rf "$JARS"
  mv "$tmp" "$JARS"
  pom_sum >"$MARKER"
  log "jars ready ($(ls "$JARS" | wc -l) files, $((SECONDS - t0)) s)"
  exec 8>&-
}

check_java() {
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (Kafka $KAFKA_VERSION needs Java 17+)"
  local v major
  v="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
  major="${v%%.*}"
  [[ "$major" =~ ^[0-9]+$ && "$major" -ge 17 ]] || die "Kafka $KAFKA_VERSION needs Java 17+, found '$v'"
}

# pid of our broker if it is alive, else empty
broker_pid() {
  [[ -f "$PIDFILE" ]] || return 0
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  # alive AND still a Kafka JVM (a reused pid after a reboot/crash is not ours)
  kill -0 "$pid" 2>/dev/null || return 0
  local args
  if [[ -r "/proc/$pid/cmdline" ]]; then
    args="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  else
    args="$(ps -ww -o args= -p "$pid" 2>/dev/null || true)"
  fi
  if [[ "$args" == *" kafka.Kafka "* ]]; then echo "$pid"; fi
}

conf_get() { sed -n "s/^$1=//p" "$CONF" | tail -n1; }
bootstrap_addr() { [[ -f "$CONF" ]] && echo "127.0.0.1:$(conf_get trustlog.broker.port)"; }

tail_logs() {
  local f
  for f in "$LOGS/kafka.out" "$LOGS/server.log"; do
    if [[ -s "$f" ]]; then
      echo "----- tail -n 40 $f -----" >&2
      tail -n 40 "$f" >&2
    fi
  done
}

write_config() {
  local ports bport cport
  ports="$("$PY" "$UTIL" free-ports 2)"
  read -r bport cport <<<"$ports"
  mkdir -p "$DATA" "$LOGS"
  cat >"$CONF" <<CONF
# Generated by scripts/kafka/kafka.sh for a single-node dev/test broker. Ports are chosen
# once and kept, so a stop/start keeps the same bootstrap address. 'clean' wipes this dir.
trustlog.broker.port=$bport
trustlog.controller.port=$cport

process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$DATA

# one node: every replication factor / ISR is 1
num.partitions=4
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
delete.topic.enable=true

# small footprint: it runs beside the tests on a small machine
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
log.segment.bytes=8388608
log.retention.hours=168
log.retention.check.interval.ms=60000
CONF
}

format_storage() {
  local cid
  if [[ -f "$RUNTIME/cluster.id" ]]; then cid="$(cat "$RUNTIME/cluster.id")"; else
    cid="$("$PY" "$UTIL" cluster-id)"; echo "$cid" >"$RUNTIME/cluster.id"; fi
  log "formatting storage in $DATA (cluster id $cid)"
  if ! "$JAVA" -Xmx256m -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.properties" \
        -cp "$JARS/*" kafka.tools.StorageTool format --standalone -t "$cid" -c "$CONF" \
        >"$LOGS/format.out" 2>&1 9>&-; then
    cat "$LOGS/format.out" >&2
    die "formatting storage failed"
  fi
}

ports_free() {
  "$PY" - "$(conf_get trustlog.broker.port)" "$(conf_get trustlog.controller.port)" <<'PY'
import socket, sys
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(p)))
    except OSError:
        print(p); sys.exit(1)
    finally:
        s.close()
PY
}

do_start() {
  lock_runtime 180
  local pid addr
  pid="$(broker_pid)"
  if [[ -n "$pid" ]]; then
    addr="$(bootstrap_addr)"
    if "$PY" "$UTIL" wait "$addr" "$START_TIMEOUT" "$pid"; then
      echo "$addr" >"$BOOTFILE"; echo "$addr"; return 0
    fi
    tail_logs
    die "broker pid $pid is alive but $addr does not answer; try: $0 restart"
  fi
  rm -f "$PIDFILE"
  check_java
  fetch_jars
  touch "$OWNER_MARK"
  [[ -f "$CONF" ]] || write_config
  [[ -f "$DATA/meta.properties" ]] || format_storage
  addr="$(bootstrap_addr)"
  local busy
  if ! busy="$(ports_free)"; then
    die "port $busy (from $CONF) is taken by another process; stop it, or '$0 clean' to pick new ports (deletes the data)"
  fi

  mkdir -p "$LOGS"
  local t0; t0="$(now)"
  # shellcheck disable=SC2086
  nohup "$JAVA" ${TRUSTLOG_KAFKA_HEAP:--Xms256m -Xmx512m} \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:ParallelGCThreads=2 -XX:ConcGCThreads=1 -XX:CICompilerCount=2 \
      -XX:MaxMetaspaceSize=256m -XX:MaxDirectMemorySize=256m -XX:ReservedCodeCacheSize=96m -Xss512k \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.properties" \
      -cp "$JARS/*" kafka.Kafka "$CONF" \
      </dev/null >>"$LOGS/kafka.out" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PIDFILE"

  local rc=0
  "$PY" "$UTIL" wait "$addr" "$START_TIMEOUT" "$pid" || rc=$?
  if [[ $rc -ne 0 ]]; then
    if [[ $rc -eq 2 ]]; then
      log "broker exited during startup"
    else
      log "broker did not answer on $addr within ${START_TIMEOUT}s; stopping it"
      stop_pid "$pid" 2 || true
    fi
    rm -f "$PIDFILE"
    tail_logs
    die "start failed (runtime dir $RUNTIME)"
  fi
  echo "$addr" >"$BOOTFILE"
  log "broker pid $pid ready on $addr in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}') s"
  echo "$addr"
}

do_stop() {
  lock_runtime 180
  local pid; pid="$(broker_pid)"
  if [[ -z "$pid" ]]; then rm -f "$PIDFILE"; log "not running"; return 0; fi
  stop_pid "$pid" 20 || log "broker pid $pid ignored SIGTERM for 20 s; killed it (SIGKILL)"
  rm -f "$PIDFILE"
  log "stopped (pid $pid)"
}

do_status() {
  local pid addr; pid="$(broker_pid)"
  addr="$(bootstrap_addr || true)"
  if [[ -n "$pid" ]] && "$PY" "$UTIL" probe "$addr"; then
    echo "running pid=$pid bootstrap=$addr"; return 0
  fi
  [[ -n "$pid" ]] && { echo "starting or unresponsive pid=$pid bootstrap=$addr"; return 3; }
  echo "stopped"; return 3
}

do_bootstrap() {
  local addr; addr="$(bootstrap_addr || true)"
  if [[ -n "$addr" && -n "$(broker_pid)" ]] && "$PY" "$UTIL" probe "$addr"; then
    echo "$addr"; return 0
  fi
  log "broker is not running; start it with: $0 start"
  return 1
}

do_clean() {
  [[ -d "$RUNTIME" ]] || { log "nothing to clean"; return 0; }
  local real; real="$(cd "$RUNTIME" && pwd -P)"
  case "$real" in
    /|"$HOME"|"$(cd "$REPO" && pwd -P)") die "refusing to delete $real" ;;
  esac
  if [[ ! -f "$OWNER_MARK" && -n "$(ls -A "$RUNTIME" 2>/dev/null | grep -v '^\.lock$' || true)" ]]; then
    die "refusing to delete $real: not a kafka.sh runtime dir (no $(basename "$OWNER_MARK"))"
  fi
  do_stop
  exec 9>&-
  rm -rf "$real"
  log "removed $real"
}

case "${1:-}" in
  start) do_start ;;
  stop) do_stop ;;
  restart) do_stop; exec 9>&-; do_start ;;
  status) do_status ;;
  bootstrap) do_bootstrap ;;
  clean) do_clean ;;
  fetch) fetch_jars ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 64 ;;
esac
