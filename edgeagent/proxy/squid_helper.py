"""``edgeagent-squid-helper``: Squid ``external_acl_type`` helper over the hashed index.

Protocol (Squid ``concurrency=N``, format ``%URI %METHOD``; see the ``squid.conf`` template in
edgeagent/render/templates)::

    request:  <channel-id> <url> [<method>]\\n
    answer:   <channel-id> OK message=<source>\\n   listed: Squid denies, deny_info uses %o
              <channel-id> ERR\\n                    not listed: pass

With ``--mode host`` (format ``%DST``, ACL argument ``block`` or ``check``)::

    request:  <channel-id> <host> block|check\n
    answer:   <channel-id> OK message=<source>\n   the host is refused as a whole (block),
                                                 or each URL must be asked (check)
              <channel-id> ERR\n                    otherwise

A host is refused as a whole for a ``host`` or ``domain`` entry or a ``url-prefix`` entry
for its root; when the policy has allow entries (which may carve pages out of a blocked
host) such a host is answered ``check`` instead, and Squid asks about every URL on it.
Squid caches host answers (ttl 1 s), so ``host_refused`` counts host lookups, not
requests; the stop page counts refused requests. Before any index has loaded,
``--fail-mode closed`` makes ``block`` refuse every host.

``CONNECT`` requests carry ``host:port`` instead of a URL. A CONNECT to a host covered by
a ``host`` or ``domain`` entry is refused (OK). A CONNECT to a host that only has
URL-level entries is passed (ERR) and counted as ``https_unenforceable``: inside TLS the
proxy cannot see the path, and refusing the whole host would block every innocent page on
it, which is exactly what URL entries exist to avoid.

Index swaps: every ``--check-interval`` seconds (checked between request batches) the
helper stats the index path; a new inode, size or mtime makes it open and verify the new
file and switch to it without a Squid restart. A missing or corrupt file keeps the last
good index (logged, counted). Before any index has loaded, ``--fail-mode open`` passes
every request and ``closed`` refuses it (source ``unavailable``); each such answer is
counted. Logs go to stderr (Squid's cache.log) and never contain a URL.

Counters: the helper cannot serve Prometheus itself. With ``--stats-file PATH`` it writes
its counters as JSON (atomically, 0640) at most every ``--stats-interval`` seconds and at
exit; ``%p`` in PATH becomes the process id, so several helper children do not overwrite
each other. The agent sums every file with :func:`read_stats` (e.g. the
``edgeagent_proxy_https_unenforceable_total`` counter).

The helper only ever holds hashes: the index file and the request being answered.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from edgeagent.atomic import write_atomic
from edgeagent.errors import InvalidTarget
from edgeagent.intake.entryref import ref_of_digest
from edgeagent.proxy.canary import CANARY_SOURCE
from edgeagent.proxy.index import IndexFileError, IndexHit, IndexReader

log = logging.getLogger("edgeagent.squid_helper")

UNAVAILABLE_SOURCE = "unavailable"
"""Source label of a fail-closed refusal before any index has loaded."""


@dataclass(slots=True)
class HelperStats:
    """Counters only: nothing about who asked or for what."""

    requests: int = 0
    listed: int = 0
    connect_refused: int = 0
    host_refused: int = 0
    host_unsure: int = 0
    https_unenforceable: int = 0
    invalid: int = 0
    before_load_passed: int = 0
    before_load_refused: int = 0
    index_loads: int = 0
    index_load_failures: int = 0
    policy_version: int = -1


_COUNTER_FIELDS = tuple(
    name for name in HelperStats.__dataclass_fields__ if name != "policy_version"
)


class Helper:
    """The helper's state machine, independent of stdin/stdout (tests and bench use it).

    ``answer(line)`` takes one request line (bytes, no newline) and returns the answer line
    (bytes, no newline). ``maybe_reload()`` switches to a new index file if there is one.
    """

    def __init__(
        self,
        index_path: str | os.PathLike[str],
        *,
        fail_closed: bool = False,
        check_interval: float = 1.0,
        host_mode: bool = False,
        appeal_key: bytes | None = None,
    ) -> None:
        self.index_path = Path(index_path)
        self.appeal_key = appeal_key
        self.fail_closed = fail_closed
        self.host_mode = host_mode
        self.check_interval = check_interval
        self.stats = HelperStats()
        self.reader: IndexReader | None = None
        self._next_check = 0.0
        self._bad_identity: tuple[int, int, int] | None = None
        self.maybe_reload(force=True)

    # -- index

    def maybe_reload(self, *, force: bool = False) -> bool:
        """Load the index file if it changed since the last look; True if switched."""
        now = time.monotonic()
        if not force and now < self._next_check:
            return False
        self._next_check = now + self.check_interval
        try:
            st = os.stat(self.index_path)
        except OSError:
            if self.reader is None and force:
                log.warning("no proxy index yet at the configured path; fail-%s", self._mode)
            return False
        ident = (st.st_ino, st.st_size, st.st_mtime_ns)
        current = self.reader.identity if self.reader is not None else None
        if current is not None and (current.ino, current.size, current.mtime_ns) == ident:
            return False
        if ident == self._bad_identity:
            return False  # already refused this exact file; keep the last good one
        try:
            new = IndexReader.open(self.index_path)
        except IndexFileError as exc:
            self._bad_identity = ident
            self.stats.index_load_failures += 1
            log.error("proxy index refused (%s); keeping the last good index", exc.reason)
            return False
        old, self.reader = self.reader, new
        self._bad_identity = None
        self.stats.index_loads += 1
        self.stats.policy_version = new.policy_version
        log.info("proxy index loaded: policy version %d, %d digests", new.policy_version, new.count)
        if old is not None:
            old.close()
        return True

    @property
    def _mode(self) -> str:
        return "closed" if self.fail_closed else "open"

    # -- requests

    def answer(self, line: bytes) -> bytes:
        """Answer one request line (``<channel-id> <url> [<method>]``)."""
        parts = line.split()
        if not parts:
            return b"ERR"
        if len(parts) == 1:
            # No channel ID: Squid without concurrency (or a bare test line).
            channel, url_b, method = b"", parts[0], b""
        else:
            channel, url_b = parts[0], parts[1]
            method = parts[2] if len(parts) > 2 else b""
        if self.host_mode:
            verdict = self._host_verdict(url_b, method)
        else:
            verdict = self._verdict(url_b, method)
        return verdict if not channel else channel + b" " + verdict

    def _host_verdict(self, host_b: bytes, question: bytes) -> bytes:
        """``--mode host``: OK when ``host_b`` is refused whole (``block``) or needs
        per-URL answers (``check``); see the module docstring."""
        stats = self.stats
        stats.requests += 1
        reader = self.reader
        if reader is None:
            if self.fail_closed and question != b"check":
                stats.before_load_refused += 1
                return b"OK message=" + UNAVAILABLE_SOURCE.encode()
            return b"ERR"
        try:
            hit = reader.match_whole_host(host_b.decode("utf-8", "surrogateescape"))
        except (InvalidTarget, UnicodeError, ValueError):
            stats.invalid += 1
            return b"ERR"
        if hit is None:
            return b"ERR"
        if reader.has_allows:
            if question != b"check":
                return b"ERR"
            stats.host_unsure += 1
            return b"OK"
        if question == b"check":
            return b"ERR"
        stats.host_refused += 1
        return b"OK message=" + hit.source.encode()

    def _verdict(self, url_b: bytes, method: bytes) -> bytes:
        stats = self.stats
        stats.requests += 1
        reader = self.reader
        if reader is None:
            if self.fail_closed:
                stats.before_load_refused += 1
                return b"OK message=" + UNAVAILABLE_SOURCE.encode()
            stats.before_load_passed += 1
            return b"ERR"
        try:
            url = url_b.decode("utf-8", "surrogateescape")
            if method == b"CONNECT" or (b"/" not in url_b and url_b.rpartition(b":")[2].isdigit()):
                host = url.rpartition(":")[0] if ":" in url else url
                hit, marked = reader.match_host(host)
                if hit is not None:
                    stats.connect_refused += 1
                    stats.listed += 1
                    return b"OK message=" + hit.source.encode()
                if marked:
                    stats.https_unenforceable += 1
                return b"ERR"
            m = reader.match(url)
        except (InvalidTarget, UnicodeError, ValueError):
            stats.invalid += 1
            return b"ERR"
        if m is None:
            return b"ERR"
        stats.listed += 1
        return b"OK message=" + self._message(m)

    def _message(self, m: IndexHit) -> bytes:
        """``<source>`` or, with an appeal key, ``<source>.<opaque entry reference>``: the
        stop page puts the reference in its appeal link (never the URL). The canary is
        answered ``canary.v<index version>`` (:mod:`edgeagent.proxy.canary`)."""
        if m.source == CANARY_SOURCE and self.reader is not None:
            return f"{CANARY_SOURCE}.v{self.reader.policy_version}".encode()
        if self.appeal_key is None or not m.digest:
            return m.source.encode()
        return f"{m.source}.{ref_of_digest(self.appeal_key, m.digest)}".encode()


# --------------------------------------------------------------------------- stats file


def stats_path(template: str) -> Path:
    """``template`` with ``%p`` replaced by this process id."""
    return Path(template.replace("%p", str(os.getpid())))


def write_stats(path: Path, stats: HelperStats) -> None:
    """Write counters as JSON, atomically (mode 0640)."""
    data = dict(asdict(stats), pid=os.getpid(), written_at=time.time())
    write_atomic(path, json.dumps(data, sort_keys=True) + "\n", 0o640)


def read_stats(paths: Iterable[str | os.PathLike[str]]) -> dict[str, int]:
    """Sum the counters of helper stats files (unreadable or malformed files are skipped).

    ``policy_version`` is the lowest version any helper reports (the laggard), -1 if none.
    """
    total = dict.fromkeys(_COUNTER_FIELDS, 0)
    versions: list[int] = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        for name in _COUNTER_FIELDS:
            value = data.get(name)
            if isinstance(value, int):
                total[name] += value
        version = data.get("policy_version")
        if isinstance(version, int) and version >= 0:
            versions.append(version)
    total["policy_version"] = min(versions) if versions else -1
    return total


# --------------------------------------------------------------------------- main loop


def serve(
    helper: Helper,
    stdin_fd: int,
    stdout_fd: int,
    *,
    stats_file: Path | None = None,
    stats_interval: float = 10.0,
) -> None:
    """Read request lines until EOF; answer each batch of complete lines with one write.

    Squid sends several requests at once with ``concurrency=``; reading whatever is
    available and answering it in one write keeps system calls per request low.
    """
    pending = b""
    next_stats = time.monotonic() + stats_interval
    while True:
        chunk = os.read(stdin_fd, 1 << 16)
        if not chunk:
            break
        pending += chunk
        if b"\n" not in chunk:
            continue
        helper.maybe_reload()
        lines = pending.split(b"\n")
        pending = lines.pop()
        out = b"".join(helper.answer(line) + b"\n" for line in lines if line.strip())
        view = memoryview(out)
        while view:
            written = os.write(stdout_fd, view)
            view = view[written:]
        if stats_file is not None and time.monotonic() >= next_stats:
            next_stats = time.monotonic() + stats_interval
            _write_stats_quietly(stats_file, helper.stats)
    if stats_file is not None:
        _write_stats_quietly(stats_file, helper.stats)


def _write_stats_quietly(path: Path, stats: HelperStats) -> None:
    try:
        write_stats(path, stats)
    except OSError as exc:
        log.warning("cannot write helper stats file: %s", exc.strerror)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgeagent-squid-helper",
        description="Squid external_acl_type helper: OK for listed URLs, ERR otherwise.",
    )
    p.add_argument("--index", required=True, help="proxy index file written by the agent")
    p.add_argument(
        "--mode",
        choices=("url", "host"),
        default="url",
        help="url: decide each request (%%URI %%METHOD); host: whole-host answers (%%DST)",
    )
    p.add_argument("--fail-mode", choices=("open", "closed"), default="open")
    p.add_argument(
        "--check-interval", type=float, default=1.0, help="seconds between looks for a new index"
    )
    p.add_argument("--stats-file", help="JSON counters file; %%p becomes the process id")
    p.add_argument("--stats-interval", type=float, default=10.0)
    p.add_argument(
        "--appeal-key",
        help="the agent's appeal key file (appeal-ref.key beside the index): listed "
        "answers then carry an opaque entry reference for the stop page's appeal link",
    )
    return p


def read_appeal_key(path: Path) -> bytes | None:
    """The appeal key, or ``None`` (answers without a reference) when it cannot be read:
    a stop page without an appeal reference beats a proxy whose helpers die."""
    try:
        key = path.read_bytes()
    except OSError as exc:
        log.warning("%s: appeal key not read (%s): no appeal references", path, exc.strerror)
        return None
    if len(key) != 32:
        log.warning("%s: appeal key is %d bytes, not 32: no appeal references", path, len(key))
        return None
    return key


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point. Logs to stderr, which Squid puts in cache.log."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="edgeagent-squid-helper: %(message)s"
    )
    helper = Helper(
        args.index,
        fail_closed=args.fail_mode == "closed",
        check_interval=args.check_interval,
        host_mode=args.mode == "host",
        appeal_key=read_appeal_key(Path(args.appeal_key)) if args.appeal_key else None,
    )
    stats_file = stats_path(args.stats_file) if args.stats_file else None
    try:
        serve(
            helper,
            sys.stdin.fileno(),
            sys.stdout.fileno(),
            stats_file=stats_file,
            stats_interval=args.stats_interval,
        )
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
