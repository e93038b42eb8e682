"""``edgeagent render``: the fleet's snippets from one inventory and the agent's config.

:mod:`~edgeagent.render.inventory` reads the inventory, :mod:`~edgeagent.render.snippets`
renders (pure), :mod:`~edgeagent.render.writing` gathers the inputs and writes the result.
"""
