"""The shipped systemd unit, sysusers.d and tmpfiles.d files, checked by systemd itself.

systemd is not PID 1 on the test machine, so the unit cannot be started; instead
``systemd-analyze verify`` checks it (on a copy whose ExecStart names a binary that
exists, because verify fails on a missing one) and ``systemd-analyze security --offline``
scores its sandbox. sysusers.d and tmpfiles.d are applied to a throw-away root directory.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.binaries import require_binary
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "edgeagent.service"
SYSUSERS = ROOT / "systemd" / "edgeagent.sysusers.conf"
TMPFILES = ROOT / "systemd" / "edgeagent.tmpfiles.conf"
# The same directories, as `edgeagent render` writes them for the example inventory.
RENDERED_TMPFILES = ROOT / "resolvers" / "fleet" / "agent" / "edgeagent.tmpfiles.conf"

# Exposure score limit (0 = fully sandboxed, 10 = unprotected). The unit scores 2.2 on
# systemd 252; the three network capabilities and AF_PACKET are what keep it above ~1.5.
MAX_EXPOSURE = 3.0


def _unit_settings() -> dict[str, list[str]]:
    """Key -> every value assigned in the shipped unit (comments skipped)."""
    settings: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """A copy of the unit whose ExecStart points at the venv's real edgeagent script."""
    agent = Path(sys.executable).parent / "edgeagent"
    assert agent.is_file(), f"{agent} missing: run `pip install -e .` (./dev test does)"
    text = UNIT.read_text()
    rewritten, count = re.subn(
        r"^ExecStart=\S+", f"ExecStart={agent}", text, count=1, flags=re.MULTILINE
    )
    assert count == 1, "unit has no ExecStart= line"
    copy = tmp_path / UNIT.name
    copy.write_text(rewritten)
    return copy


