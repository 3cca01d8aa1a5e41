"""A run on storage: the run folder's layout, whole-or-nothing and exclusive writes, the claims index,
the shard descriptor, the files a round shares, the run's cancel record and the flat output's owner.
"""
