"""The Message Batches API's published facts: limits, the model catalogue and prices, and the request
rules the build checks before any spend (the emulator enforces the same ones).
"""
