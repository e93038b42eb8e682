"""TSIG is required for UPDATE and zone transfers by the shipped BIND configs, rendered as
the lab renders them and loaded by a real ``named``; the messages come from dnspython.

The hidden primary accepts an UPDATE signed with the update key only, and a transfer
(AXFR, IXFR) signed with the update or the transfer key only: unsigned, signed with the
right key name but a wrong secret, or with a key it does not know, each is refused and
leaves the zone unchanged. The secondary resolver and the zone-file resolver take no
UPDATE and transfer their policy zones to nobody, signed or not.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.update
import pytest

from edgeagent.lab.daemons import RunningDaemon
from edgeagent.lab.resolvers import (
    TRANSFER_KEY,
    UPDATE_KEY,
    bootstrap_zones,
    start_named,
    start_primary,
    start_secondary,
)
from edgeagent.model import DesiredState
from edgeagent.rpz.compiler import RpzSettings
from edgeagent.rpz.publishers.base import ZoneRelease
from tests.support.ports import free_port
from tests.support.resolvers import stop_all

pytestmark = pytest.mark.integration

SERIAL = 7
SETTINGS = RpzSettings(proxy_ipv4="192.0.2.80", stop_page_host="stop.edgeagent.test")
ZONE = SETTINGS.zone + "."


def _key(name: str, secret: str | None = None) -> dns.tsig.Key:
    secret = secret or base64.b64encode(os.urandom(32)).decode()
    return dns.tsig.Key(name, secret, dns.tsig.HMAC_SHA256)


def _signed(message: dns.message.Message, key: dns.tsig.Key | None) -> dns.message.Message:
    if key is not None:
        message.use_tsig(key)
    return message


def _update(owner: str, key: dns.tsig.Key | None) -> dns.message.Message:
    update = dns.update.UpdateMessage(ZONE)
    update.add(dns.name.from_text(owner, dns.name.from_text(ZONE)), 60, "CNAME", ".")
    return _signed(update, key)


def _axfr(key: dns.tsig.Key | None) -> dns.message.Message:
    return _signed(dns.message.make_query(ZONE, dns.rdatatype.AXFR), key)


def _ixfr(key: dns.tsig.Key | None) -> dns.message.Message:
    query = dns.message.make_query(ZONE, dns.rdatatype.IXFR)
    soa = f". . {SERIAL - 1} 60 60 600 60"
    query.authority.append(dns.rrset.from_text(ZONE, 0, dns.rdataclass.IN, "SOA", soa))
    return _signed(query, key)


def _outcome(server: RunningDaemon, message: dns.message.Message) -> str:
    """The rcode of the (first) answer over TCP, or the error that refused the message
    (a reply whose TSIG does not verify, as BIND answers a wrongly signed request)."""
    try:
        answer = dns.query.tcp(message, server.host, port=server.port, timeout=10)
    except dns.exception.DNSException as exc:
        return type(exc).__name__
    return dns.rcode.to_text(answer.rcode())


def _present(server: RunningDaemon, owner: str, key: dns.tsig.Key) -> bool:
    query = dns.message.make_query(f"{owner}.{ZONE}", dns.rdatatype.CNAME)
    query.use_tsig(key)
    answer = dns.query.tcp(query, server.host, port=server.port, timeout=10)
    return bool(answer.answer)


# A refusal: REFUSED for a missing or unaccepted signature; NOTAUTH (BADSIG/BADKEY), or a
# reply dnspython cannot verify, for a wrong secret or an unknown key.
REFUSED = {"REFUSED", "NOTAUTH", "PeerBadSignature", "PeerBadKey", "BadSignature"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningDaemon]]:
    base = tmp_path_factory.mktemp("tsig")
    release = ZoneRelease(DesiredState(0, (), ()), SETTINGS, SERIAL)
    for zones in ("primary-zones", "primary-zones-u", "resolver-zones"):
        bootstrap_zones(base / zones, release)
    daemons: dict[str, RunningDaemon] = {}
    try:
        daemons["primary"] = start_primary(base / "primary", base / "primary-zones", [])
        # The -unbound variant, opened to a keyless client that is not the test's address.
        daemons["primary-unbound"] = start_primary(
            base / "primary-unbound", base / "primary-zones-u", [], unbound_clients="127.0.0.9;"
        )
        daemons["secondary"] = start_secondary(base / "secondary", daemons["primary"], free_port())
        daemons["resolver"] = start_named(base / "resolver", base / "resolver-zones")
        yield daemons
    finally:
        stop_all(*daemons.values())


def _secrets(primary: RunningDaemon) -> tuple[dns.tsig.Key, dns.tsig.Key]:
    return (
        _key(UPDATE_KEY, primary.extra["update_secret"]),
        _key(TRANSFER_KEY, primary.extra["transfer_secret"]),
    )


@pytest.mark.parametrize("snippet", ["primary", "primary-unbound"])
def test_primary_takes_update_only_signed_with_the_update_key(
    fleet: dict[str, RunningDaemon], snippet: str
) -> None:
    primary = fleet[snippet]
    update_key, transfer_key = _secrets(primary)
    tries = {
        "unsigned": None,
        "wrong-secret": _key(UPDATE_KEY),
        "unknown-key": _key("someone-else"),
        "transfer-key": transfer_key,
    }
    outcomes = {name: _outcome(primary, _update(f"t-{name}", key)) for name, key in tries.items()}
    assert set(outcomes.values()) <= REFUSED, outcomes
    assert not any(_present(primary, f"t-{name}", update_key) for name in tries)
    # The control: the same UPDATE signed with the update key is applied.
    assert _outcome(primary, _update("t-signed", update_key)) == "NOERROR"
    assert _present(primary, "t-signed", update_key)


@pytest.mark.parametrize("snippet", ["primary", "primary-unbound"])
@pytest.mark.parametrize("transfer", [_axfr, _ixfr], ids=["AXFR", "IXFR"])
def test_primary_transfers_only_to_its_keys(
    fleet: dict[str, RunningDaemon],
    snippet: str,
    transfer: Callable[[dns.tsig.Key | None], dns.message.Message],
) -> None:
    primary = fleet[snippet]
    update_key, transfer_key = _secrets(primary)
    refused = {
        name: _outcome(primary, transfer(key))
        for name, key in {
            "unsigned": None,
            "wrong-secret": _key(TRANSFER_KEY),
            "unknown-key": _key("someone-else"),
        }.items()
    }
    assert set(refused.values()) <= REFUSED, refused
    assert _outcome(primary, transfer(transfer_key)) == "NOERROR"
    assert _outcome(primary, transfer(update_key)) == "NOERROR"


@pytest.mark.parametrize("role", ["secondary", "resolver"])
def test_resolvers_take_no_update_and_transfer_to_nobody(
    fleet: dict[str, RunningDaemon], role: str
) -> None:
    server = fleet[role]
    _, transfer_key = _secrets(fleet["primary"])
    outcomes = {
        f"{kind}/{signed}": _outcome(server, make(key))
        for kind, make in (
            ("UPDATE", lambda k: _update("t-resolver", k)),
            ("AXFR", _axfr),
            ("IXFR", _ixfr),
        )
        for signed, key in (("unsigned", None), ("wrong-key", _key("someone-else")))
    }
    # The secondary knows the transfer key: signed with it, still nothing.
    if role == "secondary":
        outcomes["AXFR/transfer-key"] = _outcome(server, _axfr(transfer_key))
        outcomes["UPDATE/transfer-key"] = _outcome(server, _update("t-resolver", transfer_key))
    assert set(outcomes.values()) <= REFUSED, outcomes
