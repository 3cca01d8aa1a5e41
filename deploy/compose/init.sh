#!/usr/bin/env bash
# The airflow-init service of docker-compose.yaml: one-off work before the other Airflow services start.
set -euo pipefail
airflow db migrate
python /opt/deploy/init.py
