"""Start-up work of the compose deployment, run once by the ``airflow-init`` service after the migration.

- writes the SimpleAuthManager's password file from ``AIRFLOW_ADMIN_PASSWORD``;
- creates the ``claude_batch_default`` and ``aws_default`` connections if they do not exist yet, so that
  changes made later in the UI survive restarts;
- creates the S3 bucket the sample DAGs write to.

Secrets come from the environment and go into the metadata database (encrypted with the Fernet key) or
a file only the container user reads; none is put on a command line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3
from airflow.models.connection import Connection
from airflow.utils.session import create_session
from botocore.exceptions import ClientError

PASSWORDS_FILE = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])


def write_passwords() -> None:
    PASSWORDS_FILE.parent.mkdir(parents=True, exist_ok=True)
    PASSWORDS_FILE.write_text(json.dumps({"admin": os.environ["AIRFLOW_ADMIN_PASSWORD"]}) + "\n")
    PASSWORDS_FILE.chmod(0o600)


def wanted_connections() -> list[Connection]:
    s3_extra = {"endpoint_url": os.environ["S3_ENDPOINT_URL"], "region_name": "us-east-1"}
    return [
        Connection(
            conn_id="claude_batch_default",
            conn_type="claude-batch",
            # Empty: the first-party API. A gateway or the emulator: its URL.
            host=os.environ.get("CLAUDE_BATCH_BASE_URL", ""),
            password=os.environ["ANTHROPIC_API_KEY"],
        ),
        Connection(
            conn_id="aws_default",
            conn_type="aws",
            login=os.environ["S3_ACCESS_KEY_ID"],
            password=os.environ["S3_SECRET_ACCESS_KEY"],
            extra=json.dumps(s3_extra),
        ),
    ]


def create_missing_connections() -> None:
    with create_session() as session:
        for connection in wanted_connections():
            if session.query(Connection).filter_by(conn_id=connection.conn_id).first() is None:
                session.add(connection)
                print(f"created connection {connection.conn_id}")
            else:
                print(f"connection {connection.conn_id} exists; left as it is")


def create_bucket() -> None:
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT_URL"],
        aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    try:
        s3.create_bucket(Bucket=os.environ["S3_BUCKET"])
        print(f"created bucket {os.environ['S3_BUCKET']}")
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise


if __name__ == "__main__":
    write_passwords()
    create_missing_connections()
    create_bucket()
