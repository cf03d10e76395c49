#!/usr/bin/env bash
# A real Notary v1 server (Debian's `notary` package: notary-server, notary-signer and
# the notary client v0.7.0) for development and tests: memory storage, the local
# (in-process) signer, plain HTTP on a free 127.0.0.1 port.
#
#   scripts/notary/notary.sh start    install the package if missing (as root, apt-get),
#                                     start notary-server, wait for /_notary_server/health,
#                                     print its URL (http://127.0.0.1:PORT)
#   scripts/notary/notary.sh stop     SIGTERM (10 s) then SIGKILL
#   scripts/notary/notary.sh status   exit 0 if running and healthy, 3 if not
#   scripts/notary/notary.sh url      print the URL; exit 1 if not running
#   scripts/notary/notary.sh install  only make sure the package is installed
#
# Memory storage means a restart starts an empty server. TLS is not needed: the notary
# client talks plain HTTP to an http:// server URL (`notary -s http://...`).
#
# Environment:
#   TRUSTLOG_NOTARY_DIR   runtime dir (default: <repo>/.notary)
#   TRUSTLOG_NOTARY_START_TIMEOUT  seconds to wait for health (default: 30)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
RUNTIME="${TRUSTLOG_NOTARY_DIR:-$REPO/.notary}"
PIDFILE="$RUNTIME/server.pid"
URLFILE="$RUNTIME/url"
CONF="$RUNTIME/server.json"
LOGFILE="$RUNTIME/server.log"
START_TIMEOUT="${TRUSTLOG_NOTARY_START_TIMEOUT:-30}"
SERVICE=notary.sh
# shellcheck source=../lib/service.sh
source "$REPO/scripts/lib/service.sh"

install_pkg() {
  if command -v notary-server >/dev/null 2>&1 && command -v notary >/dev/null 2>&1; then
    return 0
  fi
  [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1 \
    || die "notary-server/notary not found; install Debian's 'notary' package (apt-get install notary)"
  log "installing Debian's notary package ..."
  : >"$RUNTIME/apt.log"
  apt_install notary "$RUNTIME/apt.log" || die "apt-get install notary failed; see $RUNTIME/apt.log"
}

healthy() {  # $1 = url
  python3 - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/_notary_server/health", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

running() { pid_alive "$PIDFILE"; }

start() {
  lock_runtime
  install_pkg
  if running && [[ -f "$URLFILE" ]] && healthy "$(cat "$URLFILE")"; then
    cat "$URLFILE"; return 0
  fi
  rm -f "$PIDFILE" "$URLFILE"
  local port url pid deadline
  port="$(free_port)"
  url="http://127.0.0.1:$port"
  cat >"$CONF" <<JSON
{
  "server": {"http_addr": "127.0.0.1:$port"},
  "trust_service": {"type": "local", "key_algorithm": "ecdsa"},
  "storage": {"backend": "memory"},
  "logging": {"level": "info"}
}
JSON
  # fd 9 (the lock) must not be inherited: the server would hold it for its lifetime
  setsid notary-server -config "$CONF" -logf logfmt >"$LOGFILE" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$PIDFILE"
  deadline=$((SECONDS + START_TIMEOUT))
  until healthy "$url"; do
    kill -0 "$pid" 2>/dev/null || { tail -5 "$LOGFILE" >&2; rm -f "$PIDFILE"; die "notary-server exited; log: $LOGFILE"; }
    (( SECONDS < deadline )) || { kill "$pid" 2>/dev/null; rm -f "$PIDFILE"; die "notary-server not healthy after ${START_TIMEOUT}s; log: $LOGFILE"; }
    sleep 0.2
  done
  echo "$url" >"$URLFILE"
  log "notary-server at $url (pid $pid)"
  echo "$url"
}

stop() {
  lock_runtime
  if running; then
    stop_pid "$(cat "$PIDFILE")" 10 || true
  fi
  rm -f "$PIDFILE" "$URLFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) running && [[ -f "$URLFILE" ]] && healthy "$(cat "$URLFILE")" || exit 3 ;;
  url) running && [[ -f "$URLFILE" ]] && cat "$URLFILE" || exit 1 ;;
  install) mkdir -p "$RUNTIME"; install_pkg ;;
  *) echo "usage: $0 start|stop|status|url|install" >&2; exit 2 ;;
esac
