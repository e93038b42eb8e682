from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edgeagent.sdnotify import SystemdNotifier, watchdog_interval


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(2)
    return sock


def test_ready_reaches_a_path_socket(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    with _receiver(address) as sock:
        assert SystemdNotifier(address).ready("policy v3 loaded")
        assert sock.recv(4096) == b"READY=1\nSTATUS=policy v3 loaded"


def test_abstract_namespace_address() -> None:
    address = f"@edgeagent-test-{os.getpid()}"
    with _receiver(address) as sock:
        assert SystemdNotifier(address).watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_notify_socket_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert notifier.ready() is False


def test_watchdog_interval_is_half_of_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert watchdog_interval() is None
