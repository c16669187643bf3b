"""Bad input to the environments: Box actions outside the space, NaN actions, a step after ``terminated``.

The reference is gymnasium 1.4.0: its Pendulum and MountainCarContinuous clip an
out-of-range action and go on, and its CartPole returns reward 0 and warns when
stepped after ``terminated=True``. Through the gymnasium wrapper ours must do the
same, step for step; the functional step makes a terminated state absorbing
(same state, reward 0, ``terminated`` again), which ``AutoReset`` never reaches.
"""
import math
import warnings

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scg.envs import list_envs, make
from scg.envs.paper import bimodal_reward

# gymnasium's CartPole warning (gymnasium/envs/classic_control/cartpole.py), through gymnasium.logger.warn.
STEP_AFTER_TERMINATED = (
    "WARN: You are calling 'step()' even though this environment has already returned terminated = True. "
    "You should always call 'reset()' once you receive 'terminated = True' -- any further steps are undefined behavior."
)
BOX_IDS = ["Pendulum-v1", "MountainCarContinuous-v0", "HandMassContinuous-v0", "BimodalBandit-v0"]
# Every env that can terminate, with a start state (fields to set after reset) from which a fixed action ends the
# episode within a few steps. Pendulum-v1 never terminates.
TERMINATING = {
    "CartPole-v1": ({}, 1),
    "Acrobot-v1": ({"theta1": math.pi}, 0),  # tip above the bar
    "MountainCar-v0": ({"position": 0.49, "velocity": 0.05}, 2),
    "MountainCarContinuous-v0": ({"position": 0.44, "velocity": 0.05}, np.array([1.0], np.float32)),
    "HandMass-v0": ({}, 1),
    "HandMassContinuous-v0": ({}, np.array([0.5], np.float32)),
    "DeepSea-v0": ({}, 1),
    "CombinatorialBandit-v0": ({}, 1),
    "BimodalBandit-v0": ({}, np.array([1.0], np.float32)),
    "ChainMDP-v0": ({}, 1),
}


def _start(env, seed, **fields):
    """Reset ``env`` (a ``gymnasium.make`` of an scg id) and set the given fields of its functional state."""
    env.reset(seed=seed)
    return _start_fields(env, **fields)


def _start_fields(env, **fields):
    inner = env.unwrapped  # the functional state lives in GymnasiumEnv._state (gymnasium's envs: .state)
    state = inner._state
    inner._state = state._replace(**{k: jnp.asarray(v, getattr(state, k).dtype) for k, v in fields.items()})
    return inner._state


# -- 1. Box actions outside the space ------------------------------------------------------------


def _out_of_range_actions(env_id, n, rng):
    """Mostly far outside the box (|a| up to 10, 1e6 and +-inf), with some in range."""
    a = rng.uniform(-10.0, 10.0, n)
    a[::7] = rng.uniform(-1.0, 1.0, len(a[::7]))
    a[3], a[5], a[9] = np.inf, -np.inf, 1e6
    if env_id == "MountainCarContinuous-v0":  # push along the velocity from step 10 on, so the goal (+100) is reached
        a[10:] = np.abs(a[10:])
    return a.astype(np.float32)[:, None]


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "MountainCarContinuous-v0"])
def test_out_of_range_box_actions_clip_like_gymnasium(env_id):
    """The same out-of-range actions from the same state, in ours and gymnasium's, agree step for step."""
    ours, ref = gymnasium.make(f"scg/{env_id}"), gymnasium.make(env_id)
    ref.reset(seed=0)
    s0 = np.array(ref.unwrapped.state, np.float64)
    fields = ("theta", "theta_dot") if env_id == "Pendulum-v1" else ("position", "velocity")
    _start(ours, 0, **dict(zip(fields, s0)))
    rng = np.random.default_rng(0)
    actions = _out_of_range_actions(env_id, 150, rng)
    ended = False
    for t, a in enumerate(actions):
        if env_id == "Pendulum-v1" and t % 10 == 0:
            # float32 here, float64 in gymnasium, and the dynamics amplify rounding ~3x per 10 steps: re-synchronise
            # as tests/envs/test_classic_control.py does (MountainCarContinuous runs free: float32 in both).
            _start_fields(ours, **dict(zip(fields, ref.unwrapped.state)))
        if env_id == "MountainCarContinuous-v0" and t >= 10:
            a = a * np.sign(ref.unwrapped.state[1] + 1e-12).astype(np.float32)
        obs_ref, r_ref, term_ref, trunc_ref, _ = ref.step(a)
        obs, r, term, trunc, _ = ours.step(a)
        np.testing.assert_allclose(obs, obs_ref, rtol=0, atol=1e-4, err_msg=f"step {t}, action {a}")
        np.testing.assert_allclose(r, r_ref, rtol=1e-5, atol=1e-4, err_msg=f"step {t}, action {a}")
        assert (term, trunc) == (term_ref, trunc_ref)
        if term:
            ended = True
            break
    assert ended == (env_id == "MountainCarContinuous-v0")  # the +100 and the unclipped action penalty were compared


