"""SVG(∞): the policy gradient pathwise through whole trajectories ("SVG(∞) Algorithm" slides ~L562–570) as a graph plus optax.

The slides: "Just learn dynamics model f; given whole trajectory, infer all noise variables; freeze all
policy and dynamics noise, differentiate through entire deterministic computation graph" (~L566–570);
its gradient is ``d/da_t (r_t + γ r_{t+1} + γ² r_{t+2} + …)`` (comparison slide ~L630). Heess et al.'s
Algorithm 1 (known here only as ``spec-rpg-svg.md`` B3 reconstructs it) is the same backward recursion
``v_θ = r_a π_θ + γ (v'_{s'} f_a π_θ + v'_θ)`` (B2), which ``jax.grad`` of the unrolled return computes.
Two graphs, one :class:`scg.Temporal` each (``model=`` in :class:`SVGInfConfig`):

``model="true"`` (:func:`true_dynamics_graph`; spec B3.1): the environment's own differentiable JAX
step is the model. Its noise is zero, so the real trajectory *is* the model's, and SVG(∞) is
reparameterised backpropagation through time::

    a_t ~ N(μ_θ(o_t), σ_θ²)   estimator="pathwise"        a_t = μ_θ(o_t) + σ_θ η_t, fresh η_t
    transition_t = env.step(s_t, a_t)  deterministic       not ``simulate``, which blocks gradients
    cost  −γ^t alive_t r_t                                 alive_t: no episode end before step t

with ``num_samples`` = episodes per update, ``init`` = the env's reset. Every env state's integer
leaves (its step counter) are carried apart (``clock``, advanced by a node that reads no action): the
compiler refuses non-float values on a differentiated path.

``model="tvlg"`` or ``"mlp"`` (:func:`recorded_model_graph`; spec B3.2, Heess et al.'s algorithm):
collect ``num_envs`` real episodes with the current policy, fit a model ``f`` on them — RPG's
time-varying linear-Gaussian ``A_t s_t + B_t a_t + c_t`` (:func:`tvlg_model`, :mod:`scg.algorithms.dynamics`,
GMM prior or least squares) or H15's neural model ``s + MLP([s, a])`` (:func:`mlp_model`) — then
differentiate along the *recorded* trajectories with every noise inferred (written for the linear model)::

    a'_t ~ π_θ(·|s_t)             pathwise, OBSERVED = a_rec_t:   a'_t = μ_θ(s_t) + σ_θ sg((a_rec_t − μ_θ(s_t))/σ_θ)
    s_{t+1} ~ N(A_t s_t + B_t a'_t + c_t, 1)  pathwise, OBSERVED = s_rec_{t+1}:  s_{t+1} = A_t s_t + B_t a'_t + c_t + sg(ξ_t)
    cost  −γ^t m_t r(s_t, a'_t, s_{t+1})                     the env's known differentiable reward (:func:`known_reward`)

Values equal the record (``ξ_t = s_rec_{t+1} − (A_t s_rec_t + B_t a_rec_t + c_t)``), gradients flow through
the model's Jacobians ``A_t, B_t`` and the policy: "we use learned models but only require observations
from the environment" (H15's abstract, via the spec). The model state is the observation vector.

Values from outside the seeds (ours): the squashed mean and state-independent ``σ`` with a floor
(:func:`scg.algorithms.svg0.gaussian_policy`), Adam and its step size, global-norm gradient clipping
(the "exploding gradient problem" of pathwise estimators, thesis ~L1488), the objective discount
``γ``, episodes per update, network sizes, the model-fit settings and every ``TUNED`` entry.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

import scg
from scg import dist
from scg.algorithms import dynamics, episodes, svg1
from scg.algorithms.base import Algorithm, register
from scg.algorithms.config import ConfigError, option, positive, positive_sizes, resolve, unit_interval
from scg.algorithms.optimizers import OptimizerConfig, make_optimizer
from scg.algorithms.svg0 import GaussianPolicy, gaussian_policy
from scg.envs.core import Environment
from scg.envs.spaces import Box
from scg.envs.wrappers import Trajectory, rollout


@dataclasses.dataclass(frozen=True)
class SVGInfConfig(OptimizerConfig):
    name: ClassVar[str] = "svginf"
    model: Literal["true", "tvlg", "mlp"] = "true"  # the env's own step, a time-varying linear-Gaussian fit, an MLP
    num_envs: int = option(16, positive)  # episodes per update (the graph's num_samples)
    horizon: int = option(200, positive)  # steps per episode, from reset: the length of the backpropagation
    discount: float = option(0.99, unit_interval)  # γ of the objective Σ_t γ^t r_t
    hidden: tuple[int, ...] = option((64, 64), positive_sizes)
    activation: Literal["relu", "tanh"] = "relu"
    lr: float = option(1e-3, positive)  # the optimizer's (Adam by default)
    max_grad_norm: float | None = option(1.0, positive)  # global-norm clipping before the optimizer; None: none
    init_std: float = option(0.5, positive)  # σ at the start, in units of the box's half-width h
    min_std: float = option(0.1, positive)  # the floor of σ, in units of h
    learn_std: bool = True
    # model="tvlg" only
    prior: bool = True  # the GMM prior of dynamics.update_prior/fit; False: per-step least squares
    prior_strength: float = option(1.0, positive)
    max_trajectories: int = option(20, positive)  # the prior's buffer of recent trajectories
    model_reg: float = option(1e-6, positive)  # ridge on the conditional's [xu] covariance
    # model="mlp" only
    model_hidden: tuple[int, ...] = option((64, 64), positive_sizes)
    model_lr: float = option(1e-3, positive)
    model_steps: int = option(50, positive)  # full-batch optimizer steps on each update's record


# Calibrated with the true dynamics (bench/svginf.py; seeds key(0)…key(4); numbers in bench/results/svginf.json).
# Hand Mass: a small σ from the start (exploration is not needed when the gradient comes through the
# dynamics; at the default σ = 0.5 h the noise itself costs about −0.05), Adam 1e-2, 64 episodes: mean
# return −0.037 after scg train's default 160k steps. Pendulum: with γ = 0.99 (16 episodes) 3 of 5 seeds at
# Adam 1e-2, and 2 of 2 at 3e-3, stayed below −200 for 960k steps (the 200-step products of Jacobians
# explode); γ = 0.97, Adam 1e-2 and 8 episodes per update reach −200 after 100k–130k env steps, ≈ −150 at 1M.
TUNED: dict = {
    "HandMassContinuous-v0": dict(num_envs=64, horizon=20, discount=1.0, lr=1e-2, init_std=0.1, min_std=0.05),
    "Pendulum-v1": dict(num_envs=8, horizon=200, discount=0.97, lr=1e-2),
}


class SVGInfState(NamedTuple):
    params: dict  # {"theta": policy}
    opt: optax.OptState
    stats: episodes.EpisodeStats
    key: jax.Array
    model: object = ()  # the learned model's state: a dynamics.DynamicsPrior (tvlg), (m, Adam state) (mlp), else ()


# -- the environment's state, split for the graph ----------------------------------------------------------
class StateLayout(NamedTuple):
    """How an env state splits into its floating leaves (carried through the gradient) and the rest (``clock``)."""

    treedef: object
    is_float: tuple[bool, ...]

    def split(self, state) -> tuple[list, list]:
        leaves = jax.tree_util.tree_leaves(state)
        return ([x for x, f in zip(leaves, self.is_float) if f], [x for x, f in zip(leaves, self.is_float) if not f])

    def join(self, floats, clock):
        floats, clock = iter(floats), iter(clock)
        return jax.tree_util.tree_unflatten(self.treedef, [next(floats) if f else next(clock) for f in self.is_float])


def state_layout(env: Environment, env_params) -> StateLayout:
    _, state = jax.eval_shape(lambda k: env.reset(k, env_params), jax.random.key(0))
    leaves, treedef = jax.tree_util.tree_flatten(state)
    return StateLayout(treedef, tuple(bool(jnp.issubdtype(x.dtype, jnp.floating)) for x in leaves))


def _check_clock_ignores_action(env, env_params, layout: StateLayout) -> None:
    """The ``clock`` node steps the integer leaves without the action; refuse an env where they depend on it."""
    space = env.action_space(env_params)
    _, state = env.reset(jax.random.key(0), env_params)
    after = [layout.split(env.step(jax.random.key(1), state, jnp.asarray(a, jnp.float32), env_params).state)[1]
             for a in (space.low_array, space.high_array)]
    if not all(bool(jnp.all(x == y)) for x, y in zip(*after)):
        raise ConfigError(f"svginf: {env.name}'s integer state leaves depend on the action; model='true' carries "
                          "them apart from the gradient and needs them to be step counters")


# -- model="true": backpropagation through the environment ---------------------------------------------
class Step(NamedTuple):
    """What one env step hands the graph: all floats (the ``transition`` node lies on the gradient's path)."""

    obs: jax.Array  # o_{t+1}
    state: list  # floating leaves of s_{t+1}
    reward: jax.Array  # r_t
    done: jax.Array  # 1. where the episode ended at this step (terminated or truncated)


def true_dynamics_graph(env: Environment, env_params, policy: GaussianPolicy, *, horizon: int,
                        discount: float) -> scg.Temporal:
    """The SVG(∞) graph through the real dynamics (module docstring); input ``theta``, carries drawn by ``env.reset``.

    Carried: ``obs``, ``state`` (the float leaves), ``clock`` (the others), ``alive`` (1. until the episode
    ends) and ``scale`` (``γ^t``). Stepping an ended episode is absorbing (``env.step``) and masked.
    """
    layout = state_layout(env, env_params)
    g = scg.Graph("svginf_true")
    theta = g.input("theta")
    for name in ("obs", "state", "clock", "alive", "scale"):
        g.input(name, differentiable=False)
    env_key = g.simulate("env_key", lambda key: jax.random.key_data(key))  # the env's own randomness, if any
    a = g.stochastic("a", policy.dist, theta, "obs", estimator="pathwise")

    def transition(key_data, floats, clock, action):
        ts = env.step(jax.random.wrap_key_data(key_data), layout.join(floats, clock), action, env_params)
        done = jnp.logical_or(ts.terminated, ts.truncated).astype(jnp.float32)
        return Step(ts.obs, layout.split(ts.state)[0], ts.reward.astype(jnp.float32), done)

    def clock_next(key_data, floats, clock):  # integer leaves advance as the env's step counts them (no action)
        zero = jnp.zeros(env.action_space(env_params).shape, jnp.float32)
        state = layout.join(jax.lax.stop_gradient(floats), clock)
        return layout.split(env.step(jax.random.wrap_key_data(key_data), state, zero, env_params).state)[1]

    tr = g.deterministic("transition", transition, env_key, "state", "clock", a)
    g.deterministic("obs_next", lambda tr: tr.obs, tr)
    g.deterministic("state_next", lambda tr: tr.state, tr)
    g.deterministic("clock_next", clock_next, env_key, "state", "clock")
    g.deterministic("alive_next", lambda alive, tr: alive * (1.0 - jax.lax.stop_gradient(tr.done)), "alive", tr)
    g.deterministic("scale_next", lambda scale: discount * scale, "scale")
    g.cost("r", lambda alive, scale, tr: -alive * scale * tr.reward, "alive", "scale", tr)

    def init(key, inputs):
        obs, state = env.reset(key, env_params)
        floats, clock = layout.split(state)
        one = jnp.ones((), jnp.float32)
        return {"obs": obs, "state": floats, "clock": clock, "alive": one, "scale": one}

    carry = {"obs": "obs_next", "state": "state_next", "clock": "clock_next", "alive": "alive_next",
             "scale": "scale_next"}
    return scg.Temporal(g, carry=carry, horizon=horizon, init=init)


# -- model="tvlg" / "mlp": a learned model along recorded trajectories ---------------------------------
class Record(NamedTuple):
    """The per-step data of a recorded episode the graph reads (the ``rec`` node, always observed)."""

    t: jax.Array  # int32, the step within the episode (selects A_t, B_t, c_t)
    weight: jax.Array  # γ^t m_t: m_t = 1. on the steps of the episode that started at reset
    terminated: jax.Array  # 1. where s_{t+1} is terminal


def known_reward(env: Environment, env_params) -> Callable:
    """``r(s_t, a_t, s_{t+1}, terminated_t)``, the env's reward as a differentiable function of observations.

    Pendulum-v1 (any env with ``obs_reward``): ``obs_reward(s_t, a_t)``, the reward of the state before the
    step. Hand Mass: the terminal reward ``−((x_{t+1} − goal)² + v_{t+1}²)`` on the terminating step (RPG
    Eq. 3; ``hand_mass.py``), read from the next observation ``(x, y, v, t/T)``. Else a ConfigError.
    """
    from scg.envs.paper.hand_mass import HandMass

    obs_reward = getattr(env, "obs_reward", None)
    if obs_reward is not None:
        return lambda s, a, s1, term: obs_reward(s, a, env_params)
    if isinstance(env, HandMass):
        return lambda s, a, s1, term: term * env.terminal_reward(s1, env_params)
    raise ConfigError(f"svginf's learned models (model='tvlg', 'mlp') need the reward as a differentiable function "
                      f"of the observations; {getattr(env, 'name', env)} has none (use model='true')")


def recorded_model_graph(policy: GaussianPolicy, reward: Callable, *, horizon: int, obs_dim: int,
                         mean_fn: Callable = dynamics.predict) -> scg.Temporal:
    """The SVG(∞) graph along recorded episodes with inferred noise (module docstring).

    Inputs ``theta`` and ``model`` (the fitted model, not differentiated; ``mean_fn(model, t, s, a)`` its
    mean). Observe ``rec`` (:class:`Record`), ``a`` (recorded actions), ``s_next`` (recorded next
    observations), each ``[N, T, ...]``, and ``s`` (the first observations, ``[N, dX]``).
    """
    g = scg.Graph("svginf_tvlg")
    theta, model = g.input("theta"), g.input("model", differentiable=False)
    g.input("s", differentiable=False)

    def placeholder(key):
        zero = jnp.zeros((), jnp.float32)
        return Record(jnp.zeros((), jnp.int32), zero, zero)

    rec = g.simulate("rec", placeholder)
    a = g.stochastic("a", policy.dist, theta, "s", estimator="pathwise")
    s1 = g.stochastic("s_next", lambda m, r, s, a: dist.Normal(mean_fn(m, r.t, s, a), 1.0), model, rec, "s", a,
                      estimator="pathwise")
    g.cost("r", lambda r, s, a, s1: -r.weight * reward(s, a, s1, r.terminated), rec, "s", a, s1)
    zeros = jnp.zeros((obs_dim,), jnp.float32)
    return scg.Temporal(g, carry={"s": "s_next"}, horizon=horizon, init=lambda key, inputs: {"s": zeros})


def record_of(traj: Trajectory, discount: float) -> tuple[dict, jax.Array]:
    """Time-major ``[T, N]`` episodes from reset → the graph's ``observed`` (``[N, T, ...]``) and the mask ``[T, N]``.

    ``m_t`` keeps the first episode of each row up to its end (``episodes.first_episode_mask``).
    """
    done = jnp.logical_or(traj.terminated, traj.truncated)
    mask = jax.vmap(episodes.first_episode_mask, in_axes=1, out_axes=1)(done)  # [T, N]
    horizon = mask.shape[0]
    t = jnp.broadcast_to(jnp.arange(horizon, dtype=jnp.int32)[:, None], mask.shape)
    weight = mask * discount ** t.astype(jnp.float32)
    swap = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
    rec = Record(swap(t), swap(weight), swap(traj.terminated.astype(jnp.float32)))
    observed = {"rec": rec, "a": swap(traj.action), "s_next": swap(traj.next_obs), "s": traj.obs[0]}
    return observed, mask


# -- the algorithm -------------------------------------------------------------------------------------
def _spaces(env, env_params) -> tuple[Box, Box]:
    if not isinstance(env, Environment):
        raise ConfigError(f"svginf needs a JAX environment (scg.envs), got {type(env).__name__}")
    obs_space, action_space = env.observation_space(env_params), env.action_space(env_params)
    if not isinstance(action_space, Box):
        raise ConfigError(f"svginf needs a continuous (Box) action space; {env.name} has {action_space}")
    return obs_space, action_space


def _step_metrics(state: SVGInfState, grads, returns, env_steps, loss, theta, policy):
    stats = episodes.push(state.stats, returns)
    sigma = jnp.mean(jnp.exp(policy.log_std(theta)))
    return stats, episodes.metrics(stats, env_steps=env_steps, loss=loss, grads=grads,
                                   batch_return=jnp.mean(returns), sigma_mean=sigma)


def make_policy(env, env_params, config: SVGInfConfig | dict | None = None) -> GaussianPolicy:
    """The Gaussian policy ``π_θ`` a run of ``config`` trains (:func:`scg.algorithms.svg0.gaussian_policy`)."""
    config = resolve(SVGInfConfig, config)
    obs_space, action_space = _spaces(env, env_params)
    return gaussian_policy(obs_space, action_space, config.hidden, activation=config.activation,
                           init_std=config.init_std, min_std=config.min_std, learn_std=config.learn_std)


def evaluate(env, env_params, policy: GaussianPolicy, theta, key, *, num_episodes: int, horizon: int,
             deterministic: bool = False) -> jax.Array:
    """``[num_episodes]`` undiscounted returns of fresh episodes (the first ``horizon`` steps from reset) under
    ``π_θ``: sampled actions, or the mean ``μ_θ(o)`` with ``deterministic``. For checks and benchmarks."""
    def act(obs, k):
        d = policy.dist(theta, obs)
        return d.loc if deterministic else d.sample(k)

    traj = rollout(env, env_params, act, key, horizon, num_envs=num_episodes)
    _, mask = record_of(traj, 1.0)
    return jnp.sum(mask * traj.reward, axis=0)


def make(env, env_params, config: SVGInfConfig | dict | None = None, *, optimizer=None):
    """``init, update`` of SVG(∞) (:mod:`scg.algorithms.base`); ``config.model`` picks the variant. From Python,
    ``optimizer`` replaces the config's named optimizer, for the policy and the MLP model
    (:mod:`scg.algorithms.optimizers`)."""
    config = resolve(SVGInfConfig, config)
    policy = make_policy(env, env_params, config)
    opt = make_optimizer(config, config.lr, optimizer, max_grad_norm=config.max_grad_norm)
    if config.model == "true":
        init_model, update = _make_true(env, env_params, policy, opt, config)
    else:
        model_opt = make_optimizer(config, config.model_lr, optimizer)
        init_model, update = _make_learned(env, env_params, policy, opt, config, model_opt)

    def init(key: jax.Array) -> SVGInfState:
        k_policy, k_model, k_run = jax.random.split(key, 3)
        theta = policy.init(k_policy)
        stats = episodes.init(config.num_envs, max(20, config.num_envs))  # mean_return: at least the last batch
        return SVGInfState({"theta": theta}, opt.init(theta), stats, k_run, init_model(k_model))

    return init, update


def _make_true(env, env_params, policy, optimizer, config):
    _check_clock_ignores_action(env, env_params, state_layout(env, env_params))
    compiled = scg.compile(true_dynamics_graph(env, env_params, policy, horizon=config.horizon,
                                               discount=config.discount))
    example = {"theta": policy.init(jax.random.key(0))}
    grad_and_values = compiled.grad_fn(example, num_samples=config.num_envs, wrt=("theta",), with_values=True)

    def update(state: SVGInfState, batch=None):
        if batch is not None:
            raise ValueError("svginf model='true' runs its episodes inside the graph: batch must be None")
        key, k = jax.random.split(state.key)
        grads, values = grad_and_values(state.params, k)
        updates, opt = optimizer.update(grads["theta"], state.opt, state.params["theta"])
        theta = optax.apply_updates(state.params["theta"], updates)
        returns = jnp.sum(values["alive"] * values["transition"].reward, axis=1)  # undiscounted, per episode
        stats, metrics = _step_metrics(state, grads["theta"], returns, jnp.sum(values["alive"]),
                                       jnp.mean(jnp.sum(values["r"], axis=1)), theta, policy)
        return SVGInfState({"theta": theta}, opt, stats, key, state.model), metrics

    return lambda key: (), update


class LearnedModel(NamedTuple):
    """A model fitted on each update's record: ``init(key) -> state``, ``example() -> params`` (shapes),
    ``fit(state, key, traj, mask) -> (state, params)``, ``mean(params, t, s, a) -> s_{t+1}`` (the graph's
    ``mean_fn``)."""

    init: Callable
    example: Callable
    fit: Callable
    mean: Callable


def tvlg_model(config: SVGInfConfig, horizon: int, dim_x: int, dim_u: int) -> LearnedModel:
    """``A_t s + B_t a + c_t`` (:mod:`scg.algorithms.dynamics`): the GMM-prior MAP fit (RPG ~L164–172), or
    per-step least squares with ``prior=False``; the state is the prior (its buffer), or ``()``."""
    def init(key):
        if not config.prior:
            return ()
        return dynamics.init_prior(key, horizon=horizon, dim_x=dim_x, dim_u=dim_u,
                                   max_trajectories=config.max_trajectories)

    def example():
        z = jnp.zeros
        return dynamics.LinearGaussian(z((horizon, dim_x, dim_x)), z((horizon, dim_x, dim_u)), z((horizon, dim_x)),
                                       z((horizon, dim_x, dim_x)))

    def fit(prior, key, traj: Trajectory, mask):
        data = (traj.obs, traj.action, traj.next_obs, mask)
        if not config.prior:
            return prior, dynamics.fit_least_squares(*data)
        prior, _ = dynamics.update_prior(prior, key, *data)
        return prior, dynamics.fit(prior, *data, strength=config.prior_strength, reg=config.model_reg)

    return LearnedModel(init, example, fit, dynamics.predict)


def mlp_model(config: SVGInfConfig, obs_shape, action_shape,
              opt: optax.GradientTransformation | None = None) -> LearnedModel:
    """``s + MLP_m([s, a])`` (:func:`scg.algorithms.svg1.make_model`; H15's learned model, its noise scale
    immaterial to the gradient): ``model_steps`` full-batch steps of ``opt`` (default: the config's optimizer at
    ``model_lr``, Adam unless named) on ``½‖f_m(s, a) − s'‖²`` of each update's record, warm started; the state
    is ``(m, optimizer state)``."""
    net = svg1.make_model(obs_shape, action_shape, config.model_hidden, activation=config.activation)
    opt = make_optimizer(config, config.model_lr) if opt is None else opt

    def init(key):
        m = net.init(key)
        return m, opt.init(m)

    def loss(m, traj: Trajectory, mask):
        pred = jax.vmap(jax.vmap(lambda s, a: net.apply(m, s, a)[0]))(traj.obs, traj.action)
        sq = jnp.sum((pred - traj.next_obs) ** 2, axis=-1)
        return 0.5 * jnp.sum(mask * sq) / jnp.maximum(jnp.sum(mask), 1.0)

    def fit(state, key, traj: Trajectory, mask):
        def step(carry, _):
            m, opt_state = carry
            updates, opt_state = opt.update(jax.grad(loss)(m, traj, mask), opt_state, m)
            return (optax.apply_updates(m, updates), opt_state), None

        state, _ = jax.lax.scan(step, state, None, length=config.model_steps)
        return state, state[0]

    return LearnedModel(init, lambda: net.init(jax.random.key(0)), fit, lambda m, t, s, a: net.apply(m, s, a)[0])


def _make_learned(env, env_params, policy, optimizer, config, model_opt):
    obs_space, action_space = _spaces(env, env_params)
    if len(obs_space.shape) != 1 or len(action_space.shape) != 1:
        raise ConfigError(f"svginf model={config.model!r} needs vector observations and actions; {env.name} has "
                          f"{obs_space.shape} and {action_space.shape}")
    dim_x, dim_u, horizon = obs_space.shape[0], action_space.shape[0], config.horizon
    learned = (tvlg_model(config, horizon, dim_x, dim_u) if config.model == "tvlg"
               else mlp_model(config, obs_space.shape, action_space.shape, model_opt))
    reward = known_reward(env, env_params)
    graph = recorded_model_graph(policy, reward, horizon=horizon, obs_dim=dim_x, mean_fn=learned.mean)
    example = {"theta": policy.init(jax.random.key(0)), "model": learned.example()}
    grad_and_values = scg.compile(graph).grad_fn(example, num_samples=config.num_envs, wrt=("theta",),
                                                 with_values=True)

    def collect(theta, key) -> Trajectory:
        act = lambda obs, k: policy.dist(theta, obs).sample(k)  # noqa: E731
        return rollout(env, env_params, act, key, horizon, num_envs=config.num_envs)

    def update(state: SVGInfState, batch: Trajectory | None = None):
        """Collect (or take ``batch``: a time-major ``Trajectory`` ``[T, N]`` of episodes from reset), fit, step."""
        key, k_env, k_model, k_graph = jax.random.split(state.key, 4)
        theta = state.params["theta"]
        traj = collect(theta, k_env) if batch is None else Trajectory(*map(jnp.asarray, batch))
        observed, mask = record_of(traj, config.discount)
        model_state, model = learned.fit(state.model, k_model, traj, mask)
        grads, values = grad_and_values({**state.params, "model": model}, k_graph, observed)
        updates, opt = optimizer.update(grads["theta"], state.opt, theta)
        new_theta = optax.apply_updates(theta, updates)
        returns = jnp.sum(mask * traj.reward, axis=0)  # the real episodes' returns
        stats, metrics = _step_metrics(state, grads["theta"], returns, jnp.sum(mask),
                                       jnp.mean(jnp.sum(values["r"], axis=1)), new_theta, policy)
        metrics["model_error"] = _one_step_error(learned.mean, model, traj, mask)
        return SVGInfState({"theta": new_theta}, opt, stats, key, model_state), metrics

    return learned.init, update


def _one_step_error(mean_fn, model, traj: Trajectory, mask) -> jax.Array:
    """RMS of ``ξ_t = s_rec_{t+1} − mean(s_rec_t, a_rec_t)`` over the masked steps: the inferred noise's size."""
    per_step = jax.vmap(lambda t, s, a: jax.vmap(lambda s, a: mean_fn(model, t, s, a))(s, a))
    pred = per_step(jnp.arange(mask.shape[0]), traj.obs, traj.action)
    sq = jnp.sum((traj.next_obs - pred) ** 2, axis=-1)
    return jnp.sqrt(jnp.sum(mask * sq) / jnp.maximum(jnp.sum(mask), 1.0))


ALGORITHM = register(Algorithm("svginf", __doc__.splitlines()[0], ("continuous",), SVGInfConfig, make, TUNED))
