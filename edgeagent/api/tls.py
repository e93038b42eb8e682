"""TLS for the control API, with optional client certificates (mTLS)."""

from __future__ import annotations

import ssl
from pathlib import Path


def make_ssl_context(
    cert_file: str | Path,
    key_file: str | Path,
    client_ca_file: str | Path | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 or later, the server's chain and key loaded.

    With ``client_ca_file``, client certificates signed by that CA are verified; with
    ``require_client_cert`` as well, a client without one fails the handshake. Requiring
    client certificates without a CA to check them against is a configuration error
    (``ValueError``), not a silently open door.
    """
    if require_client_cert and client_ca_file is None:
        raise ValueError("require_client_cert needs client_ca_file")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    if client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(client_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
