"""Submitting a shard exactly once: the state machine and its state file, the intent race, recovery of
a lost create's batch, pacing under the API's capacity, the create body, and cancelling a run's batches.
"""
