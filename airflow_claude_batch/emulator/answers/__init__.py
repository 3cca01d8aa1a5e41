"""Deterministic model answers: the content shaped for a request's params, and values that satisfy a
JSON schema.
"""
