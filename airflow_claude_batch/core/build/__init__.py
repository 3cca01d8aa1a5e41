"""The build step: records to validated shards on storage with an estimate, what a rerun does when the
input changed, and the records the build sets aside.
"""
