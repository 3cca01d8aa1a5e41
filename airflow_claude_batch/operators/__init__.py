"""Airflow operators: thin tasks that read the context, call the core and return small XComs.

``build.ClaudeBatchBuildOperator`` (records → shards and an estimate), ``submit``, ``fanout``,
``requeue`` and ``report``; each module is imported on its own so a DAG pays only for what it uses.
"""
