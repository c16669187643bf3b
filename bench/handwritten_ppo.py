"""PPO (clipped surrogate, GAE) hand-written in JAX: the reference for ``algorithms/ppo.py`` on discrete-action envs.

The same algorithm, sizes and rules as ``scg.algorithms.ppo`` with ``surrogate="clip"``,
spelled out without the graph compiler, the way a JAX user writes it (purejaxrl style):

1. rollout: ``lax.scan`` over ``horizon`` steps of a ``vmap`` over ``num_envs``
   environments (``scg.envs.wrappers.AutoReset``), sampling ``a_t ~ π_θ(·|s_t)`` and
   recording ``log π_θ(a_t|s_t)`` and ``V_φ(s_t)``; environments carry on across iterations;
2. GAE (Schulman 2016, Eq. 26) by one reverse scan, reward units, with the
   episode rules of :func:`scg.returns.gae`::

       δ_t = r_t + γ (1 - term_t) V'_{t+1} - V(s_t),  V'_{t+1} = V(s_{t+1}) inside an episode,
             V(final obs_t) on truncation and at the rollout's end;   Â_t = δ_t + γλ (1 - end_t) Â_{t+1}

   and λ-return targets ``R̂_t = V(s_t) + Â_t``;
3. ``epochs`` passes of ``num_minibatches`` shuffled minibatches (``lax.scan``; each minibatch
   gathered inside the scan body), each one Adam step (global-norm clipping) on
   ``-mean min(ρ Â, clip(ρ, 1±ε) Â) + c_v ½ mean (V - R̂)² - c_H mean H``, advantages
   normalised per minibatch.

Networks (tanh MLPs), their initialisation and parameter layout, the optimizer and the
config keys are those of ``scg.algorithms.ppo`` (network and episode-statistics helpers come
from :mod:`handwritten_reinforce`, the other hand-written reference).

Two options beyond ``scg.algorithms.ppo``'s config, off by default, let the reference run
purejaxrl's ``ppo.py`` configuration (``bench/purejaxrl_parity.py``):

- ``anneal_lr`` with ``num_updates`` (iterations in the run): the Adam step size falls
  linearly from ``lr`` to 0 over the run, constant within an iteration:
  ``lr_k = lr (1 - k / num_updates)`` in iteration ``k = 0, 1, ...``;
- ``clip_value_loss``: the value loss becomes ``½ mean max((V - R̂)², (V_clip - R̂)²)`` with
  ``V_clip = V_old + clip(V - V_old, ±ε)``, ``V_old`` the value recorded in the rollout.

Example::

    init, update = make(CartPole(), CartPole().default_params, {"num_envs": 64})
    state, metrics = jax.jit(update)(init(jax.random.key(0)))
    run = jax.jit(make_run(CartPole(), CartPole().default_params, {"num_envs": 4}, num_iterations=20))
    state, metrics = run(jax.random.key(0))   # one seed, purejaxrl's structure: init + scan, no vmap
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from scg.envs.wrappers import AutoReset
from handwritten_reinforce import WINDOW, Stats, logits_fn, mlp_init, update_stats, value_fn

DEFAULT_CONFIG = dict(
    num_envs=8, horizon=128, discount=0.99, gae_lambda=0.95, hidden=(64, 64), lr=1e-3, epochs=4, num_minibatches=4,
    clip_eps=0.2, vf_coef=0.5, ent_coef=0.0, max_grad_norm=0.5, normalize_advantages=True, reward_scale=1.0,
    anneal_lr=False, num_updates=None, clip_value_loss=False,
)


class TrainState(NamedTuple):
    params: dict  # {"theta": {"net": ...}, "phi": [...]}
    opt: optax.OptState
    obs: jax.Array  # [N, obs_dim]
    env_state: object  # [N] pytree
    stats: Stats
    key: jax.Array


class Batch(NamedTuple):
    """Time-major ``[T, N, ...]``."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array


def gae(batch: Batch, v_final, discount, lam):
    """``Â_t`` (reward units) over ``[T, N]`` by one reverse scan; see the module docstring."""
    horizon = batch.reward.shape[0]
    term, trunc = batch.terminated.astype(jnp.float32), batch.truncated.astype(jnp.float32)
    last = (jnp.arange(horizon) == horizon - 1)[:, None]
    cut = jnp.maximum(trunc, last.astype(jnp.float32))
    v_next = jnp.concatenate([batch.value[1:], jnp.zeros_like(batch.value[:1])])
    delta = batch.reward + discount * (1 - term) * jnp.where(cut > 0, v_final, v_next) - batch.value
    keep = discount * lam * (1 - term) * (1 - cut)

    def back(a_tp1, xs):
        delta_t, keep_t = xs
        a_t = delta_t + keep_t * a_tp1
        return a_t, a_t

    return jax.lax.scan(back, jnp.zeros_like(delta[0]), (delta, keep), reverse=True)[1]


