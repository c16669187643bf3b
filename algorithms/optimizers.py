"""Optimizers by name, and the one function every algorithm builds its optax transformations with.

The config of an algorithm that takes gradient steps derives from
:class:`OptimizerConfig`: ``optimizer`` names an optax factory of
:data:`OPTIMIZERS` (default ``"adam"``, what every algorithm used before it
could be chosen) and ``optimizer_args`` holds that factory's keyword arguments
other than the learning rate. The learning rate comes from the algorithm's own
fields (``lr``, or ``policy_lr`` and ``value_lr``, ``actor_lr`` and
``critic_lr``, ...): one transformation per parameter group, each with its own
state. Both fields are recorded in ``config.json`` and set from the command line::

    scg train --algo a2c --config optimizer=sgd lr=0.1
    scg train --algo ppo --config optimizer=adamw 'optimizer_args={"weight_decay": 1e-4}'

From Python, ``make(env, env_params, config, optimizer=tx)`` (or
``make_train(..., optimizer=tx)``) takes any optax transformation in place of
the named one: a ``GradientTransformation``, used as given for every parameter
group, or a factory ``learning_rate -> GradientTransformation``, called with
each group's learning rate from the config. Either way the algorithm's own
extras stay in front of it (``clip_by_global_norm`` where the config has
``max_grad_norm``). A transformation object has no JSON form, so ``scg train``
takes names only.

>>> import optax
>>> from scg.algorithms.a2c import A2CConfig
>>> tx = make_optimizer(A2CConfig(optimizer="sgd", optimizer_args={"momentum": 0.9}), 0.1)
>>> tx = make_optimizer(A2CConfig(), 0.1, lambda lr: optax.sgd(lr, momentum=0.9))   # the same, from Python
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
from collections.abc import Iterator, Mapping
from typing import Callable, ClassVar, Literal, Union, get_args

import jax
import optax

from scg.algorithms.config import Config, ConfigError, FrozenDict, option

OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "adam": optax.adam,
    "adamw": optax.adamw,
    "sgd": optax.sgd,
    "rmsprop": optax.rmsprop,
    "adagrad": optax.adagrad,
    "lion": optax.lion,
}
OptimizerName = Literal["adam", "adamw", "sgd", "rmsprop", "adagrad", "lion"]  # the keys of OPTIMIZERS
assert set(get_args(OptimizerName)) == set(OPTIMIZERS)

# A transformation given from Python: used as is, or called with a parameter group's learning rate.
Optimizer = Union[optax.GradientTransformation, Callable[[float], optax.GradientTransformation]]


def optimizer_arguments(name: str) -> tuple[str, ...]:
    """The keyword arguments ``optimizer_args`` may give ``OPTIMIZERS[name]``: all but the learning rate and
    those a JSON value cannot hold (dtypes, masks)."""
    params = inspect.signature(OPTIMIZERS[name]).parameters
    return tuple(p for p in params if p != "learning_rate" and p != "mask" and not p.endswith("_dtype"))


@dataclasses.dataclass(frozen=True)
class OptimizerConfig(Config):
    """The fields of every config whose algorithm takes optax steps: which optimizer, and its arguments."""

    name: ClassVar[str] = "algorithm"
    optimizer: OptimizerName = "adam"
    optimizer_args: dict[str, float | bool] = option(FrozenDict())  # e.g. {"momentum": 0.9} for sgd

    def __post_init__(self):
        super().__post_init__()
        takes = optimizer_arguments(self.optimizer)
        for key in self.optimizer_args:
            if key not in takes:
                raise ConfigError(f"{self.name} config: optimizer_args {key!r} is not an argument of "
                                  f"optax.{self.optimizer}; it takes: {', '.join(takes)}")


def make_optimizer(config: OptimizerConfig, learning_rate: float, optimizer: Optimizer | None = None, *,
          max_grad_norm: float | None = None, defaults: Mapping | None = None) -> optax.GradientTransformation:
    """The transformation of one parameter group: ``clip_by_global_norm(max_grad_norm)`` (unless ``None``),
    then the step itself.

    The step is ``optimizer`` where given (see the module docstring), else
    ``OPTIMIZERS[config.optimizer](learning_rate, **defaults, **config.optimizer_args)``, where ``defaults``
    are the algorithm's own choices (PPO's Adam ``eps=1e-5``), passed to the optimizers that take them;
    ``config.optimizer_args`` wins over them. Raises :class:`ConfigError` when ``optimizer`` is given
    together with a config that names another optimizer or its arguments, ``TypeError`` when ``optimizer``
    is no transformation.
    """
    if optimizer is None:
        takes = optimizer_arguments(config.optimizer)
        kwargs = {k: v for k, v in (defaults or {}).items() if k in takes}
        base = OPTIMIZERS[config.optimizer](learning_rate, **{**kwargs, **config.optimizer_args})
    else:
        base = _given(config, learning_rate, optimizer)
    tx = base if max_grad_norm is None else optax.chain(optax.clip_by_global_norm(max_grad_norm), base)
    axis = _GRADIENT_AXIS.get()
    return tx if axis is None else optax.chain(mean_over_axis(axis), tx)


# The named axis (of a ``vmap`` or a ``shard_map``) over which every transformation built under
# :func:`gradients_averaged_over` averages its gradients first; ``None``: none.
_GRADIENT_AXIS: contextvars.ContextVar[str | None] = contextvars.ContextVar("gradient_axis", default=None)


@contextlib.contextmanager
def gradients_averaged_over(axis_name: str) -> Iterator[None]:
    """While building an algorithm: every :func:`make_optimizer` transformation starts with
    :func:`mean_over_axis` ``(axis_name)``, so the algorithm's updates, traced inside a ``vmap`` or
    ``shard_map`` with that axis name, take the mean of the gradients of all its members (data parallelism:
    the environment shards of :func:`scg.algorithms.make_train`). The clipping of ``max_grad_norm`` then
    sees the averaged gradient, as one device would."""
    token = _GRADIENT_AXIS.set(axis_name)
    try:
        yield
    finally:
        _GRADIENT_AXIS.reset(token)


def mean_over_axis(axis_name: str) -> optax.GradientTransformation:
    """The stateless transformation ``g -> lax.pmean(g, axis_name)``: the mean of the updates over a named axis."""
    return optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda updates, state, params=None: (jax.lax.pmean(updates, axis_name), state),
    )


def _given(config: OptimizerConfig, learning_rate: float, optimizer: Optimizer) -> optax.GradientTransformation:
    """A transformation passed from Python: as is, or the factory's for ``learning_rate``."""
    defaults = {f.name: f.default for f in dataclasses.fields(OptimizerConfig)}
    if config.optimizer != defaults["optimizer"] or config.optimizer_args:
        raise ConfigError(f"{config.name}: optimizer= replaces the config's optimizer={config.optimizer!r} and "
                          f"optimizer_args={dict(config.optimizer_args)}; give one or the other")
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    if not callable(optimizer):
        raise TypeError(f"{config.name}: optimizer= takes an optax.GradientTransformation or a function "
                        f"learning_rate -> GradientTransformation, got {type(optimizer).__name__}")
    tx = optimizer(learning_rate)
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"{config.name}: optimizer({learning_rate}) returned a {type(tx).__name__}; the function "
                        "must return an optax.GradientTransformation")
    return tx
