"""Plug-in families: one registry of kinds per family; each kind brings its own config.

A *family* (feed kinds, RPZ publishers, enforcers, notifiers, customer sources, store
backends) is a package whose ``base.py`` docstring is the contract and which creates one
:class:`Registry`. A *plug-in* is a class with

* ``KIND`` -- the value of the family's selector key (``kind``; ``backend`` for store
  backends) that selects it in the config file;
* ``Config`` -- its own config model, a :class:`PluginConfig` whose selector field is
  ``Literal[KIND]``; the model checks everything that concerns the plug-in alone;
* a ``from_config`` constructor whose signature the family's contract defines.

Adding a kind is one new module and one registry line (``REGISTRY.register(MyPlugin)``,
in the family's list of kinds). A section model names the place where kinds of a family
are configured with :class:`PluginField` metadata::

    publishers: Annotated[dict[Name, PublisherConfig], PluginField(PUBLISHERS, "dict")]

The root settings model is assembled from the registries when a config is loaded
(:func:`concrete_model`): every ``PluginField`` becomes the discriminated union of the
registered config models, so a kind registered at run time (a test's) is picked up, and
pydantic's errors keep the full key path (``publishers.main.server``). Old spellings of a
kind (``aliases``) are rewritten before validation by :func:`rename_old_kinds`, which
returns a deprecation warning per use, naming the key.

Every command imports the config, so every family's kinds and every plug-in module: keep
command start-up cheap by importing at module level only what the config model and the
registration need. A library used only at run time (aiohttp, dnspython, cryptography) is
imported inside the functions that use it, with an ``if TYPE_CHECKING:`` import for
annotations, or the run-time part is a module of its own (:mod:`edgeagent.feeds.rpz_transfer`).
``tests/unit/test_startup_imports.py`` checks it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Generic, Literal, Protocol, TypeVar, Union, get_args

from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from edgeagent.configtypes import ConfigModel, Items, Name
from edgeagent.errors import ConfigProblem, EdgeAgentError


class PluginConfig(ConfigModel):
    """Base of a plug-in's own config model. Its selector field (``kind`` unless the
    family's registry says otherwise) is declared by each plug-in as ``Literal[KIND]``."""


class Plugin(Protocol):
    """What a registry needs of a plug-in class.

    ``Config`` is a :class:`PluginConfig` subclass; it is typed ``type[Any]`` because a
    family's base narrows it to its own config base (``type[FeedConfig]``), which a
    protocol's class variable (invariant) would refuse.
    """

    KIND: ClassVar[str]
    Config: ClassVar[type[Any]]


P = TypeVar("P", bound=Plugin)
M = TypeVar("M", bound=BaseModel)
C = TypeVar("C", bound=PluginConfig)


class UnknownKind(EdgeAgentError):
    """A config whose ``kind`` no registered plug-in has (a bug: validation prevents it)."""


def own_config(config: PluginConfig, model: type[C]) -> C:
    """``config`` as the plug-in's own model, for its ``from_config`` (the registry chose
    the plug-in by this model, so anything else is a bug)."""
    if not isinstance(config, model):
        raise TypeError(f"expected {model.__name__}, got {type(config).__name__}")
    return config


