#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine, installing and starting one if needed.
#
# Order of attempts:
#   1. an engine already answers `docker info`: nothing to do;
#   2. dockerd is missing: install Debian's docker.io (root + apt required);
#   3. systemd is PID 1: `systemctl start docker`;
#   4. otherwise start dockerd in the background, after clearing a pid file or
#      socket left behind by a daemon that was killed, and wait for it.
# Every failure ends with one clear line on stderr and a non-zero exit status.
set -euo pipefail

log() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

DOCKERD_LOG=${DOCKERD_LOG:-/var/log/load-balancer-infra-dockerd.log}
WAIT_SECONDS=${DOCKER_WAIT_SECONDS:-60}

engine_up() { docker info >/dev/null 2>&1; }

wait_for_engine() {
  local i
  for ((i = 0; i < WAIT_SECONDS; i++)); do
    engine_up && return 0
    sleep 1
  done
  return 1
}

if command -v docker >/dev/null 2>&1 && engine_up; then
  log "Docker engine is running ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "no Docker engine found and not root: install docker.io (apt-get install docker.io) or run as root"
  command -v apt-get >/dev/null 2>&1 || die "no Docker engine found and no apt-get to install Debian's docker.io; install a Docker engine first"
  log "Installing Debian's docker.io (Docker engine)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null || die "apt-get update failed; cannot install docker.io"
  apt-get install -y -q docker.io >/dev/null || die "apt-get install docker.io failed"
fi

if [ "$(ps -p 1 -o comm= 2>/dev/null)" = "systemd" ]; then
  log "Starting docker.service with systemd"
  systemctl start docker || die "systemctl start docker failed; see: journalctl -u docker"
else
  [ "$(id -u)" -eq 0 ] || die "the Docker engine is not running and starting dockerd needs root"
  # A daemon killed without cleanup leaves its pid file and socket; dockerd refuses
  # to start while the pid file names a live process, so remove only stale ones.
  for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile" 2>/dev/null || true)
      if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        log "Removing stale $pidfile"
        rm -f "$pidfile"
      fi
    fi
  done
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    rm -f /var/run/docker.sock
    log "Starting dockerd in the background (log: $DOCKERD_LOG)"
    # Without the descriptors this script inherited: a caller's flock would stay held by dockerd.
    (
      for fd in /proc/self/fd/*; do
        n=${fd##*/}
        [ "$n" -gt 2 ] && eval "exec $n>&-"
      done 2>/dev/null
      exec nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null
    ) &
  fi
fi

log "Waiting up to ${WAIT_SECONDS}s for the Docker engine"
wait_for_engine || die "the Docker engine did not come up within ${WAIT_SECONDS}s; last lines of $DOCKERD_LOG: $(tail -n 3 "$DOCKERD_LOG" 2>/dev/null | tr '\n' ' ')"
log "Docker engine is running ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
