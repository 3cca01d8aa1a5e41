"""On-demand benchmarks: ``python -m bench NAME [options]`` runs ``bench/bench_NAME.py``'s ``main()``."""
