"""``make demo`` (``python -m demo``): the nightly DAG of ``dags/`` end to end against the local emulator.

It runs the repository's DAG files and data, so it lives in the clone beside them, not in the package.
"""
