#!/usr/bin/env bash
# Build the local systemd-capable Debian image used as lab and Molecule hosts,
# without any container registry: debootstrap a minimal root file system from the
# Debian mirror this machine already uses, import it, then add systemd on top.
#
#   scripts/build-image.sh [RELEASE]        RELEASE: bookworm (default), trixie, bullseye
#
# Environment: LBI_IMAGE_REPO (default load-balancer-infra/debian-systemd),
#              DEBIAN_MIRROR (default: read from /etc/apt/sources.list[.d]),
#              FORCE=1 rebuilds an image that already exists.
set -euo pipefail

log() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

RELEASE=${1:-bookworm}
REPO=${LBI_IMAGE_REPO:-load-balancer-infra/debian-systemd}
IMAGE="$REPO:$RELEASE"
ROOTFS_IMAGE="$REPO-rootfs:$RELEASE"
HERE=$(cd "$(dirname "$0")/.." && pwd)

case "$RELEASE" in bullseye|bookworm|trixie) ;; *) die "unsupported RELEASE '$RELEASE' (bullseye, bookworm or trixie)";; esac

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "Image $IMAGE already exists (FORCE=1 rebuilds it)"
  exit 0
fi

find_mirror() {
  local uri
  uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?$|https?://[^ ]+/debian ' | grep -v security | head -n 1 | tr -d ' ')
  printf '%s' "${uri:-http://deb.debian.org/debian}"
}
MIRROR=${DEBIAN_MIRROR:-$(find_mirror)}

if ! command -v debootstrap >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "debootstrap is missing; install it (apt-get install debootstrap) or run as root"
  log "Installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null || die "apt-get install debootstrap failed"
fi

WORK=$(mktemp -d /var/tmp/lbi-rootfs.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

if ! docker image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1 || [ "${FORCE:-0}" = 1 ]; then
  log "debootstrap $RELEASE from $MIRROR (about a minute)"
  debootstrap --variant=minbase \
    --include=python3,python3-apt,ca-certificates,iproute2,procps,sudo \
    "$RELEASE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || die "debootstrap failed; last lines: $(tail -n 5 "$WORK/debootstrap.log" | tr '\n' ' ')"
  log "Importing the root file system as $ROOTFS_IMAGE"
  tar -C "$WORK/rootfs" -c . | docker import - "$ROOTFS_IMAGE" >/dev/null
fi

log "Adding systemd: $IMAGE"
docker build -q --build-arg "ROOTFS_IMAGE=$ROOTFS_IMAGE" \
  --label "org.load-balancer-infra.release=$RELEASE" \
  -t "$IMAGE" -f "$HERE/images/systemd.Dockerfile" "$HERE/images" >"$WORK/build.log" 2>&1 \
  || die "docker build of $IMAGE failed; last lines: $(tail -n 5 "$WORK/build.log" | tr "\n" " ")"
log "Built $IMAGE"
