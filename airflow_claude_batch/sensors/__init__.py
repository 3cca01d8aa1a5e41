"""Sensors: waiting for a batch to end from the worker or, deferred, from the triggerer."""
