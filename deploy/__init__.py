"""Deployment checks: the distributed topology from processes on loopback, the compose stack, the UI.

Run from the repository root: ``make topology-check`` (``python -m deploy.topology_check``) and
``make compose-check``. Nothing here is imported by the package.
"""
