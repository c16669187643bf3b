"""The one off-policy training loop: act, store in a replay buffer, learn from minibatches (DDPG, SVG(0), SVG(1), Smoothie).

An off-policy algorithm here is a :class:`Learner` (its networks, optimizers and one update,
written as a graph plus optax in its own module) handed to :func:`make`, which returns the
``(init, update)`` pair of :mod:`scg.algorithms.base`. One iteration of ``update(state)``::

    for t in range(horizon):                       # lax.scan, inside the caller's jit/scan/vmap
        a_t = act(learner, obs_t) + noise_t        # uniform in the action box during warm-up
        step num_envs environments (auto-reset), add their transitions to the buffer
    if env steps so far >= warmup_steps:           # gated inside the compiled loop
        repeat updates_per_iteration times:        # lax.scan
            learner = learn(learner, sample, key)  # sample(key): an independent minibatch each call

The stored transition is ``obs, action, reward, next_obs, terminated`` plus the learner's
``extras`` (e.g. ``log_prob``, the behaviour policy's log-density of the executed action, for
importance weights). ``action`` is the executed action before the environment clips it;
``reward`` is raw (the learner applies ``reward_scale``); ``next_obs`` is the true successor
(also when the episode ended there); bootstrapping stops on ``terminated`` only, so a time limit
(Pendulum's 200 steps) is not a terminal state.

``update(state, batch)`` is the host path: ``batch`` holds transitions collected elsewhere
(``{"obs", "action", "reward", "next_obs", "terminated", **extras}``, leaves ``[M, ...]``, from
:func:`host_transitions`), which are added instead of stepping a JAX environment; the updates are
the same. :func:`host_train` collects them from any gymnasium environment.

Values from outside the seeds: replay buffers, target networks and the warm-up of uniform actions
are DQN's and DDPG's recipe (Lillicrap et al. 2016, §3, §7); the defaults below (batch 256,
τ = 0.005, one update per environment step) are common modern choices, not the papers'.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scg.algorithms import episodes, exploration, replay
from scg.algorithms.config import ConfigError, non_negative, option, positive, unit_interval
from scg.algorithms.optimizers import OptimizerConfig
from scg.envs.core import Environment
from scg.envs.spaces import Box
from scg.envs.wrappers import Trajectory, VecAutoReset

TRANSITION_KEYS = ("obs", "action", "reward", "next_obs", "terminated")


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig(OptimizerConfig):
    """What every off-policy algorithm shares; each subclasses it with its own networks and learning rates."""

    name: ClassVar[str] = "offpolicy"
    num_envs: int = option(1, positive)  # environments stepped in lock-step
    horizon: int = option(1, positive)  # env steps per environment per iteration
    updates_per_iteration: int | None = option(None, positive)  # None: num_envs * horizon (one per env step)
    batch_size: int = option(256, positive)
    buffer_size: int = option(100_000, positive)
    warmup_steps: int = option(1_000, non_negative)  # env steps (all envs) of uniform actions; no update before
    discount: float = option(0.99, unit_interval)
    tau: float = option(0.005, unit_interval)  # Polyak rate of the target networks
    reward_scale: float = option(1.0, positive)  # the critics regress on reward_scale * r
    noise: Literal["none", "gaussian", "ou"] = "none"  # exploration noise added to act()'s action
    noise_std: float = option(0.1, non_negative)  # σ of the Gaussian noise, or of the OU process
    ou_theta: float = option(0.15, positive)  # OU mean reversion θ (Lillicrap et al. 2016, §7)

    @property
    def updates(self) -> int:
        return self.num_envs * self.horizon if self.updates_per_iteration is None else self.updates_per_iteration


class Learner(NamedTuple):
    """An off-policy algorithm's part of the loop (see the module docstring)."""

    init: Callable  # key -> learner state (params, targets, optimizer states)
    act: Callable  # (learner state, obs, key) -> (action, extras): one observation, before exploration noise
    learn: Callable  # (learner state, sample, key) -> (learner state, metrics with "loss" and "grad_norm")


class OffPolicyState(NamedTuple):
    learner: Any
    buffer: replay.ReplayState
    obs: jax.Array  # [N, ...] current observations (placeholders on the host path)
    env_state: Any  # [N, ...]
    noise: exploration.OUState  # [N, *action_shape], used when config.noise == "ou"
    stats: episodes.EpisodeStats
    env_steps: jax.Array  # int32: env steps taken so far, all environments (warm-up and learning gate)
    key: jax.Array


def spaces(env, env_params) -> tuple:
    """``(observation_space, action_space)`` of a JAX env or of a host env (``scg.envs.host.HostEnv``)."""
    if isinstance(env, Environment):
        return env.observation_space(env_params), env.action_space(env_params)
    return env.observation_space, env.action_space


