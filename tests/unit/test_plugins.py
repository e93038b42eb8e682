"""The plug-in registry: kinds assembled into the config model, old names, key paths."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import pytest
from pydantic import Field, ValidationError

from edgeagent.configtypes import ConfigModel, Name, Port
from edgeagent.plugins import PluginConfig, PluginField, Registry, concrete_model, rename_old_kinds


class WidgetConfig(PluginConfig):
    kind: str


class Widget:
    KIND: ClassVar[str]
    Config: ClassVar[type[PluginConfig]]


WIDGETS: Registry[type[Widget]] = Registry("widget")  # type: ignore[type-var]


class RoundConfig(WidgetConfig):
    kind: Literal["round"]
    radius: int = 1


class Round(Widget):
    KIND = "round"
    Config = RoundConfig


class SquareConfig(WidgetConfig):
    kind: Literal["square"]
    port: Port = 53


class Square(Widget):
    KIND = "square"
    Config = SquareConfig


class Inner(ConfigModel):
    main: Annotated[WidgetConfig | None, PluginField(WIDGETS, "optional")] = None


class Root(ConfigModel):
    widgets: Annotated[dict[Name, WidgetConfig], PluginField(WIDGETS, "dict")] = Field(
        default_factory=dict
    )
    listed: Annotated[tuple[WidgetConfig, ...], PluginField(WIDGETS, "tuple")] = ()
    inner: Inner = Inner()


@pytest.fixture(autouse=True)
def _kinds():
    WIDGETS.register(Round, aliases=("circle",))  # type: ignore[arg-type]
    yield
    for kind in WIDGETS.kinds():
        WIDGETS.unregister(kind)


def test_one_kind_validates_without_a_union():
    model = concrete_model(Root)
    root = model.model_validate({"widgets": {"a": {"kind": "round", "radius": 3}}})
    assert isinstance(root, Root)
    assert isinstance(root.widgets["a"], RoundConfig)
    assert root.widgets["a"].radius == 3


def test_a_kind_registered_later_is_picked_up_everywhere():
    WIDGETS.register(Square)  # type: ignore[arg-type]
    model = concrete_model(Root)
    root = model.model_validate(
        {
            "widgets": {"a": {"kind": "square", "port": 5353}},
            "listed": [{"kind": "round"}, {"kind": "square"}],
            "inner": {"main": {"kind": "square"}},
        }
    )
    assert isinstance(root.widgets["a"], SquareConfig)
    assert [type(w) for w in root.listed] == [RoundConfig, SquareConfig]
    assert isinstance(root.inner.main, SquareConfig)
    assert WIDGETS.plugin(root.widgets["a"]) is Square


def test_errors_keep_the_key_path_and_the_allowed_kinds():
    WIDGETS.register(Square)  # type: ignore[arg-type]
    model = concrete_model(Root)
    with pytest.raises(ValidationError) as exc:
        model.model_validate({"widgets": {"a": {"kind": "square", "port": 0}}})
    assert exc.value.errors()[0]["loc"] == ("widgets", "a", "square", "port")
    with pytest.raises(ValidationError) as exc:
        model.model_validate({"widgets": {"a": {"kind": "hexagon"}}})
    err = exc.value.errors()[0]
    assert err["type"] == "union_tag_invalid"
    assert "round" in str(err["ctx"]["expected_tags"])


def test_old_kind_names_are_rewritten_with_a_warning_naming_the_key():
    data = {"widgets": {"a": {"kind": "circle"}}, "inner": {"main": {"kind": "circle"}}}
    warnings = rename_old_kinds(concrete_model(Root), data)
    assert [w.path for w in warnings] == ["widgets.a.kind", "inner.main.kind"]
    assert "round" in warnings[0].reason
    root = concrete_model(Root).model_validate(data)
    assert isinstance(root.widgets["a"], RoundConfig)


def test_a_plugin_whose_config_does_not_name_its_kind_is_refused():
    class Wrong(Widget):
        KIND = "wrong"
        Config = RoundConfig

    with pytest.raises(TypeError, match="Literal"):
        WIDGETS.register(Wrong)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="twice"):
        WIDGETS.register(Round)  # type: ignore[arg-type]
