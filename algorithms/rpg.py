"""Relaxed Policy Gradient (Levy & Ermon 2018, Algorithm 1) as a graph plus optax.

Each iteration samples ``m`` episodes with the softmax policy ``π_φ`` (~L222),
updates a GMM prior over the dynamics and fits time-varying linear models
``x_{t+1} ≈ A_t x_t + B_t u_t + c_t`` (~L226-228, L164-172;
:mod:`scg.algorithms.dynamics`), then differentiates one compiled
:class:`scg.Temporal` graph along the recorded episodes. Its step::

    rec_t  (simulate, observed)   the recorded action a_t, next state x_{t+1}, alive_t and the fit's A_t
    dx_t = E_{a~π_φ(·|x_t)}[f(x_t, a) - x_t]      expectation node, estimator "relaxed", the draw a = a_t
    x_{t+1} = x_t + dx_t                           deterministic, carried
    cost_t = -w_t r̃(x_{t+1})                       the smooth surrogate reward (Eq. 10: Σ_t ∇_x r̃(x_t) ∇_φ x_t)

``dx_t``'s function takes its *value* from the record and its *Jacobian* from
the model: ``f(x, a) - x = alive · [sg(x^rec_{t+1} - x) + (A_t - I)(x - sg(x))]``.
The relaxed estimator (:mod:`scg.estimators.relaxed`) emits it times
``magic_box(log π_φ(a_t|x_t))``, so ``∂x_{t+1}/∂x_t = A_t + f̂_t ∇_x log π`` and
``∂x_{t+1}/∂φ = f̂_t ∇_φ log π`` with ``f̂_t = x_{t+1} - x_t``: reverse-mode autodiff
of the surrogate is Algorithm 1's forward recursion (~L236-247, with L238's
``∇_φ x_{t-1}`` read as ``∇_φ x_t``), averaged over the ``m`` episodes (L251's
``ĝ``, undefined there), as a descent direction on ``-r̃``.

Options (the ablations of the issue): ``jacobian="true"`` takes the Jacobian
of the real step (``jax`` autodiff of the environment) instead of ``A_t``;
``trajectory="relaxed"`` evaluates the estimator along the relaxed trajectory
``x̄_{t+1} = Σ_a π(a|x̄_t) f(x̄_t, a)`` of the model (``exact=True``: Theorem 3's
setting, where it is unbiased for ``∇ r̃(x̄)``) from the recorded start states,
with fresh draws. Along real trajectories Algorithm 1 is biased for both
objectives (``bench/rpg_algorithm1_gap.py``); it is the paper's algorithm and
the default.

What the seed leaves open, and our choices (the paper's appendix is not in the
seed): the policy is the plain softmax MLP (64, 64, tanh) at a fixed
stochasticity (~L274: "we optimize over stochastic policies with a fixed λ"; no
prior term, no annealing); Adam at ``1e-2`` (~L280); ``m`` = 10 for Cart Pole,
Acrobot, Mountain Car and 2 for Hand Mass (Table 2); horizons are the
environments' episode limits; the surrogate rewards ``λσ(α h(s))``
(:mod:`scg.envs.rewards`) with ``λ = 1`` and the ``α`` of :data:`TASKS`;
episodes that end by *success* (Acrobot, Mountain Car) make their last state
absorbing — it is frozen and keeps earning ``r̃`` until the horizon, so that
reaching the goal early pays (``w_t = 1``) — while episodes that end by
*failure* (Cart Pole) earn ``r̃`` on their real steps only (``w_t = alive_t``);
Hand Mass keeps its own terminal reward ``-((x_T - goal)² + v_T²)``. The
dynamics are fitted on the physical part of the observation (Hand Mass's
time feature ``t/T`` is read by the policy but not differentiated), with the
control ``u`` the physical scalar of the discrete action.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

import scg
from scg import dist
from scg.algorithms import dynamics, episodes
from scg.algorithms.base import Algorithm, register
from scg.algorithms.config import ConfigError, option, positive, positive_sizes, resolve
from scg.algorithms.networks import make_policy
from scg.algorithms.optimizers import OptimizerConfig, make_optimizer
from scg.envs.rewards import smooth_indicator
from scg.envs.wrappers import rollout


# -- the tasks: what RPG differentiates in each environment ----------------------------------------------------------
class Task(NamedTuple):
    """How RPG reads one environment: the differentiated state, the control, the smooth reward.

    ``state(obs)`` and ``clock(obs)`` split an observation into the physical state ``x`` (differentiated,
    modelled) and features the policy reads but nobody differentiates (``join(x, clock)`` puts it
    back); ``control(a)`` is the physical control ``u`` of a discrete action, shape ``[dU]``;
    ``reward(x, clock, alpha)`` the smooth surrogate of the reward of reaching ``x``; ``absorbing``:
    episodes end by success (the last state is frozen and keeps its reward); ``env_state(x, clock)``
    the environment state of an observation, for the true Jacobian (``None``: not available).
    """

    state: Callable
    clock: Callable
    join: Callable
    control: Callable
    reward: Callable
    absorbing: bool
    alpha: float | None
    env_state: Callable | None


def _no_clock(obs):
    return jnp.zeros((1,), obs.dtype)  # a placeholder: a zero-size leaf breaks lax.map's batching of the record


def _cartpole() -> Task:
    from scg.envs.classic_control.cartpole import CartPole, EnvState

    env = CartPole()

    def to_state(x, clock):
        return EnvState(x[0], x[1], x[2], x[3], jnp.zeros((), jnp.int32))

    # α = 10: h ∈ [0, 1] on the alive set, h ≈ 1 at the start (σ(10) ≈ 1, the gradient grows toward the edges).
    return Task(lambda o: o, _no_clock, lambda x, c: x, lambda a: 2.0 * a[None].astype(jnp.float32) - 1.0,
                lambda x, c, alpha: env.smooth_reward(to_state(x, c), alpha=alpha), False, 10.0, to_state)


def _acrobot() -> Task:
    def reward(x, c, alpha):  # x = (cos θ1, sin θ1, cos θ2, sin θ2, θ̇1, θ̇2): the tip's height from the observation
        height = -x[0] - (x[0] * x[2] - x[1] * x[3])
        return smooth_indicator(height - 1.0, 1.0, alpha)

    # α = 1: at the start the tip hangs at h = -3, where α = 10 gives σ(-30) ≈ 1e-13 (no gradient); σ(-3) ≈ 0.05.
    return Task(lambda o: o, _no_clock, lambda x, c: x, lambda a: a[None].astype(jnp.float32) - 1.0,
                reward, True, 1.0, None)


def _mountain_car() -> Task:
    from scg.envs.classic_control.mountain_car import EnvState, MountainCar

    env = MountainCar()

    def to_state(x, clock):
        return EnvState(x[0], x[1], jnp.zeros((), jnp.int32))

    # α = 5 per unit of position: at the start (position ≈ -0.5, h ≈ -1) σ'(αh) α ≈ 0.03, not vanishing.
    return Task(lambda o: o, _no_clock, lambda x, c: x, lambda a: a[None].astype(jnp.float32) - 1.0,
                lambda x, c, alpha: env.smooth_reward(to_state(x, c), alpha=alpha), True, 5.0, to_state)


def _hand_mass() -> Task:
    from scg.envs.paper.hand_mass import HandMass, HandMassState

    env = HandMass()
    params = env.default_params

    def reward(x, clock, alpha):  # the env's own terminal reward (no surrogate: RPG ~L313)
        del alpha
        final = clock[0] >= 1.0 - 0.5 / params.horizon
        return jnp.where(final, env.terminal_reward(x, params), 0.0)

    def to_state(x, clock):
        t = jnp.round(clock[0] * params.horizon).astype(jnp.int32)
        return HandMassState(x[0], x[1], x[2], t)

    return Task(lambda o: o[:3], lambda o: o[3:], lambda x, c: jnp.concatenate([x, c]),
                lambda a: a[None].astype(jnp.float32) - 1.0, reward, False, None, to_state)


TASKS: dict[str, Callable[[], Task]] = {
    "CartPole-v1": _cartpole,
    "Acrobot-v1": _acrobot,
    "MountainCar-v0": _mountain_car,
    "HandMass-v0": _hand_mass,
}


def task_for(env) -> Task:
    """The :class:`Task` of ``env`` (by name); a ConfigError lists the supported environments."""
    name = getattr(env, "name", type(env).__name__)
    if name not in TASKS:
        raise ConfigError(f"rpg: no task definition for environment {name!r}; RPG runs on {sorted(TASKS)} "
                          f"(add a Task to scg.algorithms.rpg.TASKS for another)")
    return TASKS[name]()


# -- the configuration -----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RPGConfig(OptimizerConfig):
    name: ClassVar[str] = "rpg"
    num_envs: int = option(10, positive)  # m: episodes per iteration (Table 2's "Samples")
    hidden: tuple[int, ...] = option((64, 64), positive_sizes)  # ~L274
    lr: float = option(1e-2, positive)  # ~L280, Adam (the default optimizer)
    alpha: float | None = None  # the surrogate's sharpness; None: the task's (TASKS)
    jacobian: Literal["fitted", "true"] = "fitted"
    trajectory: Literal["real", "relaxed"] = "real"
    max_trajectories: int = option(20, positive)  # the GMM prior's buffer (the reference implementation's default)
    # The GMM prior: fewer clusters and EM steps than the reference implementation's up-to-50 clusters and
    # 100-iteration cap (our choice, for speed: on Cart Pole's 20 x 500-step buffer, 5 seeds, K = 50 with
    # 10/50 EM steps took 25 s per iteration, K = 8 with 5/10 0.5 s, both with a median Jacobian error < 1.5%).
    num_clusters: int | None = option(8, positive)  # None: dynamics.init_prior's default
    em_iterations: int = option(5, positive)  # EM iterations per update, warm-started
    first_em_iterations: int = option(10, positive)
    prior_strength: float = option(1.0, positive)
    window: int = option(20, positive)  # episodes in the mean_return window
    eval_episodes: int = option(16, positive)  # greedy_return: episodes of the rounded policy π_{φ,λ=0} (~L257)


TUNED: dict = {
    "HandMass-v0": dict(num_envs=2),  # Table 2: 2 trajectories per episode
}


# -- the graph -------------------------------------------------------------------------------------------------------
class RecordedDraw(dist.Distribution):
    """``base``'s density with a recorded draw: ``sample`` returns ``value`` (the action taken in the episode).

    The draw of an expectation node (``g.expectation``) is its estimator's own sample; RPG evaluates
    Algorithm 1 at the recorded actions, so its policy distribution hands the estimator the recorded one.
    """

    _fields = ("base", "value")

    def __init__(self, base, value):
        self.base, self.value = base, value

    def sample(self, key, sample_shape=()):
        del key
        return self.value

    def log_prob(self, value):
        return self.base.log_prob(value)

    def enumerate_support(self):
        return self.base.enumerate_support()


class Record(NamedTuple):
    """One recorded step of one episode, the value of the ``rec`` node (batch-major ``[m, T, ...]`` when observed)."""

    action: jax.Array  # a_t
    x_next: jax.Array  # x_{t+1}, the physical state after the step (pre-freeze)
    alive: jax.Array  # 1.0 if the transition is real (the episode had not ended before it)
    clock: jax.Array  # the clock features of x_t and x_{t+1}
    clock_next: jax.Array
    weight: jax.Array  # w_t, the cost's weight
    model: dynamics.LinearGaussian  # the fit at this step: A [dX, dX], B [dX, dU], c [dX], F


def _jacobian_term(task: Task, env, env_params, jacobian: str):
    """``(x, rec, a) -> j`` with value 0 and derivative ``∂f(x, a)/∂x - I`` (fitted ``A_t`` or the real step)."""
    if jacobian == "fitted":
        return lambda x, rec, a: (rec.model.A - jnp.eye(x.shape[0])) @ (x - jax.lax.stop_gradient(x))
    step = _true_step(task, env, env_params)

    def term(x, rec, a):
        d = step(x, rec.clock, a) - x
        return d - jax.lax.stop_gradient(d)

    return term


def _true_step(task: Task, env, env_params):
    """``(x, clock, a) -> x'``: the environment's own step on the physical state (for ``jacobian="true"``)."""
    if task.env_state is None:
        raise ConfigError(f"rpg: jacobian='true' needs the state of an observation, which {env.name!r} does not "
                          f"define (its Task.env_state is None); use jacobian='fitted'")

    def step(x, clock, a):
        ts = env.step_env(jax.random.key(0), task.env_state(x, clock), a, env_params)
        return task.state(ts[0])

    return step


def _model_step(task: Task, env, env_params, jacobian: str):
    """``(x, rec, a) -> x'`` by the fitted model (or the real step): the relaxed trajectory's dynamics."""
    if jacobian == "true":
        step = _true_step(task, env, env_params)
        return lambda x, rec, a: step(x, rec.clock, a)
    return lambda x, rec, a: rec.model.A @ x + rec.model.B @ task.control(a) + rec.model.c


def record_template(env, env_params, task: Task) -> Record:
    """A zero :class:`Record` of one step: the value ``rec`` gives when not observed (planning reads its shapes)."""
    obs, _ = env.reset(jax.random.key(0), env_params)
    x, clock = task.state(obs), task.clock(obs)
    a = jnp.zeros((), jnp.int32)
    dim_x, dim_u = x.shape[0], task.control(a).shape[0]
    zero = jnp.zeros(())
    model = dynamics.LinearGaussian(jnp.zeros((dim_x, dim_x)), jnp.zeros((dim_x, dim_u)), jnp.zeros(dim_x),
                                    jnp.zeros((dim_x, dim_x)))
    return Record(a, jnp.zeros_like(x), zero, jnp.zeros_like(clock), jnp.zeros_like(clock), zero, model)


def step_graph(env, env_params, policy, task: Task, config: RPGConfig, *, suffix: str = "",
               x=None, g: scg.Graph | None = None) -> scg.Graph:
    """One step of the RPG graph (module docstring); ``suffix``/``x``/``g`` let a test unroll it by hand.

    Nodes: inputs ``theta`` (the policy) and ``x`` (the state, carried), ``rec`` (simulate, the recorded
    step: observe it; unobserved it is :func:`record_template`, all zeros), ``dx`` (expectation,
    relaxed), ``x_next`` and the cost ``neg_reward``.
    """
    g = scg.Graph("rpg_step") if g is None else g
    existing = {n.name: n for n in g.nodes}
    theta = existing["theta"] if "theta" in existing else g.input("theta")  # unrolled by hand: one theta for all steps
    x = g.input("x") if x is None else x
    template = record_template(env, env_params, task)
    rec = g.simulate(f"rec{suffix}", lambda key: template)
    alpha = task.alpha if config.alpha is None else config.alpha
    relaxed = config.trajectory == "relaxed"
    jac = _jacobian_term(task, env, env_params, config.jacobian)
    model_step = _model_step(task, env, env_params, config.jacobian) if relaxed else None

    def step_dist(x, theta, rec):
        d = policy.dist(theta, task.join(x, rec.clock))
        return d if relaxed else RecordedDraw(d, rec.action)

    def delta(x, theta, rec, a):
        if relaxed:  # Σ_a π(a|x̄) (f(x̄, a) - x̄) as the value (exact=True), the model's Jacobian
            return rec.alive * (model_step(x, rec, a) - x)
        return rec.alive * (jax.lax.stop_gradient(rec.x_next - x) + jac(x, rec, a))

    dx = g.expectation(f"dx{suffix}", delta, step_dist, x, theta, rec, exact=relaxed)
    x_next = g.deterministic(f"x_next{suffix}", lambda x, d: x + d, x, dx)
    g.cost(f"neg_reward{suffix}", lambda x1, rec: -rec.weight * task.reward(x1, rec.clock_next, alpha), x_next, rec)
    return g


def temporal(env, env_params, policy, task: Task, config: RPGConfig, horizon: int) -> scg.Temporal:
    """The RPG step graph scanned over ``horizon`` steps, ``x`` carried from ``x_next``."""
    return scg.Temporal(step_graph(env, env_params, policy, task, config), carry={"x": "x_next"}, horizon=horizon)


# -- collecting episodes ---------------------------------------------------------------------------------------------
class Episodes(NamedTuple):
    """``m`` episodes from reset, time-major ``[T, m, ...]``; ``alive`` is 1 up to and including the first end."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    alive: jax.Array


