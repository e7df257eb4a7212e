#!/usr/bin/env bash
# Build the lbapp container image from app/Dockerfile without a registry and without network
# inside the build: the host's pip downloads the pinned, hash-checked dependency wheels for the
# base image's Python and CPU and builds the lbapp wheel, and `docker build --network none`
# installs exactly those (WHEELS=prebuilt). Containers here cannot reach PyPI themselves.
#
#   scripts/build-app-image.sh            (what `make image-app` runs)
#
# Environment:
#   IMAGE        tag to build (default load-balancer-infra/lbapp:latest)
#   BASE_IMAGE   base of both stages (default load-balancer-infra/debian-systemd-rootfs:bookworm,
#                made by `make image`); any glibc image with python3 >= 3.9, e.g. python:3.12-slim
#   PIP          host pip command (default: .venv/bin/python -m pip, else python3 -m pip)
#   FORCE=1      download and build the wheels again even when the cached ones are current
#   LBI_DOCKER_LOCK  docker build runs under `flock` on this file (default /tmp/lbi-docker.lock,
#                "" for none: set it so when the caller already holds the lock)
# Cache: .build/app-image/ (git-ignored). With unchanged inputs nothing is downloaded or built,
# and an image already built from the same context on the same base is left alone (no lock).
set -euo pipefail

log() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

HERE=$(cd "$(dirname "$0")/.." && pwd)
APP="$HERE/app"
CACHE="$HERE/.build/app-image"
IMAGE=${IMAGE:-load-balancer-infra/lbapp:latest}
BASE_IMAGE=${BASE_IMAGE:-load-balancer-infra/debian-systemd-rootfs:bookworm}
LOCK=${LBI_DOCKER_LOCK-/tmp/lbi-docker.lock}
LOCK_WAIT=${LBI_DOCKER_LOCK_WAIT:-900}
# Wheel timestamps fixed (1980-01-01, the earliest a zip holds): same sources, same bytes,
# so docker's cache keeps the install layer.
export SOURCE_DATE_EPOCH=315532800

if [ -n "${PIP:-}" ]; then
  read -r -a PIP_CMD <<<"$PIP"
elif [ -x "$HERE/.venv/bin/python" ]; then
  PIP_CMD=("$HERE/.venv/bin/python" -m pip)
else
  PIP_CMD=(python3 -m pip)
