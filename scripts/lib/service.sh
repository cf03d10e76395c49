# shellcheck shell=bash
# The plumbing that scripts/kafka/kafka.sh, scripts/notary/notary.sh and
# scripts/registry/registry.sh share: messages, the runtime-dir lock, a free port, a
# pid file's liveness, stopping a process, installing a Debian package.
#
# Sourced, not run, from the script's own directory (`source "$SCRIPT_DIR/../lib/service.sh"`).
# It sets REPO (the checkout) and SERVICE (the script's name in messages); the sourcing
# script then sets RUNTIME (its runtime directory), and PIDFILE and URLFILE for the
# launch/wait_ready/stop_service/service_up helpers.

# shellcheck disable=SC2034  # REPO is for the sourcing scripts
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SERVICE="$(basename "$0")"

log() { echo "$SERVICE: $*" >&2; }
die() { log "$*"; exit 1; }

# lock_runtime [SECONDS]: serialise start/stop/clean on one runtime dir (two shells,
# pytest workers) with a lock on fd 9, waiting at most SECONDS (default 60). A process
# the script starts must not inherit fd 9 (start it with 9>&-), or it holds the lock.
lock_runtime() {
  mkdir -p "$RUNTIME"
  exec 9>"$RUNTIME/.lock"
  if command -v flock >/dev/null 2>&1; then
    flock -w "${1:-60}" 9 || die "timed out waiting for the lock on $RUNTIME/.lock"
  fi
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
  "${PYTHON:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# pid_alive PIDFILE: the pid file exists and names a live process.
pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid PID SECONDS: SIGTERM, up to SECONDS for it to exit, then SIGKILL (and a few
# seconds for that). Returns 1 when it took the SIGKILL.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < $2 * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 25; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  return 1
}

# apt_install PACKAGE [LOGFILE]: install a Debian package (root only), running
# `apt-get update` once if it is not found; apt's output goes to LOGFILE. Fails when not
# root, without apt-get, or when the install fails.
apt_install() {
  local pkg=$1 logf=${2:-/dev/null}
  [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1 || return 1
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$pkg" >>"$logf" 2>&1 \
    || { apt-get update -q >>"$logf" 2>&1 && apt-get install -y -q "$pkg" >>"$logf" 2>&1; }
}

# install_package PACKAGE HINT CHECK...: unless CHECK... succeeds already, install the
# Debian PACKAGE (apt_install, root only; apt's output in $RUNTIME/apt.log) and check
# again. Dies with HINT (what to install by hand) when it is still missing.
install_package() {
  local pkg=$1 hint=$2
  shift 2
  "$@" && return 0
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null 2>&1; then die "$hint"; fi
  mkdir -p "$RUNTIME"
  : >"$RUNTIME/apt.log"
  log "installing Debian's $pkg package ..."
  apt_install "$pkg" "$RUNTIME/apt.log" || die "apt-get install $pkg failed; see $RUNTIME/apt.log"
  "$@" || die "$hint"
}

# launch LOGFILE CMD...: start CMD in a session of its own (setsid: it outlives this
# script), its output in LOGFILE, without fd 9 (the lock); its pid goes to $PIDFILE.
launch() {
  local logf=$1
  shift
  setsid "$@" >"$logf" 2>&1 </dev/null 9>&- &
  echo $! >"$PIDFILE"
}

# wait_ready SECONDS LOGFILE CHECK...: run CHECK... every 0.2 s until it succeeds. When
# the process in $PIDFILE exits first, or SECONDS pass (it is stopped then), show the
# tail of LOGFILE, forget the pid file and die.
wait_ready() {
  local secs=$1 logf=$2 pid deadline
  shift 2
  pid="$(cat "$PIDFILE")"
  deadline=$((SECONDS + secs))
  until "$@"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$logf" >&2; rm -f "$PIDFILE"
      die "pid $pid exited during start; log: $logf"
    fi
    if ((SECONDS >= deadline)); then
      stop_pid "$pid" 2 || true
      tail -n 20 "$logf" >&2; rm -f "$PIDFILE"
      die "pid $pid did not answer within ${secs}s; stopped it; log: $logf"
    fi
    sleep 0.2
  done
}

# service_up CHECK: the process in $PIDFILE is alive, $URLFILE exists and `CHECK URL`
# succeeds for the URL in it.
service_up() { pid_alive "$PIDFILE" && [[ -f "$URLFILE" ]] && "$1" "$(cat "$URLFILE")"; }

# stop_service SECONDS: stop the process in $PIDFILE (stop_pid, SIGKILL after SECONDS)
# and forget it and its URL.
stop_service() {
  if pid_alive "$PIDFILE"; then stop_pid "$(cat "$PIDFILE")" "$1" || true; fi
  rm -f "$PIDFILE" "$URLFILE"
}
