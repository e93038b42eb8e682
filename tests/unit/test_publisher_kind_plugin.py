"""A publisher kind defined in one module (this one) and registered with one line is read
from a config file, built by the RPZ enforcer and handed every release: nothing else in
the package names it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal, Self

import pytest

from edgeagent.config import Settings, load_config
from edgeagent.enforcement.base import EnforcerContext
from edgeagent.metrics import Metrics
from edgeagent.model import Action, DesiredState, Entry, Indicator, Scope
from edgeagent.rpz.enforcer import RpzEnforcer, RpzEnforcerConfig
from edgeagent.rpz.publishers.base import (
    CanaryResult,
    Publisher,
    PublisherConfig,
    PublisherContext,
    ZoneRelease,
)
from edgeagent.rpz.publishers.kinds import PUBLISHER_KINDS

RELEASES: list[tuple[str, int, str]] = []


class MemoryConfig(PublisherConfig):
    kind: Literal["memory"]
    label: str = "memory"


class MemoryPublisher(Publisher[str]):
    """Keeps the policy zone text in memory; verifies nothing."""

    KIND: ClassVar[str] = "memory"
    Config: ClassVar[type[PublisherConfig]] = MemoryConfig

    def __init__(self, name: str, label: str) -> None:
        super().__init__(name)
        self.label = label

    @classmethod
    def from_config(cls, name: str, config: PublisherConfig, context: PublisherContext) -> Self:
        assert isinstance(config, MemoryConfig)
        return cls(name, config.label)

    def prepare(self, release: ZoneRelease) -> str:
        return "".join(release.policy_text())

    def apply(self, prepared: str) -> None:
        RELEASES.append((self.label, 0, prepared))

    def verify(self, release: ZoneRelease) -> tuple[CanaryResult, ...]:
        label, _, text = RELEASES[-1]
        RELEASES[-1] = (label, release.serial, text)
        return ()


@pytest.fixture
def memory_kind() -> Iterator[None]:
    PUBLISHER_KINDS.register(MemoryPublisher)  # the one registry line
    RELEASES.clear()
    yield
    PUBLISHER_KINDS.unregister("memory")


def test_a_publisher_kind_from_one_module_is_configured_built_and_used(
    memory_kind: None, tmp_path: Path
) -> None:
    config = tmp_path / "edgeagent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n\n'
        '[publishers.mem]\nkind = "memory"\nlabel = "from-config"\n',
        encoding="utf-8",
    )
    settings: Settings = load_config(config)
    sections = settings.sections(RpzEnforcerConfig)
    assert isinstance(sections.publishers["mem"], MemoryConfig)

    context = EnforcerContext(tmp_path / "state", Metrics())
    enforcer = RpzEnforcer.from_config(sections, context)
    blocked = Entry(Indicator.parse(Scope.DOMAIN, "listed.example"), Action.BLOCK, "hotline")
    outcome = asyncio.run(enforcer.publish(DesiredState(1, (blocked,), ())))

    assert outcome.ok, outcome
    [(label, serial, text)] = RELEASES
    assert label == "from-config"
    assert serial > 0
    assert "listed.example" in text


def test_an_unknown_kind_names_the_key_and_the_registered_kinds(
    memory_kind: None, tmp_path: Path
) -> None:
    config = tmp_path / "edgeagent.toml"
    config.write_text('[publishers.mem]\nkind = "memroy"\n', encoding="utf-8")
    with pytest.raises(Exception, match=r"publishers\.mem\.kind") as exc:
        load_config(config)
    assert "memory" in str(exc.value)
