"""edgeagent: keeps child sexual abuse material out of reach at an ISP's network edge.

``docs/architecture.md`` describes the data flow and the rules; each sub-package's
``base.py`` states the contract its plug-ins honour.
"""

__version__ = "0.1.0"
