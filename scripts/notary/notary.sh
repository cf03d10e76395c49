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

# shellcheck source=../lib/service.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/service.sh"   # REPO, SERVICE, log, die, ...
RUNTIME="${TRUSTLOG_NOTARY_DIR:-$REPO/.notary}"
PIDFILE="$RUNTIME/server.pid"
URLFILE="$RUNTIME/url"
CONF="$RUNTIME/server.json"
LOGFILE="$RUNTIME/server.log"
START_TIMEOUT="${TRUSTLOG_NOTARY_START_TIMEOUT:-30}"

have_notary() { command -v notary-server >/dev/null 2>&1 && command -v notary >/dev/null 2>&1; }

install_pkg() {
  install_package notary "notary-server/notary not found; install Debian's 'notary' package (apt-get install notary)" \
    have_notary
}

healthy() {  # $1 = url
  python3 - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/_notary_server/health", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

start() {
  lock_runtime
  install_pkg
  if service_up healthy; then
    cat "$URLFILE"; return 0
  fi
  rm -f "$PIDFILE" "$URLFILE"
  local port url
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
  launch "$LOGFILE" notary-server -config "$CONF" -logf logfmt
  wait_ready "$START_TIMEOUT" "$LOGFILE" healthy "$url"
  echo "$url" >"$URLFILE"
  log "notary-server at $url (pid $(cat "$PIDFILE"))"
  echo "$url"
}

stop() {
  lock_runtime
  stop_service 10
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) service_up healthy || exit 3 ;;
  url) service_up true && cat "$URLFILE" || exit 1 ;;
  install) mkdir -p "$RUNTIME"; install_pkg ;;
  *) echo "usage: $0 start|stop|status|url|install" >&2; exit 2 ;;
esac
