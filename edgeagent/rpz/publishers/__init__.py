"""RPZ publishers: one contract (base.py), one module per kind, the kinds listed in kinds.py."""
