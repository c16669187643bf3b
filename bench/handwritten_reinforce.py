"""REINFORCE with a learned state-value baseline, hand-written in JAX: the reference for ``algorithms/reinforce.py``.

The same algorithm, sizes and rules as ``scg.algorithms.reinforce`` (Schulman 2016,
Eq. 44; the "vanilla policy gradient" slide), spelled out without the graph
compiler, the way a JAX user writes it (purejaxrl style):

1. rollout: ``lax.scan`` over ``horizon`` steps of a ``vmap`` over ``num_envs``
   JAX CartPoles (``scg.envs.wrappers.AutoReset``), sampling ``a_t ~ π_θ(·|s_t)``;
   environments carry on across iterations;
2. returns by one reverse scan, in reward units, with the same episode rules as
   :mod:`scg.returns`::

       G_t = r_t + γ (1 - term_t) [(1 - trunc_t) G_{t+1} + trunc_t V_φ(s'_t)],
       G_{T-1} = r_{T-1} + γ (1 - term_{T-1}) V_φ(s'_{T-1})

   (``s'_t`` the observation before any auto-reset);
3. policy step: ``jax.grad`` of the surrogate
   ``-(1/N) Σ_{n,t} log π_θ(a_t|s_t) (G_t - V_φ(s_t))`` (log-probabilities
   recomputed in one batch after the rollout), Adam;
4. value refit: ``value_epochs`` full-batch Adam steps on ``½ (V_φ(s_t) - G_t)²``.

The networks (tanh MLPs, the same initialisation and parameter layout as
``scg.algorithms.networks``), optimizers and config are the same, so parameters
and trajectories can be exchanged with the compiled version: ``policy_grad``
below, fed the same trajectory, gives the compiled graph's gradient to float
rounding (checked by ``bench_training.py`` before timing).

Example::

    init, update = make(CartPole(), CartPole().default_params, {"num_envs": 64})
    state, metrics = jax.jit(update)(init(jax.random.key(0)))
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from scg.envs.wrappers import AutoReset

DEFAULT_CONFIG = dict(
    num_envs=8, horizon=200, discount=0.99, hidden=(64, 64), policy_lr=0.01, value_lr=0.003, value_epochs=20
)
WINDOW = 20  # mean return over the last 20 finished episodes


# -- networks: same layout and init as scg.algorithms.networks --------------------------------------------------
def mlp_init(key, sizes, last_scale=1.0):
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for i, (k, n_in, n_out) in enumerate(zip(keys, sizes[:-1], sizes[1:])):
        scale = (last_scale if i == len(sizes) - 2 else 1.0) * jnp.sqrt(1.0 / n_in)
        layers.append({"w": scale * jax.random.normal(k, (n_in, n_out)), "b": jnp.zeros(n_out)})
    return layers


def mlp(layers, x):
    """Any leading batch axes: ``x @ w`` broadcasts."""
    for layer in layers[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def logits_fn(theta, obs):
    return mlp(theta["net"], obs)


def value_fn(phi, obs):
    return mlp(phi, obs)[..., 0]


# -- state --------------------------------------------------------------------------------------------------
class Stats(NamedTuple):
    running: jax.Array  # [N] return of the episode in progress
    recent: jax.Array  # [WINDOW] ring buffer of finished-episode returns
    count: jax.Array  # episodes finished


class TrainState(NamedTuple):
    theta: dict
    phi: list
    policy_opt: optax.OptState
    value_opt: optax.OptState
    obs: jax.Array  # [N, 4]
    env_state: object  # [N] pytree
    stats: Stats
    key: jax.Array


class Batch(NamedTuple):
    """Time-major ``[T, N, ...]``."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array


def update_stats(stats: Stats, reward, done) -> Stats:
    """Fold ``[T, N]`` rewards and episode ends into the running returns and the ring buffer (vectorised per step)."""

    def step(s, xs):
        r_t, d_t = xs
        running = s.running + r_t
        n_done = jnp.sum(d_t)
        order = jnp.cumsum(d_t) - 1  # rank of each finished env among this step's finishers
        keep = d_t & (n_done - order <= WINDOW)  # only the last WINDOW finishers can survive in the buffer
        slot = jnp.where(keep, (s.count + order) % WINDOW, WINDOW)  # WINDOW = out of range: dropped
        recent = s.recent.at[slot].set(running, mode="drop", unique_indices=True)
        return Stats(jnp.where(d_t, 0.0, running), recent, s.count + n_done.astype(jnp.int32)), None

    return jax.lax.scan(step, stats, (reward, done))[0]


# -- the algorithm ------------------------------------------------------------------------------------------
def returns(batch: Batch, v_final, discount):
    """``G_t`` (reward units) by one reverse scan over ``[T, N]``; see the module docstring."""
    last = jnp.arange(batch.reward.shape[0]) == batch.reward.shape[0] - 1
    term, trunc = batch.terminated.astype(jnp.float32), batch.truncated.astype(jnp.float32)

    def back(g_tp1, xs):
        r_t, term_t, trunc_t, v_t, last_t = xs
        follow = jnp.where(last_t, v_t, (1 - trunc_t) * g_tp1 + trunc_t * v_t)
        g_t = r_t + discount * (1 - term_t) * follow
        return g_t, g_t

    _, g = jax.lax.scan(back, jnp.zeros_like(batch.reward[0]), (batch.reward, term, trunc, v_final, last), reverse=True)
    return g