fi
pip() { "${PIP_CMD[@]}" --disable-pip-version-check --no-input "$@"; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (make docker, or scripts/ensure-docker.sh)"
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
   && [ "$BASE_IMAGE" = load-balancer-infra/debian-systemd-rootfs:bookworm ]; then
  die "base image $BASE_IMAGE is missing: build it with make image (scripts/build-image.sh bookworm)"
fi

# The wheels must fit the base image's interpreter, CPU and C library: ask it.
probe='import platform, sys
impl = {"cpython": "cp"}.get(sys.implementation.name, sys.implementation.name)
libc, version = platform.libc_ver()
print("%d.%d" % sys.version_info[:2], impl, platform.machine(), libc or "-", version or "-")'
target=$(docker run --rm --network none --entrypoint python3 "$BASE_IMAGE" -c "$probe" 2>&1) \
  || die "cannot run python3 in $BASE_IMAGE: $target"
read -r PYVER IMPL ARCH LIBC LIBCVER <<<"$target"
[ "$IMPL" = cp ] || die "$BASE_IMAGE runs $IMPL, not CPython"
[ "$LIBC" = glibc ] || die "$BASE_IMAGE has no glibc ($LIBC); only manylinux wheels are handled"
case "$PYVER" in 3.9|3.1[0-9]) ;; *) die "$BASE_IMAGE has Python $PYVER; lbapp needs >= 3.9";; esac
ABI="cp${PYVER/./}"
# manylinux2014 (= manylinux_2_17) up to the base's glibc.
platforms=(--platform "manylinux2014_$ARCH")
for ((minor = 17; minor <= ${LIBCVER#2.}; minor++)); do
  platforms+=(--platform "manylinux_2_${minor}_$ARCH")
done
log "Base image $BASE_IMAGE: Python $PYVER ($ABI), $ARCH, glibc $LIBCVER"

mkdir -p "$CACHE"

# Dependency wheels (and pip's, which installs them in the image), per target and lock digest.
deps="$CACHE/deps-$ABI-$ARCH"
deps_key=$( (cat "$APP/requirements.lock" "$APP/container/requirements-pip.txt"; echo "$target") | sha256sum | cut -c1-16)
if [ "${FORCE:-0}" != 1 ] && [ "$(cat "$deps/.key" 2>/dev/null)" = "$deps_key" ]; then
  log "Dependency wheels for $ABI/$ARCH are current ($deps)"
else
  log "Downloading the locked dependency wheels for $ABI/$ARCH (hash-checked)"
  tmp=$(mktemp -d "$CACHE/.deps.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  pip download -q --no-deps --only-binary=:all: --require-hashes \
    --python-version "$PYVER" --implementation cp --abi "$ABI" "${platforms[@]}" \
    --dest "$tmp" -r "$APP/requirements.lock" -r "$APP/container/requirements-pip.txt" \
    || die "pip download failed (the host needs PyPI or a mirror: PIP_INDEX_URL)"
  echo "$deps_key" >"$tmp/.key"
  rm -rf "$deps" && mv "$tmp" "$deps"
  trap - EXIT
fi

# The lbapp wheel, built from a copy of its sources so the tree gets no build/ or egg-info.
sources() {
  (cd "$APP" && find pyproject.toml README.md src -type f ! -path '*/__pycache__/*' \
    ! -name '*.py[co]' ! -path '*.egg-info/*' -print0 | LC_ALL=C sort -z)
}
app_key=$(cd "$APP" && sources | xargs -0 sha256sum | sha256sum | cut -c1-16)
wheel="$CACHE/lbapp"
if [ "${FORCE:-0}" != 1 ] && [ "$(cat "$wheel/.key" 2>/dev/null)" = "$app_key" ]; then
  log "lbapp wheel is current ($(cd "$wheel" && echo lbapp-*.whl))"
else
  log "Building the lbapp wheel"
  tmp=$(mktemp -d "$CACHE/.lbapp.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  mkdir "$tmp/src" "$tmp/out"
  sources | (cd "$APP" && tar --null -T - -cf -) | tar -C "$tmp/src" -xf -
  pip wheel -q --no-deps --wheel-dir "$tmp/out" "$tmp/src" >"$tmp/build.log" 2>&1 \
    || die "building the lbapp wheel failed: $(tail -n 5 "$tmp/build.log" | tr '\n' ' ')"
  echo "$app_key" >"$tmp/out/.key"
  rm -rf "$wheel" && mv "$tmp/out" "$wheel"
  rm -rf "$tmp"
  trap - EXIT
fi

# The build context: what the Dockerfile copies, plus wheels/ (see app/.dockerignore).
context="$CACHE/context"
rm -rf "$context"
mkdir -p "$context/container" "$context/wheels"
cp "$APP/Dockerfile" "$APP/.dockerignore" "$APP/requirements.lock" "$context/"
cp "$APP"/container/*.py "$APP"/container/*.txt "$context/container/"
cp "$deps"/*.whl "$wheel"/*.whl "$context/wheels/"

# Nothing to do when IMAGE was built from exactly this context on exactly this base image.
base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || echo "$BASE_IMAGE")
context_key=$( (cd "$context" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; echo "$base_id") \
  | sha256sum | cut -c1-16)
label=org.load-balancer-infra.context
if [ "${FORCE:-0}" != 1 ] \
   && [ "$(docker image inspect -f "{{ index .Config.Labels \"$label\" }}" "$IMAGE" 2>/dev/null)" = "$context_key" ]; then
  log "$IMAGE is up to date (context $context_key; FORCE=1 rebuilds)"
  exit 0
fi

build=(docker build --network none --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg WHEELS=prebuilt
       --label "$label=$context_key" -t "$IMAGE" "$context")
status=0
if [ -n "$LOCK" ]; then
  log "Building $IMAGE (under flock $LOCK; waits up to ${LOCK_WAIT} s while another Docker-heavy run holds it)"
  flock -E 75 -w "$LOCK_WAIT" "$LOCK" "${build[@]}" >"$CACHE/build.log" 2>&1 || status=$?
  [ "$status" != 75 ] || die "$LOCK still held after ${LOCK_WAIT} s (LBI_DOCKER_LOCK_WAIT); nothing built"
else
  log "Building $IMAGE"
  "${build[@]}" >"$CACHE/build.log" 2>&1 || status=$?
fi
[ "$status" = 0 ] || die "docker build failed (full log: $CACHE/build.log): $(tail -n 8 "$CACHE/build.log" | tr '\n' ' ')"
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
log "Built $IMAGE ($((size / 1000000)) MB; Python $PYVER)"
