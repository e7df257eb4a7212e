#!/usr/bin/env bash
# Build the local systemd-capable Debian images used as lab and Molecule hosts,
# without any container registry: debootstrap a minimal root file system from the
# Debian mirror this machine already uses, import it, add systemd on top (the lab's
# and most scenarios' hosts), then sshd and a sudo user (hosts reached over SSH).
#
#   scripts/build-image.sh [RELEASE]        RELEASE: bookworm (default), trixie, bullseye
#
# Environment: LBI_IMAGE_REPO (default load-balancer-infra/debian-systemd),
#              DEBIAN_MIRROR (default: read from /etc/apt/sources.list[.d]),
#              FORCE=1 rebuilds images that are up to date (an edit of images/ rebuilds anyway).
set -euo pipefail

log() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

RELEASE=${1:-bookworm}
REPO=${LBI_IMAGE_REPO:-load-balancer-infra/debian-systemd}
IMAGE="$REPO:$RELEASE"
SSH_IMAGE="$REPO-ssh:$RELEASE"
ROOTFS_IMAGE="$REPO-rootfs:$RELEASE"
HERE=$(cd "$(dirname "$0")/.." && pwd)

case "$RELEASE" in bullseye|bookworm|trixie) ;; *) die "unsupported RELEASE '$RELEASE' (bullseye, bookworm or trixie)";; esac

# Images carry a digest of images/: an edited Dockerfile rebuilds them, the root file system stays.
SOURCE=$(cd "$HERE/images" && cat -- * | sha256sum | cut -c1-16)
have() {
  [ "${FORCE:-0}" != 1 ] || return 1
  [ "$1" = "$ROOTFS_IMAGE" ] && { docker image inspect "$1" >/dev/null 2>&1; return; }
  [ "$(docker image inspect -f '{{ index .Config.Labels "org.load-balancer-infra.source" }}' "$1" 2>/dev/null)" = "$SOURCE" ]
}
if have "$IMAGE" && have "$SSH_IMAGE"; then
  log "Images $IMAGE and $SSH_IMAGE are up to date (FORCE=1 rebuilds them)"
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

if ! have "$IMAGE" && ! have "$ROOTFS_IMAGE"; then
  log "debootstrap $RELEASE from $MIRROR (about a minute)"
  debootstrap --variant=minbase \
    --include=python3,python3-apt,ca-certificates,iproute2,procps,sudo \
    "$RELEASE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || die "debootstrap failed; last lines: $(tail -n 5 "$WORK/debootstrap.log" | tr '\n' ' ')"
  log "Importing the root file system as $ROOTFS_IMAGE"
  tar -C "$WORK/rootfs" -c . | docker import - "$ROOTFS_IMAGE" >/dev/null
fi

layer() { # image dockerfile build-arg
  log "Building $1"
  docker build -q --build-arg "$3" --label "org.load-balancer-infra.release=$RELEASE" \
    --label "org.load-balancer-infra.source=$SOURCE" \
    -t "$1" -f "$HERE/images/$2" "$HERE/images" >"$WORK/build.log" 2>&1 \
    || die "docker build of $1 failed; last lines: $(tail -n 5 "$WORK/build.log" | tr "\n" " ")"
}
have "$IMAGE" || layer "$IMAGE" systemd.Dockerfile "ROOTFS_IMAGE=$ROOTFS_IMAGE"
have "$SSH_IMAGE" || layer "$SSH_IMAGE" ssh.Dockerfile "SYSTEMD_IMAGE=$IMAGE"
log "Built $IMAGE and $SSH_IMAGE"