def ppo_loss(params, mb, config):
    """Clipped surrogate + value loss - entropy bonus on a minibatch ``mb`` of flattened ``[B, ...]`` arrays."""
    logp = jax.nn.log_softmax(logits_fn(params["theta"], mb["obs"]))
    logp_a = jnp.take_along_axis(logp, mb["action"][:, None], axis=-1)[:, 0]
    log_ratio = logp_a - mb["logp_old"]
    ratio = jnp.exp(log_ratio)
    adv = mb["adv"]
    if config["normalize_advantages"]:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    clipped = jnp.clip(ratio, 1 - config["clip_eps"], 1 + config["clip_eps"])
    policy_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
    value = value_fn(params["phi"], mb["obs"])
    if config.get("clip_value_loss", False):  # purejaxrl's clipped value loss, around the rollout's V_old
        clipped_value = mb["value_old"] + jnp.clip(value - mb["value_old"], -config["clip_eps"], config["clip_eps"])
        value_loss = 0.5 * jnp.mean(jnp.maximum((value - mb["target"]) ** 2, (clipped_value - mb["target"]) ** 2))
    else:
        value_loss = 0.5 * jnp.mean((value - mb["target"]) ** 2)
    total = policy_loss + config["vf_coef"] * value_loss
    if config["ent_coef"]:  # as scg.algorithms.ppo, which leaves the graph's entropy node out when c_H = 0
        total = total + config["ent_coef"] * jnp.mean(jnp.sum(jnp.exp(logp) * logp, axis=-1))
    aux = {"value_loss": value_loss, "approx_kl": jnp.mean(ratio - 1 - log_ratio),
           "clip_frac": jnp.mean(jnp.abs(ratio - 1) > config["clip_eps"])}
    return total, aux


