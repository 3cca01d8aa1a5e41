"""A batch's results: the fanout of one shard into outcome rows (priced), reconciliation with its
requests, reading an answer against the output contract, the flat output, the failure threshold.
"""
