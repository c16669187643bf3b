"""DDPG hand-written in JAX: the reference for ``algorithms/ddpg.py``'s update (one replay minibatch, one step).

The same update as ``scg.algorithms.ddpg`` with its default config, spelled out without the
graph compiler, the way single-file JAX RL code writes it (cleanRL's ``ddpg_continuous_action_jax``,
purejaxrl): batched networks on ``[B, ...]`` arrays, one jitted update function, optax. On a
minibatch ``(s_k, a_k, r_k, s'_k, d_k)``, ``k = 1..B`` (Lillicrap et al. 2016, Algorithm 1)::

    y_k   = c r_k + γ (1 − d_k) Q_{φ'}(s'_k, μ_{θ'}(s'_k))          TD(0) target from the target networks
    L(φ)  = (1/B) Σ_k ½ (Q_φ(s_k, a_k) − y_k)²                      critic: regression on y (no gradient into y)
    J(θ)  = −(1/B) Σ_k Q_φ(s_k, μ_θ(s_k))                           actor: the deterministic policy gradient
    θ, φ  ← Adam steps on ∇_θ J and ∇_φ L, both taken at the same (θ, φ)
    θ', φ' ← τ (θ, φ) + (1 − τ) (θ', φ')                             Polyak, after the Adam steps

Both gradients are taken at the parameters the update starts from, as the compiled graph
takes them (one gradient of one surrogate); cleanRL steps the critic first and takes the
actor's gradient at the new critic, a different update. Networks: ``μ_θ(s) = c + h tanh(MLP_θ(s))``
into the action box ``[c − h, c + h]`` and ``Q_φ(s, a) = MLP_φ([s, a])``, ReLU hidden layers
(256, 256); initialised as ``scg.algorithms.networks`` does (the same keys give the same
parameters, and the parameter layout is the same, so states can be exchanged).

The replay buffer is a dict of ``[capacity, ...]`` arrays and its filled size (the layout of
``scg.algorithms.replay``); :func:`sample` draws a minibatch uniformly with replacement.

Example::

    ddpg = build(obs_dim=3, action_low=[-2.0], action_high=[2.0])
    state = ddpg.init(jax.random.key(0))
    state, metrics = jax.jit(ddpg.update)(state, batch)          # batch: a Transition of [256, ...] arrays
    state, metrics = jax.jit(ddpg.train)(state, buffer, size, jax.random.split(key, 100))   # 100 updates
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

DEFAULT_CONFIG = dict(
    hidden=(256, 256), activation="relu", actor_lr=1e-3, critic_lr=1e-3, discount=0.99, tau=0.005, reward_scale=1.0,
    batch_size=256,
)
ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh}


class Transition(NamedTuple):
    """One transition, or a minibatch of them (leading axis ``B``)."""

    obs: jax.Array  # [B, obs_dim]
    action: jax.Array  # [B, act_dim], as executed (before the environment clips it)
    reward: jax.Array  # [B]
    next_obs: jax.Array  # [B, obs_dim]
    terminated: jax.Array  # [B] float: 1 where s' is terminal (no bootstrap); a time limit is not


class TrainState(NamedTuple):
    actor: list  # θ: [{"w", "b"}] per layer
    critic: list  # φ
    actor_target: list  # θ'
    critic_target: list  # φ'
    actor_opt: optax.OptState
    critic_opt: optax.OptState


class DDPG(NamedTuple):
    init: Callable  # key -> TrainState
    update: Callable  # (TrainState, Transition [B]) -> (TrainState, metrics)
    train: Callable  # (TrainState, buffer, size, keys [U]) -> (TrainState, metrics averaged over the U updates)


def mlp_init(key, sizes, last_scale=1.0):
    """Normal weights with std ``sqrt(1/n_in)`` (times ``last_scale`` in the last layer), zero biases."""
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        scale = (last_scale if i == len(sizes) - 2 else 1.0) * jnp.sqrt(1.0 / n_in)
        layers.append({"w": scale * jax.random.normal(k, (n_in, n_out)), "b": jnp.zeros(n_out)})
    return layers


def mlp(layers, x, act):
    for layer in layers[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def sample(buffer: Transition, size, key, batch_size: int) -> Transition:
    """``batch_size`` transitions uniformly, with replacement, from the first ``size`` slots of ``buffer``."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(size, 1), dtype=jnp.int32)
    return jax.tree_util.tree_map(lambda x: x[idx], buffer)


