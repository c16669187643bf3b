"""Typed, frozen algorithm configurations, merged and checked in one place.

Each algorithm declares its hyperparameters once, as a frozen dataclass whose
fields carry the defaults, the types and the allowed values::

    @dataclasses.dataclass(frozen=True)
    class ReinforceConfig(Config):
        name: ClassVar[str] = "reinforce"
        num_envs: int = option(8, positive)
        discount: float = option(0.99, unit_interval)
        hidden: tuple[int, ...] = (64, 64)

Constructing one checks every field (``ReinforceConfig(num_envs=0)`` raises
:class:`ConfigError` with a one-line message naming the field, the value and what
is allowed) and converts the lenient spellings JSON, the command line and NumPy
produce: an ``int`` where a ``float`` is declared, a list where a tuple is, a JSON
object where a ``dict[str, T]`` is (held as a :class:`FrozenDict`: configs are
frozen and hashed), NumPy numbers. An ``int`` field takes no float (``2.0`` included), a ``bool`` field
nothing but ``true``/``false``, and a ``float`` field no NaN or infinity.
:func:`resolve` is the one merge: the class's defaults, then each layer of
overrides in order (a ``TUNED[env]`` entry, then the user's), where an unknown
key is an error naming the allowed ones.

>>> import dataclasses
>>> @dataclasses.dataclass(frozen=True)
... class Demo(Config):
...     name: ClassVar[str] = "demo"
...     lr: float = option(0.1, positive)
>>> resolve(Demo, {"lr": 1}).lr
1.0
>>> try:
...     resolve(Demo, {"lr": "abc"})
... except ConfigError as err:
...     print(err)
demo config: lr must be a finite float, got 'abc'
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import numbers
import types
import typing
from collections.abc import Mapping
from typing import Any, Callable, ClassVar, Literal, NamedTuple, TypeVar

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """An invalid option; the message is one line naming the valid choices."""


class Check(NamedTuple):
    """A constraint on one field's value beyond its type, and how a message describes it."""

    holds: Callable[[Any], bool]
    description: str


positive = Check(lambda x: x > 0, "> 0")
non_negative = Check(lambda x: x >= 0, ">= 0")
unit_interval = Check(lambda x: 0 < x <= 1, "in (0, 1]")  # a discount γ or a GAE λ
fraction = Check(lambda x: 0 <= x <= 1, "in [0, 1]")
positive_sizes = Check(lambda xs: all(x > 0 for x in xs), "a list of positive layer sizes")


class FrozenDict(Mapping):
    """An immutable, hashable ``dict``: the value of a ``dict[str, T]`` field (a config is frozen and hashable)."""

    def __init__(self, *args, **kwargs):
        self._data = dict(*args, **kwargs)

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return repr(self._data)


def option(default, check: Check | None = None):
    """A config field with ``default`` and an optional :class:`Check` (``None`` always passes it)."""
    return dataclasses.field(default=default, metadata={"check": check})


@dataclasses.dataclass(frozen=True)
class Config:
    """Base of every algorithm's config: fields are checked and normalised at construction."""

    name: ClassVar[str] = "algorithm"

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _convert(self.name, f.name, hints[f.name], getattr(self, f.name))
            check = f.metadata.get("check")
            if check is not None and value is not None and not check.holds(value):
                raise ConfigError(f"{self.name} config: {f.name} must be {check.description}, got {value!r}")
            object.__setattr__(self, f.name, value)

    def to_dict(self) -> dict:
        """Field name → value (what ``config.json`` records; tuples become JSON lists there, a
        :class:`FrozenDict` a plain ``dict``)."""
        plain = lambda v: dict(v) if isinstance(v, FrozenDict) else v  # noqa: E731
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def resolve(cls: type[C], *layers: Mapping | Config | None) -> C:
    """``cls``'s defaults updated by each layer in turn; the one place configs are merged.

    A layer is a dict of overrides, a ``cls`` instance (all of its fields) or ``None`` (skipped).
    Raises :class:`ConfigError` for an unknown key or a value of the wrong type or range.
    """
    present = [layer for layer in layers if layer is not None]
    if len(present) == 1 and type(present[0]) is cls:
        return present[0]  # checked when it was made; it may hold a swept field's traced value (:func:`traced`)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict = {}
    for layer in layers:
        if layer is None:
            continue
        if isinstance(layer, Config):
            if not isinstance(layer, cls):
                raise ConfigError(f"{cls.name}: expected a {cls.__name__}, got a {type(layer).__name__}")
            layer = layer.to_dict()
        elif not isinstance(layer, Mapping):
            raise ConfigError(f"{cls.name}: a config is a {cls.__name__} or a dict, got {type(layer).__name__}")
        for key in layer:
            if key not in names:
                raise ConfigError(f"unknown {cls.name} config key {key!r}; choose from: {', '.join(sorted(names))}")
        values.update(layer)
    return cls(**values)


