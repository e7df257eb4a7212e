#!/bin/sh
# Prove that requirements.lock installs on every deployment target: for each
# CPython 3.9..3.13 on x86_64 and aarch64, pip must find a wheel for every pin
# whose Requires-Python admits that version and whose sha256 is in the lock.
# Needs network access to the package index; downloads into a temp dir only.
#
#   usage: tools/check-lock.sh [path/to/requirements.lock]   (default: ./requirements.lock)
#   env:   PIP=path/to/pip (default: pip from PATH)
set -u
lock=${1:-requirements.lock}
pip=${PIP:-pip}
rc=0
for py in 3.9 3.10 3.11 3.12 3.13; do
  for plat in manylinux2014_x86_64 manylinux2014_aarch64; do
    dir=$(mktemp -d)
    if "$pip" download --quiet --no-deps --only-binary=:all: --implementation cp \
        --python-version "$py" --platform "$plat" \
        --require-hashes -r "$lock" -d "$dir" >"$dir.log" 2>&1; then
      echo "ok   cp$py $plat: $(ls "$dir" | wc -l) wheels"
    else
      echo "FAIL cp$py $plat"
      grep -E '^ERROR' "$dir.log" | tail -n 3
      rc=1
    fi
    rm -rf "$dir" "$dir.log"
  done
done
exit $rc