class Registry(Generic[P]):
    """The kinds of one family, in registration order."""

    _generation: ClassVar[int] = 0  # bumped on every registration: invalidates models

    def __init__(self, family: str, *, key: str | None = "kind") -> None:
        self.family = family
        # The config key whose value selects a kind; None for a family whose kinds are
        # all present at once, each with its own sections (enforcers).
        self.key = key
        self._kinds: dict[str, type[P]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, plugin: type[P], *, aliases: Sequence[str] = ()) -> type[P]:
        """Add ``plugin`` (usable as a class decorator); ``aliases`` are old spellings."""
        kind = plugin.KIND
        if self.key is not None:
            field = plugin.Config.model_fields.get(self.key)
            if field is None or get_args(field.annotation) != (kind,):
                raise TypeError(f"{plugin.__name__}.Config.{self.key} must be Literal[{kind!r}]")
        if kind in self._kinds or kind in self._aliases:
            raise TypeError(f"{self.family} kind {kind!r} registered twice")
        self._kinds[kind] = plugin
        for old in aliases:
            self._aliases[old] = kind
        Registry._generation += 1
        return plugin

    def unregister(self, kind: str) -> None:
        """Remove a kind (tests that register one of their own clean up with this)."""
        self._kinds.pop(kind, None)
        for old in [a for a, k in self._aliases.items() if k == kind]:
            del self._aliases[old]
        Registry._generation += 1

    def kinds(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def __iter__(self) -> Iterator[type[P]]:
        return iter(tuple(self._kinds.values()))

    def plugin(self, config: PluginConfig) -> type[P]:
        """The plug-in class that ``config`` configures."""
        kind = getattr(config, self.key, None) if self.key is not None else None
        try:
            return self._kinds[str(kind)]
        except KeyError:
            raise UnknownKind(f"no {self.family} kind {kind!r}") from None

    def canonical(self, kind: str) -> str | None:
        """The current name for ``kind`` if it is an old spelling, else ``None``."""
        return self._aliases.get(kind)

    def config_union(self) -> Any:
        """The discriminated union of the registered config models (for pydantic)."""
        models = tuple(p.Config for p in self._kinds.values())
        if not models:
            raise TypeError(f"no {self.family} kind registered")
        if len(models) == 1:
            return models[0]
        return Annotated[Union[models], Field(discriminator=self.key)]  # noqa: UP007


Shape = Literal["one", "optional", "dict", "tuple"]


@dataclass(frozen=True, slots=True)
class PluginField:
    """Metadata on a section field: "configure kinds of ``registry`` here".

    ``shape`` says how: one plug-in, an optional one, a table of named ones, an array.
    """

    registry: Registry[Any]
    shape: Shape


def _plugin_field(info: FieldInfo) -> PluginField | None:
    return next((m for m in info.metadata if isinstance(m, PluginField)), None)


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The section model of a field typed ``Model`` or ``Model | None``, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    args = [a for a in get_args(annotation) if a is not type(None)]
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _shaped(union: Any, shape: Shape) -> Any:
    if shape == "one":
        return union
    if shape == "optional":
        return union | None
    if shape == "dict":
        return dict[Name, union]
    return Items[union]


def _default_of(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return Field(default_factory=info.default_factory)
    return Field(default=info.default)


_models: dict[tuple[type[BaseModel], int, tuple[str, ...]], type[BaseModel]] = {}


def concrete_model(
    model: type[M], extra_fields: Mapping[str, tuple[Any, FieldInfo]] | None = None
) -> type[M]:
    """``model`` with every :class:`PluginField` (also in nested sections) replaced by the
    union of its registry's config models, plus ``extra_fields`` (sections that plug-ins
    add to the root). The result is a subclass, so instances are ``model``s."""
    extra = dict(extra_fields or {})
    key = (model, Registry._generation, tuple(sorted(extra)))
    cached = _models.get(key)
    if cached is not None:
        return cached  # type: ignore[return-value]
    overrides: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        field = _concrete_field(info.annotation, info)
        if field is not None:
            overrides[name] = field
    for name, (annotation, info) in extra.items():
        overrides[name] = _concrete_field(annotation, info) or (annotation, info)
    built: type[M] = (
        create_model(model.__name__, __base__=model, __module__=model.__module__, **overrides)
        if overrides
        else model
    )
    _models[key] = built
    return built


def _concrete_field(annotation: Any, info: FieldInfo) -> tuple[Any, FieldInfo] | None:
    """The field with its kinds' union (or its section's concrete model) in place, or
    ``None`` when nothing in it holds kinds."""
    plug = _plugin_field(info)
    if plug is not None:
        shaped = _shaped(plug.registry.config_union(), plug.shape)
        return Annotated[shaped, plug], _default_of(info)
    section = _section_model(annotation)
    if section is None:
        return None
    concrete = concrete_model(section)
    if concrete is section:
        return None
    return (concrete | None if section is not annotation else concrete), _default_of(info)


def rename_old_kinds(
    model: type[BaseModel], data: MutableMapping[str, Any], path: str = ""
) -> list[ConfigProblem]:
    """Rewrite old spellings of ``kind`` in raw config ``data`` (in place) to the current
    ones; one deprecation warning per rewrite, naming the key. ``data`` is what the TOML
    parser gave (validation comes after, on the rewritten data)."""
    warnings: list[ConfigProblem] = []
    for name, info in model.model_fields.items():
        value = data.get(name)
        key = f"{path}.{name}" if path else name
        plug = _plugin_field(info)
        selector = plug.registry.key if plug is not None else None
        if plug is not None and selector is not None:
            for item_key, item in _items(value, plug.shape, key):
                kind = item.get(selector)
                new = plug.registry.canonical(kind) if isinstance(kind, str) else None
                if new is not None:
                    item[selector] = new
                    reason = f'"{kind}" is an old name; write "{new}"'
                    warnings.append(ConfigProblem(f"{item_key}.{selector}", reason))
            continue
        section = _section_model(info.annotation)
        if section is not None and isinstance(value, MutableMapping):
            warnings.extend(rename_old_kinds(section, value, key))
    return warnings


def _items(value: Any, shape: Shape, key: str) -> Iterator[tuple[str, MutableMapping[str, Any]]]:
    if shape in ("one", "optional") and isinstance(value, MutableMapping):
        yield key, value
    elif shape == "dict" and isinstance(value, MutableMapping):
        for name, item in value.items():
            if isinstance(item, MutableMapping):
                yield f"{key}.{name}", item
    elif shape == "tuple" and isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, MutableMapping):
                yield f"{key}[{i}]", item