def polyak(params, targets, tau: float):
    """``θ' ← τ θ + (1 − τ) θ'`` (Lillicrap et al. 2016, Algorithm 1): ``optax.incremental_update``."""
    return optax.incremental_update(params, targets, tau)


def optimizers_init(optimizers: dict, params: dict) -> dict:
    """Each part's optimizer state: ``{k: optimizers[k].init(params[k])}`` (e.g. actor and critic, each its own Adam)."""
    return {k: opt.init(params[k]) for k, opt in optimizers.items()}


def optimizers_step(optimizers: dict, grads: dict, opt_states: dict, params: dict) -> tuple[dict, dict]:
    """One step of each part's optimizer on its own gradient; parts without an optimizer are kept as they are.

    Returns ``(params, opt_states)``; every off-policy learner steps its actor and critic (and model) this way.
    """
    params, opt_states = dict(params), dict(opt_states)
    for k, opt in optimizers.items():
        updates, opt_states[k] = opt.update(grads[k], opt_states[k], params[k])
        params[k] = optax.apply_updates(params[k], updates)
    return params, opt_states


def learner_metrics(grads: dict, loss, *, actor: str = "theta", **extra) -> dict:
    """What every learner's ``learn`` reports: the critic's ``loss``, ``grad_norm`` (all of ``grads``),
    ``actor_grad_norm`` (``grads[actor]``) and its own ``extra`` scalars (``q_mean``, ``sigma_mean``, ...)."""
    return {"loss": loss, "grad_norm": optax.tree_utils.tree_norm(grads),
            "actor_grad_norm": optax.tree_utils.tree_norm(grads[actor]), **extra}


def minibatch_placeholder(obs_shape, action_shape, **extras) -> Callable:
    """``key -> zeros`` shaped like one stored transition (``extras``: name -> shape, e.g. ``log_prob=()``).

    The function of a learner graph's ``g.simulate("batch", ...)`` node, which every update observes
    with a replay minibatch: the shapes plan the graph, the values are never used.
    """
    zeros = lambda shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
    return lambda key: {"obs": zeros(obs_shape), "action": zeros(action_shape), "reward": zeros(()),
                        "next_obs": zeros(obs_shape), "terminated": zeros(()),
                        **{k: zeros(shape) for k, shape in extras.items()}}


def _uniform_log_density(action_space: Box) -> float:
    return -float(np.sum(np.log(action_space.high_array - action_space.low_array)))


def behaviour(learner: Learner, config: OffPolicyConfig, action_space: Box):
    """``(learner_state, obs, key, warm, noise_x) -> (action, extras)``: one observation's executed action.

    ``warm`` (bool): draw uniformly in the action box instead (then an extra named ``log_prob`` is
    replaced by the uniform density, so importance weights see the real behaviour); ``noise_x``: this
    step's OU value (``noise == "ou"``).
    """
    low = jnp.asarray(action_space.low_array, jnp.float32)
    high = jnp.asarray(action_space.high_array, jnp.float32)
    log_uniform = _uniform_log_density(action_space)

    def act(learner_state, obs, key, warm, noise_x):
        k_act, k_noise, k_uniform = jax.random.split(key, 3)
        action, extras = learner.act(learner_state, obs, k_act)
        action = jnp.asarray(action, jnp.float32).reshape(action_space.shape)
        if config.noise == "gaussian":
            action = exploration.gaussian(k_noise, action, config.noise_std)
        elif config.noise == "ou":
            action = action + noise_x
        uniform = jax.random.uniform(k_uniform, action_space.shape, jnp.float32, low, high)
        action = jnp.where(warm, uniform, action)
        extras = dict(extras)
        if "log_prob" in extras:
            extras["log_prob"] = jnp.where(warm, log_uniform, extras["log_prob"])
        return action, extras

    return act


def _example_transition(learner: Learner, obs_space, action_space) -> dict:
    obs = jax.ShapeDtypeStruct(obs_space.shape, jnp.float32)
    state = jax.eval_shape(learner.init, jax.random.key(0))
    _, extras = jax.eval_shape(learner.act, state, obs, jax.random.key(0))
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    return {"obs": obs, "action": jax.ShapeDtypeStruct(action_space.shape, jnp.float32), "reward": scalar,
            "next_obs": obs, "terminated": scalar, **extras}


