"""The JAX classic control environments against gymnasium 1.4.0, their reference implementation.

Equivalence: 500 random-action episodes per environment, stepped in
gymnasium (plain Python) and in JAX (one jitted ``vmap`` over episodes of a
``lax.scan`` over the horizon, masked after each episode's end) from the same
initial state (read from ``env.unwrapped.state``, since the RNGs differ).

Two floating-point effects are handled explicitly rather than by loose tolerances:

* XLA contracts ``a * b + c`` into fused multiply-adds and rewrites ``x / c``
  as ``x * (1 / c)``, so a jitted step differs from NumPy in the last bit
  (eager ``_dsdt`` is bit-identical, see ``test_acrobot_derivative_bitwise_eager``).
  Chaotic dynamics amplify that: Acrobot's float64 trajectories drift apart
  by ~1e-16 e^(t / 22 steps) (3e-5 after 500 steps), and float32 runs of
  Acrobot and Pendulum, which start from ~1e-7 rounding per step, by ~3x per
  10 steps. Those comparisons re-synchronise the JAX state to gymnasium's every
  ``RESYNC`` steps, so every step of every episode is still compared, each
  after up to ``RESYNC`` accumulated JAX steps. All other comparisons are
  free-running over the whole episode.
* gymnasium stores MountainCarContinuous's state as float32 and does part of
  its step in float32, so it is effectively a float32 simulation: the float32
  JAX run agrees free-running over 999 steps (max 1.7e-5), the float64 one
  drifts to 1.5e-5 through the inelastic wall and is re-synchronised every 100
  steps (max 4.4e-6).
"""
from __future__ import annotations

import functools
import math

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from scg.envs.classic_control import Acrobot, CartPole, MountainCar, MountainCarContinuous, Pendulum

N_EPISODES = 500
ENVS = {
    "CartPole-v1": CartPole,
    "Acrobot-v1": Acrobot,
    "MountainCar-v0": MountainCar,
    "MountainCarContinuous-v0": MountainCarContinuous,
    "Pendulum-v1": Pendulum,
}
# Steps between re-synchronisations to gymnasium's state; None: free-running for the whole episode.
RESYNC = {
    "float64": {"Acrobot-v1": 100, "MountainCarContinuous-v0": 100},
    # float32 rounding (~1e-7 per step) is amplified ~3x per 10 steps by these two; measured max
    # |obs error| with a 10-step window: Acrobot 3.1e-5, Pendulum 4.1e-5 (50-step window: 7.7e-3, 1.2e-3).
    "float32": {"Acrobot-v1": 10, "Pendulum-v1": 10},
}
ATOL = {"float64": 1e-5, "float32": 1e-4}
EXACT_REWARD = {"CartPole-v1", "Acrobot-v1", "MountainCar-v0"}