def collect(env, env_params, policy, theta, key, num_episodes: int, horizon: int, *, greedy: bool = False) -> Episodes:
    """``num_episodes`` episodes of ``policy`` (its argmax if ``greedy``) from reset, ``horizon`` steps each.

    :func:`scg.envs.rollout` collects; ``alive`` keeps each row's first episode (``episodes.first_episode_mask``):
    what a row does after that episode ended is padding, with no reward.
    """

    def act(obs, k):
        d = policy.dist(theta, obs)
        return jnp.argmax(d.logits).astype(jnp.int32) if greedy else d.sample(k)

    traj = rollout(env, env_params, act, key, horizon, num_envs=num_episodes)
    done = jnp.logical_or(traj.terminated, traj.truncated)
    alive = jax.vmap(episodes.first_episode_mask, in_axes=1, out_axes=1)(done)  # [T, m]
    return Episodes(traj.obs, traj.action, traj.reward.astype(jnp.float32) * alive, traj.next_obs, alive)


def greedy_return(env, env_params, policy, theta, key, num_episodes: int, horizon: int) -> jax.Array:
    """Mean true return of the rounded policy ``π_{φ,λ=0}`` (the argmax action; what Algorithm 1 returns, ~L257)."""
    eps = collect(env, env_params, policy, theta, key, num_episodes, horizon, greedy=True)
    return jnp.mean(jnp.sum(eps.reward, axis=0))


