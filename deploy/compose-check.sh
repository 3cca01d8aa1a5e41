#!/usr/bin/env bash
# make compose-check: docker-compose.yaml built, started, driven through a nightly run, checked, removed.
#
# 1. A Docker engine: the one DOCKER_HOST (or the default socket) points at, else a private dockerd
#    started here (Debian's docker.io, installed when missing and run as root) with no bridge network
#    and no iptables changes, its state under $COMPOSE_CHECK_CACHE.
# 2. A compose client: `docker compose`, else Debian's docker-compose.
# 3. Images: from BASE_IMAGE when a registry serves it, else from a Debian root file system made with
#    debootstrap (cached as an image). PostgreSQL and Redis come from Debian's packages on that base.
# 4. The stack on the host's network, every service bound to 127.0.0.1 on free ports
#    (deploy/compose/compose.check.yaml); `python -m deploy.compose_check` triggers the nightly DAG
#    through the REST API and checks the run, the S3 outputs and the emulator's counters.
# 5. `down --volumes`, and the private dockerd stopped, whatever happened (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

PYTHON=${PYTHON:-python3}
DEPLOY_VENV=${DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-claude-batch/deploy-venv}
COMPOSE_CHECK_CACHE=${COMPOSE_CHECK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-claude-batch/compose-check}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim-bookworm}
LOCAL_BASE_IMAGE=airflow-claude-batch-check/debian:bookworm
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-acb-compose-check}

log() { echo "[compose] $*"; }
started=$(date +%s)
work=$(mktemp -d /tmp/compose-check-XXXXXX)  # mode 700
dockerd_pid=""
compose=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ ${#compose[@]} -gt 0 ]]; then
    log "logs of the stack: $work/stack.log"
    "${compose[@]}" logs --no-color >"$work/stack.log" 2>&1 || true
    "${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true
  fi
  if [[ -n "$dockerd_pid" ]]; then
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 1; done
    kill -KILL "$dockerd_pid" 2>/dev/null || true
    # dockerd leaves its network namespace file mounted under the exec root; logs stay in $work.
    awk -v root="$work/" 'index($2, root) == 1 {print $2}' /proc/mounts | xargs -r -n1 umount 2>/dev/null || true
    rm -rf "$work/exec"
  fi
  rm -f "$work/merged.yaml"
  log "finished with status $status in $(( $(date +%s) - started )) s (logs in $work)"
  exit "$status"
}
trap cleanup EXIT INT TERM

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || { echo "missing Debian packages: ${missing[*]}" >&2; exit 2; }
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# --- 1. the engine ----------------------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
  apt_install docker.io
  mkdir -p "$COMPOSE_CHECK_CACHE/docker"
  export DOCKER_HOST="unix://$work/docker.sock"
  log "starting a private dockerd (log: $work/dockerd.log)"
  dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    --data-root "$COMPOSE_CHECK_CACHE/docker" --exec-root "$work/exec" \
    --pidfile "$work/dockerd.pid" -H "$DOCKER_HOST" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  if ! docker info >/dev/null 2>&1; then
    log "the Docker engine did not start; end of $work/dockerd.log:"
    tail -20 "$work/dockerd.log" >&2
    exit 3
  fi
fi
log "engine: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"

# --- 2. the compose client --------------------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
  compose_client=(docker compose)
else
  apt_install docker-compose
  compose_client=(docker-compose)
fi

