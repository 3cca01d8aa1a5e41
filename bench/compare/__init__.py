"""Helpers of ``bench/bench_compare.py``: the child that runs one case in a fresh process.

``run_case.py`` is executed by path (``python bench/compare/run_case.py ...``) with the interpreter of
either environment: the project's ``.venv`` for this package, the separate anchors environment for
the official providers. It imports nothing from ``bench`` so that it runs the same in both; it loads
``bench/support.py`` by path, which needs the standard library only.
"""
