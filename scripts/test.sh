#!/usr/bin/env bash
# The whole test suite from a fresh clone: venv, dependencies, services, lint, types, tests.
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -k verify  # extra arguments go to pytest (main interpreter only)
#   AIRLOCK_DEVICE_MATRIX=0 ./scripts/test.sh   # skip the device matrix (quick local runs)
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the integration tests use (real registry, skopeo, umoci, sshd,
# promtool from prometheus to lint the agent's /metrics, chromium for the HTML pages;
# a SoftHSM2 token made with OpenSC's pkcs11-tool and an openssl-made CI key for docs/KEYS.md).
# Installed when we may (root) or must (CI); otherwise those tests skip with a reason.
need_pkgs=()
command -v skopeo >/dev/null || need_pkgs+=(skopeo)
command -v umoci >/dev/null || need_pkgs+=(umoci)
[ -x /usr/bin/docker-registry ] || need_pkgs+=(docker-registry)
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v promtool >/dev/null || need_pkgs+=(prometheus)
# The status page and the fleet report are opened in a real headless Chromium (Playwright
# drives Debian's browser; Playwright's own browser download is never used).
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium chromium-driver)
command -v softhsm2-util >/dev/null || need_pkgs+=(softhsm2)
command -v pkcs11-tool >/dev/null || need_pkgs+=(opensc)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# The peers scripts/bench.py measures beside Airlock (its --quick smoke run is a test).
command -v mender-artifact >/dev/null || need_pkgs+=(mender-artifact)
command -v rauc >/dev/null || need_pkgs+=(rauc)
command -v mksquashfs >/dev/null || need_pkgs+=(squashfs-tools)
command -v curl >/dev/null || need_pkgs+=(curl)
# The shipped logrotate snippet is run by the real logrotate (tests/agent/test_bounded_logs.py).
command -v logrotate >/dev/null || need_pkgs+=(logrotate)
# The ledger's tests run on a real PostgreSQL: a throwaway initdb cluster (tests/support/postgres.py).
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need_pkgs+=(postgresql)
# arm64 end to end (tests/kit/test_arm64.py): a debootstrap-made Debian 12 arm64 rootfs run
# through qemu-user-static; the test mounts binfmt_misc and registers aarch64 itself.
command -v qemu-aarch64-static >/dev/null || need_pkgs+=(qemu-user-static binfmt-support)
[ -x /usr/sbin/debootstrap ] || need_pkgs+=(debootstrap)
if [ ${#need_pkgs[@]} -gt 0 ] && { [ "${CI:-}" = "true" ] || [ "$(id -u)" = 0 ]; }; then
  echo "installing Debian packages: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # A machine that is still running its own apt at boot holds the lock for a while: wait for it.
  apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  # The package starts its own registry on :5000; the tests start their own on 127.0.0.1.
  systemctl disable --now docker-registry >/dev/null 2>&1 || service docker-registry stop >/dev/null 2>&1 || true
  # Only promtool is wanted from prometheus; its server must not hold :9090.
  systemctl disable --now prometheus >/dev/null 2>&1 || service prometheus stop >/dev/null 2>&1 || true
  # The tests make their own PostgreSQL clusters; the package's default one is not used.
  systemctl disable --now postgresql >/dev/null 2>&1 || service postgresql stop >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e '.[dev]'

echo "== ruff"
.venv/bin/ruff check airlock keys bundler agent tests scripts
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
# One worker per core (AIRLOCK_TEST_WORKERS to change; 0 runs in this process). A test
# file stays on one worker, so its module fixtures (a built site, a kit) are made once.
.venv/bin/pytest -q -p no:cacheprovider -n "${AIRLOCK_TEST_WORKERS:-2}" --dist loadfile "$@"   # pyproject sets the import root; no PYTHONPATH

# The device matrix: what runs on a device (agent, keys, the ground package, the hostile
# corpus against the agent) on every Python the agent supports (floor 3.10, README "Which
# Python"). Debian 12's python3 (3.11.2) is the one that lacks tarfile's filters, so it is
# never optional. Each interpreter gets its own venv, made once (remade when pyproject.toml
# changes); the full suite above stays on the main interpreter.
DEVICE_TESTS="tests/agent/test_agent.py tests/agent/test_hold.py tests/agent/test_flags.py
  tests/agent/test_health.py tests/keys tests/airlock tests/hostile/test_agent_corpus.py
  tests/kit/test_python_floor.py"
if [ "${AIRLOCK_DEVICE_MATRIX:-1}" = 0 ]; then
  echo "== device matrix: skipped (AIRLOCK_DEVICE_MATRIX=0)"
  exit 0
fi
if [ $# -gt 0 ]; then
  echo "== device matrix: skipped (pytest arguments given; it runs on a plain ./scripts/test.sh)"
  exit 0
fi
pyenv_root=${PYENV_ROOT:-$(pyenv root 2>/dev/null || echo /root/.pyenv)}
newest() { find "$pyenv_root/versions" -maxdepth 1 -name "$1.*" 2>/dev/null | sort -V | tail -n 1; }
stamp=$(sha256sum pyproject.toml | cut -c1-64)
failed=()
for want in debian:/usr/bin/python3 3.10 3.12 3.13; do
  case $want in
    debian:*) label=debian python=${want#debian:} ;;
    *) label=$want dir=$(newest "$want") python=${dir:+$dir/bin/python3} ;;
  esac
  if [ -z "$python" ] || [ ! -x "$python" ]; then
    reason="no Python $label on this machine (pyenv install $label, or Debian's python3)"
    if [ "${CI:-}" = "true" ]; then echo "== device matrix: FAILED $label: $reason"; failed+=("$label"); continue; fi
    echo "== device matrix: skipped $label: $reason"; continue
  fi
  version=$("$python" -c 'import platform; print(platform.python_version())')
  venv=.venv-py$label
  [ "$label" = debian ] && venv=.venv-py$version-debian
  if [ "$(cat "$venv/airlock-stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "== device matrix: making $venv with $python ($version)"
    rm -rf "$venv" && "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -e '.[bundler,agent]' \
      pytest pytest-xdist hypothesis html5lib onnx playwright >"$venv.log" 2>&1 \
      || { tail -n 30 "$venv.log"; echo "== device matrix: cannot make $venv (log: $venv.log)"; exit 1; }
    echo "$stamp" >"$venv/airlock-stamp"
  fi
  log=$(mktemp)
  start=$(date +%s)
  # shellcheck disable=SC2086 # DEVICE_TESTS is a list of paths
  if "$venv/bin/python" -m pytest -q -p no:cacheprovider -n "${AIRLOCK_TEST_WORKERS:-2}" \
      --dist loadfile $DEVICE_TESTS >"$log" 2>&1; then outcome=passed; else outcome=FAILED; fi
  [ "$outcome" = passed ] || { tail -n 150 "$log"; failed+=("$label"); }
  echo "== device matrix: $outcome Python $version ($python) in $(( $(date +%s) - start )) s: $(tail -n 1 "$log")"
  rm -f "$log"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "== device matrix: failed on ${failed[*]}"
  exit 1
fi