@pytest.mark.parametrize("env_id", BOX_IDS)
def test_out_of_range_box_action_functional_concrete_equals_traced(env_id):
    """Concrete (eager) and traced (jit) steps treat an out-of-range action alike: neither raises."""
    env, params = make(env_id)
    _, state = env.reset(jax.random.key(0), params)
    for a in [3.0, -np.inf]:
        action = jnp.array([a], jnp.float32)
        eager = env.step(jax.random.key(1), state, action, params)
        jitted = jax.jit(env.step)(jax.random.key(1), state, action, params)
        for x, y in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6)


def test_hand_mass_continuous_clips_to_the_hand_speed():
    env = gymnasium.make("scg/HandMassContinuous-v0").unwrapped
    state = _start(env, 0)
    for a, clipped in [(3.0, 1.0), (-40.0, -1.0), (np.inf, 1.0)]:
        env._state = state
        obs, r, *_ = env.step(np.array([a], np.float32))
        env._state = state
        obs_clipped, r_clipped, *_ = env.step(np.array([clipped], np.float32))
        np.testing.assert_array_equal(obs, obs_clipped)
        assert r == r_clipped


def test_bimodal_bandit_takes_the_action_unclipped():
    """No physical bound: r(a) of the action itself, on the whole real line (the module docstring)."""
    env = gymnasium.make("scg/BimodalBandit-v0")
    params = make("BimodalBandit-v0")[1]
    for a in [2.5, -3.0, 1e3]:
        env.reset(seed=0)
        _, r, terminated, *_ = env.step(np.array([a], np.float32))
        assert terminated
        np.testing.assert_allclose(r, float(bimodal_reward(jnp.float32(a), params)), rtol=1e-6, atol=0)
        assert 0.0 <= r <= math.exp(-8.0)  # the docstring's bound outside [-2, 2]


@pytest.mark.parametrize("env_id", BOX_IDS)
def test_nan_action_is_an_error_naming_the_action(env_id):
    nan = np.array([np.nan], np.float32)
    gym_env = gymnasium.make(f"scg/{env_id}")
    gym_env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"{env_id}: action array\(\[nan\].* contains NaN"):
        gym_env.step(nan)
    env, params = make(env_id)
    _, state = env.reset(jax.random.key(0), params)
    with pytest.raises(ValueError, match=rf"{env_id}: action .*nan.* contains NaN"):
        env.step(jax.random.key(1), state, jnp.asarray(nan), params)
    traced = jax.jit(env.step)(jax.random.key(1), state, jnp.asarray(nan), params)  # cannot raise: NaN propagates
    assert np.isnan(float(traced.reward)) or np.isnan(np.asarray(traced.obs)).any()


# -- 2. A step after termination ----------------------------------------------------------------


def test_every_env_is_listed_here():
    assert set(TERMINATING) | {"Pendulum-v1"} == set(list_envs())
    env, params = make("Pendulum-v1")
    assert env.is_terminal(env.reset(jax.random.key(0), params)[1], params) is None


def _run_until_terminated(env, action, limit=60):
    for _ in range(limit):
        _, reward, terminated, truncated, _ = env.step(action)
        if terminated:
            return reward
        assert not truncated
    raise AssertionError(f"{env.spec.id}: no termination within {limit} steps")


