"""SVG(0) with experience replay ("SVG(0) Algorithm" slides ~L537–550; Heess et al. 2015, Algorithm 3) as a graph plus optax.

A Gaussian policy ``π_θ(a|s) = N(μ_θ(s), σ_θ²)`` (the mean squashed into the action box, a
state-independent ``σ``: :func:`gaussian_policy`), reparameterised ``a = μ_θ(s) + σ_θ z`` with
``z ~ N(0, 1)`` (slides ~L493, "Reparameterize"), and a learned ``Q_φ ≈ Q^{π,γ}`` (slides ~L539; the gradient ~L532).
One update on a replay minibatch ``{(s_k, a_k, r_k, s'_k, d_k)}`` is one compiled graph (:func:`update_graph`)::

    batch ~ replay (observed)                     simulate node, the minibatch
    a'_k ~ π_θ(·|s_k)    estimator="pathwise"     fresh noise z_k (the slides' z_t)
    cost   −Q_{sg(φ)}(s_k, a'_k)                   slides ~L548: g ∝ ∇_θ Σ_t Q(s_t, π(s_t, z_t; θ)), critic held fixed
    z''_k ~ N(0, 1)                               the next action's noise
    loss   ½ (Q_φ(s_k, a_k) − y_k)²                slides ~L549 with TD(0) (~L593, "valid off-policy"):
           y_k = c r_k + γ (1 − d_k) Q_{φ'}(s'_k, μ_{sg θ}(s'_k) + σ_{sg θ} z''_k)
    loss   −β Σ log σ_θ                            optional entropy bonus (β = ``entropy_bonus``, default 0)

The slides' loop updates on the ``T`` steps just collected; here, as in Heess et al.'s SVG(0) with
replay, every update draws a minibatch from the replay buffer of :mod:`scg.algorithms.offpolicy`.
One gradient of the surrogate gives ``∇_θ`` (pathwise, ``∂Q/∂a · ∂a/∂θ``: slides ~L532) and
``∇_φ``; they never mix (the critic enters the actor's cost through ``stop_gradient``, the TD
loss sees the recorded action and ``sg(θ)``). The behaviour policy is ``π_θ`` itself (the loop
adds no noise); no importance weights: with fresh ``z`` the actor's gradient is the right one at
every replayed state ("a little biased … only because state distribution is off", slides
~L594), and the TD(0) critic is valid off-policy. SVG(1) (:mod:`scg.algorithms.svg1`) is the
variant with inferred noise and weights.

The covariance (a decision, documented): the slides say nothing about ``σ``; Smoothie notes SVG
"does not provide an update for the covariance". Here ``log σ`` is a parameter that the same
pathwise gradient moves (``∂Q/∂a · z``, which for a concave ``Q`` shrinks ``σ``), with a floor
``σ ≥ min_std · h`` (``h`` the box's half-width; the gradient is zero below it) so exploration
never vanishes; ``learn_std=False`` keeps ``σ`` fixed at ``init_std · h``.

Heess et al.'s algorithm is known here only as the spec reconstructs it (``spec-rpg-svg.md`` B5).
Values from outside the seeds (ours): the squashed mean, the ``σ`` floor and its default
(0.1 h = 0.05 of the action range, spec B5), network sizes, learning rates, the target action
drawn from the current policy (Heess et al.'s fitted policy evaluation; DDPG's slides use ``θ'``),
τ, batch size, warm-up and the ``TUNED`` entries.
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
from scg.algorithms.networks import action_scale, make_actor, make_q
from scg.algorithms.optimizers import make_optimizer


@dataclasses.dataclass(frozen=True)
class SVG0Config(offpolicy.OffPolicyConfig):
    name: ClassVar[str] = "svg0"
    hidden: tuple[int, ...] = option((256, 256), positive_sizes)  # actor (mean) and critic layers
    activation: Literal["relu", "tanh"] = "relu"
    actor_lr: float = option(1e-3, positive)  # μ_θ and log σ
    critic_lr: float = option(1e-3, positive)
    init_std: float = option(0.5, positive)  # σ at the start, in units of the box's half-width h
    min_std: float = option(0.1, positive)  # the floor of σ, in units of h
    learn_std: bool = True  # False: σ stays at init_std · h
    entropy_bonus: float = option(0.0, non_negative)  # β


TUNED: dict = {
    # (64, 64) layers, as DDPG's entry: cheap on 2 cores. The other values are the defaults; the floor
    # σ = 0.2 is reached within the first 5k steps. Measured (tests/algorithms/test_svg.py, seeds
    # split(key(0), 5)): mean return ≥ −200 after 7.6k, 7.6k, 12.6k, 10.6k, 9.6k env steps.
    "Pendulum-v1": dict(hidden=(64, 64)),
}


class GaussianPolicy(NamedTuple):
    """``π_θ(a|s) = N(μ_θ(s), σ_θ²)``: ``init(key) -> θ``, ``dist(θ, obs) -> scg.dist.Normal``, ``log_std(θ)``."""

    init: Callable
    dist: Callable
    log_std: Callable  # θ -> log σ (action-shaped, floored)


def gaussian_policy(obs_space, action_space, hidden, *, activation="relu", init_std=0.5, min_std=0.1,
                    learn_std=True) -> GaussianPolicy:
    """Mean ``c + h tanh(MLP_θ(s))`` (:func:`scg.algorithms.networks.make_actor`), ``σ = h · max(e^{ℓ}, min_std)``.

    ``ℓ`` is one free parameter per action dimension (``θ["log_std"]``), held by ``stop_gradient``
    when ``learn_std`` is False. The executed action is not squashed (the environment clips it).
    """
    actor = make_actor(obs_space, action_space, hidden, activation=activation)
    _, half = action_scale(action_space)
    shape = action_space.shape

    def init(key):
        return {"mu": actor.init(key), "log_std": jnp.full(shape, math.log(init_std), jnp.float32)}

    def log_std(theta):
        ell = theta["log_std"] if learn_std else jax.lax.stop_gradient(theta["log_std"])
        return jnp.log(half) + jnp.maximum(ell, math.log(min_std))

    def policy_dist(theta, obs):
        return dist.Normal(actor.apply(theta["mu"], obs), jnp.exp(log_std(theta)))

    return GaussianPolicy(init, policy_dist, log_std)


def update_graph(policy: GaussianPolicy, critic, obs_shape, action_shape, config: SVG0Config) -> scg.Graph:
    """The graph of one SVG(0) update (module docstring); inputs ``theta``, ``phi``, ``targets`` (``φ'``).

    ``critic`` has ``apply(φ, obs, action) -> scalar``; any such function (an exact ``Q``) will do.
    """
    g = scg.Graph("svg0")
    theta, phi = g.input("theta"), g.input("phi")
    targets = g.input("targets", differentiable=False)
    batch = g.simulate("batch", offpolicy.minibatch_placeholder(obs_shape, action_shape))
    a = g.stochastic("a", lambda theta, b: policy.dist(theta, b["obs"]), theta, batch, estimator="pathwise")
    g.cost("q", lambda phi, b, a: -critic.apply(jax.lax.stop_gradient(phi), b["obs"], a), phi, batch, a)
    z_next = g.stochastic("z_next", lambda b: dist.Normal(jnp.zeros(action_shape), 1.0), batch)

    def td(phi, theta, targets, b, z):
        next_a = policy.dist(jax.lax.stop_gradient(theta), b["next_obs"]).reparameterize(z)
        y = config.reward_scale * b["reward"] + config.discount * (1.0 - b["terminated"]) * critic.apply(
            targets, b["next_obs"], next_a)
        return 0.5 * (critic.apply(phi, b["obs"], b["action"]) - jax.lax.stop_gradient(y)) ** 2

    g.loss("td", td, phi, theta, targets, batch, z_next)
    if config.entropy_bonus > 0:  # H[N(μ, σ²)] = Σ log σ + const
        g.loss("entropy", lambda theta: -config.entropy_bonus * jnp.sum(policy.log_std(theta)), theta)
    return g


class SVG0State(NamedTuple):
    params: dict  # {"theta": policy, "phi": critic}
    targets: jax.Array  # φ'
    opt: dict  # {"theta": actor's Adam state, "phi": critic's}


def make_learner(env, env_params, config: SVG0Config, *, optimizer=None) -> offpolicy.Learner:
    obs_space, action_space = offpolicy.spaces(env, env_params)
    policy = gaussian_policy(obs_space, action_space, config.hidden, activation=config.activation,
                             init_std=config.init_std, min_std=config.min_std, learn_std=config.learn_std)
    critic = make_q(obs_space, action_space, config.hidden, activation=config.activation)
    compiled = scg.compile(update_graph(policy, critic, obs_space.shape, action_space.shape, config))
    optimizers = {"theta": make_optimizer(config, config.actor_lr, optimizer),
                  "phi": make_optimizer(config, config.critic_lr, optimizer)}
    example = {"theta": policy.init(jax.random.key(0)), "phi": critic.init(jax.random.key(0))}
    grad_and_values = compiled.grad_fn({**example, "targets": example["phi"]}, num_samples=config.batch_size,
                                       wrt=("theta", "phi"), with_values=True)

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        params = {"theta": policy.init(k_actor), "phi": critic.init(k_critic)}
        return SVG0State(params, params["phi"], offpolicy.optimizers_init(optimizers, params))

    def act(state: SVG0State, obs, key):
        return policy.dist(state.params["theta"], obs).sample(key), {}

    def learn(state: SVG0State, sample, key):
        k_batch, k_graph = jax.random.split(key)
        grads, values = grad_and_values({**state.params, "targets": state.targets}, k_graph, {"batch": sample(k_batch)})
        params, opt = offpolicy.optimizers_step(optimizers, grads, state.opt, state.params)
        metrics = offpolicy.learner_metrics(grads, jnp.mean(values["td"]), q_mean=-jnp.mean(values["q"]),
                                            sigma_mean=jnp.mean(jnp.exp(policy.log_std(params["theta"]))))
        return SVG0State(params, offpolicy.polyak(params["phi"], state.targets, config.tau), opt), metrics

    return offpolicy.Learner(init, act, learn)


def make(env, env_params, config: SVG0Config | dict | None = None, *, optimizer=None):
    """``(init, update)`` of :mod:`scg.algorithms.base`; from Python, ``optimizer`` replaces the config's named
    optimizer for every part (:mod:`scg.algorithms.optimizers`)."""
    learner = functools.partial(make_learner, optimizer=optimizer)
    return offpolicy.make(env, env_params, resolve(SVG0Config, config), learner)


ALGORITHM = register(Algorithm("svg0", __doc__.splitlines()[0], ("continuous",), SVG0Config, make, TUNED,
                               make_learner))