def check_sweep(config: Config, sweep: Mapping) -> dict[str, tuple[float, ...]]:
    """``sweep`` (field name → the values to train with) checked against ``config``, values as floats.

    A swept field must be one of ``config``'s ``float`` fields (an ``int`` or ``tuple`` field sizes arrays or loops,
    which a ``vmap`` cannot vary), given a non-empty list of distinct values, each of which ``config`` accepts: a
    bad one is the :class:`ConfigError` that constructing the config with it raises, naming the field.
    """
    cls = type(config)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(sweep, Mapping) or not sweep:
        raise ConfigError(f"{cls.name}: a sweep is a non-empty dict of field name -> list of values, got {sweep!r}")
    out = {}
    for name, values in sweep.items():
        if name not in names:
            raise ConfigError(f"unknown {cls.name} config key {name!r} in the sweep; choose from: "
                              f"{', '.join(n for n in names if hints[n] is float)}")
        if hints[name] is not float:
            floats = ", ".join(n for n in names if hints[n] is float)
            raise ConfigError(f"{cls.name} config: {name} cannot be swept: only float fields can ({floats})")
        if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__") or not list(values):
            raise ConfigError(f"{cls.name} config: sweep {name} takes a non-empty list of values, got {values!r}")
        checked = tuple(getattr(resolve(cls, config, {name: v}), name) for v in values)
        if len(set(checked)) != len(checked):
            raise ConfigError(f"{cls.name} config: sweep {name} repeats a value ({list(checked)}); give each once")
        out[name] = checked
    return out


def sweep_points(sweep: Mapping) -> list[dict]:
    """The grid of a sweep, ``{field: value}`` per point: the product of the fields' values, the first field
    slowest (``{"a": [1, 2], "b": [3, 4]}``: a=1 b=3, a=1 b=4, a=2 b=3, a=2 b=4)."""
    names = list(sweep)
    return [dict(zip(names, values)) for values in itertools.product(*(sweep[n] for n in names))]


def traced(config: C, values: Mapping[str, Any]) -> C:
    """``config`` with the fields of ``values`` set to them unchecked: inside a ``vmap`` over a sweep they are
    tracers, which no field check can read. Check each concrete value first (:func:`check_sweep`)."""
    out = copy.copy(config)
    for name, value in values.items():
        object.__setattr__(out, name, value)
    return out


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is tuple:
        plural = {int: "integers", float: "floats", bool: "booleans", str: "strings"}
        return f"a list of {plural.get(args[0], _describe(args[0]).removeprefix('an ').removeprefix('a '))}"
    if origin is dict:
        return f"a JSON object whose values are each {_describe(args[1])}"
    if hint is type(None):
        return "null"
    names = {int: "an integer", float: "a finite float", bool: "a boolean (true or false)", str: "a string"}
    return names.get(hint, str(hint))


def _convert(algo: str, name: str, hint, value):
    """``value`` as the declared type ``hint`` (int → float, list → tuple, JSON object → :class:`FrozenDict`);
    :class:`ConfigError` if it is not one."""

    def fail():
        raise ConfigError(f"{algo} config: {name} must be {_describe(hint)}, got {value!r}")

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(algo, name, arg, value)
            except ConfigError:
                pass
        fail()
    if origin is Literal:
        if not any(value == a and type(value) is type(a) for a in args):
            fail()
        return value
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            fail()
        assert len(args) == 2 and args[1] is Ellipsis, f"{name}: only tuple[T, ...] fields are supported"
        try:
            return tuple(_convert(algo, name, args[0], x) for x in value)
        except ConfigError:
            fail()
    if origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            fail()
        return FrozenDict({k: _convert(algo, f"{name}[{k!r}]", args[1], v) for k, v in value.items()})
    if hint is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            fail()
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            fail()
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            fail()
        return value
    raise TypeError(f"{algo} config: field {name} has an unsupported type {hint!r}")
