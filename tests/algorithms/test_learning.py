"""Learning tests (issue 4): REINFORCE and A2C learn CartPole-v1 and Acrobot-v1 (our JAX ports).

"Reach R within N steps" means: at some iteration whose cumulative
``env_steps`` is ≤ N, the ``mean_return`` metric (mean return of the last 20
finished episodes of that seed) was ≥ R (``scg.algorithms.train.steps_to_reach``).
Seeds run in parallel (``make_train``'s ``vmap`` over keys ``split(key(0), S)``).

Full size (``@pytest.mark.slow``; the same checks ``bench/learning.py`` runs and
records): ≥ 475 on CartPole-v1 and ≥ -100 on Acrobot-v1 within 300k env steps
in at least 4 of 5 seeds, REINFORCE and A2C (configs: defaults, updated by
``TUNED[env]``).

Reduced versions (CI): 2 seeds, both must reach a lower but meaningful bar
within fewer steps: ≥ 195 on CartPole-v1 (the old CartPole-v0 "solved" level;
a uniform policy scores about 22) within 50k steps, ≥ -150 on Acrobot-v1 (a
uniform policy reaches the goal in about 1.4% of its episodes, scoring about
-500) within 40k steps. (At the seeds used, they get there in 12k–24k steps.) They assert learning, not the full criterion.
"""
from __future__ import annotations


import numpy as np
import pytest

from scg.algorithms.train import steps_to_reach
from support import steps_to_threshold


def _reached(algo: str, env_name: str, threshold: float, max_steps: int, seeds: int = 2) -> tuple[list, np.ndarray]:
    return steps_to_threshold(algo, env_name, threshold, max_steps, seeds=seeds)


@pytest.mark.parametrize("algo", ["reinforce", "a2c"])
def test_cartpole_reduced(algo):
    """Reduced: both of 2 seeds reach ≥ 195 within 50k steps on CartPole-v1."""
    reached, final = _reached(algo, "CartPole-v1", 195.0, 50_000)
    assert all(s is not None for s in reached), f"{algo}: steps to 195 per seed {reached}, final mean return {final}"


@pytest.mark.parametrize("algo", ["reinforce", "a2c"])
def test_acrobot_reduced(algo):
    """Reduced: both of 2 seeds reach ≥ -150 within 40k steps on Acrobot-v1."""
    reached, final = _reached(algo, "Acrobot-v1", -150.0, 40_000)
    assert all(s is not None for s in reached), f"{algo}: steps to -150 per seed {reached}, final mean return {final}"


def test_steps_to_reach_reads_cumulative_steps():
    metrics = {
        "env_steps": np.full((3, 4), 100.0),
        "mean_return": np.array([[np.nan, 10, 60, 40], [0, 0, 0, 70], [np.nan] * 4]),
    }
    assert steps_to_reach(metrics, 50.0) == [300.0, 400.0, None]
    assert steps_to_reach(metrics, 50.0, max_steps=300) == [300.0, None, None]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["reinforce-cartpole", "a2c-cartpole", "reinforce-acrobot", "a2c-acrobot"])
def test_full_criterion(name, learning_bench):
    """Full size: ≥ 475 (CartPole-v1) / ≥ -100 (Acrobot-v1) within 300k steps in at least 4 of 5 seeds."""
    bench = learning_bench
    result = bench.run_check(bench.CHECKS[name])
    steps = [s["steps_to_threshold"] for s in result["per_seed"]]
    assert result["passed"], f"{name}: {result['seeds_reached']}/5 seeds reached {result['threshold']}: steps {steps}"