@pytest.fixture
def x64():
    """Enable float64 for one test and restore the previous setting."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def _pump(obs, space, rng):
    """Push along the velocity: the energy-pumping controller that gets a mountain car up the hill."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return 2 if obs[1] >= 0 else 0
    return (np.sign(obs[1] + 1e-12) * rng.uniform(0.5, 1.0, space.shape)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def gym_rollouts(env_id: str, n: int = N_EPISODES, seed: int = 0) -> dict:
    """Step ``n`` random-action episodes of ``gymnasium.make(env_id)``; arrays padded to the horizon.

    Actions are uniform on the action space. Uniform actions never reach a
    mountain car's goal, so for those two environments every other episode
    takes, with probability 0.7 per step, the energy-pumping action instead,
    which makes the termination branch (and MountainCarContinuous's +100) occur.
    """
    env = gymnasium.make(env_id)
    T, space = env.spec.max_episode_steps, env.action_space
    discrete = isinstance(space, gymnasium.spaces.Discrete)
    rng = np.random.default_rng(seed)
    acts = np.zeros((n, T) + space.shape, np.int64 if discrete else np.float32)
    out = {k: [] for k in ("s0", "obs", "state", "reward", "terminated", "truncated")}
    lengths = np.zeros(n, int)
    for i in range(n):
        o, _ = env.reset(seed=seed * 100_000 + i)
        out["s0"].append(np.array(env.unwrapped.state, np.float64))
        pump = env_id.startswith("MountainCar") and i % 2 == 1
        for t in range(T):
            if pump and rng.uniform() < 0.7:
                acts[i, t] = _pump(o, space, rng)
            else:
                acts[i, t] = rng.integers(space.n) if discrete else rng.uniform(space.low, space.high)
            o, r, term, trunc, _ = env.step(int(acts[i, t]) if discrete else acts[i, t])
            out["obs"].append(o), out["reward"].append(r), out["terminated"].append(term), out["truncated"].append(trunc)
            out["state"].append(np.array(env.unwrapped.state, np.float64))
            if term or trunc:
                break
        lengths[i] = t + 1
    env.close()
    mask = np.arange(T)[None] < lengths[:, None]

    def pad(rows, dtype):
        rows = np.asarray(rows, dtype)
        full = np.zeros((n, T) + rows.shape[1:], dtype)
        full[mask] = rows
        return full

    return dict(
        acts=acts,
        mask=mask,
        s0=np.stack(out["s0"]),
        obs=pad(out["obs"], np.float32),
        state=pad(out["state"], np.float64),
        reward=pad(out["reward"], np.float64),
        terminated=pad(out["terminated"], bool),
        truncated=pad(out["truncated"], bool),
    )


def jax_rollouts(env, d: dict, dtype, resync: int | None):
    """Replay gymnasium's actions in JAX from gymnasium's initial states (vmap over episodes, scan over time)."""
    params = env.default_params
    key = jax.random.key(0)
    State = type(env.reset(key, params)[1])

    def to_state(s):  # gymnasium's state vector lists the fields in our order, minus the time counter
        return State(*[s[j] for j in range(s.shape[0])], jnp.zeros((), jnp.int32))

    def episode(s0, acts, gym_states):
        # gym_prev[t] is gymnasium's state before step t.
        gym_prev = jnp.concatenate([s0[None], gym_states[:-1]])

        def body(state, inp):
            a_t, s_gym, t = inp
            if resync is not None:
                synced = to_state(s_gym)._replace(time=state.time)
                state = jax.tree_util.tree_map(lambda x, y: jnp.where(t % resync == 0, y, x), state, synced)
            obs, state, r, term, trunc, _ = env.step(key, state, a_t, params)
            return state, (obs, r, term, trunc)

        T = acts.shape[0]
        return jax.lax.scan(body, to_state(s0), (acts, gym_prev, jnp.arange(T)))[1]

    run = jax.jit(jax.vmap(episode))
    outs = run(jnp.asarray(d["s0"], dtype), jnp.asarray(d["acts"]), jnp.asarray(d["state"], dtype))
    return [np.asarray(x) for x in outs]


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("env_id", list(ENVS))
def test_matches_gymnasium(env_id, precision, request):
    if precision == "float64":
        request.getfixturevalue("x64")
    d = gym_rollouts(env_id)
    obs, reward, terminated, truncated = jax_rollouts(
        ENVS[env_id](),
        d,
        jnp.float64 if precision == "float64" else jnp.float32,
        RESYNC[precision].get(env_id),
    )
    m = d["mask"]
    assert m.shape[0] == N_EPISODES and d["terminated"][m].sum() + d["truncated"][m].sum() >= N_EPISODES
    assert obs.dtype == np.dtype(precision)
    np.testing.assert_allclose(obs[m], d["obs"][m], rtol=0, atol=ATOL[precision])
    np.testing.assert_array_equal(terminated[m], d["terminated"][m])
    np.testing.assert_array_equal(truncated[m], d["truncated"][m])
    if env_id in EXACT_REWARD:
        np.testing.assert_array_equal(reward[m], d["reward"][m])
    else:  # continuous rewards: same tolerance, relative to the reward's size (Pendulum's reaches -16)
        np.testing.assert_allclose(reward[m], d["reward"][m], rtol=ATOL[precision], atol=ATOL[precision])


def test_acrobot_derivative_bitwise_eager(x64):
    """Un-jitted, ``_dsdt`` is gymnasium's ``_dsdt`` to the last bit (the drift above is XLA's FMA/reciprocal rewrites)."""
    from gymnasium.envs.classic_control.acrobot import AcrobotEnv

    from scg.envs.classic_control.acrobot import _dsdt

    ref, params = AcrobotEnv(), Acrobot().default_params
    rng = np.random.default_rng(1)
    for s in rng.uniform(-4, 4, size=(20, 5)):
        s[4] = rng.integers(-1, 2)
        np.testing.assert_array_equal(np.asarray(_dsdt(jnp.asarray(s), params)), np.asarray(ref._dsdt(s), np.float64))


@pytest.mark.parametrize("env_id", list(ENVS))
def test_reset_matches_gymnasium_bounds(env_id):
    env, ref = ENVS[env_id](), gymnasium.make(env_id)
    obs, state = jax.vmap(env.reset)(jax.random.split(jax.random.key(0), 2048))
    lo, hi = {"CartPole-v1": (-0.05, 0.05), "Acrobot-v1": (-0.1, 0.1), "Pendulum-v1": (-math.pi, math.pi)}.get(
        env_id, (-0.6, -0.4)
    )
    first = np.asarray(state[0])
    assert lo <= first.min() and first.max() <= hi and first.max() - first.min() > 0.9 * (hi - lo)
    assert np.all(np.asarray(state.time) == 0)
    assert ref.observation_space.shape == obs.shape[1:]
    assert env.observation_space(env.default_params).to_gymnasium() == ref.observation_space
    assert env.action_space(env.default_params).to_gymnasium() == ref.action_space


@pytest.mark.parametrize("env_id", list(ENVS))
def test_jit_vmap_scan_rollout_traces_once(env_id):
    """1,024 environments x 1,000 steps in one jitted scan with where-based auto-reset; second call does not re-trace."""
    env, n_envs, n_steps = ENVS[env_id](), 1024, 1000
    params = env.default_params
    traces = []

    @jax.jit
    def rollout(key):
        traces.append(1)  # runs only while tracing
        key, k_reset = jax.random.split(key)
        obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, n_envs), params)

        def body(carry, key_t):
            state = carry
            k_act, k_step, k_reset = jax.random.split(key_t, 3)
            a_t = jax.vmap(env.action_space(params).sample)(jax.random.split(k_act, n_envs))
            obs, state_tp1, r_t, term, trunc, _ = jax.vmap(env.step, (0, 0, 0, None))(
                jax.random.split(k_step, n_envs), state, a_t, params
            )
            _, state_0 = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, n_envs), params)
            done = term | trunc
            state_tp1 = jax.tree_util.tree_map(
                lambda s0, s1: jnp.where(done.reshape(done.shape + (1,) * (s1.ndim - 1)), s0, s1), state_0, state_tp1
            )
            return state_tp1, (r_t, done)

        _, (rewards, dones) = jax.lax.scan(body, state, jax.random.split(key, n_steps))
        return rewards, dones

    r1, d1 = rollout(jax.random.key(0))
    r2, d2 = rollout(jax.random.key(1))
    assert len(traces) == 1 and rollout._cache_size() == 1
    assert r1.shape == d1.shape == (n_steps, n_envs)
    assert np.all(np.isfinite(np.asarray(r2)))
    assert np.asarray(d2).any()  # every env finishes episodes within 1,000 steps (horizons are <= 999)


