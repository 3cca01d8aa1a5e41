# syntax=docker/dockerfile:1
# Images of the distributed deployment (docker-compose.yaml), installed from uv.lock and nothing else.
#
#   target airflow  Airflow 3 (scheduler, API server, DAG processor, triggerer, Celery worker) with this
#                   package and the `deploy`, `s3`, `parquet` and `emulator` extras; also runs the
#                   API emulator (claude-batch-emulator)
#   target s3       moto's S3 server, at the version uv.lock pins, for a local S3-compatible store
#
# BASE_IMAGE is any Debian-based image: a Python image (python:3.11-slim-bookworm, the default), or a
# plain Debian root file system, in which case Debian's python3 is installed first.

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
ARG UV_VERSION=0.13.9
ARG AIRFLOW_UID=50000
ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    DEBIAN_FRONTEND=noninteractive
# A plain Debian base has no Python: take Debian's (3.11 on bookworm, which uv.lock covers).
RUN if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}" \
    && useradd --uid "${AIRFLOW_UID}" --gid 0 --home-dir /opt/airflow --create-home --shell /bin/bash airflow
ENV PATH=/opt/uv/bin:$PATH
WORKDIR /src
COPY pyproject.toml uv.lock README.md ./


FROM base AS airflow
# Extras of this package to install (space-separated); `deploy` brings Celery, Redis and PostgreSQL.
ARG EXTRAS="deploy s3 parquet emulator"
# Dependencies first, from the lock with hashes, so that a code change does not reinstall them.
RUN uv export --locked --no-dev --no-emit-project --format requirements-txt \
        $(for extra in ${EXTRAS}; do printf -- '--extra %s ' "${extra}"; done) -o /tmp/requirements.txt \
    && uv venv --python "$(command -v python3)" /opt/venv \
    && uv pip install --python /opt/venv/bin/python --require-hashes -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY airflow_claude_batch ./airflow_claude_batch
RUN uv pip install --python /opt/venv/bin/python --no-deps . \
    && rm -rf /src/build \
    && mkdir -p /opt/airflow/dags /opt/airflow/logs /opt/airflow/secrets \
    && chown -R airflow:0 /opt/airflow && chmod -R g+rwX /opt/airflow
ENV PATH=/opt/venv/bin:$PATH \
    AIRFLOW_HOME=/opt/airflow
WORKDIR /opt/airflow
USER airflow
CMD ["airflow", "version"]


FROM base AS s3
# moto's server and what it needs, at the versions uv.lock pins for the `test` group.
RUN uv export --locked --no-dev --no-emit-project --no-hashes --group test -o /tmp/constraints.txt \
    && uv venv --python "$(command -v python3)" /opt/moto \
    && uv pip install --python /opt/moto/bin/python -c /tmp/constraints.txt "moto[server,s3]" \
    && rm /tmp/constraints.txt
ENV PATH=/opt/moto/bin:$PATH
USER airflow
CMD ["moto_server", "-H", "0.0.0.0", "-p", "5000"]
