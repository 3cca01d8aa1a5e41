"""Run Claude Message Batches from Apache Airflow.

The package has three layers: the Airflow shell (``hooks``, ``operators``, ``sensors``, ``triggers``,
``pipeline``), the Airflow-free core (``batch``) and a local emulator of the API (``emulator``).
"""

from __future__ import annotations

__version__ = "0.1.0"

#: No underscore: Airflow logs "Connection schemes ... shall not contain '_'" each time it turns a
#: connection whose type has one into a URI, which it does on every connection read.
CONNECTION_TYPE = "claude-batch"
#: The type before 0.2: its connections keep working (the hook reads any type), but Airflow warns on them.
LEGACY_CONNECTION_TYPE = "claude_batch"
DEFAULT_CONN_ID = "claude_batch_default"
#: The pipeline id (task group id) of ``claude_batch_pipeline()`` and of operators used outside a group.
DEFAULT_PIPELINE_ID = "claude_batch"


def get_provider_info() -> dict:
    """Describe this provider to Airflow's providers manager (the ``apache_airflow_provider`` entry point)."""
    return {
        "package-name": "airflow-claude-batch",
        "name": "Claude Message Batches",
        "description": "Run Claude Message Batches at scale: sharded, submitted exactly once, deferrable, "
        "streamed to object storage, requeued and accounted for.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Claude Message Batches",
                "external-doc-url": "https://docs.claude.com/en/docs/build-with-claude/batch-processing",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Claude Message Batches",
                "python-modules": ["airflow_claude_batch.hooks.claude"],
            }
        ],
        "operators": [
            {
                "integration-name": "Claude Message Batches",
                "python-modules": [
                    "airflow_claude_batch.operators.build",
                    "airflow_claude_batch.operators.submit",
                    "airflow_claude_batch.operators.fanout",
                    "airflow_claude_batch.operators.requeue",
                    "airflow_claude_batch.operators.report",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Claude Message Batches",
                "python-modules": ["airflow_claude_batch.sensors.batch"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Claude Message Batches",
                "python-modules": ["airflow_claude_batch.triggers.batch"],
            }
        ],
        "config": _provider_config(),
        "extra-links": [
            "airflow_claude_batch.links.ClaudeBatchLink",
            "airflow_claude_batch.links.ClaudeBatchReportLink",
            "airflow_claude_batch.links.ClaudeBatchesPageLink",
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_claude_batch.hooks.claude.ClaudeBatchHook",
                "hook-name": "Claude Message Batches",
                "connection-type": CONNECTION_TYPE,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": "empty for https://api.anthropic.com, or a gateway / emulator URL",
                        "password": "sk-ant-...",
                    },
                },
                "conn-fields": {
                    "anthropic_version": {
                        "label": "anthropic-version header",
                        "description": "API version header sent with every call (default 2023-06-01).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "anthropic_beta": {
                        "label": "Beta headers",
                        "description": "Comma-separated anthropic-beta flags, sent on the batch calls.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "workspace_id": {
                        "label": "Workspace ID",
                        "description": "Sent as the anthropic-workspace-id header on every call "
                        "(e.g. wrkspc_01...); empty: the key's own workspace.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "timeout": {
                        "label": "Request timeout (seconds)",
                        "description": "Per-request timeout for API calls (default 600).",
                        "schema": {"type": ["number", "null"]},
                    },
                    "max_retries": {
                        "label": "Retries on reads",
                        "description": "Retries with backoff for reads on 429/5xx/529/connection errors "
                        "(default 5). The create call is never retried automatically.",
                        "schema": {"type": ["integer", "null"]},
                    },
                },
            }
        ],
    }


def _provider_config() -> dict:
    from airflow_claude_batch.settings import provider_config

    return provider_config()
