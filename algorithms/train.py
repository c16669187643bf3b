"""Running an algorithm: a whole training chunk is one ``jit`` of a ``lax.scan`` over iterations, ``vmap``ped over seeds."""
from __future__ import annotations

import inspect

import jax
import numpy as np

from scg.algorithms.base import ALGORITHMS
from scg.algorithms.config import ConfigError


def make_train(algo_name: str, env, env_params, config=None, *, optimizer=None, policy=None, value=None):
    """Returns ``init(keys) -> states`` and ``run(states, num_iterations) -> (states, metrics)``.

    ``config`` is the algorithm's config object or a dict of overrides of its defaults (``make``'s
    argument: :mod:`scg.algorithms.base`). ``keys`` has one key per seed; states and metrics carry a leading seed axis
    (metrics: ``[seeds, iterations]`` per name). ``run`` is jitted with the
    number of iterations static: progress and checkpoints happen between chunks. An unknown algorithm, or a
    config with an unknown key or an invalid value, raises :class:`scg.algorithms.config.ConfigError`.

    ``optimizer`` (an optax transformation, or a function of the learning rate returning one:
    :mod:`scg.algorithms.optimizers`) and ``policy``/``value`` (networks ``(init, apply)``:
    :func:`scg.algorithms.common.compile_mdp`) go to the algorithm's ``make``; a ``ConfigError`` names the
    algorithms that take the one given where this one does not.
    """
    if algo_name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algo_name!r}; choose from: {', '.join(sorted(ALGORITHMS))}")
    algo = ALGORITHMS[algo_name]
    given = {k: v for k, v in dict(optimizer=optimizer, policy=policy, value=value).items() if v is not None}
    for name in given:
        if name not in _make_options(algo):
            takers = sorted(n for n, a in ALGORITHMS.items() if name in _make_options(a))
            raise ConfigError(f"{algo_name} takes no {name}=; the algorithms that do: {', '.join(takers)}")
    init, update = algo.make(env, env_params, config, **given)  # update(state, batch=None): sampled in the graph

    def run_one(state, num_iterations):
        return jax.lax.scan(lambda s, _: update(s), state, None, length=num_iterations)

    init_all = jax.jit(_over_seeds(init, ()))
    run_all = jax.jit(_over_seeds(run_one, (None,)), static_argnums=1)
    return init_all, run_all


def _make_options(algo) -> set[str]:
    """The keyword-only arguments of ``algo.make`` (``optimizer``, ``policy``, ``value``: those it takes)."""
    params = inspect.signature(algo.make).parameters.values()
    return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _over_seeds(fn, other_axes: tuple):
    """``fn`` over a leading seed axis of its first argument: ``vmap``, except for a single seed, which runs
    ``fn`` unbatched (its result given the axis back). A ``vmap`` over a batch of one costs transposes and copies
    in XLA:CPU's program (PPO at 4 envs: +7% wall time, bench/README.md, "PPO against purejaxrl")."""
    batched = jax.vmap(fn, in_axes=(0, *other_axes))

    def over_seeds(first, *rest):
        if jax.tree_util.tree_leaves(first)[0].shape[0] != 1:
            return batched(first, *rest)
        one = fn(jax.tree_util.tree_map(lambda x: x[0], first), *rest)
        return jax.tree_util.tree_map(lambda x: x[None], one)

    return over_seeds


def seed_keys(seeds) -> jax.Array:
    """One PRNG key per seed, ``jax.random.key(s)`` for each ``s`` in ``seeds`` (an int ``n`` means ``range(n)``):
    the keys ``scg train --seeds n --seed s0`` trains from, for checks that must see what the command does."""
    seeds = range(seeds) if isinstance(seeds, int) else seeds
    return jax.numpy.stack([jax.random.key(int(s)) for s in seeds])


def steps_to_reach(metrics: dict, threshold: float, *, max_steps: float | None = None) -> list[float | None]:
    """Per seed, the cumulative env steps at the first iteration whose ``mean_return`` is ≥ ``threshold``.

    ``metrics`` holds ``[seeds, iterations]`` arrays (``env_steps`` per iteration).
    ``None`` where the seed never reached it, or reached it only after ``max_steps``.
    """
    steps = np.cumsum(np.asarray(metrics["env_steps"], np.float64), axis=-1)
    reached = np.asarray(metrics["mean_return"]) >= threshold  # NaN (no episode finished yet) compares False
    if max_steps is not None:
        reached &= steps <= max_steps
    return [float(s[r][0]) if r.any() else None for s, r in zip(steps, reached)]