@pytest.mark.parametrize("env_id", list(TERMINATING))
def test_gymnasium_step_after_terminated_gives_reward_0_and_warns_once(env_id):
    fields, action = TERMINATING[env_id]
    env = gymnasium.make(f"scg/{env_id}")
    _start(env, 0, **fields)
    _run_until_terminated(env, action)
    last = env.unwrapped._state
    with pytest.warns(UserWarning) as record:
        obs, reward, terminated, truncated, _ = env.step(action)
    assert [str(w.message) for w in record if "terminated = True" in str(w.message)] == [
        gymnasium.logger.colorize(STEP_AFTER_TERMINATED, "yellow")
    ]
    assert (reward, terminated, truncated) == (0.0, True, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per episode, as gymnasium's CartPole
        obs2, reward2, terminated2, _, _ = env.step(action)
    assert (reward2, terminated2) == (0.0, True)
    np.testing.assert_array_equal(obs, obs2)  # absorbing
    jax.tree_util.tree_map(np.testing.assert_array_equal, env.unwrapped._state, last)
    env.reset(seed=1)  # a new episode: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.step(action)


def test_cartpole_step_after_terminated_matches_gymnasium():
    """Ours and gymnasium's CartPole from the same state: same rewards (1, ..., 1, 0, 0), flags and warning."""
    ours, ref = gymnasium.make("scg/CartPole-v1"), gymnasium.make("CartPole-v1")
    ref.reset(seed=0)
    s0 = np.array(ref.unwrapped.state, np.float64)
    _start(ours, 0, **dict(zip(("x", "x_dot", "theta", "theta_dot"), s0)))
    out = {}
    for name, env in [("ours", ours), ("gymnasium", ref)]:
        rows, ended = [], None
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            for t in range(30):
                obs, reward, terminated, truncated, _ = env.step(1)
                rows.append((obs, reward, terminated, truncated))
                ended = t if terminated and ended is None else ended
                if ended is not None and t == ended + 3:
                    break
        out[name] = rows, ended, [str(w.message) for w in record if "terminated = True" in str(w.message)]
    (rows, ended, warned), (rows_ref, ended_ref, warned_ref) = out["ours"], out["gymnasium"]
    assert ended == ended_ref is not None and len(warned) == len(warned_ref) == 1 and warned == warned_ref
    assert [r[1:] for r in rows] == [r[1:] for r in rows_ref]
    assert [r[1] for r in rows[ended:]] == [1.0, 0.0, 0.0, 0.0]
    # Up to termination the observations agree; after it gymnasium keeps integrating ("undefined behaviour"),
    # ours stays at the terminated state.
    obs, obs_ref = (np.stack([r[0] for r in x[: ended + 1]]) for x in (rows, rows_ref))
    np.testing.assert_allclose(obs, obs_ref, atol=1e-5)


# Envs whose episodes random actions end within 60 steps (every terminating env is covered through gymnasium above).
@pytest.mark.parametrize("env_id", ["CartPole-v1", "CombinatorialBandit-v0", "BimodalBandit-v0"])
def test_functional_terminated_state_is_absorbing(env_id):
    """Stepping on without reset (60 random actions, jit of a scan): once terminated, the same state, reward 0."""
    env, params = make(env_id)
    space = env.action_space(params)
    n, T = 16, 60

    @jax.jit
    def run(key):
        _, state = env.reset(key, params)

        def body(state, key_t):
            k_a, k_s = jax.random.split(key_t)
            ts = env.step(k_s, state, space.sample(k_a), params)
            return ts.state, (ts.state, ts.reward, ts.terminated, ts.truncated, env.is_terminal(ts.state, params))

        return jax.lax.scan(body, state, jax.random.split(key, T))[1]

    states, reward, terminated, truncated, flags = jax.vmap(run)(jax.random.split(jax.random.key(0), n))
    terminated, reward = np.asarray(terminated), np.asarray(reward)
    first = np.where(terminated.any(1), terminated.argmax(1), T)
    after = np.arange(T)[None] > first[:, None]
    assert after.any(axis=1).mean() > 0.5  # most runs step past their termination
    assert np.all(terminated[after]) and np.all(reward[after] == 0.0) and not np.asarray(truncated)[after].any()
    for leaf in jax.tree_util.tree_leaves(states):
        leaf = np.asarray(leaf)
        at_end = leaf[np.arange(n), np.minimum(first, T - 1)]
        np.testing.assert_array_equal(leaf[after], np.broadcast_to(at_end[:, None], leaf.shape)[after])
    np.testing.assert_array_equal(np.asarray(flags), terminated)  # is_terminal agrees with step's flag


@pytest.mark.parametrize("env_id", ["CartPole-v1", "CombinatorialBandit-v0"])
def test_functional_step_from_a_terminated_state_under_vmap(env_id):
    """A batch mixing terminated and live states: the terminated ones stay put with reward 0, the others step as alone.

    CombinatorialBandit used to pay the tree's reward again on every step past its end.
    """
    env, params = make(env_id)
    _, live = env.reset(jax.random.key(0), params)
    if env_id == "CartPole-v1":
        done = live._replace(theta=jnp.float32(0.3))  # past the 12 degree limit
    else:  # every edge decided: the star at node 0, edges (0, 1) ... (0, 4) of K5
        done = live._replace(t=jnp.int32(env.num_edges), included=jnp.arange(env.num_edges) < 4)
        assert bool(env.is_spanning_tree(done.included))
    action = jnp.int32(1)
    assert bool(env.is_terminal(done, params)) and not bool(env.is_terminal(live, params))
    batch = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), done, live)
    keys = jax.random.split(jax.random.key(5), 2)
    ts = jax.jit(jax.vmap(env.step, in_axes=(0, 0, None, None)))(keys, batch, action, params)
    alone = env.step(keys[1], live, action, params)
    assert float(ts.reward[0]) == 0.0 and bool(ts.terminated[0]) and not bool(ts.truncated[0])
    np.testing.assert_array_equal(np.asarray(ts.obs[0]), np.asarray(env.get_obs(done, params)))
    for x, y in zip(jax.tree_util.tree_leaves(ts.state), jax.tree_util.tree_leaves(done)):
        np.testing.assert_array_equal(np.asarray(x)[0], np.asarray(y))
    for x, y in zip(jax.tree_util.tree_leaves(ts[:5]), jax.tree_util.tree_leaves(alone[:5])):
        np.testing.assert_array_equal(np.asarray(x)[1], np.asarray(y))
