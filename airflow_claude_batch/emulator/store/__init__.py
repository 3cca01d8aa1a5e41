"""The emulator's batches over time: creation with the create-time checks, processing, the prompt cache,
quotas, counters, armed faults and what is kept of each request.
"""
