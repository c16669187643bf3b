"""SVG(1) with experience replay ("SVG(1) Algorithm" slides ~L552–560; Heess et al. 2015, Algorithm 2) as a graph plus optax.

A Gaussian policy ``π_θ`` (:func:`scg.algorithms.svg0.gaussian_policy`), a learned value function
``V_ψ ≈ V^{π,γ}`` and a learned one-step model ``s' = f_m(s, a) + ζ`` (slides ~L557–558). One
update on a replay minibatch ``{(s_k, a_k, r_k, s'_k, d_k, log π_old(a_k|s_k))}`` is one compiled
graph (:func:`update_graph`)::

    batch ~ replay (observed)                        simulate node, the minibatch
    w_k = sg(min(π_θ(a_k|s_k) / π_old(a_k|s_k), w_max))  truncated importance weight
    a'_k ~ π_θ(·|s_k)         pathwise, OBSERVED = a_k:  η_k = (a_k − μ_θ(s_k))/σ_θ inferred, a'_k = μ_θ + σ_θ sg(η_k)
    s''_k ~ N(f_{sg m}(s_k, a'_k), 1)  pathwise, OBSERVED = s'_k:  ζ_k = s'_k − f(s_k, a'_k) inferred (slides ~L559)
    cost  −w_k [c r(s_k, a'_k) + γ (1 − d_k) V_{sg ψ}(s''_k)]         slides ~L560: Q = E[r + γ V(f(s, a) + ζ)]
    loss  ½ w_k (V_ψ(s_k) − y_k)²,  y_k = c r_k + γ (1 − d_k) V_{ψ'}(s'_k)    fitted policy evaluation, TD(0)
    loss  ½ ‖f_m(s_k, a_k) − s'_k‖² (+ ½ (r̂_m(s_k, a_k) − r_k)²)            the model, least squares

(The slide writes ``a_t = π(s_t, θ, ζ_t)``, reusing ``ζ`` for the policy's noise; here that is ``η``, apart.)
The observed pathwise nodes (``tests/scg/test_observed_pathwise.py``) make the values those of the
recorded transition (``a'_k = a_k``, ``s''_k = s'_k``) while the gradient flows ``θ → a' → (r, f) → V``:
the actor's gradient is ``w (c r_a + γ V'_{s'} f_a) ∂a'/∂θ`` at the inferred noise (Heess et al.'s
one-step ``v_θ``), with model, critic and weights frozen. ``log π_old`` is recorded by ``act`` (an extra of
the transition; the loop replaces it by the uniform density during warm-up). One gradient of the
surrogate gives ``∇_θ``, ``∇_ψ`` and ``∇_m``; none reaches another's parameters.

The reward (a decision, documented): where the environment's reward is a differentiable JAX
function of ``(obs, action)`` it is used (the env's ``obs_reward``; for Pendulum-v1 it is a function of the
state *before* the step, recoverable from its observation ``(cos θ, sin θ, θ̇)``); elsewhere, or with
``known_reward=False``, the model learns ``r̂_m(s, a)`` as one more output.

Heess et al.'s algorithm is known here only as the spec reconstructs it (``spec-rpg-svg.md`` B4).
Values from outside the seeds (ours or Heess et al.'s): the truncation ``w_max = 5`` (Heess et al.
truncate; raylab's ``max_is_ratio``), the model as ``s + MLP([s, a])`` fitted by least squares (the
noise scale does not enter the gradient: ``∂s''/∂f = 1``), network sizes, learning rates, τ, batch
size, warm-up and ``TUNED``.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp

import scg
from scg import dist
from scg.algorithms import offpolicy
from scg.algorithms.base import Algorithm, register
from scg.algorithms.config import non_negative, option, positive, positive_sizes, resolve
from scg.algorithms.networks import make_value, mlp_apply, mlp_init
from scg.algorithms.optimizers import make_optimizer
from scg.algorithms.svg0 import GaussianPolicy, gaussian_policy


@dataclasses.dataclass(frozen=True)
class SVG1Config(offpolicy.OffPolicyConfig):
    name: ClassVar[str] = "svg1"
    hidden: tuple[int, ...] = option((256, 256), positive_sizes)  # actor (mean) and value layers
    model_hidden: tuple[int, ...] = option((256, 256), positive_sizes)
    activation: Literal["relu", "tanh"] = "relu"  # the mean's and the model's; V_ψ has tanh layers (a smooth ∂V/∂s')
    actor_lr: float = option(1e-3, positive)
    critic_lr: float = option(1e-3, positive)  # V_ψ
    model_lr: float = option(1e-3, positive)
    init_std: float = option(0.5, positive)  # σ at the start, in units of the box's half-width h
    min_std: float = option(0.1, positive)  # the floor of σ, in units of h
    learn_std: bool = True
    max_weight: float = option(5.0, positive)  # w_max, the importance weights' truncation
    known_reward: bool = True  # use the env's obs_reward(obs, action, params) where it has one; else the model learns r̂
    entropy_bonus: float = option(0.0, non_negative)


TUNED: dict = {
    # (64, 64) layers for the mean, V and the model; the other values are the defaults (known reward).
    # Measured (tests/algorithms/test_svg.py, seeds split(key(0), 5)): mean return ≥ −200 after 8.2k,
    # 8.4k, 7.2k, 7.0k, 8.0k env steps; with known_reward=False (learned r̂) 7.8k, 10.0k on 2 seeds.
    "Pendulum-v1": dict(hidden=(64, 64), model_hidden=(64, 64)),
}


def known_reward(env, env_params) -> Callable | None:
    """``r(obs, action)`` of a JAX env whose reward is a differentiable function of the observation before the
    step (its ``obs_reward``, e.g. Pendulum-v1's), else ``None`` (a host env, or one without it)."""
    fn = getattr(env, "obs_reward", None)
    return None if fn is None else functools.partial(fn, params=env_params)


class Model(NamedTuple):
    """``s' = f_m(s, a) + ζ`` and ``r̂_m(s, a)``: ``init(key) -> m``, ``apply(m, obs, action) -> (f, r̂)``."""

    init: Callable
    apply: Callable


def make_model(obs_shape, action_shape, hidden, *, activation="relu") -> Model:
    """``f_m(s, a) = s + MLP_m([s, a])[:n]`` (the change of state), ``r̂_m(s, a) = MLP_m([s, a])[n]``."""
    n, k = math.prod(obs_shape), math.prod(action_shape)
    sizes = [n + k, *hidden, n + 1]

    def apply(m, obs, action):
        out = mlp_apply(m, jnp.concatenate([jnp.ravel(obs), jnp.ravel(action)]).astype(jnp.float32), activation)
        return obs + out[:n].reshape(obs_shape), out[n]

    return Model(lambda key: mlp_init(key, sizes, last_scale=0.1), apply)


def update_graph(policy: GaussianPolicy, value, model: Model, reward: Callable | None, obs_shape, action_shape,
                 config: SVG1Config) -> scg.Graph:
    """The graph of one SVG(1) update (module docstring); inputs ``theta``, ``psi``, ``model``, ``targets`` (``ψ'``).

    ``value.apply(ψ, obs)``, ``model.apply(m, obs, action) -> (next_obs, reward)`` and ``reward(obs,
    action)`` (``None``: the model's ``r̂``) may be exact functions. Observe ``batch``, ``a`` (the
    recorded action) and ``s_next`` (the recorded next observation).
    """
    g = scg.Graph("svg1")
    theta, psi, m = g.input("theta"), g.input("psi"), g.input("model")
    targets = g.input("targets", differentiable=False)
    batch = g.simulate("batch", offpolicy.minibatch_placeholder(obs_shape, action_shape, log_prob=()))

    def weight(theta, b):
        log_ratio = jnp.sum(policy.dist(theta, b["obs"]).log_prob(b["action"])) - b["log_prob"]
        return jax.lax.stop_gradient(jnp.minimum(jnp.exp(log_ratio), config.max_weight))

    w = g.deterministic("w", weight, theta, batch)
    a = g.stochastic("a", lambda theta, b: policy.dist(theta, b["obs"]), theta, batch, estimator="pathwise")
    s1 = g.stochastic("s_next", lambda m, b, a: dist.Normal(model.apply(jax.lax.stop_gradient(m), b["obs"], a)[0], 1.0),
                      m, batch, a, estimator="pathwise")

    def r_of(m, obs, action):
        return reward(obs, action) if reward is not None else model.apply(jax.lax.stop_gradient(m), obs, action)[1]

    def q(psi, m, b, w, a, s1):  # −w [c r(s, a') + γ (1 − d) V(f(s, a') + ζ)], V and f frozen
        v1 = value.apply(jax.lax.stop_gradient(psi), s1)
        return -w * (config.reward_scale * r_of(m, b["obs"], a) + config.discount * (1.0 - b["terminated"]) * v1)

    g.cost("q", q, psi, m, batch, w, a, s1)

    def value_loss(psi, targets, b, w):
        v_next = value.apply(targets, b["next_obs"])
        y = config.reward_scale * b["reward"] + config.discount * (1.0 - b["terminated"]) * v_next
        return 0.5 * w * (value.apply(psi, b["obs"]) - jax.lax.stop_gradient(y)) ** 2

    def model_loss(m, b):
        next_obs, r_hat = model.apply(m, b["obs"], b["action"])
        loss = 0.5 * jnp.sum((next_obs - b["next_obs"]) ** 2)
        return loss if reward is not None else loss + 0.5 * (r_hat - b["reward"]) ** 2

    g.loss("value", value_loss, psi, targets, batch, w)
    g.loss("model_fit", model_loss, m, batch)
    if config.entropy_bonus > 0:
        g.loss("entropy", lambda theta: -config.entropy_bonus * jnp.sum(policy.log_std(theta)), theta)
    return g


class SVG1State(NamedTuple):
    params: dict  # {"theta": policy, "psi": value, "model": model}
    targets: list  # ψ'
    opt: dict  # optimizer state per params entry


def make_learner(env, env_params, config: SVG1Config, *, optimizer=None) -> offpolicy.Learner:
    obs_space, action_space = offpolicy.spaces(env, env_params)
    policy = gaussian_policy(obs_space, action_space, config.hidden, activation=config.activation,
                             init_std=config.init_std, min_std=config.min_std, learn_std=config.learn_std)
    value = make_value(obs_space, config.hidden)  # tanh layers: a smooth ∂V/∂s' for the actor's gradient
    model = make_model(obs_space.shape, action_space.shape, config.model_hidden, activation=config.activation)
    reward = known_reward(env, env_params) if config.known_reward else None
    compiled = scg.compile(update_graph(policy, value, model, reward, obs_space.shape, action_space.shape, config))
    opts = {"theta": make_optimizer(config, config.actor_lr, optimizer),
            "psi": make_optimizer(config, config.critic_lr, optimizer),
            "model": make_optimizer(config, config.model_lr, optimizer)}

    def fresh(key):
        keys = jax.random.split(key, 3)
        return {"theta": policy.init(keys[0]), "psi": value.init(keys[1]), "model": model.init(keys[2])}

    example = fresh(jax.random.key(0))
    grad_and_values = compiled.grad_fn({**example, "targets": example["psi"]}, num_samples=config.batch_size,
                                       wrt=tuple(opts), with_values=True)

    def init(key):
        params = fresh(key)
        return SVG1State(params, params["psi"], offpolicy.optimizers_init(opts, params))

    def act(state: SVG1State, obs, key):
        d = policy.dist(state.params["theta"], obs)
        action = d.sample(key)
        return action, {"log_prob": jnp.sum(d.log_prob(action))}

    def learn(state: SVG1State, sample, key):
        k_batch, k_graph = jax.random.split(key)
        b = sample(k_batch)
        grads, values = grad_and_values({**state.params, "targets": state.targets}, k_graph,
                                        {"batch": b, "a": b["action"], "s_next": b["next_obs"]})
        params, opt = offpolicy.optimizers_step(opts, grads, state.opt, state.params)
        metrics = offpolicy.learner_metrics(grads, jnp.mean(values["value"]), q_mean=-jnp.mean(values["q"]),
                                            model_loss=jnp.mean(values["model_fit"]),
                                            is_weight_mean=jnp.mean(values["w"]),
                                            sigma_mean=jnp.mean(jnp.exp(policy.log_std(params["theta"]))))
        return SVG1State(params, offpolicy.polyak(params["psi"], state.targets, config.tau), opt), metrics

    return offpolicy.Learner(init, act, learn)


def make(env, env_params, config: SVG1Config | dict | None = None, *, optimizer=None):
    """``(init, update)`` of :mod:`scg.algorithms.base`; from Python, ``optimizer`` replaces the config's named
    optimizer for every part (:mod:`scg.algorithms.optimizers`)."""
    learner = functools.partial(make_learner, optimizer=optimizer)
    return offpolicy.make(env, env_params, resolve(SVG1Config, config), learner)


ALGORITHM = register(Algorithm("svg1", __doc__.splitlines()[0], ("continuous",), SVG1Config, make, TUNED,
                               make_learner))
