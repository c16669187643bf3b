"""Helpers shared by test modules (importable because ``tests/conftest.py`` puts this folder on ``sys.path``)."""
import contextlib

import jax.numpy as jnp

import pytest

import scg


@contextlib.contextmanager
def raises_naming(*names, match=None):
    """``pytest.raises(GraphError)`` whose message quotes every name in ``names``."""
    with pytest.raises(scg.GraphError, match=match) as info:
        yield info
    message = str(info.value)
    for name in names:
        assert f"'{name}'" in message, f"message does not name {name!r}: {message}"


# The tiny training run of the command-line tests (2 environments, 16 steps, 2 seeds): every test module that
# trains through `scg.algorithms.cli.main` uses this one configuration, so the process compiles its chunk once.
TINY = ["--config", "num_envs=2", "horizon=16", "hidden=[8]", "value_epochs=2", "--seeds", "2", "--chunk", "1"]
TINY += ["--quiet"]
STEPS_PER_ITER = 2 * 16


def train(runs_dir, name, steps=2 * STEPS_PER_ITER, *extra):
    """``scg train`` of the tiny run into ``runs_dir/name``; the exit code."""
    from scg.algorithms import cli

    return cli.main(["train", "--runs-dir", str(runs_dir), "--name", name, "--steps", str(steps), *TINY, *extra])


def metric_table(run_dir):
    """Metrics without wall time, ordered, for exact comparison of two runs."""
    from scg.algorithms.metrics_log import read_metrics

    return [{k: v for k, v in r.items() if k != "wall_time"} for r in read_metrics(run_dir)]


def without_xla_flags() -> dict:
    """This process's environment without ``XLA_FLAGS``, for a subprocess that chooses its own host devices."""
    import os

    return {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}


def json_of_script(code: str, timeout: float = 600) -> dict:
    """Run ``code`` in a fresh Python (:func:`without_xla_flags`), assert it succeeded, and return the JSON object
    its last line of output prints: how the tests that need several host devices (fixed when JAX starts) run."""
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                            env=without_xla_flags())
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def steps_to_threshold(algo: str, env_name: str, threshold: float, max_steps: int, *, seeds: int = 2, keys=None,
                       env_shards: int = 1):
    """Train ``algo`` on ``env_name`` with its tuned config (what ``scg train`` applies) for ``max_steps`` env steps.

    Seeds in parallel, keys ``split(key(0), seeds)`` unless ``keys`` are given; each seed's environments in
    ``env_shards`` shards (``make_train``). Returns per seed the cumulative
    env steps at which ``mean_return`` first reached ``threshold`` (``None``: never), and the final mean returns.
    """
    import jax
    import numpy as np

    from scg.algorithms import ALGORITHMS, make_train
    from scg.algorithms.train import steps_to_reach
    from scg.envs.registry import make

    config = ALGORITHMS[algo].configure(env_name)  # defaults, then the algorithm's TUNED[env_name]
    env, env_params = make(env_name)
    init, run = make_train(algo, env, env_params, config, env_shards=env_shards)
    keys = jax.random.split(jax.random.key(0), seeds) if keys is None else keys
    _, metrics = run(init(keys), max_steps // (config.num_envs * config.horizon))
    metrics = jax.tree_util.tree_map(np.asarray, metrics)
    return steps_to_reach(metrics, threshold, max_steps=max_steps), metrics["mean_return"][:, -1]


def bernoulli_among_others(estimator):
    """A Bernoulli[2] node ``z`` with ``estimator`` between a score Categorical ``c`` and pathwise Normals ``y``
    (upstream) and ``x`` (downstream), with costs through all of them: every kind of gradient path into and out
    of ``z``, for the z-tests of Bernoulli estimators mixed with others in one graph (ARM, DisARM, REBAR, RELAX)."""
    from scg import dist

    g = scg.Graph("mixed")
    phi, mu, theta = g.input("phi"), g.input("mu"), g.input("theta")
    c = g.stochastic("c", lambda t: dist.Categorical(logits=t), theta, estimator="score")
    y = g.stochastic("y", lambda m: dist.Normal(m, 0.5), mu, estimator="pathwise")
    z = g.stochastic("z", lambda p, c, y: dist.Bernoulli(logits=p + 0.5 * c + 0.7 * y), phi, c, y, estimator=estimator)
    x = g.stochastic("x", lambda z, y: dist.Normal(z[0] - z[1] + 0.3 * y, 0.4), z, y, estimator="pathwise")
    g.cost("f", lambda x, c, z: (x - 1.0) ** 2 + jnp.cos(c) * z[0], x, c, z)
    g.cost("h", lambda y: 0.2 * y**2, y)
    return g


# The random tree MDP of the search and DirPG tests (tests/scg/test_search.py, tests/algorithms/test_dirpg_gradient.py):
# nodes are heap ids, the child of node i by action a is A*i + 1 + a; each test draws its own rewards and policy.
A, DEPTH = 3, 3
NUM_IDS = sum(A**d for d in range(DEPTH + 1))
EARLY_TERMINAL = 3  # root's action 2 ends the episode at depth 1
ILLEGAL = (1, 0)  # action 0 is illegal in node 1


def tree_depth(i: int) -> int:
    d = 0
    while i > 0:
        i, d = (i - 1) // A, d + 1
    return d


def is_done(i: int) -> bool:
    return i == EARLY_TERMINAL or tree_depth(i) == DEPTH
