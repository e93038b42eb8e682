"""Notifiers: how takedown notices reach the hosting team (a plug-in family).

The contract is in :mod:`edgeagent.takedown.notifiers.base`, the kinds are listed in
:mod:`edgeagent.takedown.notifiers.kinds`.
"""
