#!/bin/sh
# Install the Airlock agent from this kit, offline:   sh install.sh --trust root.json
#
# 1. verify_kit.py checks the kit with python3 and its standard library only
#    (signature of kit.json by the release keys of the trust root, every file's
#    sha256, platform, Python, glibc, no downgrade) before anything is written;
# 2. a venv PREFIX/agents/VERSION-ID is made and the kit's wheels installed into
#    it with pip --no-index --require-hashes (pip itself comes from the kit);
# 3. the new agent finishes the job ("airlock-agent self-install"): checks
#    itself, switches PREFIX/current atomically, links airlock-agent into
#    --bin-dir, runs "init" when --trust is given and ROOT is new, and installs
#    the systemd unit when the kit carries one (a unit it did not write is kept
#    as airlock-agent.service.orig-TIME, and said so); it prints the commands
#    that start the agent, or runs them with --enable.
# ROOT is --root, else $AIRLOCK_ROOT, else /var/lib/airlock. When ROOT already
# trusts a root, the kit is checked against that one; a --trust naming another
# root is taken only as its rotation (the next version, signed by it), else
# refused (exit 5). Every refusal names the trust root file it used.
# Safe to run again: a second run repairs a damaged install. Exit codes: 0 done,
# 2 usage, 3 kit refused (nothing installed), 4 the new agent failed its
# self-check (the previous one is active again), 5 precondition not met.
set -eu

usage() {
  cat <<'USAGE'
usage: sh install.sh [--trust root.json] [--prefix /opt/airlock] [--root /var/lib/airlock]
                     [--bin-dir /usr/local/bin] [--python python3] [--device-id ID]
                     [--ring RING] [--no-init] [--systemd-dir /etc/systemd/system] [--enable]
                     [--json]
example: sh install.sh --trust /media/usb/root.json --device-id cam-7 --ring canary
USAGE
}

die() { code=$1; shift; echo "install.sh: error: $*" >&2; exit "$code"; }
abs() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$(pwd -P)" "$1" ;; esac; }

kit=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)
prefix=/opt/airlock
root=${AIRLOCK_ROOT:-/var/lib/airlock}
bin_dir=/usr/local/bin
systemd_dir=''
python=python3
trust='' device_id='' ring='' no_init='' json='' enable=''

while [ $# -gt 0 ]; do
  case $1 in
    --trust|--prefix|--root|--bin-dir|--python|--device-id|--ring|--systemd-dir)
      [ $# -ge 2 ] || die 2 "$1 needs a value (see --help)"
      case $1 in
        --trust) trust=$(abs "$2") ;;
        --prefix) prefix=$(abs "$2") ;;
        --root) root=$(abs "$2") ;;
        --bin-dir) bin_dir=$(abs "$2") ;;
        --systemd-dir) systemd_dir=$(abs "$2") ;;
        --python) python=$2 ;;
        --device-id) device_id=$2 ;;
        --ring) ring=$2 ;;
      esac
      shift 2 ;;
    --no-init) no_init=1; shift ;;
    --enable) enable=1; shift ;;
    --json) json=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die 2 "unknown argument '$1' (see --help)" ;;
  esac
done
root=$(abs "$root")
# An explicit --systemd-dir must exist: a typo is not "no systemd here".
[ -z "$systemd_dir" ] || [ -d "$systemd_dir" ] || die 2 "--systemd-dir $systemd_dir does not exist"

# Nothing the caller's environment says may change which Python code runs.
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONINSPECT PYTHONUSERBASE PYTHONSAFEPATH || true
command -v "$python" >/dev/null 2>&1 || die 5 "$python not found; install python3 or give --python PATH"
# The floor first (agent/cli.py PYTHON_FLOOR): -E -s, not -I, so even Python 2 answers.
floor=3.10
found=$("$python" -E -s -c 'import sys; print(".".join(map(str, sys.version_info[:3])))' 2>/dev/null) \
  || die 5 "$python does not run; give --python PATH to a Python $floor or newer"
"$python" -E -s -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null \
  || die 5 "$python is Python $found; the agent needs Python $floor or newer (give --python PATH)"

# 1. The kit, checked with the standard library before anything is written.
set -- "$kit" --prefix "$prefix" --root "$root"
[ -z "$trust" ] || set -- "$@" --trust "$trust"
checked=$("$python" -I "$kit/verify_kit.py" "$@") || exit $?
# shellcheck disable=SC2086 # three plain words: agent id, pip's wheel, requirements file
set -- $checked
id=$1 installer=$2 requirements=$3
venv=$prefix/agents/$id

if ! mkdir -p -- "$prefix/agents" 2>/dev/null || [ ! -w "$prefix/agents" ]; then
  die 5 "cannot write to $prefix (run as root, or give --prefix DIR)"
fi

# 2. The agent's venv: reused when whole, rebuilt when missing, unfinished or damaged.
if [ -f "$venv/airlock-kit.json" ] && [ -x "$venv/bin/python" ] \
    && "$venv/bin/python" -I "$kit/verify_kit.py" --check-venv "$venv" 2>/dev/null; then
  [ -n "$json" ] || echo "agent $id is installed and whole" >&2
else
  [ ! -e "$venv" ] || echo "rebuilding $venv (unfinished or damaged)" >&2
  rm -rf -- "$venv"
  [ -n "$json" ] || echo "installing agent $id into $venv" >&2
  "$python" -I -m venv --without-pip "$venv" || die 5 "$python cannot make a venv in $venv"
  # AIRLOCK_KIT_NO_COMPILE=1: no byte-compiling now; Python compiles what it imports later.
  compile=--compile
  [ "${AIRLOCK_KIT_NO_COMPILE:-}" != 1 ] || compile=--no-compile
  # A person at a terminal sees pip name each wheel as it goes in (the longest step);
  # a script, a pipe or --json gets only our own lines.
  verbosity=--quiet
  [ -z "$json" ] && [ -t 1 ] && [ -t 2 ] && verbosity=--progress-bar=on
  # pip runs from its own wheel (kit-verified); --isolated ignores pip.conf and PIP_*.
  (cd / && "$venv/bin/python" -s -E "$kit/$installer/pip" install --isolated --no-index \
      --find-links "$kit/wheels" --require-hashes --only-binary=:all: --no-cache-dir \
      --disable-pip-version-check --no-warn-script-location "$verbosity" "$compile" \
      -r "$kit/$requirements") \
    || die 5 "installing the kit's wheels into $venv failed (disk full?); run install.sh again"
fi

# 3. The new agent does the rest, under its locks, with the same self-check as an update.
set -- --root "$root" self-install --kit "$kit" --prefix "$prefix" --bin-dir "$bin_dir"
[ -z "$systemd_dir" ] || set -- "$@" --systemd-dir "$systemd_dir"
[ -z "$enable" ] || set -- "$@" --enable
[ -z "$trust" ] || set -- "$@" --trust "$trust"
[ -z "$device_id" ] || set -- "$@" --device-id "$device_id"
[ -z "$ring" ] || set -- "$@" --ring "$ring"
[ -z "$no_init" ] || set -- "$@" --no-init
[ -z "$json" ] || set -- "$@" --json
exec "$venv/bin/airlock-agent" "$@"
