"""The run's report: the ledger that scans the run folder into ``manifest.json``, the manifest's shape,
the page a person reads, and the budget left after a round.
"""
