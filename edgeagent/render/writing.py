"""The edges of rendering: the agent's names from its config, the shipped templates, and
writing every rendered file atomically (temp, fsync, rename)."""

from __future__ import annotations

from pathlib import Path

from edgeagent.atomic import write_atomic
from edgeagent.config import Settings
from edgeagent.intake.entryref import KEY_FILE_NAME
from edgeagent.proxy.enforcer import HELPER_STATS_FILE_NAME, INDEX_FILE_NAME, ProxyEnforcerConfig
from edgeagent.render.filling import template_text
from edgeagent.render.inventory import Inventory
from edgeagent.render.snippets import PROXY_SUBDIR, ProxyNames, Templates, render_fleet
from edgeagent.rpz.enforcer import RpzEnforcerConfig, compiler_settings

# The snippets hold addresses and key file names, never secrets: readable by the
# daemons' administrators.
SNIPPET_MODE = 0o644


def shipped_templates() -> Templates:
    return Templates(squid=template_text("squid.conf"), sniproxy=template_text("sniproxy.conf"))


def proxy_names(inventory: Inventory, settings: Settings) -> ProxyNames:
    proxy = settings.sections(ProxyEnforcerConfig).proxy
    rpz = settings.sections(RpzEnforcerConfig).rpz
    if rpz.stop_page_host is not None:
        stop_url = f"http://{rpz.stop_page_host}"
    else:
        stop_url = f"http://{proxy.stop_page_listen_host}:{proxy.stop_page_listen_port}"
    # The proxy's artefacts (index, path filter, appeal key) in the setgid-proxy directory
    # the rendered tmpfiles.d creates: Squid's helpers cannot enter the agent's state dir.
    artefacts = f"{inventory.paths.publish_dir}/{PROXY_SUBDIR}"
    return ProxyNames(
        index_path=f"{artefacts}/{INDEX_FILE_NAME}",
        fail_mode=proxy.fail_mode,
        stop_url=stop_url,
        appeal_key_path=f"{artefacts}/{KEY_FILE_NAME}",
        stats_file=f"{artefacts}/{HELPER_STATS_FILE_NAME}",
    )


def rendering(inventory: Inventory, settings: Settings) -> dict[str, str]:
    """Every snippet for ``inventory`` under the agent's ``settings``."""
    rpz = compiler_settings(settings.sections(RpzEnforcerConfig).rpz, {})
    return render_fleet(inventory, rpz, proxy_names(inventory, settings), shipped_templates())


def write_rendering(out: Path, files: dict[str, str]) -> list[Path]:
    """Write ``files`` under ``out``, each atomically; return the paths written."""
    written = []
    for rel, text in sorted(files.items()):
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text, SNIPPET_MODE)
        written.append(path)
    return written
