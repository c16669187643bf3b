"""Both directions with gymnasium: functional envs as ``gymnasium.Env`` (``scg/<id>``), gymnasium envs collected on the host."""
import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from scg import envs
from scg.envs import HostEnv, Trajectory, from_gymnasium, list_envs, make, rollout
from scg.envs.spaces import Box, Discrete

PAPER_IDS = ["HandMass-v0", "HandMassContinuous-v0", "DeepSea-v0", "CombinatorialBandit-v0", "BimodalBandit-v0", "ChainMDP-v0"]
CLASSIC_IDS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1"]


def _make_or_skip(name, **kwargs):
    try:
        return gymnasium.make(f"scg/{name}", **kwargs)
    except ImportError as err:  # scg.envs.classic_control may not exist yet
        pytest.skip(str(err))


def test_registry_lists_all_and_rejects_unknown():
    assert set(list_envs()) == set(PAPER_IDS + CLASSIC_IDS)
    assert all(f"scg/{name}" in gymnasium.registry for name in list_envs())
    env, params = make("DeepSea-v0")
    assert env.name == "DeepSea-v0" and params == env.default_params
    with pytest.raises(KeyError, match="NoSuchEnv-v0"):
        make("NoSuchEnv-v0")


@pytest.mark.filterwarnings("ignore:.*(infinity|symmetric and normalized)")  # unbounded obs / Pendulum-style actions, as in gymnasium
@pytest.mark.parametrize("name", PAPER_IDS + CLASSIC_IDS)
def test_check_env_and_render(name):
    env = _make_or_skip(name, render_mode="rgb_array")
    check_env(env.unwrapped)
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[-1] == 3


@pytest.mark.parametrize("name", PAPER_IDS)
def test_same_seed_same_episode(name):
    def run(seed):
        env = gymnasium.make(f"scg/{name}")
        env.action_space.seed(seed)
        out = [env.reset(seed=seed)[0]]
        for _ in range(5):
            obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            out += [obs, np.float32(reward)]
            if terminated or truncated:
                out.append(env.reset()[0])
        return np.concatenate([np.ravel(x) for x in out])

    np.testing.assert_array_equal(run(3), run(3))


def test_bad_input_names_the_env():
    env, params = make("HandMassContinuous-v0")
    _, state = env.reset(jax.random.key(0), params)
    with pytest.raises(ValueError, match="HandMassContinuous-v0.*shape"):
        env.step(jax.random.key(1), state, jnp.zeros((2,)), params)
    with pytest.raises(TypeError, match="HandMassContinuous-v0.*params"):
        env.step(jax.random.key(1), state, jnp.zeros((1,)), (1.0, 2.0))
    disc, dparams = make("DeepSea-v0")
    _, dstate = disc.reset(jax.random.key(0), dparams)
    with pytest.raises(TypeError, match="integer"):
        disc.step(jax.random.key(1), dstate, jnp.float32(1.0), dparams)

    gym_env = gymnasium.make("scg/HandMassContinuous-v0").unwrapped
    gym_env.reset(seed=0)
    with pytest.raises(ValueError, match="HandMassContinuous-v0.*NaN"):  # out of the box is clipped, not an error
        gym_env.step(np.array([np.nan], np.float32))
    with pytest.raises(ValueError, match="HandMassContinuous-v0.*shape"):
        gym_env.step(np.zeros((1, 1), np.float32))
    gym_disc = gymnasium.make("scg/DeepSea-v0").unwrapped
    gym_disc.reset(seed=0)
    with pytest.raises(ValueError, match="DeepSea-v0.*outside"):
        gym_disc.step(5)


def test_space_conversion():
    assert from_gymnasium(gymnasium.spaces.Discrete(3)) == Discrete(3)
    box = from_gymnasium(gymnasium.spaces.Box(-1.0, 2.0, (2,)))
    assert isinstance(box, Box) and box.shape == (2,) and box.low == (-1.0, -1.0) and box.high == (2.0, 2.0)
    with pytest.raises(NotImplementedError):
        from_gymnasium(gymnasium.spaces.Discrete(3, start=1))


def random_discrete(theta, obs, key):
    return jax.random.randint(key, (), 0, 2)


def test_host_cartpole_shapes_and_final_obs():
    num_envs, num_steps, seed = 3, 60, 11
    host = HostEnv("CartPole-v1", num_envs, seed=seed)
    assert host.observation_space.shape == (4,) and host.action_space == Discrete(2)
    traj = host.collect(random_discrete, None, jax.random.key(0), num_steps)
    assert isinstance(traj, Trajectory)
    assert traj.obs.shape == traj.next_obs.shape == (num_steps, num_envs, 4)
    assert traj.action.shape == traj.reward.shape == traj.terminated.shape == (num_steps, num_envs)
    assert traj.terminated.any()  # random CartPole episodes end within ~20 steps

    # Independent path: replay the same actions in single gymnasium envs seeded like the vector's sub-envs.
    for i in range(num_envs):
        ref = gymnasium.make("CartPole-v1")
        obs, _ = ref.reset(seed=seed + i)
        for t in range(num_steps):
            np.testing.assert_allclose(traj.obs[t, i], obs, rtol=1e-6)
            obs, reward, terminated, truncated, _ = ref.step(int(traj.action[t, i]))
            np.testing.assert_allclose(traj.next_obs[t, i], obs, rtol=1e-6)  # the true final obs, not the reset one
            assert (traj.terminated[t, i], traj.truncated[t, i], traj.reward[t, i]) == (terminated, truncated, reward)
            if terminated or truncated:
                obs, _ = ref.reset()
    host.close()


