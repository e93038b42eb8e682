"""Customer sources: who held an own address when a notice arrived (a plug-in family).

The contract is in :mod:`edgeagent.takedown.customers.base`, the kinds are listed in
:mod:`edgeagent.takedown.customers.kinds`, and
:class:`edgeagent.takedown.customers.directory.CustomerDirectory` merges every source.
"""
