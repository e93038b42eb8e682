"""A real IMAP mailbox (Dovecot) and DKIM keys for ``edgeagent lab`` and the tests.

- :func:`start_dovecot`: Dovecot in the foreground on a loopback port, IMAP over TLS
  only (a throwaway self-signed certificate), users from a passwd file, Maildir storage.
  Dovecot refuses to run mail processes as root, so as root mail is kept as the
  ``dovecot`` user in a directory of its own under /tmp that user can reach (removed on
  stop); started by another user, Dovecot runs entirely as that user;
- :func:`dkim_key`: a DKIM key pair, the TXT record that publishes it and a signer;
- :func:`deliver`: put messages into a mailbox the way a mail server would (APPEND).
"""

from __future__ import annotations

import base64
import grp
import imaplib
import os
import pwd
import re
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edgeagent.atomic import write_atomic
from edgeagent.lab.daemons import (
    HOST,
    DaemonError,
    ProcessGroup,
    free_tcp_port,
    spawn,
    stop_process,
    wait_listening,
)
from edgeagent.lab.sites import throwaway_certificate

MAIL_USER = "dovecot"  # Debian's dovecot-core creates it


def _mail_user() -> pwd.struct_passwd:
    """Who keeps the mail: ``dovecot`` when started as root (Dovecot refuses root for
    mail), else the user running it (Dovecot then runs entirely as that user)."""
    return pwd.getpwnam(MAIL_USER) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())


_USER = re.compile(r"[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+")


@dataclass
class RunningMailbox:
    """A started Dovecot: ``port`` speaks IMAP over TLS, ``cert`` is its certificate."""

    port: int
    cert: Path
    workdir: Path
    log: Path
    users: dict[str, str]
    proc: subprocess.Popen[bytes]

    host: str = HOST

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def add_user(self, user: str, password: str) -> None:
        """One more mailbox (Dovecot reads the passwd file on each login)."""
        if not _USER.fullmatch(user):
            raise ValueError(f"not a mailbox user name: {user!r}")
        self.users[user] = password
        _write_user(self.workdir / "users", user, password)


def _write_user(users_dir: Path, user: str, password: str) -> None:
    """One passwd file per user (Dovecot rereads a shared file at most once a second)."""
    line = f"{user}:{{PLAIN}}{password}\n"
    group = _mail_user().pw_gid
    write_atomic(users_dir / user, line.encode(), 0o640, group=group)  # Dovecot's auth reads it


def _conf(workdir: Path, port: int, cert: Path, key: Path) -> str:
    uid = _mail_user()
    internal = ""
    if os.geteuid() != 0:
        group = grp.getgrgid(uid.pw_gid).gr_name
        internal = (
            f"default_internal_user = {uid.pw_name}\ndefault_login_user = {uid.pw_name}\n"
            f"default_internal_group = {group}\n"
        )
    return (
        internal
        + f"""\
base_dir = {workdir}/run
state_dir = {workdir}/state
log_path = {workdir}/dovecot.log
protocols = imap
listen = {HOST}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {workdir}/users/%u
}}
userdb {{
  driver = static
  args = uid={uid.pw_uid} gid={uid.pw_gid} home={workdir}/home/%u
}}
first_valid_uid = {min(uid.pw_uid, 100)}
mail_location = maildir:~/Maildir
# Throwaway mail: no fsync (a benchmark of the agent, not of this disk).
mail_fsync = never
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""
    )


def start_dovecot(
    users: dict[str, str],
    *,
    port: int | None = None,
    group: ProcessGroup | None = None,
    parent: Path | None = None,
) -> RunningMailbox:
    """Dovecot serving ``users`` (name -> password) over IMAPS on 127.0.0.1:``port``."""
    if shutil.which("dovecot") is None:
        raise DaemonError("dovecot is not installed (Debian: apt-get install dovecot-imapd)")
    workdir = Path(tempfile.mkdtemp(prefix="edgeagent-dovecot-", dir=parent))
    os.chmod(workdir, 0o711)  # noqa: S103 - traverse only: the mail user reaches home/
    home = workdir / "home"
    home.mkdir()
    keeper = _mail_user()
    os.chown(home, keeper.pw_uid, keeper.pw_gid)
    cert, key = throwaway_certificate(workdir, [HOST, "localhost"])
    (workdir / "users").mkdir(mode=0o750)
    os.chown(workdir / "users", -1, keeper.pw_gid)
    port = port or free_tcp_port()
    conf = workdir / "dovecot.conf"
    conf.write_text(_conf(workdir, port, cert, key), encoding="utf-8")
    proc, log = spawn("dovecot", ["dovecot", "-F", "-c", str(conf)], workdir, group)
    try:
        wait_listening(proc, "dovecot", [(HOST, port)], log)
    except DaemonError as exc:
        daemon_log = workdir / "dovecot.log"
        extra = daemon_log.read_text(errors="replace")[-2000:] if daemon_log.exists() else ""
        shutil.rmtree(workdir, ignore_errors=True)
        raise DaemonError(f"{exc}\n{extra}") from None
    mailbox = RunningMailbox(port, cert, workdir, workdir / "dovecot.log", {}, proc)
    for user, password in users.items():
        mailbox.add_user(user, password)
    return mailbox


def deliver(
    mailbox: RunningMailbox, user: str, messages: Iterable[bytes], folder: str = "INBOX"
) -> None:
    """Store each of ``messages`` in ``user``'s ``folder`` as new and unseen (one session)."""
    with imaplib.IMAP4_SSL(mailbox.host, mailbox.port, ssl_context=mailbox.tls_context()) as m:
        m.login(user, mailbox.users[user])
        for raw in messages:
            status, _ = m.append(folder, None, None, raw)
            if status != "OK":
                raise DaemonError(f"dovecot refused a message for {user}")


@dataclass(frozen=True)
class DkimKey:
    """A DKIM signing key of ``domain`` under ``selector``."""

    domain: str
    selector: str
    private_pem: bytes
    public_der: bytes

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def txt_record(self) -> str:
        """The zone-file line publishing the key (split in 255-byte strings)."""
        value = "v=DKIM1; k=rsa; p=" + base64.b64encode(self.public_der).decode("ascii")
        chunks = " ".join(f'"{value[i : i + 250]}"' for i in range(0, len(value), 250))
        return f"{self.record_name}. 300 IN TXT ( {chunks} )\n"

    def sign(self, raw: bytes, domain: str | None = None) -> bytes:
        """``raw`` with a DKIM-Signature of ``domain`` (default: the key's) prepended."""
        header = dkim.sign(
            raw,
            self.selector.encode(),
            (domain or self.domain).encode(),
            self.private_pem,
            include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
        )
        return bytes(header) + raw

    def write_private(self, path: Path) -> Path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.private_pem)
        return path


def dkim_key(domain: str, selector: str = "edgeagent") -> DkimKey:
    """A fresh 2048-bit RSA DKIM key for ``domain``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return DkimKey(domain, selector, private, public)
