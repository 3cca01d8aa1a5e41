"""The reliability suite: tests that try to break the design's invariants and count what they tried."""
