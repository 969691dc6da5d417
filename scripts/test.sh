#!/usr/bin/env bash
# The whole test suite from a fresh clone: venv, dependencies, services, lint, types, tests.
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -k verify  # extra arguments go to pytest
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
