#!/usr/bin/env bash
# make topology-check: the distributed topology from real processes on 127.0.0.1, checked end to end.
#
# Installs what it needs on a fresh Debian machine (PostgreSQL, Redis, and Chromium for --ui, through
# apt when run as root), syncs an environment from uv.lock with the deploy extras and the
# `deploy-check` group, then runs `python -m deploy.topology_check "$@"`. Whatever happens, every process it started is ended.
#
#   deploy/topology-check.sh                       # the nightly DAG
#   deploy/topology-check.sh --ui                  # ... and the UI in headless Chromium
#   deploy/topology-check.sh --dag topology_smoke  # the deployment alone, no API involved
#
# Environment: DEPLOY_VENV (default ~/.cache/airflow-claude-batch/deploy-venv), PYTHON, UV.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
UV_VERSION=0.13.9
DEPLOY_VENV=${DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-claude-batch/deploy-venv}

want_ui=0
for arg in "$@"; do [[ "$arg" == "--ui" ]] && want_ui=1; done

log() { echo "[topology] $*"; }

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]}; install them (apt-get install ${missing[*]}) and rerun" >&2
    exit 2
  fi
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

started=$(date +%s)
apt_install postgresql redis-server
if (( want_ui )); then apt_install chromium chromium-driver fonts-dejavu-core; fi
# The check runs its own servers on free ports; any server the packages started is left alone.

UV=${UV:-$(command -v uv || true)}
if [[ -z "$UV" ]]; then
  "$PYTHON" -m pip install --quiet "uv==$UV_VERSION"
  UV="$PYTHON -m uv"
fi
log "environment $DEPLOY_VENV (uv.lock, group deploy-check)"
UV_PROJECT_ENVIRONMENT="$DEPLOY_VENV" $UV sync --quiet --locked --extra deploy --extra emulator --extra parquet --extra s3 --group deploy-check --python "$PYTHON"
log "prepared in $(( $(date +%s) - started )) s"

# The driver records each process group it starts in this file; the trap ends what the driver could not.
pid_dir=$(mktemp -d)
export TOPOLOGY_PID_FILE="$pid_dir/pids"
driver=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ -n "$driver" ]] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    wait "$driver" 2>/dev/null || true
  fi
  if [[ -f "$TOPOLOGY_PID_FILE" ]]; then
    while read -r pgid; do kill -KILL -- "-$pgid" 2>/dev/null || true; done <"$TOPOLOGY_PID_FILE"
  fi
  rm -rf "$pid_dir"
  exit "$status"
}
trap cleanup EXIT INT TERM

"$DEPLOY_VENV/bin/python" -m deploy.topology_check "$@" &
driver=$!
wait "$driver"
