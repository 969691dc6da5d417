#!/usr/bin/env bash
# Airlock's main job from a fresh clone, offline, with no arguments:
# keys -> trust root -> a real ONNX model -> signed bundle -> verify -> inspect
# -> (device) init -> install v1, v2 -> v3 with a bad model rolls back by itself
# -> v5 adds a classifier scored on a labelled set; v6 lost accuracy and is refused
# -> v7's classifier is fine at headquarters but disagrees with v5 on this site's own
#    inputs: the shadow check refuses it before the switch
# -> the device's status page and, from its signed report, the fleet report (HTML).
# Everything lands in ./demo (removed and remade on every run), or in --dir DIR;
# the demo's device lives in DIR/device, never in /var/lib/airlock or /etc.
#
#   ./scripts/demo.sh                   # the device part runs the agent installed with pip
#   ./scripts/demo.sh --agent-from-kit  # ... or an agent installed only from a signed agent
#                                       # kit (docs/BOOTSTRAP.md), as an offline site does
#   ./scripts/demo.sh --dir /tmp/d --venv .venv   # elsewhere, with a venv used as it is
set -euo pipefail
usage() { echo "usage: $0 [--agent-from-kit] [--dir DIR] [--venv VENV]" >&2; exit 2; }
agent_from_kit=0 dir='' venv=''
while [ $# -gt 0 ]; do
  case $1 in
    --agent-from-kit) agent_from_kit=1; shift ;;
    --dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
    --venv) [ $# -ge 2 ] || usage; venv=$2; shift 2 ;;
    *) usage ;;
  esac
done
case $dir in ""|/*) ;; *) dir="$PWD/$dir" ;; esac
case $venv in ""|/*) ;; *) venv="$PWD/$venv" ;; esac
cd "$(dirname "$0")/.."
REPO=$PWD

if [ -z "$venv" ]; then
  venv="$REPO/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    echo "== creating .venv"
    python3 -m venv "$venv"
  fi
  # A current pip: 'airlock agent-kit' checks a kit's offline install for another
  # platform with --dry-run, which older pips refuse.
  "$venv/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
  "$venv/bin/pip" install -q -e '.[bundler,agent]'
fi
PATH="$venv/bin:$PATH"
PY="$venv/bin/python"

dir=${dir:-$REPO/demo}
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
# The demo's device, set before anything of the device runs: a device already at
# /var/lib/airlock (or a stray $AIRLOCK_ROOT) is never read or written.
export AIRLOCK_ROOT="$PWD/device"
step() { printf '\n== %s\n' "$*"; }

step "host: signing keys and a trust root"
airlock keys generate root --dir keys --no-passphrase
airlock keys generate release --dir keys --no-passphrase
airlock keys init --root-key keys/root.key --release-key keys/release.pub -o root.json

step "host: three releases of a real ONNX model (golden outputs from onnxruntime)"
"$PY" "$REPO/scripts/modelkit.py" models/v1 --scale 2 >/dev/null
"$PY" "$REPO/scripts/modelkit.py" models/v2 --scale 3 >/dev/null
"$PY" "$REPO/scripts/modelkit.py" models/v3 --scale 4 --wrong >/dev/null   # golden data the model fails
"$PY" "$REPO/scripts/modelkit.py" models/v4 --scale 5 >/dev/null
for v in 1 2 3 4; do
  cat > "vision-$v.yaml" <<YAML
name: vision
version: "1.$v.0"
sequence: $v
expires: 30d
models:
  - name: detector
    path: models/v$v/model.onnx
    health:
      inputs: models/v$v/inputs.npz
      outputs: models/v$v/outputs.npz
      rtol: 1.0e-4
      atol: 1.0e-5
      runs: 20
      max_p95_ms: 200
      max_memory_mb: 1024
      timeout_s: 60
flags:
  threshold: 0.$((4 + v))
YAML
done
# v4's model is fine, but the service it feeds does not come up after the switch.
cat >> vision-4.yaml <<YAML
hooks:
  post_switch: echo "post-switch hook ran for \$AIRLOCK_RELEASE"
  probe: "test -e service-is-up"
  probe_window_s: 2
YAML

step "host: build, verify, inspect"
for v in 1 2 4; do
  airlock build "vision-$v.yaml" --key keys/release.key -o "vision-1.$v.0.airlock"
done

step "host: v3's model misses its goldens: the host check refuses to sign it (exit 4)"
code=0
airlock build vision-3.yaml --key keys/release.key -o vision-1.3.0.airlock || code=$?
echo "build vision-3.yaml exited $code (4 = the model failed the devices' check; nothing written)"
[ "$code" = 4 ] && [ ! -e vision-1.3.0.airlock ] || { echo "demo: expected exit 4"; exit 1; }
# Signed anyway, to show what a device does with a release that fails on it.
airlock build vision-3.yaml --key keys/release.key -o vision-1.3.0.airlock --no-check
airlock verify vision-1.1.0.airlock --trust root.json
airlock inspect vision-1.1.0.airlock

step "host: v5 adds a classifier with a labelled evaluation set; v6's classifier lost accuracy"
# Weights fitted with numpy (scripts/evalkit.py); v6's are perturbed, as a bad quantisation
# would: it still passes its golden check (its goldens come from it) and its absolute
# threshold, but is more than a point below v5. The host cannot know what a device runs,
# so only the device applies min_delta.
"$PY" "$REPO/scripts/evalkit.py" models/c5 --kind classifier --samples 2000 >/dev/null
"$PY" "$REPO/scripts/evalkit.py" models/c6 --kind classifier --samples 2000 --perturb 0.3 >/dev/null
for v in 5 6; do
  cat > "vision-$v.yaml" <<YAML
name: vision
version: "1.$v.0"
sequence: $v
expires: 30d
models:
  - name: detector
    path: models/v2/model.onnx
    health: {inputs: models/v2/inputs.npz, outputs: models/v2/outputs.npz, runs: 20}
  - name: classifier
    path: models/c$v/model.onnx
    health: {inputs: models/c$v/inputs.npz, outputs: models/c$v/outputs.npz, runs: 20}
    evaluate:
      data: models/c$v/eval_data.npz
      labels: models/c$v/eval_labels.npz
      batch: 64
      metrics:
        accuracy: {min: 0.92, min_delta: -0.01}   # and at most a point below what runs
        f1_macro: {min: 0.90}
    inputs_contract:
      x: {dtype: float32, shape: [batch, 16], min: -10, max: 10}
YAML
  airlock build "vision-$v.yaml" --key keys/release.key -o "vision-1.$v.0.airlock"
done
airlock inspect vision-1.6.0.airlock | grep -E '^model|evaluation|contract'

step "host: v7's classifier passes its goldens and its labelled set; it asks for a shadow check"
# Perturbed a little less than v6: within a point of v5 on the evaluation set, so
# nothing at headquarters can tell it apart. Its spec asks the device to compare it
# with the running classifier on the newest 500 inputs the site dropped.
"$PY" "$REPO/scripts/evalkit.py" models/c7 --kind classifier --samples 2000 --perturb 0.15 >/dev/null
sed -e 's/"1.6.0"/"1.7.0"/' -e 's/^sequence: 6/sequence: 7/' -e 's#models/c6/#models/c7/#g' \
  vision-6.yaml > vision-7.yaml
cat >> vision-7.yaml <<YAML
    shadow: {samples: 500, min_agreement: 0.97, max_latency_ratio: 3, when_too_few: fail}
YAML
airlock build vision-7.yaml --key keys/release.key -o vision-1.7.0.airlock

if [ "$agent_from_kit" = 1 ]; then
  step "host: an agent kit for this machine's platform (every wheel pinned, kit.json signed)"
  airlock agent-kit --key keys/release.key -o agent-kit.tar
  step "device: the agent installed from the kit alone (no package index, no checkout)"
  mkdir -p media systemd && tar -xf agent-kit.tar -C media
  env -u PYTHONPATH PIP_NO_INDEX=1 PIP_INDEX_URL=http://127.0.0.1:9/none \
    sh media/*/install.sh --prefix "$PWD/opt" --bin-dir "$PWD/bin" --systemd-dir "$PWD/systemd" \
    --root "$AIRLOCK_ROOT" --trust root.json --no-init
  PATH="$PWD/bin:$PATH"   # from here on, airlock-agent is the kit's
  unset PYTHONPATH
  airlock-agent --version
