"""Map validated ``[feeds.NAME]`` settings onto :class:`FeedSpec` (secrets read here).

Config names say what the operator receives (``hashed-url-list``, ``rpz-axfr``); the feed
package's kinds are shorter (``hashed-list``, ``rpz``). A list feed configured with ``path`` instead
of ``url`` is read as a ``local-file`` feed of the same content.
"""

from __future__ import annotations

from pathlib import Path

from edgeagent import config as cfg
from edgeagent.configtypes import read_secret
from edgeagent.feeds.base import (
    BasicAuth,
    BearerAuth,
    ClientCert,
    FeedFormat,
    FeedKind,
    FeedSpec,
    TsigKey,
)

_KIND = {
    "url-list": FeedKind.URL_LIST,
    "hashed-url-list": FeedKind.HASHED_LIST,
    "domain-list": FeedKind.DOMAIN_LIST,
}


def feed_spec(name: str, feed: cfg.Feed) -> FeedSpec:
    """One feed's spec. Raises ``ConfigError`` if a secret cannot be read."""
    common: dict[str, object] = {
        "name": name,
        "category": feed.category,
        "enabled": feed.enabled,
        "interval": float(feed.schedule_interval) if feed.schedule_interval else None,
        "cron": feed.cron,
        "jitter": float(feed.jitter_seconds),
        "misfire_grace_time": float(feed.misfire_grace_seconds),
        "max_removal_share": feed.max_removal_share,
        "max_addition_share": feed.max_addition_share,
        "limit_floor": feed.change_floor,
    }
    if isinstance(feed, cfg.RpzAxfrFeed):
        tsig = None
        if feed.tsig_key_name is not None:
            secret = read_secret(feed.tsig_secret_file, feed.tsig_secret_env)
            tsig = TsigKey(feed.tsig_key_name, secret, feed.tsig_algorithm)
        return FeedSpec(
            kind=FeedKind.RPZ,
            server=feed.server,
            port=feed.port,
            zone=feed.zone,
            tsig=tsig,
            ixfr=feed.use_ixfr,
            deadline=feed.timeout_seconds,
            **common,  # type: ignore[arg-type]
        )
    if isinstance(feed, cfg.LocalFileFeed):
        return FeedSpec(
            kind=FeedKind.LOCAL_FILE,
            path=Path(feed.path),
            content=_KIND[feed.content],
            format=FeedFormat(feed.format),
            **common,  # type: ignore[arg-type]
        )
    content = _KIND[feed.kind]
    transport: dict[str, object] = {
        "format": FeedFormat(feed.format),
        "connect_timeout": feed.connect_timeout_seconds,
        "read_timeout": feed.read_timeout_seconds,
        "deadline": feed.total_deadline_seconds,
        "min_rate": float(feed.min_rate_bytes_per_second),
        "max_bytes": feed.max_bytes,
        "max_decompressed_bytes": feed.max_decompressed_bytes,
        "retries": feed.retries,
        "backoff_base": feed.backoff_base_seconds,
        "backoff_max": feed.backoff_max_seconds,
    }
    if feed.path is not None:
        return FeedSpec(
            kind=FeedKind.LOCAL_FILE,
            path=Path(feed.path),
            content=content,
            **transport,  # type: ignore[arg-type]
            **common,  # type: ignore[arg-type]
        )
    auth: BasicAuth | BearerAuth | None = None
    client_cert: ClientCert | None = None
    if isinstance(feed.auth, cfg.BasicAuth):
        password = read_secret(feed.auth.password_file, feed.auth.password_env)
        auth = BasicAuth(feed.auth.username, password)
    elif isinstance(feed.auth, cfg.BearerAuth):
        auth = BearerAuth(read_secret(feed.auth.token_file, feed.auth.token_env))
    elif isinstance(feed.auth, cfg.ClientCertAuth):
        password_set = feed.auth.key_password_file or feed.auth.key_password_env
        client_cert = ClientCert(
            Path(feed.auth.cert_file),
            Path(feed.auth.key_file),
            read_secret(feed.auth.key_password_file, feed.auth.key_password_env)
            if password_set
            else None,
        )
    public_key = Path(feed.public_key_file).read_bytes() if feed.public_key_file else b""
    return FeedSpec(
        kind=content,
        url=str(feed.url),
        auth=auth,
        client_cert=client_cert,
        ca_file=Path(feed.ca_file) if feed.ca_file else None,
        digest_url=str(feed.digest_url) if feed.digest_url else "",
        signature_url=str(feed.signature_url) if feed.signature_url else "",
        public_key=public_key,
        **transport,  # type: ignore[arg-type]
        **common,  # type: ignore[arg-type]
    )


def feed_specs(settings: cfg.Settings) -> list[FeedSpec]:
    return [feed_spec(name, feed) for name, feed in sorted(settings.feeds.items())]
