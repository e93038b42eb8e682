"""RPZ publishers: one contract (base.py), one module per plug-in."""
