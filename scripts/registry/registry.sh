#!/usr/bin/env bash
# A real OCI registry (Debian's `docker-registry`, CNCF distribution 2.8) on a free
# 127.0.0.1 port, for the sweep tests and benchmarks. No auth, filesystem storage.
#
#   scripts/registry/registry.sh start   install the package if missing (root on Debian),
#                                        start the registry, wait for /v2/, print its URL
#   scripts/registry/registry.sh stop    stop it (data kept)
#   scripts/registry/registry.sh status  exit 0 if running and answering, 3 if not
#   scripts/registry/registry.sh url     print the URL; exit 1 if not running
#   scripts/registry/registry.sh clean   stop and delete the runtime dir (data included)
#
# Environment: TRUSTLOG_REGISTRY_DIR  runtime dir (default: <repo>/.registry)
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
RUNTIME="${TRUSTLOG_REGISTRY_DIR:-$REPO/.registry}"
PIDFILE="$RUNTIME/registry.pid"
URLFILE="$RUNTIME/url"
BIN="${TRUSTLOG_REGISTRY_BIN:-/usr/bin/docker-registry}"
SERVICE=registry.sh
# shellcheck source=../lib/service.sh
source "$REPO/scripts/lib/service.sh"

ensure_installed() {
  [[ -x "$BIN" ]] && return 0
  if [[ "$(id -u)" = 0 ]] && command -v apt-get >/dev/null; then
    log "installing Debian's docker-registry (distribution 2.8)"
    apt_install docker-registry || die "apt-get install docker-registry failed"
    # The package may start a system-wide instance on :5000; ours runs on its own port.
    (systemctl stop docker-registry || service docker-registry stop) >/dev/null 2>&1 || true
  fi
  [[ -x "$BIN" ]] || die "$BIN not found: install Debian's docker-registry package (apt-get install docker-registry)"
}

running() { pid_alive "$PIDFILE"; }
answering() { [[ -f "$URLFILE" ]] && curl -fsS -o /dev/null --max-time 2 "$(cat "$URLFILE")/v2/"; }

start() {
  ensure_installed
  mkdir -p "$RUNTIME/data"
  if running && answering; then cat "$URLFILE"; return 0; fi
  local port; port=$(free_port)
  cat >"$RUNTIME/config.yml" <<CONF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $RUNTIME/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
CONF
  echo "http://127.0.0.1:$port" >"$URLFILE"
  # setsid: the registry outlives this script, in a session of its own.
  setsid "$BIN" serve "$RUNTIME/config.yml" >"$RUNTIME/registry.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    if answering; then cat "$URLFILE"; return 0; fi
    running || { tail -n 20 "$RUNTIME/registry.log" >&2; die "the registry exited during start"; }
    sleep 0.1
  done
  tail -n 20 "$RUNTIME/registry.log" >&2
  die "the registry did not answer on $(cat "$URLFILE")/v2/ within 10 s"
}

stop() {
  if running; then
    stop_pid "$(cat "$PIDFILE")" 5 || true
  fi
  rm -f "$PIDFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) running && answering || exit 3 ;;
  url) running && cat "$URLFILE" || exit 1 ;;
  clean) stop; rm -rf "$RUNTIME" ;;
  *) echo "usage: $0 start|stop|status|url|clean" >&2; exit 2 ;;
esac