def make(env, env_params, config: OffPolicyConfig, make_learner: Callable):
    """``(init, update)`` of :mod:`scg.algorithms.base` for the learner ``make_learner(env, env_params, config)``.

    ``env`` is a JAX env, or a host env (``scg.envs.host.HostEnv``) whose transitions every
    ``update(state, batch)`` receives. Raises :class:`scg.algorithms.config.ConfigError` for an
    action space that is not a Box, and for OU noise on the host path (the host collector carries
    no noise state: use ``noise="gaussian"``).
    """
    obs_space, action_space = spaces(env, env_params)
    if not isinstance(action_space, Box):
        raise ConfigError(f"{config.name} needs a continuous (Box) action space; {getattr(env, 'name', env)} has "
                          f"{action_space}")
    on_host = not isinstance(env, Environment)
    if on_host and config.noise == "ou":
        raise ConfigError(f"{config.name} config: noise='ou' is not supported on the host path (its collector "
                          "carries no noise state); use noise='gaussian'")
    learner = make_learner(env, env_params, config)
    example = _example_transition(learner, obs_space, action_space)
    act = behaviour(learner, config, action_space)
    venv = None if on_host else VecAutoReset(env, config.num_envs)
    n = config.num_envs

    def init(key: jax.Array) -> OffPolicyState:
        k_learner, k_env, k_run = jax.random.split(key, 3)
        if on_host:
            obs = jnp.zeros((n, *obs_space.shape), jnp.float32)
            env_state = jnp.zeros((n,), jnp.float32)
        else:
            obs, env_state = venv.reset(k_env, env_params)
        return OffPolicyState(
            learner.init(k_learner), replay.init(example, config.buffer_size), obs, env_state,
            exploration.ou_init((n, *action_space.shape)), episodes.init(n), jnp.zeros((), jnp.int32), k_run,
        )

    def env_step(carry, key):
        learner_state, buffer, obs, env_state, noise, stats, steps = carry
        k_noise, k_act, k_env = jax.random.split(key, 3)
        if config.noise == "ou":  # static: the process is stepped (and reset below) only where it is used
            noise, noise_x = exploration.ou_step(noise, k_noise, theta=config.ou_theta, sigma=config.noise_std)
        else:
            noise_x = noise.x
        warm = steps < config.warmup_steps
        action, extras = jax.vmap(act, (None, 0, 0, None, 0))(learner_state, obs, jax.random.split(k_act, n), warm,
                                                              noise_x)
        ts = venv.step(k_env, env_state, action, env_params)
        transitions = {"obs": obs.astype(jnp.float32), "action": action, "reward": ts.reward.astype(jnp.float32),
                       "next_obs": ts.info["final_obs"].astype(jnp.float32),
                       "terminated": ts.terminated.astype(jnp.float32), **extras}
        done = ts.terminated | ts.truncated
        buffer = replay.add(buffer, transitions)
        stats = episodes.update(stats, ts.reward[:, None], done[:, None])
        if config.noise == "ou":
            noise = exploration.ou_reset(noise, done)
        return (learner_state, buffer, ts.obs, ts.state, noise, stats, steps + n), None

    def learn_phase(learner_state, buffer, key):
        sample = lambda k: replay.sample(buffer, k, config.batch_size)  # noqa: E731
        learner_state, metrics = jax.lax.scan(lambda s, k: learner.learn(s, sample, k), learner_state,
                                              jax.random.split(key, config.updates))
        return learner_state, jax.tree_util.tree_map(jnp.mean, metrics)

    def update(state: OffPolicyState, batch: dict | None = None):
        key, k_collect, k_learn = jax.random.split(state.key, 3)
        if batch is None:
            if on_host:
                raise ValueError(f"{config.name}: a host env's update needs the collected batch: update(state, batch)")
            carry = (state.learner, state.buffer, state.obs, state.env_state, state.noise, state.stats, state.env_steps)
            carry, _ = jax.lax.scan(env_step, carry, jax.random.split(k_collect, config.horizon))
            _, buffer, obs, env_state, noise, stats, steps = carry
            env_steps = n * config.horizon
        else:
            missing = sorted((set(example) | {"reward_by_env", "done_by_env"}) - set(batch))
            if missing:
                raise ValueError(f"{config.name}: the host batch lacks {missing}; build it with "
                                 "offpolicy.host_transitions(traj, extras) (extras: what the learner's act records)")
            batch = {k: jnp.asarray(v) for k, v in batch.items()}
            buffer = replay.add(state.buffer, {k: batch[k] for k in example})
            obs, env_state, noise = state.obs, state.env_state, state.noise
            stats = episodes.update(state.stats, batch["reward_by_env"], batch["done_by_env"])
            env_steps = batch["reward"].shape[0]
            steps = state.env_steps + env_steps
        nan_metrics = jax.tree_util.tree_map(
            lambda s: jnp.full(s.shape, jnp.nan, s.dtype),
            jax.eval_shape(lambda: learn_phase(state.learner, buffer, k_learn)[1]),
        )
        learner_state, learned = jax.lax.cond(
            steps >= max(config.warmup_steps, 1),
            lambda: learn_phase(state.learner, buffer, k_learn),
            lambda: (state.learner, nan_metrics),
        )
        extra = {k: v for k, v in learned.items() if k not in ("loss", "grad_norm")}
        metrics = episodes.metrics(stats, env_steps=env_steps, loss=learned["loss"], grad_norm=learned["grad_norm"],
                                   **extra)
        return OffPolicyState(learner_state, buffer, obs, env_state, noise, stats, steps, key), metrics

    return init, update


