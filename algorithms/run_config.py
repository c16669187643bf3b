"""A training run's whole configuration: algorithm, environment, seeds, steps and the algorithm's resolved config.

:func:`resolve` checks every option before anything is written (the ``scg``
command creates the run directory only after it returns) and gives the dict
that ``config.json`` records. Its ``algorithm_config`` is the algorithm's
config class's defaults, updated by the algorithm's ``TUNED[env]`` entry, then
by the user's overrides (:func:`scg.algorithms.config.resolve`), as a dict. A sweep
(``scg train --sweep lr=1e-4,3e-4``) is recorded as ``sweep``, field → values
(absent without one); ``algorithm_config`` still holds every field, a swept one
at its unswept value, which each member's point replaces (:func:`members`).
"""
from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import jax

from scg.algorithms import train
from scg.algorithms.base import ALGORITHMS
from scg.algorithms.config import Config, ConfigError, check_sweep
from scg.algorithms.run_files import CONFIG, read_config
from scg.envs import registry


def action_kind(space) -> str:
    """``"discrete"`` for a ``Discrete`` action space, ``"continuous"`` for a ``Box``."""
    return "discrete" if hasattr(space, "n") else "continuous"


def env_action_kind(env_name: str) -> str:
    env, params = registry.make(env_name)
    return action_kind(env.action_space(params))


CHUNK_ITERATIONS = 5  # iterations per jitted chunk by default ...
CHUNK_MIN_STEPS = 1_000  # ... or more, so that a chunk holds at least this many env steps per seed (off-policy: 1/iteration)


def steps_per_iteration(algorithm_config: dict) -> int | None:
    """Env steps per seed of one iteration where the config fixes them, else ``None``.

    The on- and off-policy algorithms step ``num_envs`` environments for ``horizon`` steps per iteration; those
    whose iterations are whole episodes (CEM, ES, TRPO with ``episodic``) have none.
    """
    c = algorithm_config
    if isinstance(c.get("num_envs"), int) and isinstance(c.get("horizon"), int) and not c.get("episodic", False):
        return c["num_envs"] * c["horizon"]
    return None


def default_chunk(algorithm_config: dict) -> int:
    """``CHUNK_ITERATIONS``, or more where iterations are short: at least ``CHUNK_MIN_STEPS`` env steps a chunk."""
    per_iter = steps_per_iteration(algorithm_config)
    if per_iter is None:
        return CHUNK_ITERATIONS
    return max(CHUNK_ITERATIONS, -(-CHUNK_MIN_STEPS // per_iter))


def resolve(
    algo: str, env: str, *, seeds: int, steps: int, seed: int = 0, chunk: int | None = None,
    overrides: dict | None = None, sweep: dict | None = None, env_shards: int = 1,
) -> dict:
    """Check the options and return the full configuration of a run; raises :class:`ConfigError` (one line).

    ``chunk=None`` takes :func:`default_chunk` of the algorithm's config. ``sweep`` (field → list of values) is
    checked against it (:func:`scg.algorithms.config.check_sweep`); whether the algorithm can trace the field is
    checked when the run compiles (:func:`scg.algorithms.train.make_train`). ``env_shards`` splits each seed's
    environments into shards that average their gradients (:func:`scg.algorithms.train.make_train`), checked here
    against the algorithm and its ``num_envs``; the record has it only where it is not 1.
    """
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algo!r}; choose from: {', '.join(sorted(ALGORITHMS))}")
    if env not in registry.list_envs():
        raise ConfigError(f"unknown environment {env!r}; choose from: {', '.join(registry.list_envs())}")
    kind = env_action_kind(env)
    spec = ALGORITHMS[algo]
    if kind not in spec.action_kinds:
        fits = [e for e in registry.list_envs() if env_action_kind(e) in spec.action_kinds]
        raise ConfigError(
            f"{algo} supports {'/'.join(spec.action_kinds)} actions but {env} has {kind} actions; "
            f"choose an environment from: {', '.join(fits)}"
        )
    for name, value in (("steps", steps), ("seeds", seeds), ("chunk", chunk)):
        if name == "chunk" and value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"--{name} must be a positive integer, got {value!r}")
    typed = spec.configure(env, overrides)
    sharded = {}
    if env_shards != 1:
        train.shard_config(spec, registry.make(env)[0], typed, env_shards)  # raises ConfigError saying why not
        sharded = {"env_shards": env_shards}
    swept = {} if sweep is None else {"sweep": {k: list(v) for k, v in check_sweep(typed, sweep).items()}}
    algorithm_config = typed.to_dict()
    return {
        "algo": algo,
        "env": env,
        "action_kind": kind,
        "seed": seed,
        "seeds": seeds,
        "steps": steps,
        "chunk": default_chunk(algorithm_config) if chunk is None else chunk,
        "algorithm_config": algorithm_config,
        **swept,
        **sharded,
        "versions": _versions(),
    }


def load(run_dir) -> dict:
    """A run's recorded configuration, checked as :func:`resolve` checks a new one (its algorithm still registered,
    its ``algorithm_config`` still valid); raises :class:`ConfigError` or
    :class:`scg.algorithms.run_files.RunError` naming ``config.json``."""
    config = read_config(run_dir)
    try:
        resolve(config["algo"], config["env"], seeds=config["seeds"], steps=config["steps"], seed=config["seed"],
                chunk=config["chunk"], overrides=config["algorithm_config"], sweep=config.get("sweep"),
                env_shards=env_shards(config))
    except ConfigError as err:
        raise ConfigError(f"{Path(run_dir) / CONFIG}: {err}; restore it from a copy of the run") from None
    return config


def algorithm_config(config: dict) -> Config:
    """The typed config of a run's recorded (complete) ``algorithm_config``."""
    return ALGORITHMS[config["algo"]].configure(overrides=config["algorithm_config"])


def env_shards(config: dict) -> int:
    """The environment shards of each member of a run (1 where ``config.json`` does not say)."""
    return config.get("env_shards", 1)


def seed_list(config: dict) -> list[int]:
    return list(range(config["seed"], config["seed"] + config["seeds"]))


def members(config: dict) -> list[tuple[dict | None, int]]:
    """``(sweep point, seed)`` of each member a run trains, in the order of its states and metrics (sweep-major;
    the point is ``None`` without a sweep): :func:`scg.algorithms.train.sweep_members`."""
    return train.sweep_members(config.get("sweep"), seed_list(config))


def seed_keys(config: dict) -> jax.Array:
    """One key per seed: seed ``s`` trains from ``jax.random.key(s)`` (:func:`scg.algorithms.train.seed_keys`)."""
    return train.seed_keys(seed_list(config))


def _versions() -> dict:
    out = {"python": platform.python_version()}
    # The key is the import name; scg's distribution on the package index is ``scg-jax``.
    for pkg, dist in (("scg", "scg-jax"), ("jax", "jax"), ("jaxlib", "jaxlib"), ("optax", "optax"),
                      ("numpy", "numpy"), ("gymnasium", "gymnasium")):
        try:
            out[pkg] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out
