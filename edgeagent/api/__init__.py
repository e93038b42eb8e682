"""The control API: ``create_app()``, auth, handlers and its OpenAPI document.

Public entry points::

    from edgeagent.api import ApiContext, create_app, create_metrics_app, start_site
"""

from edgeagent.api.app import bound_port, create_app, create_metrics_app, start_site
from edgeagent.api.auth import Principal
from edgeagent.api.context import ApiContext
from edgeagent.api.tls import make_ssl_context
from edgeagent.roles import Role

__all__ = [
    "ApiContext",
    "Principal",
    "Role",
    "bound_port",
    "create_app",
    "create_metrics_app",
    "make_ssl_context",
    "start_site",
]
