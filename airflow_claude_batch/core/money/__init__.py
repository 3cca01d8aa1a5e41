"""Money: one meter from token usage to US dollars (tiers, cache rates, multipliers), the prices a run
freezes, the run's totals, the estimate before anything is sent and the budget guard.
"""
