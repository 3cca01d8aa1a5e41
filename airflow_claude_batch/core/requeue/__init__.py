"""After a round: which requests go to the next round, which are retried synchronously, dead-lettered or
held as pending, the round's requeue record, and a finished run's pending records sent again.
"""
