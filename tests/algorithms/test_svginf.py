"""SVG(∞) (``scg.algorithms.svginf``): its two graphs against hand-written JAX, and learning.

1. Through the true dynamics, the compiled gradient equals ``jax.grad`` of a plain-JAX rollout of the
   same episodes with the same noise (η read back from the graph's own sample, same key), on
   HandMassContinuous-v0 (20 steps, γ = 1) and Pendulum-v1 (60 steps, γ = 0.97), to rtol 1e-5.
2. With a learned model (time-varying linear, or the MLP), the inferred noise reproduces the recorded trajectory
   (actions, next observations, carried observations) to 1e-5, and the gradient equals ``jax.grad`` of
   the hand-written inferred-noise expressions; with Hand Mass's exact linear model (its dynamics are
   linear inside the action clip) it equals the true-dynamics BPTT gradient of the same episodes.
3. Learning, with ``scg train``'s default budget (160,000 env steps = 125 updates of 64 episodes) and the
   ``TUNED`` entry: HandMassContinuous-v0 mean return ≥ −0.05 (optimum ≈ −0.031, random −0.89);
   2 seeds here, 5 seeds slow. Pendulum-v1 (slow): mean over 5 seeds ≥ −200 after 300,000 env steps.
   Seeds are ``jax.random.key(s)``, ``s = 0, 1, …`` (what ``scg train --seeds n`` trains).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
import scg.algorithms.svginf as svginf  # registers "svginf" (until scg.algorithms imports it)
from scg.algorithms import dynamics, make_train
from scg.algorithms.config import ConfigError
from scg.algorithms.train import seed_keys
from scg.envs import rollout
from scg.envs.registry import make

HAND, HAND_PARAMS = make("HandMassContinuous-v0")
TUNED_HAND = svginf.TUNED["HandMassContinuous-v0"]
PENDULUM, PENDULUM_PARAMS = make("Pendulum-v1")
N = 8


def _tight(a, b, rtol=1e-5):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=rtol * float(np.max(np.abs(y))))


# -- 1. the true dynamics -----------------------------------------------------------------------------
def hand_written_return(env, params, policy, theta, obs0, state0, eta, gamma):
    """``Σ_t γ^t alive_t r_t`` of one episode, ``a_t = μ_θ(o_t) + σ_θ η_t``, in plain JAX (no scg)."""
    def step(carry, eta_t):
        obs, state, alive, scale = carry
        d = policy.dist(theta, obs)
        ts = env.step(jax.random.key(0), state, d.loc + d.scale * eta_t, params)
        done = jnp.logical_or(ts.terminated, ts.truncated)
        return (ts.obs, ts.state, alive * (1.0 - done), gamma * scale), alive * scale * ts.reward

    _, rewards = jax.lax.scan(step, (obs0, state0, 1.0, 1.0), eta)
    return jnp.sum(rewards)


@pytest.mark.parametrize("env, params, horizon, gamma", [(HAND, HAND_PARAMS, 20, 1.0),
                                                         (PENDULUM, PENDULUM_PARAMS, 60, 0.97)])
def test_true_dynamics_gradient_is_bptt_of_the_same_episodes(env, params, horizon, gamma):
    policy = svginf.make_policy(env, params, dict(hidden=(16, 16)))
    theta = policy.init(jax.random.key(1))
    compiled = scg.compile(svginf.true_dynamics_graph(env, params, policy, horizon=horizon, discount=gamma))
    grad_fn = jax.jit(compiled.grad_fn({"theta": theta}, num_samples=N, with_values=True))
    grads, values = grad_fn({"theta": theta}, jax.random.key(2))

    layout = svginf.state_layout(env, params)
    first = lambda x: x[:, 0]  # noqa: E731
    state0 = jax.vmap(layout.join)(jax.tree_util.tree_map(first, values["state"]),
                                   jax.tree_util.tree_map(first, values["clock"]))
    eta = jax.vmap(jax.vmap(lambda o, a: policy.dist(theta, o).noise(a)))(values["obs"], values["a"])

    def objective(th):  # the graph's expected cost: minus the mean return
        one = lambda o, s, e: hand_written_return(env, params, policy, th, o, s, e, gamma)  # noqa: E731
        return -jnp.mean(jax.vmap(one)(values["obs"][:, 0], state0, eta))

    _tight(grads["theta"], jax.grad(objective)(theta))
    assert np.abs(np.asarray(jax.tree_util.tree_leaves(grads["theta"])[0])).max() > 0


def test_episodes_end_where_the_env_says_and_the_clock_stays_integer():
    policy = svginf.make_policy(HAND, HAND_PARAMS)
    compiled = scg.compile(svginf.true_dynamics_graph(HAND, HAND_PARAMS, policy, horizon=25, discount=1.0))
    values = compiled.sample({"theta": policy.init(jax.random.key(0))}, jax.random.key(1), num_samples=3)
    np.testing.assert_array_equal(values["alive"][0], [1.0] * 20 + [0.0] * 5)  # Hand Mass ends after 20 steps
    assert values["clock"][0].dtype == jnp.int32
    np.testing.assert_array_equal(values["clock"][0][0], np.minimum(np.arange(25), 20))


# -- 2. the learned model along recorded episodes -------------------------------------------------------
def _recorded(env, params, policy, theta, horizon, key):
    act = lambda o, k: policy.dist(theta, o).sample(k)  # noqa: E731
    return rollout(env, params, act, key, horizon, num_envs=N)


def hand_written_model_objective(theta, policy, mean_fn, model, reward, observed):
    """``−mean_n Σ_t w_t r(s_t, a'_t, s_{t+1})`` with ``a'_t = μ(s_t) + σ sg(η_t)``,
    ``s_{t+1} = f(s_t, a'_t) + sg(ξ_t)``, η and ξ inferred from the record (Heess et al.'s inferred noise), in plain JAX."""
    rec = observed["rec"]

    def episode(s0, a_rec, s1_rec, t, w, term):
        def step(s, xs):
            a_r, s1_r, t, w, term = xs
            d = policy.dist(theta, s)
            a = d.loc + d.scale * jax.lax.stop_gradient((a_r - d.loc) / d.scale)
            mean = mean_fn(model, t, s, a)
            s1 = mean + jax.lax.stop_gradient(s1_r - mean)
            return s1, w * reward(s, a, s1, term)

        return jnp.sum(jax.lax.scan(step, s0, (a_rec, s1_rec, t, w, term))[1])

    returns = jax.vmap(episode)(observed["s"], observed["a"], observed["s_next"], rec.t, rec.weight, rec.terminated)
    return -jnp.mean(returns)


def _fitted(kind, env, params, traj, mask):
    """A model of ``kind`` fitted on the record, and its mean function."""
    config = svginf.ALGORITHM.configure(overrides=dict(model=kind, prior=False, model_steps=20))
    obs_space, action_space = env.observation_space(params), env.action_space(params)
    learned = (svginf.tvlg_model(config, traj.obs.shape[0], obs_space.shape[0], action_space.shape[0]) if kind == "tvlg"
               else svginf.mlp_model(config, obs_space.shape, action_space.shape))
    _, model = learned.fit(learned.init(jax.random.key(5)), jax.random.key(6), traj, mask)
    return model, learned.mean


@pytest.mark.parametrize("kind", ["tvlg", "mlp"])
@pytest.mark.parametrize("env, params, horizon", [(HAND, HAND_PARAMS, 20), (PENDULUM, PENDULUM_PARAMS, 200)])
def test_inferred_noise_reproduces_the_record(env, params, horizon, kind):
    policy = svginf.make_policy(env, params, dict(hidden=(16, 16)))
    theta = policy.init(jax.random.key(1))
    traj = _recorded(env, params, policy, theta, horizon, jax.random.key(2))
    observed, mask = svginf.record_of(traj, 0.97)
    model, mean_fn = _fitted(kind, env, params, traj, mask)
    reward = svginf.known_reward(env, params)
    graph = svginf.recorded_model_graph(policy, reward, horizon=horizon, obs_dim=traj.obs.shape[-1], mean_fn=mean_fn)
    compiled = scg.compile(graph)
    inputs = {"theta": theta, "model": model}
    values = compiled.sample(inputs, jax.random.key(3), num_samples=N, observed=observed)
    swap = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
    np.testing.assert_allclose(values["a"], swap(traj.action), atol=1e-5, rtol=0)
    np.testing.assert_allclose(values["s_next"], swap(traj.next_obs), atol=1e-5, rtol=0)
    alive = np.asarray(swap(mask)) > 0  # within an episode the carried state is the recorded one
    np.testing.assert_allclose(np.asarray(values["s"])[alive], np.asarray(swap(traj.obs))[alive], atol=1e-5, rtol=0)
    # the recorded reward where the env's reward is the known function (Hand Mass: terminal; Pendulum: every step)
    np.testing.assert_allclose(-values["r"], swap(mask * traj.reward * 0.97 ** jnp.arange(horizon)[:, None]),
                               atol=1e-4, rtol=1e-5)
    grads = compiled.grad(inputs, jax.random.key(4), num_samples=N, wrt=("theta",), observed=observed)
    _tight(grads["theta"], jax.grad(hand_written_model_objective)(theta, policy, mean_fn, model, reward, observed))


@pytest.mark.parametrize("kind, prior", [("tvlg", False), ("mlp", False),
                                         pytest.param("tvlg", True, marks=pytest.mark.slow)])  # the GMM: 25 s
def test_an_update_on_a_given_batch_is_the_update_on_the_batch_it_would_collect(kind, prior):
    """``update(state, batch)`` (a host-collected record) runs the same computation as ``update(state)``."""
    config = dict(TUNED_HAND, model=kind, prior=prior, num_envs=8, model_steps=5)
    init, update = svginf.make(HAND, HAND_PARAMS, config)
    state = init(jax.random.key(0))
    policy = svginf.make_policy(HAND, HAND_PARAMS, config)
    k_env = jax.random.split(state.key, 4)[1]  # the key update collects with
    batch = _recorded(HAND, HAND_PARAMS, policy, state.params["theta"], 20, k_env)
    own, own_metrics = jax.jit(update)(state)
    given, given_metrics = jax.jit(update)(state, batch)
    _tight(given.params, own.params)
    assert float(given_metrics["batch_return"]) == pytest.approx(float(own_metrics["batch_return"]), rel=1e-6)


def _exact_hand_mass_model(horizon):
    """Hand Mass's own dynamics as ``A_t, B_t, c_t`` in observation space (linear for actions in [-1, 1])."""
    from scg.envs.paper.hand_mass import HandMassState

    def f(obs, u, t):
        state = HandMassState(obs[0], obs[1], obs[2], t)
        return HAND.step(jax.random.key(0), state, u, HAND_PARAMS).obs

    def at(t):
        zx, zu = jnp.zeros(4), jnp.zeros(1)
        return jax.jacfwd(f, 0)(zx, zu, t), jax.jacfwd(f, 1)(zx, zu, t), f(zx, zu, t)

    A, B, c = jax.vmap(at)(jnp.arange(horizon, dtype=jnp.int32))
    return dynamics.LinearGaussian(A, B, c, jnp.zeros_like(A))


def test_the_exact_model_gives_the_true_bptt_gradient():
    """SVG(∞) with the true model on recorded episodes = backpropagation through the env (spec B9.4)."""
    policy = svginf.make_policy(HAND, HAND_PARAMS, dict(hidden=(16, 16), init_std=0.2))
    theta = policy.init(jax.random.key(1))
    true = scg.compile(svginf.true_dynamics_graph(HAND, HAND_PARAMS, policy, horizon=20, discount=1.0))
    grads_true, values = true.grad_fn({"theta": theta}, num_samples=N, with_values=True)({"theta": theta},
                                                                                       jax.random.key(2))
    assert float(jnp.max(jnp.abs(values["a"]))) < 1.0  # inside the clip, where the dynamics are linear
    traj = scg.envs.Trajectory(jnp.swapaxes(values["obs"], 0, 1), jnp.swapaxes(values["a"], 0, 1),
                               jnp.swapaxes(values["transition"].reward, 0, 1),
                               jnp.swapaxes(values["transition"].done, 0, 1) > 0, jnp.zeros((20, N), bool),
                               jnp.swapaxes(values["obs_next"], 0, 1))
    observed, _ = svginf.record_of(traj, 1.0)
    model = _exact_hand_mass_model(20)
    graph = svginf.recorded_model_graph(policy, svginf.known_reward(HAND, HAND_PARAMS), horizon=20, obs_dim=4)
    grads = scg.compile(graph).grad({"theta": theta, "model": model}, jax.random.key(5), num_samples=N,
                                    wrt=("theta",), observed=observed)
    _tight(grads["theta"], grads_true["theta"], rtol=1e-4)


def test_bad_input_is_refused_naming_it():
    with pytest.raises(ConfigError, match="model"):
        svginf.make(HAND, HAND_PARAMS, dict(model="learned"))
    with pytest.raises(ConfigError, match="continuous"):
        svginf.make(*make("CartPole-v1"))
    with pytest.raises(ConfigError, match="reward"):
        svginf.make(*make("MountainCarContinuous-v0"), dict(model="tvlg"))
    init, update = svginf.make(HAND, HAND_PARAMS, dict(horizon=20, num_envs=2))
    with pytest.raises(ValueError, match="batch"):
        update(init(jax.random.key(0)), batch={})


# -- 3. learning ----------------------------------------------------------------------------------------
DEFAULT_STEPS = 160_000  # scg train's default --steps


def _train(env_name, seeds, steps, overrides=None):
    env, params = make(env_name)
    config = svginf.ALGORITHM.configure(env_name, overrides)
    init, run = make_train("svginf", env, params, config)
    iterations = -(-steps // (config.num_envs * config.horizon))
    states, metrics = run(init(seed_keys(seeds)), iterations)
    return states, metrics, config


def test_hand_mass_learns_with_the_default_budget():
    _, metrics, _ = _train("HandMassContinuous-v0", 2, DEFAULT_STEPS)
    final = np.asarray(metrics["mean_return"])[:, -1]  # the last update's 64 episodes
    assert np.all(np.asarray(metrics["env_steps"]).sum(axis=1) == DEFAULT_STEPS)
    assert final.mean() >= -0.05, final


def test_scg_train_runs_svginf(tmp_path):
    from scg.algorithms import cli

    code = cli.main(["train", "--algo", "svginf", "--env", "HandMassContinuous-v0", "--seeds", "1", "--steps",
                     "2560", "--runs-dir", str(tmp_path), "--name", "run", "--quiet"])
    assert code == 0
    assert (tmp_path / "run" / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_hand_mass_learns_on_five_seeds():
    _, metrics, _ = _train("HandMassContinuous-v0", 5, DEFAULT_STEPS)
    final = np.asarray(metrics["mean_return"])[:, -1]
    assert final.mean() >= -0.05, final


@pytest.mark.slow
def test_pendulum_learns_on_five_seeds():
    states, metrics, config = _train("Pendulum-v1", 5, 300_000)
    policy = svginf.make_policy(PENDULUM, PENDULUM_PARAMS, config)
    evaluate = lambda th, k: svginf.evaluate(PENDULUM, PENDULUM_PARAMS, policy, th, k, num_episodes=100,  # noqa: E731
                                             horizon=200)
    returns = jax.jit(jax.vmap(evaluate))(states.params["theta"], jax.random.split(jax.random.key(7), 5))
    per_seed = np.asarray(returns).mean(axis=1)
    assert per_seed.mean() >= -200, per_seed