def build(obs_dim: int, action_low, action_high, config: dict | None = None) -> DDPG:
    """:class:`DDPG` for observations of ``obs_dim`` floats and actions in the box ``[action_low, action_high]``."""
    config = {**DEFAULT_CONFIG, **(config or {})}
    unknown = set(config) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}")
    act = ACTIVATIONS[config["activation"]]
    low, high = np.asarray(action_low, np.float32), np.asarray(action_high, np.float32)
    centre, half = jnp.asarray((high + low) / 2), jnp.asarray((high - low) / 2)
    act_dim, hidden = low.size, tuple(config["hidden"])
    gamma, tau, scale, batch_size = config["discount"], config["tau"], config["reward_scale"], config["batch_size"]
    actor_opt, critic_opt = optax.adam(config["actor_lr"]), optax.adam(config["critic_lr"])

    def actor(theta, obs):  # [B, obs_dim] -> [B, act_dim]
        return centre + half * jnp.tanh(mlp(theta, obs, act))

    def critic(phi, obs, action):  # -> [B]
        return mlp(phi, jnp.concatenate([obs, action], axis=-1), act)[:, 0]

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        theta = mlp_init(k_actor, [obs_dim, *hidden, act_dim], last_scale=0.01)
        phi = mlp_init(k_critic, [obs_dim + act_dim, *hidden, 1])
        return TrainState(theta, phi, theta, phi, actor_opt.init(theta), critic_opt.init(phi))

    def actor_loss(theta, phi, obs):
        mu = actor(theta, obs)
        q = critic(phi, obs, mu)
        return -jnp.mean(q), (q, mu)

    def critic_loss(phi, batch, y):
        td = 0.5 * (critic(phi, batch.obs, batch.action) - y) ** 2
        return jnp.mean(td)

    def update(state: TrainState, batch: Transition):
        assert batch.obs.ndim == 2 and batch.reward.ndim == 1, "a minibatch: obs [B, obs_dim], reward [B]"
        next_q = critic(state.critic_target, batch.next_obs, actor(state.actor_target, batch.next_obs))
        y = scale * batch.reward + gamma * (1.0 - batch.terminated) * next_q
        (_, (q, mu)), g_actor = jax.value_and_grad(actor_loss, has_aux=True)(state.actor, state.critic, batch.obs)
        loss, g_critic = jax.value_and_grad(critic_loss)(state.critic, batch, y)
        step, actor_opt_state = actor_opt.update(g_actor, state.actor_opt, state.actor)
        theta = optax.apply_updates(state.actor, step)
        step, critic_opt_state = critic_opt.update(g_critic, state.critic_opt, state.critic)
        phi = optax.apply_updates(state.critic, step)
        polyak = lambda new, old: tau * new + (1.0 - tau) * old  # noqa: E731
        new = TrainState(theta, phi, jax.tree_util.tree_map(polyak, theta, state.actor_target),
                         jax.tree_util.tree_map(polyak, phi, state.critic_target), actor_opt_state, critic_opt_state)
        actor_norm = optax.global_norm(g_actor)
        metrics = {"loss": loss, "grad_norm": optax.global_norm((g_actor, g_critic)), "q_mean": jnp.mean(q),
                   "mu_mean": jnp.mean(mu), "actor_grad_norm": actor_norm}
        return new, metrics

    def train(state: TrainState, buffer: Transition, size, keys):
        """``len(keys)`` updates in one ``lax.scan``, each on its own minibatch ``sample(buffer, size, key)``."""
        def step(state, key):
            return update(state, sample(buffer, size, key, batch_size))

        state, metrics = jax.lax.scan(step, state, keys)
        return state, jax.tree_util.tree_map(jnp.mean, metrics)

    return DDPG(init, update, train)