def records(task: Task, eps: Episodes, model: dynamics.LinearGaussian) -> Record:
    """The observed value of ``rec``, batch-major ``[m, T, ...]``, from the episodes and the per-step fit."""
    m = eps.alive.shape[1]
    weight = jnp.ones_like(eps.alive) if task.absorbing else eps.alive
    time_major = Record(
        action=eps.action,
        x_next=jax.vmap(jax.vmap(task.state))(eps.next_obs),
        alive=eps.alive,
        clock=jax.vmap(jax.vmap(task.clock))(eps.obs),
        clock_next=jax.vmap(jax.vmap(task.clock))(eps.next_obs),
        weight=weight,
        model=jax.tree_util.tree_map(lambda v: jnp.broadcast_to(v[:, None], (v.shape[0], m, *v.shape[1:])), model),
    )
    return jax.tree_util.tree_map(lambda v: jnp.swapaxes(v, 0, 1), time_major)


def model_data(task: Task, eps: Episodes):
    """``(x, u, x_next, mask)`` time-major for :mod:`scg.algorithms.dynamics`."""
    x = jax.vmap(jax.vmap(task.state))(eps.obs)
    u = jax.vmap(jax.vmap(task.control))(eps.action)
    return x, u, jax.vmap(jax.vmap(task.state))(eps.next_obs), eps.alive