def _fd_jacobian(f, x, eps=1e-6):
    cols = [(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(x.shape[0])]
    return np.stack([np.asarray(c) for c in cols], axis=-1)


@pytest.mark.parametrize(
    "env_cls, points",
    [
        # (theta, theta_dot, torque): away from the speed clip and angle_normalize's jump at +-pi.
        (Pendulum, [[0.3, -1.2, 0.7], [2.5, 3.0, -1.9], [-1.0, 0.1, 0.0]]),
        # (position, velocity, force): away from the walls, the speed clip and the goal.
        (MountainCarContinuous, [[-0.5, 0.01, 0.3], [0.2, -0.03, -0.8], [-1.0, 0.05, 0.95]]),
    ],
)
def test_step_jacobian_matches_finite_differences(env_cls, points, x64):
    env = env_cls()
    params = env.default_params

    def f(x):  # flat (state, action) -> flat (obs, reward, next state)
        state = type(env.reset(jax.random.key(0), params)[1])(x[0], x[1], jnp.zeros((), jnp.int32))
        obs, s1, r, *_ = env.step(jax.random.key(0), state, x[2:3], params)
        return jnp.concatenate([obs, r[None], jnp.stack([s1[0], s1[1]])])

    for x in np.asarray(points, np.float64):
        jac = np.asarray(jax.jacfwd(f)(jnp.asarray(x)))
        np.testing.assert_allclose(jac, _fd_jacobian(jax.jit(f), jnp.asarray(x)), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(np.asarray(jax.jacrev(f)(jnp.asarray(x))), jac, rtol=1e-12, atol=1e-14)


def test_pendulum_gradient_through_rollout(x64):
    """Reverse mode through a 20-step scan: d(return)/d(actions) against central differences."""
    env = Pendulum()
    params = env.default_params
    s0 = type(env.reset(jax.random.key(0), params)[1])(jnp.asarray(0.4), jnp.asarray(0.2), jnp.zeros((), jnp.int32))

    def ret(actions):
        def body(s, a):
            _, s, r, *_ = env.step(jax.random.key(0), s, a[None], params)
            return s, r

        return jax.lax.scan(body, s0, actions)[1].sum()

    actions = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, 20))
    np.testing.assert_allclose(jax.grad(ret)(actions), _fd_jacobian(jax.jit(ret), actions), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "env_cls, fields, points",
    [
        (MountainCar, ("position", "velocity"), [[0.45, 0.01], [0.52, -0.02], [-0.3, 0.0]]),
        (Acrobot, ("theta1", "theta2", "dtheta1", "dtheta2"), [[2.5, 0.3, 0.1, -0.2], [-2.9, -0.4, 1.0, 2.0], [0.1, 0.2, 0.0, 0.0]]),
        (CartPole, ("x", "x_dot", "theta", "theta_dot"), [[0.5, 0.1, 0.05, 0.0], [2.5, 0.0, 0.01, 0.0], [0.1, 0.0, -0.25, 0.3]]),
    ],
)
def test_smooth_reward(env_cls, fields, points, x64):
    """``lam * sigmoid(alpha h(s))``: gradient vs finite differences, and the indicator reward as alpha grows."""
    env = env_cls()
    params = env.default_params
    State = type(env.reset(jax.random.key(0), params)[1])

    def to_state(x):
        return State(**dict(zip(fields, x)), time=jnp.zeros((), jnp.int32))

    for x in np.asarray(points, np.float64):
        f = lambda x: env.smooth_reward(to_state(x), params, lam=2.0, alpha=20.0)  # noqa: E731
        np.testing.assert_allclose(jax.jacfwd(f)(jnp.asarray(x)), _fd_jacobian(f, jnp.asarray(x)), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(jax.grad(f)(jnp.asarray(x)), jax.jacfwd(f)(jnp.asarray(x)), rtol=1e-12)
        state = to_state(jnp.asarray(x))
        goal = {
            MountainCar: lambda: state.position >= params.goal_position,
            Acrobot: lambda: env.height(state) > 1.0,
            CartPole: lambda: ~env.is_terminal(state, params),
        }[env_cls]()
        r_sharp = env.smooth_reward(state, params, lam=2.0, alpha=1e4)
        np.testing.assert_allclose(r_sharp, 2.0 * float(goal), atol=1e-6)
        assert 0.0 < float(env.smooth_reward(state, params, lam=2.0, alpha=1.0)) < 2.0


# -- bad input ---------------------------------------------------------------


def _state(env):
    return env.reset(jax.random.key(0))[1]


def test_wrong_action_shape_is_a_trace_time_error():
    for env, action in [(CartPole(), jnp.array([1])), (Pendulum(), jnp.array(0.5)), (Pendulum(), jnp.zeros(2))]:
        with pytest.raises(ValueError, match=f"{env.name}: action has shape"):
            jax.jit(env.step)(jax.random.key(0), _state(env), action)
    with pytest.raises(TypeError, match="discrete action must be an integer"):
        CartPole().step(jax.random.key(0), _state(CartPole()), 1.0)


def test_params_of_the_wrong_structure_is_a_trace_time_error():
    with pytest.raises(TypeError, match="Pendulum-v1: params have structure"):
        jax.jit(Pendulum().step)(jax.random.key(0), _state(Pendulum()), jnp.zeros(1), CartPole().default_params)


@pytest.mark.parametrize(
    "env, action, space",
    [
        (CartPole(), 2, "Discrete"),
        (Acrobot(), -1, "Discrete"),
        (MountainCar(), 3, "Discrete"),
    ],
)
def test_concrete_action_outside_space_raises(env, action, space):
    """Discrete only: a Box action outside the box is clipped as in gymnasium (tests/envs/test_bad_input_envs.py)."""
    with pytest.raises(ValueError, match=rf"{env.name}: action .* outside the action space {space}"):
        env.step(jax.random.key(0), _state(env), action)


@pytest.mark.parametrize("env", [CartPole(), Acrobot(), MountainCar()])
def test_traced_discrete_action_outside_space_gives_nan(env):
    """Under jit an invalid discrete action cannot raise; it poisons obs, state and reward with NaN instead."""
    step = jax.jit(env.step)
    state = _state(env)
    bad = step(jax.random.key(0), state, jnp.int32(7))
    good = step(jax.random.key(0), state, jnp.int32(1))
    assert np.all(np.isnan(np.asarray(bad.obs))) and np.isnan(bad.reward)
    assert all(np.isnan(x) for x in bad.state[:-1]) and bad.state.time == 1
    assert np.all(np.isfinite(np.asarray(good.obs))) and np.isfinite(good.reward)
    err, _ = checkify.checkify(step, errors=checkify.nan_checks)(jax.random.key(0), state, jnp.int32(7))
    assert err.get() is not None
    err, _ = checkify.checkify(step, errors=checkify.nan_checks)(jax.random.key(0), state, jnp.int32(1))
    assert err.get() is None


@pytest.mark.parametrize("env_id, action", [("Pendulum-v1", 3.0), ("MountainCarContinuous-v0", -4.0)])
def test_traced_box_action_outside_space_does_what_gymnasium_does(env_id, action, x64):
    """Pendulum clips the torque; MountainCarContinuous clips the force but charges the unclipped action."""
    env, ref = ENVS[env_id](), gymnasium.make(env_id).unwrapped
    ref.reset(seed=3)
    s0 = np.array(ref.state, np.float64)
    obs_ref, r_ref, *_ = ref.step(np.array([action], np.float32))
    state = type(_state(env))(jnp.asarray(s0[0]), jnp.asarray(s0[1]), jnp.zeros((), jnp.int32))
    obs, _, r, *_ = jax.jit(env.step)(jax.random.key(0), state, jnp.array([action], jnp.float32))
    np.testing.assert_allclose(obs, obs_ref, atol=1e-6)
    np.testing.assert_allclose(r, r_ref, rtol=1e-6)


def test_pendulum_obs_reward_is_the_step_reward():
    """``Pendulum.obs_reward(obs_t, a_t)`` (for model-based learners) equals the reward ``step`` returns."""
    from scg.envs.classic_control import Pendulum

    env = Pendulum()
    params = env.default_params
    keys = jax.random.split(jax.random.key(0), 64)
    obs, state = jax.vmap(env.reset, (0, None))(keys, params)
    actions = jax.random.uniform(jax.random.key(1), (64, 1), minval=-3.0, maxval=3.0)  # clipped beyond ±2
    rewards = jax.vmap(lambda k, s, a: env.step(k, s, a, params).reward)(keys, state, actions)
    np.testing.assert_allclose(jax.vmap(env.obs_reward, (0, 0, None))(obs, actions, params), rewards, rtol=1e-5, atol=1e-6)