def host_transitions(traj: Trajectory, extras: dict | None = None) -> dict:
    """A host-collected ``Trajectory`` (time-major ``[T, N, ...]``) as the ``batch`` of ``update(state, batch)``.

    Transitions are flattened time-major (``[T N, ...]``, the order they happened); the per-environment
    rewards and episode ends (``[N, T]``) go along for the episode statistics.
    """
    t, n = np.shape(traj.reward)[:2]
    flat = lambda x: np.asarray(x).reshape((t * n, *np.shape(x)[2:]))  # noqa: E731
    batch = {"obs": flat(traj.obs).astype(np.float32), "action": flat(traj.action).astype(np.float32),
             "reward": flat(traj.reward).astype(np.float32), "next_obs": flat(traj.next_obs).astype(np.float32),
             "terminated": flat(traj.terminated).astype(np.float32)}
    batch.update({k: flat(v) for k, v in (extras or {}).items()})
    batch["reward_by_env"] = np.asarray(traj.reward, np.float32).T
    batch["done_by_env"] = (np.asarray(traj.terminated) | np.asarray(traj.truncated)).T
    return batch


def host_train(algo_name: str, env_id: str, config=None, *, seeds=(0,), num_iterations: int, on_iteration=None,
               **make_kwargs):
    """Train an off-policy algorithm on ``env_id`` stepped by gymnasium on the host, one seed after another.

    Each iteration collects ``horizon`` steps of ``num_envs`` host environments with the jitted
    behaviour policy (uniform while the warm-up lasts at the start of the iteration: the host decides per
    collected chunk, the JAX path per step; Gaussian noise where configured), then runs one
    jitted learn step: ``update(state, host_transitions(traj, extras))``. Returns ``(states, metrics)``
    with metrics ``[seeds, iterations]`` as :func:`scg.algorithms.make_train`'s. ``on_iteration(seed,
    i, metrics)``, if given, is called after each iteration (progress, a time budget: return ``True``
    to stop that seed early; its metrics are then cut to the iterations run).
    """
    from scg.algorithms.base import ALGORITHMS
    from scg.envs.host import HostEnv

    algo = ALGORITHMS[algo_name]
    config = algo.configure(overrides=config)
    states, history = [], []
    learn = init = batched_act = None
    for seed in seeds:
        host = HostEnv(env_id, config.num_envs, seed=10_000 * seed, **make_kwargs)
        try:
            if init is None:
                init_fn, update = algo.make(host, None, config)
                init, learn = jax.jit(init_fn), jax.jit(update, donate_argnums=0)  # the buffer is updated in place
                if algo.make_learner is None:
                    raise ConfigError(f"{algo_name} is not an off-policy algorithm; host_train trains those with a "
                                      "Learner (ddpg, svg0, svg1, smoothie)")
                learner = algo.make_learner(host, None, config)
                act = behaviour(learner, config, host.action_space)
                batched_act = jax.jit(lambda s, obs, key, warm: jax.vmap(act, (None, 0, 0, None, None))(
                    s, obs, jax.random.split(key, obs.shape[0]), warm, jnp.zeros(host.action_space.shape)))
            key_init, key_act = jax.random.split(jax.random.key(seed))
            state, rows = init(key_init), []
            for i, key in enumerate(jax.random.split(key_act, num_iterations)):
                warm = int(state.env_steps) < config.warmup_steps
                collected = []

                def policy(params, obs, key_t):
                    action, extras = batched_act(params, obs, key_t, warm)
                    collected.append(extras)
                    return action

                traj = host.collect_batched(policy, state.learner, key, config.horizon)
                extras = {k: np.stack([np.asarray(e[k]) for e in collected]) for k in (collected[0] if collected else {})}
                state, metrics = learn(state, host_transitions(traj, extras))
                rows.append({k: float(v) for k, v in metrics.items()})
                if on_iteration is not None and on_iteration(seed, i, rows[-1]):
                    break
        finally:
            host.close()
        states.append(state)
        history.append(rows)
    length = min(len(r) for r in history)
    return states, {k: np.array([[r[k] for r in rows[:length]] for rows in history]) for k in history[0][0]}

