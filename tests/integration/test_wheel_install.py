"""The wheel, installed as an operator installs it, works away from the repository.

The test builds the wheel (``pip wheel --no-build-isolation``, no network), installs it
with ``--no-deps`` into a fresh venv whose dependencies come from this venv through a
``.pth`` file, and runs the console scripts from a temporary directory with no
PYTHONPATH: every bundled file (sample feeds, protected names, resolver and proxy
snippets, the prefilter sources) must come from the installed package.

- ``edgeagent check-config`` and ``edgeagent run`` on the embedded defaults. Those listen
  on the fixed ports 127.0.0.1:8640/9640, so the daemon runs in a network namespace of
  its own (``unshare --net``; root), where those ports are always free; the probe enters
  it with ``nsenter``.
- ``edgeagent lab`` until every resolver's and the proxy's canary is good: Squid runs
  the installed helper and a prefilter built from the packaged sources.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.binaries import require_binary
from tests.support.polling import wait_for
from tests.support.samples import SAMPLES, inline_expectations, sidecar_expectations

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# The embedded defaults' feeds and the sample each one reads.
DEFAULT_FEEDS = {
    "hotline-sample": sidecar_expectations(SAMPLES / "hotline-urls.csv"),
    "police-sample": inline_expectations(SAMPLES / "police-domains.txt"),
}
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
DEFAULT_METRICS = "http://127.0.0.1:9640"
DEFAULT_API = "http://127.0.0.1:8640"

# Runs inside the daemon's namespace: wait for /readyz, then for every feed's first sync;
# print the feeds as /v1/feeds returns them.
_PROBE = """
import json, sys, time, urllib.request
metrics, api, token, deadline = sys.argv[1], sys.argv[2], sys.argv[3], time.monotonic() + 30
last = None
def get(url, headers={}):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2) as r:
        return r.status, r.read()
while True:
    try:
        if get(metrics + "/readyz")[0] == 200:
            feeds = json.loads(get(api + "/v1/feeds", {"Authorization": "Bearer " + token})[1])
            if all(f["last_success"] for f in feeds["feeds"].values()):
                print(json.dumps(feeds)); break
    except OSError as exc:
        last = exc
    if time.monotonic() > deadline:
        sys.exit(f"no ready daemon with synced feeds within 30 s (last: {last!r})")
    time.sleep(0.2)
