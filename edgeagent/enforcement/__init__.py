"""Enforcers: the policy applied at each layer of the network edge (contract in base.py,
the enforcers listed in kinds.py)."""