def true_jacobians(task: Task, env, env_params, eps: Episodes) -> jax.Array:
    """``∂f(x_t, a_t)/∂x_t`` of the real step at every visited state, ``[T, m, dX, dX]``."""
    step = _true_step(task, env, env_params)
    x, clock = jax.vmap(jax.vmap(task.state))(eps.obs), jax.vmap(jax.vmap(task.clock))(eps.obs)
    jac = jax.jacfwd(step)
    return jax.vmap(jax.vmap(jac))(x, clock, eps.action)


def jacobian_error(model: dynamics.LinearGaussian, true_jac: jax.Array, alive: jax.Array) -> jax.Array:
    """Median over real transitions of ``‖A_t - ∂f/∂x‖_F / ‖∂f/∂x‖_F`` (the paper's question on model error, ~L204)."""
    num = jnp.linalg.norm(model.A[:, None] - true_jac, axis=(-2, -1))
    rel = num / jnp.maximum(jnp.linalg.norm(true_jac, axis=(-2, -1)), 1e-12)
    return jnp.nanmedian(jnp.where(alive > 0, rel, jnp.nan))


# -- the algorithm ---------------------------------------------------------------------------------------------------
class TrainState(NamedTuple):
    theta: dict
    opt_state: optax.OptState
    prior: dynamics.DynamicsPrior
    stats: episodes.EpisodeStats
    key: jax.Array


