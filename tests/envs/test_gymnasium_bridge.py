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
