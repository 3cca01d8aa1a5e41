"""The "Claude batches" page in Airflow's UI: an Airflow plugin (``plugin.py``) whose FastAPI app
(``app.py``) lists the pipeline runs Airflow recorded (``run_records.py``) with their manifests' figures
(``run_rows.py``) on a page (``page.py``) and as JSON."""
