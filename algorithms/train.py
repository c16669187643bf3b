"""Running an algorithm: a whole training chunk is one ``jit`` of a ``lax.scan`` over iterations, ``vmap``ped over
seeds, and over the points of a hyperparameter sweep."""
from __future__ import annotations

import contextlib
import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np

from scg.algorithms.base import ALGORITHMS
from scg.algorithms.config import ConfigError, check_sweep, resolve, sweep_points, traced
from scg.algorithms.optimizers import gradients_averaged_over
from scg.algorithms.parallel import ENV_AXIS  # the axis name of a member's environment shards (vmap and mesh)

SUMMED_METRICS = ("env_steps", "episodes")  # counts, added over the shards; the other metrics are averaged

# What tracing raises where Python needs a concrete value: `if x`, `int(x)`, `np.asarray(x)`, a shape.
_TRACE_TIME = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
               jax.errors.TracerIntegerConversionError, jax.errors.NonConcreteBooleanIndexError)


def make_train(algo_name: str, env, env_params, config=None, *, sweep=None, optimizer=None, policy=None,
               value=None, mesh=None, env_shards: int = 1):
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

    ``sweep`` (field name → list of values, e.g. ``{"lr": [1e-4, 3e-4, 1e-3]}``) trains every point of the
    grid of those values (:func:`scg.algorithms.config.sweep_points`: the product, the first field slowest)
    on every seed, in the same one ``jit``: the algorithm is built inside the ``vmap`` with a config whose swept
    fields hold the member's traced value (:func:`scg.algorithms.config.traced`). ``init(keys)`` then returns
    ``P × len(keys)`` members, sweep-major: member ``p * len(keys) + j`` is point ``p`` on seed ``keys[j]``
    (:func:`sweep_members`). One leading axis, not two, so a sweep's states, metrics and checkpoints have the
    shape of a run of ``P × len(keys)`` seeds and every consumer of a run (the chunked driver, checkpoints,
    metric rows) reads them unchanged; ``run`` finds the members' values from the states' leading axis. Only ``float`` fields can be swept, each value checked eagerly as the
    config checks it; a field the algorithm reads in Python while tracing (``if config.ent_coef:``) raises a
    :class:`ConfigError` here, naming it and the algorithm. Member ``(p, j)`` computes what the run of that
    point's config on seed ``j`` computes, to float rounding (tests/algorithms/test_sweep.py).

    ``mesh`` (a :class:`jax.sharding.Mesh` of :func:`scg.algorithms.parallel.run_mesh`: one axis, or a second
    :data:`ENV_AXIS` for ``env_shards`` below) splits the members over its devices: ``init`` (its keys
    replicated) and ``run`` are jitted with every leaf of the states and metrics sharded along the leading axis,
    so each device trains its share and ``run`` compiles once per chunk size. The number of members must be a
    multiple of the mesh's first axis, ``env_shards`` of its second. States come back strongly typed (no weak
    types), so a fresh and a restored state share one compiled ``run``.

    ``env_shards = E > 1`` (data parallelism, for fewer members than devices: one seed on 1,024 envs) splits each
    member's ``num_envs`` environments into ``E`` shards of ``num_envs / E``: every shard is a copy of the algorithm
    with its own environments and draws (its keys folded with the shard's index) and the same parameters, and every
    optax step first averages the gradients of the ``E`` shards
    (:func:`scg.algorithms.optimizers.gradients_averaged_over`), so the shards' parameters stay equal and each step
    uses all ``num_envs`` environments' data, as one copy would (each shard's minibatches and PPO's advantage
    normalisation are its own, over the same total size). The shards are a ``vmap`` with axis name :data:`ENV_AXIS`;
    a mesh with a second axis :data:`ENV_AXIS` (:func:`scg.algorithms.parallel.run_mesh`) puts them on different
    devices, where the mean is an all-reduce, and the same seeds give the same numbers on one device and on several.
    States then have a shard axis after the member axis (``[members, E, ...]``; :func:`member_states` takes shard 0,
    what a checkpoint's policy is); metrics are per member, the counts (:data:`SUMMED_METRICS`) added over the
    shards and the rest averaged (``mean_return`` the mean of the shards' own means, ``grad_norm`` of the norms of
    their own gradients, before the average). Only algorithms that declare it (``Algorithm.env_shards``: REINFORCE,
    A2C, PPO with the clipped surrogate) and JAX environments can be sharded; ``E`` must divide ``num_envs``.

    >>> from scg.envs import registry
    >>> env, params = registry.make("CartPole-v1")
    >>> init, run = make_train("reinforce", env, params, {"num_envs": 2, "horizon": 8, "hidden": [8]},
    ...                        sweep={"policy_lr": [1e-3, 1e-2]})
    >>> states, metrics = run(init(seed_keys(3)), 2)
    >>> metrics["env_steps"].shape  # [2 points x 3 seeds, 2 iterations]
    (6, 2)
    """
    if algo_name not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algo_name!r}; choose from: {', '.join(sorted(ALGORITHMS))}")
    algo = ALGORITHMS[algo_name]
    given = {k: v for k, v in dict(optimizer=optimizer, policy=policy, value=value).items() if v is not None}
    for name in given:
        if name not in _make_options(algo):
            takers = sorted(n for n, a in ALGORITHMS.items() if name in _make_options(a))
            raise ConfigError(f"{algo_name} takes no {name}=; the algorithms that do: {', '.join(takers)}")
    if env_shards != 1:
        config = shard_config(algo, env, config, env_shards)  # each shard's: num_envs / env_shards
    if sweep is not None:
        init_all, run_all = _make_sweep(algo, env, env_params, config, sweep, given, env_shards)
    else:
        with _building(env_shards):
            init, update = algo.make(env, env_params, config, **given)  # update(state): sampled in the graph
        init_one, run_one = _member(init, update, env_shards)
        init_all, run_all = _over_seeds(init_one, ()), _over_seeds(run_one, (None,))
    return _jitted(lambda keys: _strong_types(init_all(keys)), run_all, mesh, env_shards)


def shard_config(algo, env, config, shards: int):
    """The config of one of ``shards`` environment shards (``num_envs / shards`` envs) of ``algo`` (an
    :class:`scg.algorithms.base.Algorithm`) on ``env``; a :class:`ConfigError` says why it cannot be sharded so."""
    from scg.envs.core import Environment

    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ConfigError(f"env_shards must be a positive integer, got {shards!r}")
    takers = sorted(n for n, a in ALGORITHMS.items() if a.env_shards is not None)
    if algo.env_shards is None:
        raise ConfigError(f"{algo.name} cannot split its environments into shards (env_shards={shards}); the "
                          f"algorithms that can: {', '.join(takers)}")
    if not isinstance(env, Environment):
        raise ConfigError(f"env_shards={shards} needs a JAX environment; a host environment's copies live on the "
                          "host (use HostEnv(vectorization='async') to collect them in parallel)")
    config = resolve(algo.config, config)
    reason = algo.env_shards(config)
    if reason is not None:
        raise ConfigError(f"{algo.name} cannot train in env_shards={shards}: {reason}")
    if config.num_envs % shards:
        raise ConfigError(f"env_shards={shards} does not divide num_envs={config.num_envs}; choose a divisor")
    try:
        return dataclasses.replace(config, num_envs=config.num_envs // shards)
    except ConfigError as err:
        raise ConfigError(f"env_shards={shards}: the config of one shard ({config.num_envs // shards} of "
                          f"num_envs={config.num_envs}) is invalid: {err}") from None


def _building(shards: int):
    """The context an algorithm is built in: its optimizers average over :data:`ENV_AXIS` when sharded."""
    return contextlib.nullcontext() if shards == 1 else gradients_averaged_over(ENV_AXIS)


def _member(init, update, shards: int):
    """``init(key)`` and ``run(state, n)`` of one member: ``n`` updates in a ``scan``; with ``shards > 1``, of
    its ``shards`` environment shards (a ``vmap`` named :data:`ENV_AXIS`, see :func:`make_train`)."""

    def run(state, num_iterations):
        return jax.lax.scan(lambda s, _: update(s), state, None, length=num_iterations)

    if shards == 1:
        return init, run

    def init_shards(key):
        def shard(index):  # the member's parameters; the shard's own environments and draws
            own = init(_shard_key(key, index))
            return init(key)._replace(rollout=own.rollout, key=own.key)

        return jax.vmap(shard)(jnp.arange(shards))

    def run_shards(states, num_iterations):
        states, metrics = jax.vmap(run, (0, None), axis_name=ENV_AXIS)(states, num_iterations)
        return states, merge_shard_metrics(metrics)

    return init_shards, run_shards


def _shard_key(key, index):
    """The key of shard ``index`` of a member whose key is ``key``: its environments' resets and its draws."""
    return jax.random.fold_in(key, index)


def merge_shard_metrics(metrics: dict) -> dict:
    """A member's metrics from its shards' (leading axis): :data:`SUMMED_METRICS` added, the rest averaged
    (a shard that has not finished an episode yet, ``NaN``, left out of the mean)."""
    return {k: jnp.sum(v, 0) if k in SUMMED_METRICS else jnp.nanmean(v, 0) for k, v in metrics.items()}


def member_states(states, env_shards: int = 1):
    """The states of :func:`make_train`'s members without their shard axis (shard 0's, whose parameters every
    shard shares); unchanged when ``env_shards == 1``."""
    return states if env_shards == 1 else jax.tree_util.tree_map(lambda x: x[:, 0], states)


def _strong_types(tree):
    """Drop weak types (``jnp.full(n, jnp.nan)`` is weakly typed, its checkpointed copy is not)."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, x.dtype) if getattr(x, "weak_type", False) else x, tree)


def _jitted(init_all, run_all, mesh, env_shards: int):
    """``jit`` of ``init_all(keys)`` and ``run_all(states, n)`` (``n`` static), sharded over ``mesh`` if given:
    states along their member axis (and their shard axis over a mesh axis :data:`ENV_AXIS`), metrics along
    the member axis."""
    if mesh is None:
        return jax.jit(init_all), jax.jit(run_all, static_argnums=1)
    P = jax.sharding.PartitionSpec
    names = mesh.axis_names
    if len(names) > 1 and names[1:] != (ENV_AXIS,):
        raise ConfigError(f"a mesh of two axes must name them {(names[0], ENV_AXIS)} (parallel.run_mesh), got {names}")
    if len(names) > 1 and env_shards % mesh.shape[ENV_AXIS]:
        raise ConfigError(f"the mesh's {mesh.shape[ENV_AXIS]} devices along {ENV_AXIS!r} do not split "
                          f"env_shards={env_shards} evenly")
    members = jax.sharding.NamedSharding(mesh, P(names[0]))
    states = jax.sharding.NamedSharding(mesh, P(*names)) if len(names) > 1 else members
    keys = jax.sharding.NamedSharding(mesh, P())  # a sweep's init tiles them: replicated
    return (jax.jit(init_all, in_shardings=keys, out_shardings=states),
            jax.jit(run_all, static_argnums=1, in_shardings=(states,), out_shardings=(states, members)))


def sweep_members(sweep: dict | None, seeds: list) -> list[tuple[dict | None, object]]:
    """``(point, seed)`` of each member of :func:`make_train`'s leading axis, in its order (sweep-major); the
    point is ``None`` without a sweep."""
    points = [None] if sweep is None else sweep_points(sweep)
    return [(p, s) for p in points for s in seeds]


def _make_sweep(algo, env, env_params, config, sweep: dict, given: dict, shards: int = 1):
    """:func:`make_train`'s functions for a sweep: ``algo.make`` inside the ``vmap``, per member's values."""
    base = resolve(algo.config, config)
    sweep = check_sweep(base, sweep)
    grid = sweep_points(sweep)
    columns = {n: jnp.asarray([p[n] for p in grid], jnp.float32) for n in sweep}  # [P] per field
    _check_traceable(algo, env, env_params, base, sweep, given)

    def built(values):  # init and run of one member at its point's values
        with _building(shards):
            return _member(*algo.make(env, env_params, traced(base, values), **given), shards)

    def init_member(key, values):
        return built(values)[0](key)

    def run_member(state, values, num_iterations):
        return built(values)[1](state, num_iterations)

    def member_values(members: int) -> dict:
        if members % len(grid):
            raise ValueError(f"a sweep of {len(grid)} points has a multiple of {len(grid)} members, got {members}")
        return {n: jnp.repeat(c, members // len(grid)) for n, c in columns.items()}  # sweep-major

    def init_all(keys):
        keys = jnp.tile(keys, len(grid))  # every point on every seed: point p's seeds are members p*n .. p*n+n-1
        return _over_seeds(init_member, (0,))(keys, member_values(keys.shape[0]))

    def run_all(states, num_iterations):
        members = jax.tree_util.tree_leaves(states)[0].shape[0]
        return _over_seeds(run_member, (0, None))(states, member_values(members), num_iterations)

    return init_all, run_all


def _check_traceable(algo, env, env_params, base, sweep: dict, given: dict) -> None:
    """Trace building the algorithm, ``init`` and one ``update`` with the swept fields traced (no compiling).

    A field the algorithm needs concrete while tracing is a :class:`ConfigError` naming it (each is tried alone to
    find it), and so is one that the traced program never reads (PPO's ``kl_target`` with ``surrogate="clip"``, a
    learning rate beside ``optimizer=`` a fixed transformation): its sweep would train the same run again.
    """

    def one_update(key, values):
        init, update = algo.make(env, env_params, traced(base, values), **given)
        return update(init(key))

    def trace(names):
        values = {n: jnp.float32(sweep[n][0]) for n in names}
        try:
            return jax.make_jaxpr(one_update)(jax.random.key(0), values).jaxpr, None
        except _TRACE_TIME as err:
            return None, err

    jaxpr, _ = trace(list(sweep))
    if jaxpr is None:
        for name in sweep:
            _, err = trace([name])
            if err is not None:
                first = str(err).strip().splitlines()[0]
                raise ConfigError(f"{name} cannot be swept for {algo.name}: it is used at trace time, in Python "
                                  f"control flow or a shape (JAX: {first}); train one run per value instead") from None
        raise ConfigError(f"{', '.join(sweep)} cannot be swept together for {algo.name}: they are used at trace time")
    read = {id(v) for eqn in jaxpr.eqns for v in eqn.invars} | {id(v) for v in jaxpr.outvars}
    for name, var in zip(sorted(sweep), jaxpr.invars[1:]):  # the leaves of (key, values): a dict's sorted keys
        if id(var) not in read:
            raise ConfigError(f"{name} has no effect on {algo.name} as configured (its training never reads it), so "
                              "sweeping it would train the same run again; sweep a field it uses")


def _make_options(algo) -> set[str]:
    """The keyword-only arguments of ``algo.make`` (``optimizer``, ``policy``, ``value``: those it takes)."""
    params = inspect.signature(algo.make).parameters.values()
    return {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _over_seeds(fn, other_axes: tuple):
    """``fn`` over a leading seed axis of its first argument (and of the others whose ``other_axes`` entry is 0,
    ``None`` for the rest): ``vmap``, except for a single seed, which runs
    ``fn`` unbatched (its result given the axis back). A ``vmap`` over a batch of one costs transposes and copies
    in XLA:CPU's program (PPO at 4 envs: +7% wall time, bench/README.md, "PPO against purejaxrl")."""
    axes = (0, *other_axes)
    batched = jax.vmap(fn, in_axes=axes)

    def over_seeds(first, *rest):
        if jax.tree_util.tree_leaves(first)[0].shape[0] != 1:
            return batched(first, *rest)
        first_member = lambda a: jax.tree_util.tree_map(lambda x: x[0], a)  # noqa: E731
        one = fn(*(a if axis is None else first_member(a) for a, axis in zip((first, *rest), axes)))
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
