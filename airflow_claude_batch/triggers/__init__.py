"""Triggers: the triggerer-side, natively async wait for a batch to end."""