def test_unit_declares_the_contract() -> None:
    settings = _unit_settings()
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "User": "edgeagent",
        "Group": "edgeagent",
        "StateDirectory": "edgeagent",
        "StateDirectoryMode": "0700",
        "RuntimeDirectory": "edgeagent",
        "ConfigurationDirectory": "edgeagent",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "UMask": "0077",
        "SystemCallFilter": "@system-service",
    }
    for key, value in expected.items():
        assert settings.get(key) == [value], key
    caps = {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"}
    assert set(settings["AmbientCapabilities"][0].split()) == caps
    assert set(settings["CapabilityBoundingSet"][0].split()) == caps
    families = set(settings["RestrictAddressFamilies"][0].split())
    assert {"AF_NETLINK", "AF_PACKET", "AF_UNIX", "AF_INET", "AF_INET6"} == families


def test_systemd_analyze_verify_passes(verifiable_unit: Path) -> None:
    analyze = require_binary("systemd-analyze")
    result = subprocess.run(
        [analyze, "verify", str(verifiable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    ours = [line for line in output.splitlines() if "edgeagent" in line]
    assert ours == [], "\n".join(ours)


def test_security_exposure_is_low(verifiable_unit: Path) -> None:
    analyze = require_binary("systemd-analyze")
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(verifiable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_COLORS": "0"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match is not None, result.stdout
    score = float(match.group(1))
    print(f"systemd-analyze security exposure: {score}")
    assert score < MAX_EXPOSURE, result.stdout


def _fake_root(tmp_path: Path) -> Path:
    """A root directory with only the accounts the shared directories refer to."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nbind:x:108:108::/var/cache/bind:/usr/sbin/nologin\n"
        "proxy:x:13:13:proxy:/bin:/usr/sbin/nologin\n"
    )
    (root / "etc" / "group").write_text("root:x:0:\nproxy:x:13:\nbind:x:108:\n")
    return root


def test_sysusers_creates_the_service_account(tmp_path: Path) -> None:
    sysusers = require_binary("systemd-sysusers")
    root = _fake_root(tmp_path)
    result = subprocess.run(
        [sysusers, f"--root={root}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    account = [
        line.split(":")
        for line in (root / "etc" / "passwd").read_text().splitlines()
        if line.startswith("edgeagent:")
    ]
    assert len(account) == 1
    assert account[0][5] == "/var/lib/edgeagent"
    assert account[0][6].endswith("nologin")
    assert any(line.startswith("edgeagent:") for line in (root / "etc" / "group").open())


@pytest.mark.parametrize(
    "tmpfiles_conf", [TMPFILES, RENDERED_TMPFILES], ids=["shipped", "rendered"]
)
def test_tmpfiles_creates_setgid_shared_directories(tmp_path: Path, tmpfiles_conf: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root: systemd-tmpfiles must chown the directories it creates")
    sysusers = require_binary("systemd-sysusers")
    tmpfiles = require_binary("systemd-tmpfiles")
    root = _fake_root(tmp_path)
    subprocess.run([sysusers, f"--root={root}", str(SYSUSERS)], check=True, timeout=60)
    result = subprocess.run(
        [tmpfiles, "--create", f"--root={root}", str(tmpfiles_conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    publish = root / "var" / "lib" / "edgeagent-publish"
    top = publish.stat()
    assert stat.S_IMODE(top.st_mode) == 0o751
    # proxy/ is the helpers' too (their counters): group-writable, sticky.
    for name, gid, mode in (("rpz", 108, 0o2750), ("proxy", 13, 0o3770)):
        info = (publish / name).stat()
        assert stat.S_IMODE(info.st_mode) == mode, name
        assert info.st_gid == gid, name
        assert info.st_uid == top.st_uid != 0, name


def _unit_capabilities() -> str:
    """The unit's ambient capabilities in setpriv's syntax: ``-all,+net_admin,...``."""
    caps = _unit_settings()["AmbientCapabilities"][0].split()
    return ",".join(["-all", *(f"+{cap.removeprefix('CAP_').lower()}" for cap in caps)])


# CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13): linux/capability.h.
_UNIT_CAP_MASK = (1 << 10) | (1 << 12) | (1 << 13)


def _proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _receive(sock: socket.socket, want: bytes, deadline: float) -> list[bytes]:
    """Datagrams from the notify socket until one contains ``want`` (or time runs out)."""
    seen: list[bytes] = []
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            message = sock.recv(4096)
        except TimeoutError:
            break
        seen.append(message)
        if want in message.split(b"\n"):
            return seen
    raise AssertionError(f"no {want!r} from the daemon; got {seen!r}")


def test_daemon_honours_the_units_notify_watchdog_reload_and_stop(tmp_path: Path) -> None:
    """Run the real daemon the way the unit does, as far as this machine allows.

    No systemd here, so the test plays its part: a notify socket (Type=notify,
    NotifyAccess=main), WATCHDOG_USEC/WATCHDOG_PID (WatchdogSec=), SIGHUP (ExecReload=),
    SIGTERM (stop); the process gets only the unit's capabilities, no_new_privs and
    UMask=0077. It stays uid 0 because this machine's Python lives under /root (0700).
    """
    setpriv = require_binary("setpriv")
    agent = Path(sys.executable).parent / "edgeagent"
    state = tmp_path / "state"
    config = tmp_path / "edgeagent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{state}"\n'
        f"[api]\nport = {free_port(udp=False)}\n"
        f"[metrics]\nport = {free_port(udp=False)}\n"
    )
    notify_path = tmp_path / "notify"
    caps = _unit_capabilities()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify_path))
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(notify_path),
            "WATCHDOG_USEC": "1000000",  # ask for WATCHDOG=1 every 0.5 s
        }
        # systemd sets WATCHDOG_PID to the main process; `exec` keeps the shell's pid.
        proc = subprocess.Popen(
            [
                "/bin/sh",
                "-c",
                'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$@"',
                "sh",
                setpriv,
                "--no-new-privs",
                f"--bounding-set={caps}",
                f"--inh-caps={caps}",
                f"--ambient-caps={caps}",
                "--",
                str(agent),
                "run",
                "-c",
                str(config),
            ],
            env=env,
            umask=0o077,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 30
            _receive(sock, b"READY=1", deadline)
            status = _proc_status(proc.pid)
            assert status["NoNewPrivs"] == "1"
            assert int(status["CapBnd"], 16) == _UNIT_CAP_MASK
            assert int(status["CapAmb"], 16) == _UNIT_CAP_MASK
            _receive(sock, b"WATCHDOG=1", time.monotonic() + 5)
            proc.send_signal(signal.SIGHUP)
            _receive(sock, b"RELOADING=1", time.monotonic() + 10)
            _receive(sock, b"READY=1", time.monotonic() + 10)
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, stderr.decode(errors="replace")
    store_files = [path for path in state.iterdir() if path.is_file()]
    assert store_files, "the daemon created no store"
    for path in store_files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path.name