def horizon_of(env_params) -> int:
    """The episode limit ``T`` of the environment (``max_steps_in_episode``, or Hand Mass's ``horizon``)."""
    for field in ("max_steps_in_episode", "horizon"):
        if hasattr(env_params, field):
            return int(getattr(env_params, field))
    raise ConfigError("rpg: the environment's params give no episode limit (max_steps_in_episode or horizon)")


def make(env, env_params, config: RPGConfig | dict | None = None, *, optimizer=None):
    """``(init, update)`` of :mod:`scg.algorithms.base`; from Python, ``optimizer`` replaces the config's named
    optimizer (:mod:`scg.algorithms.optimizers`)."""
    config = resolve(RPGConfig, config)
    task = task_for(env)
    if env.action_space(env_params).__class__.__name__ != "Discrete":
        raise ConfigError(f"rpg: {env.name!r} has a continuous action space; RPG here runs the discrete softmax "
                          f"policy of the paper (~L274)")
    policy = make_policy(env.observation_space(env_params), env.action_space(env_params), config.hidden)
    horizon, m = horizon_of(env_params), config.num_envs
    tx = make_optimizer(config, config.lr, optimizer)
    obs0, _ = env.reset(jax.random.key(0), env_params)
    dim_x = task.state(obs0).shape[0]
    dim_u = task.control(jnp.int32(0)).shape[0]
    compiled = scg.compile(temporal(env, env_params, policy, task, config, horizon))
    need_fit = config.jacobian == "fitted" or config.trajectory == "relaxed"
    measure_error = task.env_state is not None

    def init(key):
        k_pi, k_prior, key = jax.random.split(key, 3)
        theta = policy.init(k_pi)
        prior = dynamics.init_prior(k_prior, horizon=horizon, dim_x=dim_x, dim_u=dim_u,
                                    max_trajectories=config.max_trajectories, num_clusters=config.num_clusters)
        return TrainState(theta, tx.init(theta), prior, episodes.init(0, config.window), key)

    def update(state: TrainState, batch=None):
        if batch is not None:
            raise ConfigError("rpg: update(state, batch) is not supported; RPG collects its own episodes")
        key, k_collect, k_em, k_grad, k_eval = jax.random.split(state.key, 5)
        eps = collect(env, env_params, policy, state.theta, k_collect, m, horizon)
        x, u, x_next, mask = model_data(task, eps)
        if need_fit:
            prior, log_liks = dynamics.update_prior(state.prior, k_em, x, u, x_next, mask,
                                                    iterations=config.em_iterations,
                                                    first_iterations=config.first_em_iterations)
            model = dynamics.fit(prior, x, u, x_next, mask, strength=config.prior_strength)
            log_lik = log_liks[-1]
        else:
            prior, log_lik = state.prior, jnp.float32(jnp.nan)
            model = _zero_model(horizon, dim_x, dim_u)
        observed = {"rec": records(task, eps, model), "x": x[0]}
        inputs = {"theta": state.theta, "x": x[0, 0]}
        surrogate = lambda th: compiled.surrogate({**inputs, "theta": th}, k_grad, num_samples=m, observed=observed)
        loss, grads = jax.value_and_grad(surrogate)(state.theta)
        updates, opt_state = tx.update(grads, state.opt_state, state.theta)
        theta = optax.apply_updates(state.theta, updates)
        returns = jnp.sum(eps.reward, axis=0)
        stats = episodes.push(state.stats, returns)
        extra = {"em_log_likelihood": log_lik,
                 "greedy_return": greedy_return(env, env_params, policy, theta, k_eval, config.eval_episodes, horizon)}
        if measure_error and need_fit:
            extra["jacobian_error"] = jacobian_error(model, true_jacobians(task, env, env_params, eps), eps.alive)
        metrics = episodes.metrics(stats, env_steps=jnp.sum(eps.alive), loss=loss, grads=grads, **extra)
        return TrainState(theta, opt_state, prior, stats, key), metrics

    return init, update


def _zero_model(horizon: int, dim_x: int, dim_u: int) -> dynamics.LinearGaussian:
    return dynamics.LinearGaussian(jnp.zeros((horizon, dim_x, dim_x)), jnp.zeros((horizon, dim_x, dim_u)),
                                   jnp.zeros((horizon, dim_x)), jnp.zeros((horizon, dim_x, dim_x)))


ALGORITHM = register(Algorithm("rpg", __doc__.splitlines()[0], ("discrete",), RPGConfig, make, TUNED))
