"""Deep deterministic policy gradient (DDPG; "DDPG" slides ~L596–615, Lillicrap et al. 2016) as a graph plus optax.

A deterministic actor ``a = μ_θ(s)`` (in the action box, :func:`scg.algorithms.networks.make_actor`)
and a critic ``Q_φ(s, a)``, both with Polyak-averaged targets ``θ'``, ``φ'``. One update on a
replay minibatch ``{(s_k, a_k, r_k, s'_k, d_k)}`` is one compiled graph (:func:`update_graph`)::

    batch ~ replay (observed)                       simulate node, the minibatch
    a_k = μ_θ(s_k)                                  deterministic, differentiable in θ
    cost   −Q_{sg(φ)}(s_k, a_k)                     the actor's cost; the critic held fixed (Eq. 6 of Smoothie, DPG)
    loss   ½ (Q_φ(s_k, a_k^rec) − y_k)²             TD(0) against the targets (slides ~L606):
           y_k = c r_k + γ (1 − d_k) Q_{φ'}(s'_k, μ_{θ'}(s'_k))

so one gradient of the surrogate gives ``∇_θ`` (the deterministic policy gradient
``∂Q/∂a ∇_θ μ_θ``, no score term: nothing is sampled on the actor's path) and ``∇_φ`` (the TD
regression), and the two never mix: the critic enters the actor's cost through ``stop_gradient``
and the loss sees the recorded action, not ``μ_θ``. Exploration is the loop's
(:mod:`scg.algorithms.offpolicy`): Gaussian or Ornstein–Uhlenbeck noise added to ``μ_θ(s)``.

Values from outside the seeds: the slides give the structure only. Lillicrap et al. use Adam
1e-4 / 1e-3, τ = 0.001, batch 64, (400, 300) ReLU and OU noise (θ = 0.15, σ = 0.2); our
defaults keep their Adam rates (1e-4 actor, 1e-3 critic); (256, 256) ReLU, τ = 0.005, batch 256 and
Gaussian noise σ = 0.1 are common modern choices, and ``TUNED`` holds what the checks use per environment.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp

import scg
from scg.algorithms import offpolicy
from scg.algorithms.base import Algorithm, register
from scg.algorithms.config import option, positive, positive_sizes, resolve
from scg.algorithms.networks import make_actor, make_q
from scg.algorithms.optimizers import make_optimizer


@dataclasses.dataclass(frozen=True)
class DDPGConfig(offpolicy.OffPolicyConfig):
    name: ClassVar[str] = "ddpg"
    hidden: tuple[int, ...] = option((256, 256), positive_sizes)  # actor and critic layers
    activation: Literal["relu", "tanh"] = "relu"
    actor_lr: float = option(1e-4, positive)  # Lillicrap et al.'s; 1e-3 pinned Hopper's actions at the box's edge
    critic_lr: float = option(1e-3, positive)
    init_action: float | None = None  # start the actor near this action in every state (None: the box's centre)
    noise: Literal["none", "gaussian", "ou"] = "gaussian"
    noise_std: float = option(0.1, positive)


TUNED: dict = {
    # Smoothie §6.1 (Fig. 2): the actor starts at the worse mode; exploration fixed at the σ₀ = 2 Smoothie starts
    # from (smoothie.TUNED; "scale is kept fixed", [S L297]), so DDPG's critic sees the better mode; one step.
    # The actor's rate is 10x below the critic's so that the mean follows a critic that has seen the data:
    # at actor_lr 1e-2, 3 of 5 seeds left -1 in the first iterations, pushed by a still random critic.
    "BimodalBandit-v0": dict(init_action=-1.0, noise="gaussian", noise_std=2.0, hidden=(64, 64), activation="tanh",
                             batch_size=64, buffer_size=10_000, warmup_steps=0, actor_lr=1e-3, critic_lr=1e-2),
    "Pendulum-v1": dict(hidden=(64, 64), actor_lr=1e-3),
}


class DDPGState(NamedTuple):
    params: dict  # {"theta": actor, "phi": critic}
    targets: dict  # {"theta": θ', "phi": φ'}
    opt: dict  # {"theta": actor's Adam state, "phi": critic's}


def update_graph(actor, critic, obs_shape, action_shape, config: DDPGConfig) -> scg.Graph:
    """The graph of one DDPG update on a minibatch (see the module docstring); inputs ``theta``, ``phi``, targets."""
    g = scg.Graph("ddpg")
    theta, phi = g.input("theta"), g.input("phi")
    targets = g.input("targets", differentiable=False)
    batch = g.simulate("batch", offpolicy.minibatch_placeholder(obs_shape, action_shape))  # observed: a minibatch
    a = g.deterministic("a", lambda theta, b: actor.apply(theta, b["obs"]), theta, batch)
    g.cost("q", lambda phi, b, a: -critic.apply(jax.lax.stop_gradient(phi), b["obs"], a), phi, batch, a)

    def td(phi, targets, b):
        next_q = critic.apply(targets["phi"], b["next_obs"], actor.apply(targets["theta"], b["next_obs"]))
        y = config.reward_scale * b["reward"] + config.discount * (1.0 - b["terminated"]) * next_q
        return 0.5 * (critic.apply(phi, b["obs"], b["action"]) - jax.lax.stop_gradient(y)) ** 2

    g.loss("td", td, phi, targets, batch)
    return g


def make_learner(env, env_params, config: DDPGConfig, *, optimizer=None) -> offpolicy.Learner:
    obs_space, action_space = offpolicy.spaces(env, env_params)
    actor = make_actor(obs_space, action_space, config.hidden, activation=config.activation,
                       init_action=config.init_action)
    critic = make_q(obs_space, action_space, config.hidden, activation=config.activation)
    compiled = scg.compile(update_graph(actor, critic, obs_space.shape, action_space.shape, config))
    optimizers = {"theta": make_optimizer(config, config.actor_lr, optimizer),
                  "phi": make_optimizer(config, config.critic_lr, optimizer)}
    example_params = {"theta": actor.init(jax.random.key(0)), "phi": critic.init(jax.random.key(0))}
    grad_and_values = compiled.grad_fn({**example_params, "targets": example_params}, num_samples=config.batch_size,
                                       wrt=("theta", "phi"), with_values=True)

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        params = {"theta": actor.init(k_actor), "phi": critic.init(k_critic)}
        return DDPGState(params, params, offpolicy.optimizers_init(optimizers, params))

    def act(state: DDPGState, obs, key):
        return actor.apply(state.params["theta"], obs), {}

    def learn(state: DDPGState, sample, key):
        k_batch, k_graph = jax.random.split(key)
        grads, values = grad_and_values({**state.params, "targets": state.targets}, k_graph,
                                        {"batch": sample(k_batch)})
        params, opt = offpolicy.optimizers_step(optimizers, grads, state.opt, state.params)
        targets = offpolicy.polyak(params, state.targets, config.tau)
        metrics = offpolicy.learner_metrics(grads, jnp.mean(values["td"]), q_mean=-jnp.mean(values["q"]),
                                            mu_mean=jnp.mean(values["a"]))
        return DDPGState(params, targets, opt), metrics

    return offpolicy.Learner(init, act, learn)


def make(env, env_params, config: DDPGConfig | dict | None = None, *, optimizer=None):
    """``(init, update)`` of :mod:`scg.algorithms.base`; from Python, ``optimizer`` replaces the config's named
    optimizer for every part (:mod:`scg.algorithms.optimizers`)."""
    learner = functools.partial(make_learner, optimizer=optimizer)
    return offpolicy.make(env, env_params, resolve(DDPGConfig, config), learner)


ALGORITHM = register(Algorithm("ddpg", __doc__.splitlines()[0], ("continuous",), DDPGConfig, make, TUNED,
                               make_learner))
