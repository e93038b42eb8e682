"""Who runs a CLI command: a token holder, checked against the token store, never ``$USER``.

A command that changes state acts as a person the token store knows, so that the audit
log names them and four-eyes rules compare real identities:

- with a token (``--token-file FILE`` or ``$EDGEAGENT_TOKEN``), as the token's holder;
- as the service user (the owner of the state directory: the only account that can
  write the store anyway), with ``--actor NAME``, as the holder of the unrevoked token
  named ``NAME``, with that token's role;
- ``token create`` alone may also run as the service user with neither while the store
  holds no unrevoked admin token: that is how the first admin token comes to exist
  (audited as ``service-user:<account>``).

Read-only commands that are audited (``lookup``) name the operating-system account when
no identity is given; that name comes from the process's user id, not the environment.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from edgeagent.errors import EdgeAgentError
from edgeagent.roles import Role
from edgeagent.store.base import Store

TOKEN_ENV = "EDGEAGENT_TOKEN"  # noqa: S105 - the variable's name, not a secret


class IdentityRefused(EdgeAgentError):
    """The identity given is unknown, revoked, not allowed here, or its role too low."""


class IdentityMissing(EdgeAgentError):
    """The command changes state and no identity was given."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A checked identity: ``name`` is the audit actor, ``role`` what it may do."""

    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the command line offered: a token secret and/or an actor name."""

    secret: str | None = None
    actor: str | None = None

    @property
    def given(self) -> bool:
        return self.secret is not None or self.actor is not None


def read_token_file(path: Path) -> str:
    """The token in ``path`` (first line); refused if others may read or write the file."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise IdentityRefused(f"cannot read token file {path}: {reason}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IdentityRefused(f"token file {path} is open to other users: chmod 600 it")
    secret = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise IdentityRefused(f"token file {path} is empty")
    return secret


def credentials(token_file: str | None, actor: str | None) -> Credentials:
    """The credentials of a command: ``--token-file`` before ``$EDGEAGENT_TOKEN``."""
    secret = read_token_file(Path(token_file)) if token_file else None
    if secret is None:
        secret = os.environ.get(TOKEN_ENV) or None
    if secret is not None and actor is not None:
        raise IdentityRefused("give a token or --actor, not both")
    return Credentials(secret, actor)


def os_account() -> str:
    """The account this process runs as, from its user id."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"


def is_service_user(state_dir: Path) -> bool:
    """True when this process runs as the owner of ``state_dir`` (or it does not exist
    yet: whoever creates it is the service user)."""
    try:
        return state_dir.stat().st_uid == os.geteuid()
    except FileNotFoundError:
        return True


def check(store: Store, offered: Credentials, state_dir: Path, needed: Role) -> Identity:
    """The identity ``offered`` stands for, if it holds ``needed``; else raise."""
    from edgeagent.api.auth import Denied, authenticate  # the API package: aiohttp

    if offered.secret is not None:
        try:
            who = authenticate(store, offered.secret)
        except Denied as exc:
            raise IdentityRefused(f"token refused: {exc.reason}") from None
        identity = Identity(who.name, who.role)
    elif offered.actor is not None:
        identity = _actor(store, offered.actor, state_dir)
    else:
        raise missing()
    if identity.role < needed:
        raise IdentityRefused(
            f"{identity.name} has role {identity.role.label}; this needs {needed.label}"
        )
    return identity


def missing() -> IdentityMissing:
    """The error for a command that changes state and was given no identity."""
    return IdentityMissing(
        "this command changes state: give --token-file FILE or $EDGEAGENT_TOKEN, or run "
        "it as the service user with --actor NAME (a token holder's name)"
    )


def _actor(store: Store, name: str, state_dir: Path) -> Identity:

    if not is_service_user(state_dir):
        raise IdentityRefused(
            f"--actor is for the service user (the owner of {state_dir}); use a token"
        )
    holders = [t for t in store.list_tokens() if t.name == name and not t.revoked]
    if not holders:
        raise IdentityRefused(f"--actor {name}: no unrevoked token has this holder")
    try:
        return Identity(name, Role.parse(holders[0].role))
    except ValueError:
        raise IdentityRefused(f"--actor {name}: the token has no valid role") from None


def bootstrap_actor(store: Store, state_dir: Path) -> str | None:
    """``service-user:<account>`` when tokens may be created without an identity (the
    service user, and no unrevoked admin token yet); else ``None``."""

    if not is_service_user(state_dir):
        return None
    if any(t.role == Role.ADMIN.label and not t.revoked for t in store.list_tokens()):
        return None
    return f"service-user:{os_account()}"
