"""The host-collected path (issue 4, path (b)): gymnasium's own CartPole-v1 stepped on the host, fed as arrays.

- ``test_same_update_on_a_recorded_batch`` (fast): a batch sampled by our JAX
  CartPole inside the compiled graph, converted to an ``scg.envs.wrappers.Trajectory``
  and fed to the host-mode graph as observed values, gives the same gradient,
  the same returns and the same updated parameters as the JAX path (REINFORCE
  and A2C; the batch has terminations and time-limit truncations).
- ``test_host_reinforce_learns_cartpole_reduced`` (CI, reduced): 2 seeds reach a
  mean return ≥ 195 over the last 20 episodes within 40k environment steps
  (they get there in 16k and 21k).
- ``test_host_reinforce_solves_cartpole`` (slow, full size): ≥ 475 within 300k
  steps in at least 4 of 5 seeds, the criterion the JAX path meets in
  ``test_learning.py``.

"Reach R within N steps": at some iteration whose cumulative ``env_steps`` is
≤ N, the ``mean_return`` metric (mean of the last 20 finished episodes) was ≥ R.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from scg.algorithms import a2c, reinforce
from scg.algorithms.common import compile_mdp, estimate
from scg.algorithms.host import train
from scg.algorithms.mdp import observed_from_trajectory
from scg.algorithms.train import steps_to_reach
from scg.envs.host import HostEnv
from scg.envs.registry import make
from scg.envs.wrappers import Trajectory


def trajectory_from_values(values: dict) -> Trajectory:
    """A batch sampled by the JAX MDP graph (``[N, T, ...]``) as the host collector would record it (``[T, N, ...]``)."""
    t_major = lambda x: np.swapaxes(np.asarray(x), 0, 1)  # noqa: E731
    return Trajectory(
        obs=t_major(values["obs"]),
        action=t_major(values["a"]),
        reward=t_major(-values["r"]),
        terminated=t_major(values["terminated"]),
        truncated=t_major(values["truncated"]),
        next_obs=t_major(values["transition"].final_obs),
    )


@pytest.mark.parametrize("algo", [reinforce, a2c], ids=["reinforce", "a2c"])
def test_same_update_on_a_recorded_batch(algo):
    env, params = make("CartPole-v1")
    params = params._replace(max_steps_in_episode=25)  # truncations inside the batch as well as terminations
    config = {"num_envs": 4, "horizon": 40, "hidden": (16,)}
    host = HostEnv("CartPole-v1", num_envs=4, seed=0)  # only its spaces are used: the batch comes from the JAX env
    try:
        jax_init, jax_update = algo.make(env, params, config)
        host_init, host_update = algo.make(host, None, config)
    finally:
        host.close()
    key = jax.random.key(3)
    jax_state, host_state = jax_init(key), host_init(key)
    full, options = algo.ALGORITHM.configure(overrides=config), _graph_options(algo, config)
    mdp, host_mdp = compile_mdp(env, params, full, **options), compile_mdp(host, None, full, **options)

    @jax.jit
    def jax_path(state):  # the batch the JAX update samples (same key and split as inside update), and the update
        _, k = jax.random.split(state.key)
        return estimate(mdp, state.params, state.rollout, k), jax_update(state)

    @jax.jit
    def host_path(state, observed):
        return estimate(host_mdp, state.params, state.rollout, jax.random.key(99), observed), host_update(state, observed)

    est, (jax_next, jax_metrics) = jax_path(jax_state)
    traj = trajectory_from_values(est.values)
    assert traj.terminated.any() and traj.truncated.any()
    host_est, (host_next, host_metrics) = host_path(host_state, observed_from_trajectory(traj))  # update(state, batch)
    _assert_close(host_est.grads, est.grads)
    np.testing.assert_allclose(host_est.returns, est.returns, rtol=1e-5, atol=1e-5)
    _assert_close(host_next.params, jax_next.params)
    for name in ("env_steps", "episodes", "mean_return", "loss", "grad_norm"):
        np.testing.assert_allclose(host_metrics[name], jax_metrics[name], rtol=1e-5, err_msg=name)


def _graph_options(algo, config):
    """The loss nodes ``algo.make`` adds to the graph (A2C's critic and entropy; none for REINFORCE)."""
    full = algo.ALGORITHM.configure(overrides=config).to_dict()
    return {k: full[k] for k in ("critic_loss", "entropy_bonus") if k in full}


def _assert_close(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)


def test_host_reinforce_learns_cartpole_reduced():
    """Reduced CI version: 2 seeds, ≥ 195 (gymnasium's old CartPole-v0 'solved' bar) within 40k steps."""
    _, metrics = train("reinforce", "CartPole-v1", seeds=(0, 1), num_iterations=25)  # 25 × 8 envs × 200 steps
    reached = steps_to_reach(metrics, 195.0, max_steps=40_000)
    assert all(s is not None for s in reached), f"steps to 195 per seed: {reached}; final {metrics['mean_return'][:, -1]}"


@pytest.mark.slow
def test_host_reinforce_solves_cartpole():
    """Full size: ≥ 475 within 300k steps in at least 4 of 5 seeds on gymnasium's CartPole-v1 (bench/learning.py)."""
    path = Path(__file__).resolve().parents[2] / "bench" / "learning.py"
    spec = importlib.util.spec_from_file_location("bench_learning", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.run_check(bench.CHECKS["reinforce-host-cartpole"])
    steps = [s["steps_to_threshold"] for s in result["per_seed"]]
    assert result["passed"], f"{result['seeds_reached']}/5 seeds reached 475: steps {steps}"