"""


@dataclass(frozen=True)
class Installed:
    """A venv holding only the wheel, and a working directory away from the repository."""

    venv: Path
    workdir: Path

    @property
    def agent(self) -> str:
        return str(self.venv / "bin" / "edgeagent")

    def env(self, **extra: str) -> dict[str, str]:
        """The caller's environment without anything that points into the repository."""
        drop = {"PYTHONPATH", "VIRTUAL_ENV", "EDGEAGENT_CONFIG", "EDGEAGENT_STATE_DIR"}
        return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.agent, *args],
            cwd=self.workdir,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    # Not under pytest's 0700 tmp tree: Squid's helper (user proxy) runs this venv's code.
    base = Path(tempfile.mkdtemp(prefix="edgeagent-wheel-"))
    base.chmod(0o711)
    try:
        dist = base / "dist"
        subprocess.run(
            [*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(REPO)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        (wheel,) = dist.glob("edgeagent-*.whl")
        venv = base / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        python = venv / "bin" / "python"
        subprocess.run(
            [*PIP, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # The dependencies only: this venv's editable edgeagent comes from a .pth file in
        # it, which a directory added this way does not process.
        Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        workdir = base / "work"
        workdir.mkdir()
        yield Installed(venv, workdir)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_package_and_its_bundled_files_come_from_the_venv(installed: Installed) -> None:
    code = (
        "import edgeagent, edgeagent.bundled as b, edgeagent.config as c, "
        "edgeagent.lab.proxy as p; "
        "print(edgeagent.__file__, b.BUNDLED_ROOT, c.BUNDLED_LISTS_DIR, p.PREFILTER_DIR)"
    )
    out = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", code],
        cwd=installed.workdir,
        env=installed.env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    package = Path(out[0]).parent
    assert package.is_relative_to(installed.venv), out
    bundled = package / "_bundled"
    assert [Path(p) for p in out[1:]] == [
        bundled,
        bundled / "blocklists",
        bundled / "prefilter",
    ]
    for shipped in ("blocklists/samples", "blocklists/protected", "resolvers", "prefilter"):
        mine = sorted(p.relative_to(REPO) for p in (REPO / shipped).rglob("*") if p.is_file())
        theirs = sorted(
            p.relative_to(bundled) for p in (bundled / shipped).rglob("*") if p.is_file()
        )
        # The checkout may hold the prefilter's build output; the wheel never does.
        assert theirs == [p for p in mine if "build" not in p.parts], shipped


def test_check_config_and_run_on_the_embedded_defaults(installed: Installed) -> None:
    require_binary("unshare")
    require_binary("nsenter")
    if os.geteuid() != 0:
        pytest.fail("needs root: the daemon runs in a network namespace of its own")
    state = installed.workdir / "state"
    checked = installed.run("check-config", EDGEAGENT_STATE_DIR=str(state))
    assert checked.returncode == 0, checked.stderr
    assert "config OK: <embedded defaults>" in checked.stdout
    assert f"state dir   {state}" in checked.stdout
    token = installed.run(
        "token", "create", "--role", "noc", "--name", "wheel", EDGEAGENT_STATE_DIR=str(state)
    )
    assert token.returncode == 0, token.stderr
    secret = token.stdout.split()[-1]

    log_path = installed.workdir / "run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", f'ip link set lo up && exec "{installed.agent}" run'],
            cwd=installed.workdir,
            env=installed.env(EDGEAGENT_STATE_DIR=str(state)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # Popen returns once `unshare` runs, maybe before it has left our namespace.
        netns = f"/proc/{proc.pid}/ns/net"
        wait_for(
            "the daemon's own network namespace",
            lambda: os.readlink(netns) != os.readlink("/proc/self/ns/net"),
        )
        probe_args = [DEFAULT_METRICS, DEFAULT_API, secret]
        probe = subprocess.run(
            ["nsenter", f"--net={netns}", sys.executable, "-c", _PROBE, *probe_args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert probe.returncode == 0, probe.stderr + log_path.read_text(errors="replace")
        feeds = json.loads(probe.stdout)["feeds"]
        assert set(feeds) == set(DEFAULT_FEEDS)
        for name, expected in DEFAULT_FEEDS.items():
            rejected = [r.removeprefix("rejected: ") for r in expected.values() if "rejected" in r]
            assert feeds[name]["last_outcome"] == "live", feeds[name]
            assert feeds[name]["entries"] == len(expected) - len(rejected), feeds[name]
            assert feeds[name]["rejects"] == {r: rejected.count(r) for r in set(rejected)}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log_text = log_path.read_text(errors="replace")
    assert "using the embedded defaults" in log_text
    assert '"msg":"stopped"' in log_text
    assert (state / "edgeagent.sqlite3").is_file()


def _metrics(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def test_lab_runs_from_the_installed_package(installed: Installed) -> None:
    for program in ("named", "unbound", "squid", "sniproxy", "make", "g++"):
        require_binary(program)
    directory = installed.workdir / "lab"
    out_path = installed.workdir / "lab.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [installed.agent, "lab", "--dir", str(directory)],
            cwd=installed.workdir,
            env=installed.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, signalled as a whole below
        )
    try:

        def lab_json() -> dict[str, Any] | None:
            if proc.poll() is not None:
                log = out_path.read_text(errors="replace")
                raise AssertionError(f"lab exited {proc.returncode}:\n{log[-4000:]}")
            path = directory / "lab.json"
            return json.loads(path.read_text()) if path.exists() else None

        info = wait_for("lab.json", lab_json, 90)
        assert f"edgeagent lab ready in {directory}" in out_path.read_text()

        def canaries_ok() -> bool:
            lines = [
                ln
                for ln in _metrics(info["metrics"]).splitlines()
                if ln.startswith(("edgeagent_rpz_canary_ok{", "edgeagent_proxy_canary_ok{"))
            ]
            return len(lines) == len(info["resolvers"]) + 1 and all(
                ln.endswith(" 1.0") for ln in lines
            )

        wait_for("canary ok at every resolver and the proxy", canaries_ok, 30)

        # The sample feeds the lab syncs are the installed package's copies.
        config = Path(info["config"]).read_text()
        bundled = next(installed.venv.rglob("edgeagent/_bundled"))
        assert f'path = "{bundled / "blocklists" / "samples" / "hotline-urls.csv"}"' in config
        request = urllib.request.Request(
            info["api"] + "/v1/feeds", headers={"Authorization": f"Bearer {info['tokens']['noc']}"}
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            feeds = json.loads(resp.read())["feeds"]
        for name, expected in DEFAULT_FEEDS.items():
            accepted = [r for r in expected.values() if not r.startswith("rejected")]
            assert feeds[name]["entries"] == len(accepted), feeds[name]

        # The wheel carries the prefilter's sources only: the lab built the module.
        squid_log = (directory / "squid" / "cache.log").read_text(errors="replace")
        module = directory / "squid" / "prefilter" / "edgeagent-prefilter.so"
        assert f"Loading Squid module from '{module}'" in squid_log

        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert not directory.exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