def policy_grad(theta, phi, batch: Batch, discount):
    """``(∇_θ surrogate, G)``: the REINFORCE gradient with baseline ``V_φ(s_t)`` and the value targets."""
    g = returns(batch, value_fn(phi, batch.final_obs), discount)
    adv = g - value_fn(phi, batch.obs)
    num_envs = batch.reward.shape[1]

    def surrogate(theta):
        logp = jax.nn.log_softmax(logits_fn(theta, batch.obs))
        logp_a = jnp.take_along_axis(logp, batch.action[..., None], axis=-1)[..., 0]
        return -jnp.sum(logp_a * adv) / num_envs

    return jax.grad(surrogate)(theta), g


class Parts(NamedTuple):
    """The pieces of one iteration, apart, so that the benchmark can time them one by one."""

    init: callable  # key -> TrainState
    rollout: callable  # (theta, obs, env_state, key) -> ((obs, env_state), Batch)
    fit_value: callable  # (phi, opt_state, obs, targets) -> (phi, opt_state, loss)
    update: callable  # TrainState -> (TrainState, metrics)


def make(env, env_params, config: dict | None = None):
    """``(init(key) -> TrainState, update(state) -> (state, metrics))``, like ``scg.algorithms.reinforce.make``."""
    parts = build(env, env_params, config)
    return parts.init, parts.update


def build(env, env_params, config: dict | None = None) -> Parts:
    """:class:`Parts` of REINFORCE for ``env`` with ``config`` (keys of ``DEFAULT_CONFIG``)."""
    config = {**DEFAULT_CONFIG, **(config or {})}
    n, horizon, discount = config["num_envs"], config["horizon"], config["discount"]
    stepper = env if isinstance(env, AutoReset) else AutoReset(env)
    obs_dim, num_actions = env.observation_space(env_params).shape[0], env.action_space(env_params).n
    policy_opt, value_opt = optax.adam(config["policy_lr"]), optax.adam(config["value_lr"])
    step_envs = jax.vmap(stepper.step, (0, 0, 0, None))

    def init(key):
        k_pi, k_v, k_env, k_run = jax.random.split(key, 4)
        theta = {"net": mlp_init(k_pi, [obs_dim, *config["hidden"], num_actions], last_scale=0.01)}
        phi = mlp_init(k_v, [obs_dim, *config["hidden"], 1])
        obs, env_state = jax.vmap(stepper.reset, (0, None))(jax.random.split(k_env, n), env_params)
        stats = Stats(jnp.zeros(n), jnp.full(WINDOW, jnp.nan), jnp.zeros((), jnp.int32))
        return TrainState(theta, phi, policy_opt.init(theta), value_opt.init(phi), obs, env_state, stats, k_run)

    def rollout(theta, obs, env_state, key):
        def step(carry, key_t):
            obs_t, state_t = carry
            k_act, k_env = jax.random.split(key_t)
            a_t = jax.random.categorical(k_act, logits_fn(theta, obs_t))
            ts = step_envs(jax.random.split(k_env, n), state_t, a_t, env_params)
            out = Batch(obs_t, a_t, ts.reward.astype(jnp.float32), ts.terminated, ts.truncated, ts.info["final_obs"])
            return (ts.obs, ts.state), out

        return jax.lax.scan(step, (obs, env_state), jax.random.split(key, horizon))

    def fit_value(phi, opt_state, obs, targets):
        obs, targets = obs.reshape(-1, obs.shape[-1]), targets.reshape(-1)  # one [T·N, 4] batch

        def loss_fn(phi):
            return 0.5 * jnp.mean((value_fn(phi, obs) - targets) ** 2)

        def epoch(carry, _):
            phi, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(phi)
            updates, opt_state = value_opt.update(grads, opt_state, phi)
            return (optax.apply_updates(phi, updates), opt_state), loss

        (phi, opt_state), losses = jax.lax.scan(epoch, (phi, opt_state), None, length=config["value_epochs"])
        return phi, opt_state, losses[-1]

    def update(state: TrainState):
        key, k_roll = jax.random.split(state.key)
        (obs, env_state), batch = rollout(state.theta, state.obs, state.env_state, k_roll)
        grads, g = policy_grad(state.theta, state.phi, batch, discount)
        updates, policy_opt_state = policy_opt.update(grads, state.policy_opt, state.theta)
        theta = optax.apply_updates(state.theta, updates)
        phi, value_opt_state, value_loss = fit_value(state.phi, state.value_opt, batch.obs, g)
        stats = update_stats(state.stats, batch.reward, batch.terminated | batch.truncated)
        metrics = {
            "env_steps": jnp.asarray(n * horizon, jnp.float32),
            "mean_return": jnp.nanmean(stats.recent),
            "episodes": stats.count.astype(jnp.float32),
            "loss": value_loss,
            "grad_norm": optax.global_norm(grads),
        }
        new = TrainState(theta, phi, policy_opt_state, value_opt_state, obs, env_state, stats, key)
        return new, metrics

    return Parts(init, rollout, fit_value, update)


def make_train(env, env_params, config: dict | None = None):
    """Like ``scg.algorithms.make_train``: ``init_all(keys)``, ``run_all(states, num_iterations)``.

    ``run_all`` is one ``jit`` of a ``lax.scan`` over iterations, ``vmap``ped over seeds.
    """
    init, update = make(env, env_params, config)
    run_one = lambda s, k: jax.lax.scan(lambda s, _: update(s), s, None, length=k)  # noqa: E731
    return jax.jit(jax.vmap(init)), jax.jit(jax.vmap(run_one, in_axes=(0, None)), static_argnums=1)