fi

if ! command -v airlock-agent >/dev/null || ! airlock-agent --help >/dev/null 2>&1; then
  echo; echo "demo: the device agent is not in this build; stopping after the host side."
  exit 0
fi

step "device: init with the trust root"
airlock-agent init --trust root.json --device-id demo-1

step "device: install v1, then v2"
airlock-agent install vision-1.1.0.airlock
airlock-agent install vision-1.2.0.airlock

# A failed install must exit 4 with the previous release active again.
install_expect_4() {
  local code=0
  airlock-agent install "$1" || code=$?
  echo "install $1 exited $code (4 = check failed, previous release active again)"
  [ "$code" = 4 ] || { echo "demo: expected exit 4"; exit 1; }
}

step "device: install v3, whose model fails its golden check -> automatic rollback"
install_expect_4 vision-1.3.0.airlock

step "device: install v4: passes its check, switches, but its probe fails -> switched back"
install_expect_4 vision-1.4.0.airlock

step "device: install v5 (scored on its set), then v6: golden check passes, accuracy does not"
airlock-agent install vision-1.5.0.airlock
install_expect_4 vision-1.6.0.airlock

step "device: v7 fine at headquarters, but the shadow check on this site's own inputs refuses it"
# The application drops the inputs it sees into ROOT/samples/MODEL/; this site's sit
# away from the evaluation set, where v7 and v5 disagree on about one in five.
"$PY" "$REPO/scripts/evalkit.py" "$AIRLOCK_ROOT/samples/classifier" --site-samples 500 --shift 2
install_expect_4 vision-1.7.0.airlock

step "device: status"
airlock-agent status
airlock-agent history --verify | tail -n 5

step "device: the status page (serve answers the same at /) and a signed report for the stick"
airlock-agent status --html pages/device.html >/dev/null
airlock-agent report -o stick/airlock-reports/demo-1.report.json --since all

step "host: enrol the device, take its report in, write the fleet report"
airlock report enroll device/device.pub --device-id demo-1 --site demo --fleet fleet
airlock report ingest stick/airlock-reports --fleet fleet --html pages/fleet.html
echo
echo "device page:  $PWD/pages/device.html   (live: airlock-agent serve, then http://127.0.0.1:9400/)"
echo "fleet report: $PWD/pages/fleet.html"
