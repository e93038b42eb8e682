"""Pulling an upstream RPZ zone by AXFR/IXFR with TSIG, for :mod:`edgeagent.feeds.rpz_axfr`.

The transfer is received by dnspython (``dns.asyncquery.inbound_xfr``) into
:class:`StoreBackedZone`, a ``dns.transaction.TransactionManager`` whose state is the
feed's live generation in the store, not a ``dns.zone.Zone`` (too slow and too big for
million-record zones). Each owner keeps only the text of its records, so an IXFR can
delete exactly what the upstream says it deletes. If an IXFR does not apply exactly to
the base, the caller's full AXFR follows.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import dns.asyncquery
import dns.exception
import dns.name
import dns.node
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.serial
import dns.transaction
import dns.tsig
import dns.xfr

from edgeagent.errors import FeedError
from edgeagent.feeds.base import FeedSpec
from edgeagent.feeds.rpz_axfr import Records

__all__ = ["RpzTransfer", "StoreBackedZone", "transfer"]


@dataclass(frozen=True, slots=True)
class RpzTransfer:
    """``records`` is the full new zone content (``None``: serial unchanged)."""

    records: Records | None
    serial: str
    incremental: bool
    size: int = 0


class _Txn(dns.transaction.Transaction):
    def __init__(self, zone: StoreBackedZone, replacement: bool, read_only: bool) -> None:
        super().__init__(zone, replacement, read_only)
        self.zone = zone
        self.records: Records = {} if replacement else (zone.base if read_only else dict(zone.base))
        self.soa: dns.rdataset.Rdataset | None = None if replacement else zone.soa
        self.dirty = False

    def _rel(self, name: dns.name.Name) -> str:
        return str(name.relativize(self.zone.origin).to_text())

    def _get_rdataset(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, covers: Any
    ) -> dns.rdataset.Rdataset | None:
        if rdtype == dns.rdatatype.SOA and name == self.zone.origin:
            return self.soa
        texts = self.records.get(self._rel(name))
        if not texts:
            return None
        type_text = dns.rdatatype.to_text(rdtype)
        found = [t.split(" ", 1)[1] for t in texts if t.split(" ", 1)[0] == type_text]
        if not found:
            return None
        rds = dns.rdataset.Rdataset(dns.rdataclass.IN, rdtype)
        for text in found:
            rds.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype, text))
        return rds

    def _put_rdataset(self, name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> None:
        self.dirty = True
        if rdataset.rdtype == dns.rdatatype.SOA and name == self.zone.origin:
            self.soa = rdataset
            return
        rel = self._rel(name)
        type_text = dns.rdatatype.to_text(rdataset.rdtype)
        keep = tuple(t for t in self.records.get(rel, ()) if t.split(" ", 1)[0] != type_text)
        new = tuple(sys.intern(f"{type_text} {rd.to_text()}") for rd in rdataset)
        self.records[rel] = keep + new

    def _delete_name(self, name: dns.name.Name) -> None:
        self.dirty = True
        self.records.pop(self._rel(name), None)

    def _delete_rdataset(self, name: dns.name.Name, rdtype: Any, covers: Any) -> None:
        self.dirty = True
        rel = self._rel(name)
        type_text = dns.rdatatype.to_text(rdtype)
        keep = tuple(t for t in self.records.get(rel, ()) if t.split(" ", 1)[0] != type_text)
        if keep:
            self.records[rel] = keep
        else:
            self.records.pop(rel, None)

    def _name_exists(self, name: dns.name.Name) -> bool:
        if name == self.zone.origin:
            return True
        return self._rel(name) in self.records

    def _changed(self) -> bool:
        return self.dirty

    def _end_transaction(self, commit: bool) -> None:
        if commit and not self.read_only:
            self.zone.committed = (self.records, self.soa)

    def _set_origin(self, origin: dns.name.Name | None) -> None:
        pass

    def _iterate_rdatasets(self) -> Iterator[tuple[dns.name.Name, dns.rdataset.Rdataset]]:
        for rel in list(self.records):
            name = dns.name.from_text(rel, self.zone.origin)
            for type_text in dict.fromkeys(t.split(" ", 1)[0] for t in self.records[rel]):
                rds = self._get_rdataset(name, dns.rdatatype.from_text(type_text), None)
                if rds is not None:
                    yield name, rds

    def _iterate_names(self) -> Iterator[dns.name.Name]:
        for rel in list(self.records):
            yield dns.name.from_text(rel, self.zone.origin)

    def _get_node(self, name: dns.name.Name) -> dns.node.Node | None:
        texts = self.records.get(self._rel(name))
        if not texts:
            return None
        node = dns.node.Node()  # type: ignore[no-untyped-call]
        for type_text in dict.fromkeys(t.split(" ", 1)[0] for t in texts):
            rds = self._get_rdataset(name, dns.rdatatype.from_text(type_text), None)
            if rds is not None:
                node.replace_rdataset(rds)
        return node


class StoreBackedZone(dns.transaction.TransactionManager):
    """A transaction manager over one RPZ zone whose base is the store's live generation.

    ``base`` maps relative owners to record texts and ``serial`` is the live serial (or
    ``None`` to force AXFR). A committed writer leaves ``(records, soa)`` in
    ``committed``; nothing touches the store until the sync engine stores the generation.
    """

    def __init__(self, origin: dns.name.Name, base: Records, serial: int | None) -> None:
        self.origin = origin
        self.base = base
        self.soa: dns.rdataset.Rdataset | None = None
        if serial is not None:
            self.soa = dns.rdataset.from_text(
                dns.rdataclass.IN, dns.rdatatype.SOA, 0, f". . {serial} 0 0 0 0"
            )
        self.committed: tuple[Records, dns.rdataset.Rdataset | None] | None = None

    def reader(self) -> dns.transaction.Transaction:
        return _Txn(self, False, True)

    def writer(self, replacement: bool = False) -> dns.transaction.Transaction:
        return _Txn(self, replacement, False)

    def origin_information(self) -> tuple[dns.name.Name, bool, dns.name.Name]:
        return self.origin, False, self.origin

    def get_class(self) -> dns.rdataclass.RdataClass:
        return dns.rdataclass.IN


def _serial_int(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) < 2**32 else None


async def _xfr(spec: FeedSpec, zone: StoreBackedZone, serial: int | None) -> None:
    keyring = keyname = None
    algorithm: Any = dns.tsig.default_algorithm
    if spec.tsig is not None:
        keyname = dns.name.from_text(spec.tsig.name)
        algorithm = dns.name.from_text(spec.tsig.algorithm)
        keyring = {keyname: dns.tsig.Key(keyname, spec.tsig.secret, algorithm)}
    query, _ = dns.xfr.make_query(
        zone,
        serial=serial,
        keyring=keyring,
        keyname=keyname,
        keyalgorithm=algorithm,
    )
    await dns.asyncquery.inbound_xfr(
        spec.server,
        zone,
        query=query,
        port=spec.port,
        timeout=spec.read_timeout,
        lifetime=spec.deadline,
    )


async def transfer(spec: FeedSpec, base: Records, *, previous_serial: str) -> RpzTransfer:
    """Pull the zone (IXFR from ``previous_serial`` when possible); raise ``FeedError``."""
    if not spec.server or not spec.zone:
        raise FeedError(spec.name, "rpz feed needs server and zone")
    origin = dns.name.from_text(spec.zone)
    prev = _serial_int(previous_serial)
    use_ixfr = spec.ixfr and prev is not None and bool(base)
    for incremental in (True, False) if use_ixfr else (False,):
        zone = StoreBackedZone(origin, base if incremental else {}, prev if incremental else None)
        try:
            await _xfr(spec, zone, 0 if incremental else None)
        except dns.xfr.SerialWentBackwards as exc:
            raise FeedError(spec.name, "zone serial went backwards (rollback refused)") from exc
        except (dns.transaction.DeleteNotExact, dns.exception.FormError):
            if incremental:
                continue  # the base does not match the upstream's view: take a full copy
            raise FeedError(spec.name, "malformed zone transfer") from None
        except dns.xfr.TransferError as exc:
            raise FeedError(spec.name, f"transfer refused ({exc.rcode!s})") from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise FeedError(spec.name, f"transfer failed: {exc.__class__.__name__}") from exc
        if zone.committed is None:
            return RpzTransfer(None, previous_serial, incremental)
        records, soa = zone.committed
        if soa is None:
            raise FeedError(spec.name, "transfer without SOA")
        new_serial = int(soa[0].serial)
        if prev is not None:
            if dns.serial.Serial(new_serial) < dns.serial.Serial(prev):
                raise FeedError(spec.name, "zone serial went backwards (rollback refused)")
            if new_serial == prev:
                return RpzTransfer(None, str(new_serial), incremental)
        return RpzTransfer(records, str(new_serial), incremental, len(records))
    raise FeedError(spec.name, "transfer failed")