def learning_rate(config: dict):
    """Adam's step size: ``config["lr"]``, or with ``anneal_lr`` a schedule of the optimizer's step count.

    One iteration makes ``epochs × num_minibatches`` optimizer steps, so iteration ``k`` (steps
    ``k·E·M ... (k+1)·E·M - 1``) uses ``lr (1 - k / num_updates)``: ``lr`` in the first
    iteration, ``lr / num_updates`` in the last.
    """
    if not config["anneal_lr"]:
        return config["lr"]
    if not config["num_updates"] or config["num_updates"] < 1:
        raise ValueError("handwritten_ppo: anneal_lr needs num_updates, the number of iterations in the run "
                         f"(total env steps // (num_envs × horizon)); got {config['num_updates']!r}")
    steps_per_iteration = config["epochs"] * config["num_minibatches"]
    lr, num_updates = config["lr"], config["num_updates"]
    return lambda count: lr * (1.0 - (count // steps_per_iteration) / num_updates)


class Parts(NamedTuple):
    """The pieces of one iteration, apart, so that the benchmark can time the data collection alone."""

    init: callable  # key -> TrainState
    collect: callable  # (params, obs, env_state, key) -> ((obs, env_state), Batch, data)
    update: callable  # TrainState -> (TrainState, metrics)


def build(env, env_params, config: dict | None = None) -> Parts:
    """:class:`Parts` of PPO for ``env`` with ``config`` (keys of ``DEFAULT_CONFIG``)."""
    config = {**DEFAULT_CONFIG, **(config or {})}
    n, horizon = config["num_envs"], config["horizon"]
    size, num_mb = n * horizon, config["num_minibatches"]
    stepper = env if isinstance(env, AutoReset) else AutoReset(env)
    obs_dim, num_actions = env.observation_space(env_params).shape[0], env.action_space(env_params).n
    opt = optax.chain(optax.clip_by_global_norm(config["max_grad_norm"]), optax.adam(learning_rate(config), eps=1e-5))
    step_envs = jax.vmap(stepper.step, (0, 0, 0, None))

    def init(key):
        k_net, k_env, k_run = jax.random.split(key, 3)
        k_pi, k_v = jax.random.split(k_net)
        params = {"theta": {"net": mlp_init(k_pi, [obs_dim, *config["hidden"], num_actions], last_scale=0.01)},
                  "phi": mlp_init(k_v, [obs_dim, *config["hidden"], 1])}
        obs, env_state = jax.vmap(stepper.reset, (0, None))(jax.random.split(k_env, n), env_params)
        stats = Stats(jnp.zeros(n), jnp.full(WINDOW, jnp.nan), jnp.zeros((), jnp.int32))
        return TrainState(params, opt.init(params), obs, env_state, stats, k_run)

    def rollout(params, obs, env_state, key):
        def step(carry, key_t):
            obs_t, state_t = carry
            k_act, k_env = jax.random.split(key_t)
            logp = jax.nn.log_softmax(logits_fn(params["theta"], obs_t))
            a_t = jax.random.categorical(k_act, logp)
            logp_a = jnp.take_along_axis(logp, a_t[:, None], axis=-1)[:, 0]
            ts = step_envs(jax.random.split(k_env, n), state_t, a_t, env_params)
            out = Batch(obs_t, a_t, logp_a, value_fn(params["phi"], obs_t), ts.reward.astype(jnp.float32),
                        ts.terminated, ts.truncated, ts.info["final_obs"])
            return (ts.obs, ts.state), out

        return jax.lax.scan(step, (obs, env_state), jax.random.split(key, horizon))

    def collect(params, obs, env_state, key):
        """Rollout, GAE and targets: ``((obs, env_state), batch, data)`` with ``data`` flattened to ``[T·N, ...]``."""
        (obs, env_state), batch = rollout(params, obs, env_state, key)
        v_final = value_fn(params["phi"], batch.final_obs)
        scaled = batch._replace(reward=batch.reward * config["reward_scale"])
        adv = gae(scaled, v_final, config["discount"], config["gae_lambda"])
        target = adv + batch.value
        flat = lambda x: x.reshape((size, *x.shape[2:]))  # noqa: E731
        data = {"obs": flat(batch.obs), "action": flat(batch.action), "logp_old": flat(batch.log_prob),
                "adv": flat(adv), "target": flat(target)}
        if config["clip_value_loss"]:
            data["value_old"] = flat(batch.value)
        return (obs, env_state), batch, data

    def update(state: TrainState):
        key, k_roll, k_perm = jax.random.split(state.key, 3)
        (obs, env_state), batch, data = collect(state.params, state.obs, state.env_state, k_roll)

        def minibatch(carry, idx):
            params, opt_state = carry
            mb = jax.tree_util.tree_map(lambda x: x[idx], data)
            (loss, aux), grads = jax.value_and_grad(ppo_loss, has_aux=True)(params, mb, config)
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), {"loss": loss, "grad_norm": optax.global_norm(grads), **aux}

        def epoch(carry, k):
            order = jax.random.permutation(k, size).reshape(num_mb, size // num_mb)
            return jax.lax.scan(minibatch, carry, order)

        (params, opt_state), stats = jax.lax.scan(epoch, (state.params, state.opt), jax.random.split(k_perm, config["epochs"]))
        episode_stats = update_stats(state.stats, batch.reward, batch.terminated | batch.truncated)
        metrics = {"env_steps": jnp.asarray(size, jnp.float32), "mean_return": jnp.nanmean(episode_stats.recent),
                   "episodes": episode_stats.count.astype(jnp.float32), **jax.tree_util.tree_map(jnp.mean, stats)}
        return TrainState(params, opt_state, obs, env_state, episode_stats, key), metrics

    return Parts(init, collect, update)


def make(env, env_params, config: dict | None = None):
    """``(init(key) -> TrainState, update(state) -> (state, metrics))``, like ``scg.algorithms.ppo.make``."""
    parts = build(env, env_params, config)
    return parts.init, parts.update


def make_run(env, env_params, config: dict | None = None, num_iterations: int = 1):
    """``run(key) -> (TrainState, metrics)``: init and ``num_iterations`` iterations in one ``lax.scan``, one seed.

    The structure of purejaxrl's ``train(rng)`` (no ``vmap`` over seeds): ``jax.jit(run)`` is the
    whole run as one XLA program. Metrics are stacked over iterations.
    """
    init, update = make(env, env_params, config)

    def run(key):
        return jax.lax.scan(lambda s, _: update(s), init(key), None, length=num_iterations)

    return run


def make_train(env, env_params, config: dict | None = None):
    """Like ``scg.algorithms.make_train``: ``init_all(keys)``, ``run_all(states, num_iterations)`` (seeds ``vmap``-ed)."""
    init, update = make(env, env_params, config)
    run_one = lambda s, k: jax.lax.scan(lambda s, _: update(s), s, None, length=k)  # noqa: E731
    return jax.jit(jax.vmap(init)), jax.jit(jax.vmap(run_one, in_axes=(0, None)), static_argnums=1)
