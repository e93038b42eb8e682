"""Where the files shipped beside the code are: sample lists, snippets, prefilter sources.

The repository keeps them at its top level (``blocklists/``, ``resolvers/``,
``prefilter/``); a wheel carries the same trees as package data under
``edgeagent/_bundled/`` (pyproject.toml maps them there). An installed package therefore
reads its own copy, and a source checkout (editable install, no ``_bundled`` directory)
reads the repository's. The choice is made once, for every path, so one process never
mixes the two.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
# The sys.path entry that holds the package: the repository in a checkout, site-packages
# when installed. A Python started elsewhere imports edgeagent from here.
IMPORT_ROOT = _PACKAGE_DIR.parent
_INSTALLED_ROOT = _PACKAGE_DIR / "_bundled"

BUNDLED_ROOT = _INSTALLED_ROOT if _INSTALLED_ROOT.is_dir() else IMPORT_ROOT


def bundled_path(*parts: str) -> Path:
    """The shipped file or directory ``parts`` (e.g. ``"prefilter"``).

    Not checked for existence: the caller's own error names the missing path.
    """
    return BUNDLED_ROOT.joinpath(*parts)