# --- 3. the base image ------------------------------------------------------------------------------
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 && ! timeout 60 docker pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
  if ! docker image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
    apt_install debootstrap
    log "no registry serves $BASE_IMAGE; building $LOCAL_BASE_IMAGE with debootstrap"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$work/rootfs" \
      http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1
    # Trust what this machine trusts (a TLS-intercepting proxy's CA, say), for pip and uv in builds.
    cp /usr/local/share/ca-certificates/*.crt "$work/rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
    chroot "$work/rootfs" update-ca-certificates >/dev/null 2>&1
    bundle=/etc/ssl/certs/ca-certificates.crt
    tar -C "$work/rootfs" -c . | docker import \
      --change "ENV SSL_CERT_FILE=$bundle" --change "ENV PIP_CERT=$bundle" --change "ENV REQUESTS_CA_BUNDLE=$bundle" \
      - "$LOCAL_BASE_IMAGE" >/dev/null
    rm -rf "$work/rootfs"
  fi
  BASE_IMAGE=$LOCAL_BASE_IMAGE
fi
export BASE_IMAGE
log "base image: $BASE_IMAGE"

# --- 4. the stack -----------------------------------------------------------------------------------
UV=${UV:-$(command -v uv || true)}
if [[ -z "$UV" ]]; then
  "$PYTHON" -m pip install --quiet "uv==0.13.9"
  UV="$PYTHON -m uv"
fi
UV_PROJECT_ENVIRONMENT="$DEPLOY_VENV" $UV sync --quiet --locked --extra deploy --extra emulator --extra parquet --extra s3 --group deploy-check --python "$PYTHON"
py="$DEPLOY_VENV/bin/python"
free_ports=$("$py" -c "
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(('127.0.0.1', 0))
print(' '.join(str(s.getsockname()[1]) for s in socks))")
read -r POSTGRES_PORT REDIS_PORT S3_PORT EMULATOR_PORT AIRFLOW_API_PORT SCHEDULER_HEALTH_PORT <<<"$free_ports"
export POSTGRES_PORT REDIS_PORT S3_PORT EMULATOR_PORT AIRFLOW_API_PORT SCHEDULER_HEALTH_PORT
export AIRFLOW_UI_PORT=$AIRFLOW_API_PORT BIND_ADDRESS=127.0.0.1
secret() { "$py" -c "import secrets; print(secrets.token_urlsafe(24))"; }
AIRFLOW_FERNET_KEY=$("$py" -c "import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())")
AIRFLOW_API_SECRET_KEY=$(secret) AIRFLOW_JWT_SECRET=$(secret) AIRFLOW_ADMIN_PASSWORD=$(secret)
POSTGRES_PASSWORD=$(secret) REDIS_PASSWORD=$(secret)
export AIRFLOW_FERNET_KEY AIRFLOW_API_SECRET_KEY AIRFLOW_JWT_SECRET AIRFLOW_ADMIN_PASSWORD POSTGRES_PASSWORD REDIS_PASSWORD
export ANTHROPIC_API_KEY=sk-ant-compose-check-not-a-real-key
export CLAUDE_BATCH_BASE_URL="http://emulator:$EMULATOR_PORT" CLAUDE_BATCH_POLL_INTERVAL=2
export AIRFLOW_WORKER_CONCURRENCY=4 AIRFLOW_API_WORKERS=1
# Slow enough that the wait tasks find their batches still running and defer to the triggerer.
export EMULATOR_START_DELAY=30 EMULATOR_SPEED=500

# The two files merged and resolved; published ports dropped, since they mean nothing on the host's
# network and compose refuses them there. The file holds this run's generated secrets: it stays in
# the private work folder, which the trap removes.
"${compose_client[@]}" -f "$repo/docker-compose.yaml" -f "$repo/deploy/compose/compose.check.yaml" config \
  >"$work/merged.yaml"
"$py" - "$work/merged.yaml" <<'PY'
import sys, yaml
path = sys.argv[1]
with open(path) as handle:
    merged = yaml.safe_load(handle)
for service in merged["services"].values():
    service.pop("ports", None)
with open(path, "w") as handle:
    yaml.safe_dump(merged, handle, sort_keys=False)
PY
compose=("${compose_client[@]}" --project-directory "$repo" -f "$work/merged.yaml")
log "building images"
build_started=$(date +%s)
"${compose[@]}" build >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
log "built in $(( $(date +%s) - build_started )) s"
log "starting the stack (UI on http://127.0.0.1:$AIRFLOW_API_PORT)"
up_started=$(date +%s)
"${compose[@]}" up -d >"$work/up.log" 2>&1 || { tail -40 "$work/up.log" >&2; exit 1; }
log "containers started in $(( $(date +%s) - up_started )) s"

COMPOSE_COMMAND=$("$py" -c "import json, sys; print(json.dumps(sys.argv[1:]))" "${compose[@]}")
export COMPOSE_COMMAND
"$py" -m deploy.compose_check
