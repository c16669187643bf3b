"""Training on trajectories collected on the host: any gymnasium env, the same compiled update (issue 4, path (b)).

The JAX path (:mod:`scg.algorithms.train`) samples a batch inside the compiled
graph. Here ``N`` copies of a gymnasium env run on the host
(:class:`scg.envs.host.HostEnv`), the policy acting through a jitted, batched
sampler; the recorded ``Trajectory`` (actions, rewards, ``terminated`` /
``truncated`` flags, observations) goes to the algorithm's own
``update(state, batch)`` as observed values of the graph built in host mode
(``host_transition(host_env)`` in :func:`scg.algorithms.mdp.actor_critic_graph`), which recomputes ``log π_θ(a_t|s_t)`` and
the value network on the recorded states. One update path, two collectors::

    traj = host.collect(act, state.params["theta"], key, horizon)        # host loop, T steps of N envs
    state, metrics = learn(state, traj)                                 # = update(state, observed_from_trajectory(traj))

Example::

    state, metrics = train("reinforce", "CartPole-v1", seeds=(0,), num_iterations=3)
    metrics["mean_return"].shape   # (1, 3): [seeds, iterations], as make_train's
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import numpy as np

from scg.algorithms.base import ALGORITHMS
from scg.algorithms.mdp import observed_from_trajectory
from scg.algorithms.networks import make_policy
from scg.envs.host import HostEnv


class HostTrainer(NamedTuple):
    init: Callable  # key -> state (jitted)
    learn: Callable  # (state, traj) -> (state, metrics): the algorithm's update on observed data (jitted)
    act: Callable  # (theta, obs_t, key) -> a_t, one example: the policy the host collector samples from
    horizon: int  # steps per collected batch, T


def make_host_train(algo_name: str, host: HostEnv, config=None) -> HostTrainer:
    """The algorithm ``algo_name`` (an MDP algorithm) with its graph in host mode, for batches of ``host``'s shape.

    ``config``: the algorithm's config or a dict of overrides of its defaults. The trainer depends on
    ``host`` only through its spaces and ``num_envs``: it serves every ``HostEnv`` of the same env id
    and size (e.g. one per seed).
    """
    algo = ALGORITHMS[algo_name]
    config = algo.configure(overrides=config)
    if config.num_envs != host.num_envs:
        raise ValueError(f"config num_envs={config.num_envs} but the host env runs {host.num_envs} copies")
    init, update = algo.make(host, None, config)
    policy = make_policy(host.observation_space, host.action_space, config.hidden)

    def act(theta, obs_t, key):
        return policy.dist(theta, obs_t).sample(key)

    learn = jax.jit(lambda state, traj: update(state, observed_from_trajectory(traj)))
    return HostTrainer(jax.jit(init), learn, act, config.horizon)


def train(algo_name: str, env_id: str, config=None, *, seeds=(0,), num_iterations: int, vectorization: str = "sync",
          **make_kwargs):
    """Train one run per seed (one after another) on ``env_id`` stepped by gymnasium on the host.

    Returns ``(states, metrics)``: a list of final states and a dict of numpy
    arrays ``[seeds, iterations]`` (the layout of :func:`scg.algorithms.make_train`).
    Sub-env ``i`` of seed ``s`` is seeded with ``10_000 s + i``. ``vectorization``:
    ``"sync"`` or ``"async"`` (one worker process per env copy, started afresh for
    each seed), as in :class:`scg.envs.host.HostEnv`; the results are the same.
    """
    config = ALGORITHMS[algo_name].configure(overrides=config)
    trainer, states, history = None, [], []
    for seed in seeds:
        host = HostEnv(env_id, config.num_envs, seed=10_000 * seed, vectorization=vectorization, **make_kwargs)
        try:
            trainer = trainer or make_host_train(algo_name, host, config)
            key_init, key_act = jax.random.split(jax.random.key(seed))
            state, rows = trainer.init(key_init), []
            for key in jax.random.split(key_act, num_iterations):
                traj = host.collect(trainer.act, state.params["theta"], key, trainer.horizon)
                state, metrics = trainer.learn(state, traj)
                rows.append(metrics)
        finally:
            host.close()
        states.append(state)
        history.append({name: np.array([float(m[name]) for m in rows]) for name in rows[0]})
    return states, {name: np.stack([h[name] for h in history]) for name in history[0]}
