"""The proxy index and path filter as the agent writes them, IP-literal aliases included.

:func:`publish_with_aliases` runs the proxy enforcer's own path: ``publish`` (index and
path filter), one round of alias resolution through a real DNS server (``resolver``,
which must not apply the blocking policy), and the ``ip-aliases`` job's write. The bypass
matrices use it so that the index Squid's helper reads is the one the daemon would write.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from edgeagent.enforcement.base import EnforcerContext
from edgeagent.metrics import Metrics
from edgeagent.model import DesiredState
from edgeagent.proxy.enforcer import ProxyConfig, ProxyEnforcer, ProxyEnforcerConfig


def publish_with_aliases(
    state: DesiredState, index: Path, resolver: tuple[str, int], *, group: str = "proxy"
) -> int:
    """Write ``index`` (and its path filter) for ``state`` with the aliases of its hosts;
    the number of alias entries written."""
    config = ProxyConfig.model_validate(
        {
            "enabled": True,
            "index_path": str(index),
            "group": group,
            "alias_resolvers": [{"host": resolver[0], "port": resolver[1]}],
        }
    )

    async def run() -> int:
        with tempfile.TemporaryDirectory(prefix="edgeagent-aliases-") as state_dir:
            context = EnforcerContext(Path(state_dir), Metrics())
            enforcer = ProxyEnforcer(ProxyEnforcerConfig(proxy=config), context)
            published = await enforcer.publish(state)
            assert published.ok, published.detail
            assert await enforcer.resolve_aliases() > 0
            await enforcer.apply_aliases()
            assert enforcer.last_error == ""
            assert enforcer.aliases is not None
            return enforcer.aliases.counts().aliases

    return asyncio.run(run())