def test_host_async_workers_give_the_sync_trajectory():
    """``vectorization="async"`` (one worker process per copy) collects exactly what ``"sync"`` does, ends included."""
    num_envs, num_steps, seed, key = 2, 60, 7, jax.random.key(3)
    with HostEnv("CartPole-v1", num_envs, seed=seed) as host:
        sync = host.collect(random_discrete, None, key, num_steps)
    with HostEnv("CartPole-v1", num_envs, seed=seed, vectorization="async") as host:
        assert isinstance(host.vec, gymnasium.vector.AsyncVectorEnv) and len(host.vec.processes) == num_envs
        assert host.observation_space.shape == (4,) and host.action_space == Discrete(2)
        par = host.collect(random_discrete, None, key, num_steps)
    assert not any(p.is_alive() for p in host.vec.processes)  # __exit__ closed the workers
    assert sync.terminated.any()  # random CartPole episodes end within ~20 steps: final_obs was exercised
    for name, x, y in zip(Trajectory._fields, sync, par):
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    host.close()  # a second close is a no-op


def test_host_rejects_unknown_vectorization():
    with pytest.raises(ValueError, match=r"vectorization must be 'sync' or 'async', got 'threads'"):
        HostEnv("CartPole-v1", 2, vectorization="threads")


def test_host_pendulum_box_actions():
    host = HostEnv("Pendulum-v1", 2, seed=0)
    assert host.action_space.shape == (1,)
    traj = host.collect(lambda theta, obs, key: theta * jax.random.normal(key, (1,)), 2.0, jax.random.key(0), 5)
    assert traj.obs.shape == (5, 2, 3) and traj.action.shape == (5, 2, 1)
    with pytest.raises(ValueError, match="Pendulum-v1"):
        host.collect(lambda theta, obs, key: jnp.zeros((2,)), None, jax.random.key(0), 1)
    host.close()


def test_host_and_jax_rollouts_share_one_layout():
    """The same Trajectory (T, N, ...) from the scan rollout and from the host collector over scg/ChainMDP-v0."""
    env, params = make("ChainMDP-v0")
    pi = lambda obs, key: jax.random.randint(key, (), 0, 2)  # noqa: E731
    a = rollout(env, params, pi, jax.random.key(0), 25, num_envs=4)
    b = HostEnv("scg/ChainMDP-v0", 4, seed=0).collect(lambda theta, obs, key: pi(obs, key), None, jax.random.key(0), 25)
    for x, y in zip(a, b):
        assert x.shape == y.shape and np.asarray(x).dtype == y.dtype
    ended = b.terminated | b.truncated
    np.testing.assert_array_equal(b.next_obs[:-1][~ended[:-1]], b.obs[1:][~ended[:-1]])
    assert np.all(np.isin(b.next_obs[b.terminated], [-params.m, params.n]))


def test_make_vec_steps_all_envs_in_one_jitted_call_and_matches_the_functional_env():
    """``gymnasium.make_vec("scg/CartPole-v1")`` is a GymnasiumVectorEnv whose numbers are VecAutoReset's, key by key."""
    from scg.envs.gym_wrapper import GymnasiumVectorEnv

    n, steps = 16, 40
    venv = gymnasium.make_vec("scg/CartPole-v1", num_envs=n)
    assert isinstance(venv, GymnasiumVectorEnv) and venv.num_envs == n
    assert venv.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.SAME_STEP
    assert venv.observation_space.shape == (n, 4) and venv.action_space.shape == (n,)
    obs, _ = venv.reset(seed=3)
    env, params = make("CartPole-v1")
    ref = envs.VecAutoReset(env, n)
    key, sub = jax.random.split(jax.random.key(3))
    ref_obs, state = jax.jit(ref.reset)(sub, params)
    ref_step = jax.jit(ref.step)
    close = lambda a, b: np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-5)  # noqa: E731  (jit fuses, rounds apart)
    close(obs, ref_obs)
    actions = np.random.default_rng(0).integers(2, size=(steps, n))
    ended = 0
    for a in actions:
        obs, reward, terminated, truncated, info = venv.step(a)
        key, sub = jax.random.split(key)
        ts = ref_step(sub, state, jnp.asarray(a, jnp.int32), params)
        state = ts.state
        close(obs, ts.obs)
        close(reward, ts.reward)
        np.testing.assert_array_equal(terminated, np.asarray(ts.terminated))
        done = terminated | truncated
        np.testing.assert_array_equal(info["_final_obs"], done)
        close(info["final_obs"][done], np.asarray(ts.info["final_obs"])[done])
        assert obs.dtype == np.float32 and reward.dtype == np.float32 and terminated.dtype == bool
        ended += int(done.sum())
    assert ended > 0  # random CartPole episodes end within ~20 steps: the autoreset was exercised
    with pytest.raises(ValueError, match=r"CartPole-v1.*shape \(16,\)"):
        venv.step(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="CartPole-v1.*outside"):
        venv.step(np.full(n, 2))
    # The same seed gives the same episodes.
    again = gymnasium.make_vec("scg/CartPole-v1", num_envs=n)
    np.testing.assert_array_equal(again.reset(seed=3)[0], venv.reset(seed=3)[0])


def test_module_prefixed_id_needs_no_import(tmp_path):
    """Gymnasium 1.x has no plugin entry point; ``"scg.envs:scg/<id>"`` imports the registering module itself."""
    import subprocess
    import sys

    code = ("import gymnasium\n"
            "env = gymnasium.make('scg.envs:scg/CartPole-v1')\n"
            "obs, _ = env.reset(seed=0)\n"
            "print(type(env.unwrapped).__name__, obs.shape)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["GymnasiumEnv", "(4,)"]
