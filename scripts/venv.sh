#!/usr/bin/env bash
# Create (or update) a virtualenv from requirement files, only when they changed.
#   scripts/venv.sh DIR REQUIREMENTS... [-- EXTRA PIP ARGS]
# A fresh Debian needs python3-venv for `python3 -m venv`; it is installed when
# missing (as root). pip's output goes to DIR/pip.log and is shown only on failure.
set -euo pipefail

log() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

dir=$1; shift
reqs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do reqs+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
stamp="$dir/.requirements.sha256"
want=$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)

if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || die "python3 cannot create virtualenvs; install python3-venv"
  log "Installing python3-venv"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null || die "apt-get install python3-venv failed"
fi

log "Creating $dir from ${reqs[*]} (a minute or two the first time)"
[ -x "$dir/bin/python" ] || python3 -m venv "$dir"
pip_install() { "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@" >>"$dir/pip.log" 2>&1; }
: >"$dir/pip.log"
ok=true
pip_install --upgrade pip || ok=false
# One pip call per file: a file with hashes puts pip in hash-checking mode for
# everything in that call, and the other files carry no hashes.
for r in "${reqs[@]}"; do
  $ok || break
  pip_install --requirement "$r" "$@" || ok=false
done
if ! $ok; then
  grep -v "is ignored: it is neither a file nor a directory" "$dir/pip.log" | tail -n 20 >&2
  die "pip install into $dir failed (full log: $dir/pip.log)"
fi
echo "$want" >"$stamp"
