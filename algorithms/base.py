"""What every algorithm in ``algorithms/`` provides, and the registry the ``scg`` command reads.

An algorithm is a graph plus an optimizer, written as a pair of pure functions
(optax style) made by ``make(env, env_params, config)``::

    init, update = make(env, env_params, config)   # config: the algorithm's Config, or a dict of overrides
    state = init(key)                              # a pytree: parameters, optimizer state, env state, key
    state, metrics = update(state)                 # one iteration: collect in the graph, estimate, step
    state, metrics = update(state, batch)          # the same on data collected elsewhere (observed values)

From Python, ``make`` also takes keyword-only options where the algorithm has
the part: ``optimizer=`` (an optax transformation in place of the config's
named one: :mod:`scg.algorithms.optimizers`) and, for the MDP algorithms,
``policy=``/``value=`` (networks ``(init, apply)``:
:func:`scg.algorithms.common.compile_mdp`).

``batch=None`` runs the JAX environment inside the compiled graph; otherwise
``batch`` holds observed values of the algorithm's graph (for the MDP
algorithms a host-collected batch, ``observed_from_trajectory(traj)``:
:mod:`scg.algorithms.host`), which the same compiled function reads instead of
sampling them.

``metrics`` is a dict of scalars with at least ``env_steps`` (this
iteration), ``mean_return`` (over the last finished episodes), ``episodes``
(finished so far), ``loss`` and ``grad_norm`` (:func:`scg.algorithms.episodes.metrics`).
``update`` runs under ``jit`` and inside ``lax.scan`` over iterations
(:mod:`scg.algorithms.train`).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from scg.algorithms.config import Config, resolve

ALGORITHMS: dict[str, "Algorithm"] = {}


class Algorithm(NamedTuple):
    name: str
    description: str
    action_kinds: tuple[str, ...]  # which action spaces it supports: "discrete", "continuous"
    config: type[Config]  # its frozen config class, whose fields are the defaults
    make: Callable  # (env, env_params, config) -> (init, update)
    tuned: dict = {}  # env name -> config overrides the learning checks use and `scg train` applies (TUNED)
    make_learner: Callable | None = None  # off-policy algorithms: (env, env_params, config) -> offpolicy.Learner
    # Where its environments can be split into shards that average their gradients (make_train's env_shards): a
    # function of the config returning why not for that config, or None; None here: never (state or updates
    # that are not the optimizer's, e.g. TRPO's line search, would differ from shard to shard).
    env_shards: Callable | None = None

    def configure(self, env_name: str | None = None, overrides=None) -> Config:
        """The config a run uses: defaults, then ``tuned[env_name]``, then ``overrides`` (:func:`scg.algorithms.config.resolve`)."""
        return resolve(self.config, self.tuned.get(env_name), overrides)


def register(algo: Algorithm) -> Algorithm:
    """Add ``algo`` to :data:`ALGORITHMS`; its tuned entries are checked against its config class here."""
    for entry in algo.tuned.values():
        resolve(algo.config, entry)
    ALGORITHMS[algo.name] = algo
    return algo
