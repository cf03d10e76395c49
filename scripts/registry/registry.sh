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
# shellcheck source=../lib/service.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/service.sh"   # REPO, SERVICE, log, die, ...
RUNTIME="${TRUSTLOG_REGISTRY_DIR:-$REPO/.registry}"
PIDFILE="$RUNTIME/registry.pid"
URLFILE="$RUNTIME/url"
BIN="${TRUSTLOG_REGISTRY_BIN:-/usr/bin/docker-registry}"

ensure_installed() {
  [[ -x "$BIN" ]] && return 0
  install_package docker-registry \
    "$BIN not found: install Debian's docker-registry package (apt-get install docker-registry)" test -x "$BIN"
  # The package may start a system-wide instance on :5000; ours runs on its own port.
  (systemctl stop docker-registry || service docker-registry stop) >/dev/null 2>&1 || true
}

answering() { curl -fsS -o /dev/null --max-time 2 "$1/v2/"; }  # $1 = url

start() {
  ensure_installed
  mkdir -p "$RUNTIME/data"
  if service_up answering; then cat "$URLFILE"; return 0; fi
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
  launch "$RUNTIME/registry.log" "$BIN" serve "$RUNTIME/config.yml"
  wait_ready 10 "$RUNTIME/registry.log" answering "http://127.0.0.1:$port"
  cat "$URLFILE"
}

case "${1:-}" in
  start) start ;;
  stop) stop_service 5 ;;
  status) service_up answering || exit 3 ;;
  url) service_up true && cat "$URLFILE" || exit 1 ;;
  clean) stop_service 5; rm -rf "$RUNTIME" ;;
  *) echo "usage: $0 start|stop|status|url|clean" >&2; exit 2 ;;
esac
