"""Waiting for a batch: when to poll again, one list call for many batches, why a poll failed, and the
progress lines a person reads.
"""
