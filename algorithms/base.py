"""What every algorithm in ``algorithms/`` provides, and the registry the ``scg`` command reads.

An algorithm is a graph plus an optimizer, written as a pair of pure functions
(optax style)::

    state = init(key)                       # a pytree: parameters, optimizer state, env state, key
    state, metrics = update(state)          # one iteration: collect data, estimate, step

``metrics`` is a dict of scalars with at least ``env_steps`` (this
iteration), ``mean_return`` (over the last 20 finished episodes), ``episodes``
(finished so far), ``loss`` and ``grad_norm``. ``update`` runs under ``jit``
and inside ``lax.scan`` over iterations (``scg.algorithms.train``).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

ALGORITHMS: dict[str, "Algorithm"] = {}


class Algorithm(NamedTuple):
    name: str
    description: str
    action_kinds: tuple[str, ...]  # which action spaces it supports: "discrete", "continuous"
    default_config: dict
    make: Callable  # (env, env_params, config) -> (init, update)
    tuned: dict = {}  # env name -> config updates the learning checks use and `scg train` applies (TUNED)


def register(algo: Algorithm) -> Algorithm:
    ALGORITHMS[algo.name] = algo
    return algo
