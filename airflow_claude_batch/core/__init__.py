"""The Airflow-free core: everything here is plain Python, tested without Airflow.

Modules take path-like storage objects (``pathlib.Path``, ``upath.UPath`` or Airflow's
``ObjectStoragePath``) and plain dicts; they never import Airflow.
"""
