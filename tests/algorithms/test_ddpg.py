"""DDPG (``scg.algorithms.ddpg``): its update graph against the closed form, and learning Pendulum-v1.

- The compiled graph's actor gradient is the deterministic policy gradient
  ``−(1/B) Σ_k ∂Q_φ(s_k, a)/∂a|_{a=μ_θ(s_k)} ∇_θ μ_θ(s_k)`` and its critic gradient that of the TD(0)
  loss against the targets, each to float tolerance; neither touches the other's parameters
  (the critic's gradient is the TD loss's alone and the actor's the cost's alone, to 1e-7).
- With an exact critic ``Q(s, a) = −(a − 2)²`` the actor's gradient is ``2(μ − 2) ∇_θ μ``.
- Pendulum-v1 (not in the papers; the standard first continuous task): reduced (CI): both of
  2 seeds reach a mean return ≥ −200 (last 20 episodes) within 20k env steps (they get there in
  about 7k and 11k); full (slow, ``bench/learning.py``): ≥ −200 within 50k steps on ≥ 4 of 5 seeds.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg.algorithms import ddpg
from scg.algorithms.networks import make_actor, make_q
from scg.envs.registry import make
from support import steps_to_threshold

B = 16


def _setup(hidden=(8, 8)):
    env, params = make("Pendulum-v1")
    obs_space, action_space = env.observation_space(params), env.action_space(params)
    config = ddpg.DDPGConfig(hidden=hidden, batch_size=B, reward_scale=0.5, discount=0.9)
    actor, critic = make_actor(obs_space, action_space, hidden), make_q(obs_space, action_space, hidden)
    keys = jax.random.split(jax.random.key(0), 8)
    params = {"theta": actor.init(keys[0]), "phi": critic.init(keys[1])}
    targets = {"theta": actor.init(keys[2]), "phi": critic.init(keys[3])}
    batch = {"obs": jax.random.normal(keys[4], (B, 3)), "action": jax.random.uniform(keys[5], (B, 1), minval=-2, maxval=2),
             "reward": jax.random.normal(keys[6], (B,)), "next_obs": jax.random.normal(keys[7], (B, 3)),
             "terminated": (jnp.arange(B) % 3 == 0).astype(jnp.float32)}
    return config, actor, critic, params, targets, batch


def _compiled_grads(config, actor, critic, params, targets, batch):
    graph = ddpg.update_graph(actor, critic, (3,), (1,), config)
    fn = scg.compile(graph).grad_fn({**params, "targets": targets}, num_samples=B, wrt=("theta", "phi"))
    return jax.jit(fn)({**params, "targets": targets}, jax.random.key(1), {"batch": batch})


def _close(a, b, atol):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=atol)


def test_gradients_are_the_deterministic_policy_gradient_and_the_td_gradient():
    config, actor, critic, params, targets, batch = _setup()
    grads = _compiled_grads(config, actor, critic, params, targets, batch)

    def actor_cost(theta):  # Eq. 6 of Smoothie (DPG), as a cost: the critic held fixed
        a = jax.vmap(actor.apply, (None, 0))(theta, batch["obs"])
        return -jnp.mean(jax.vmap(critic.apply, (None, 0, 0))(params["phi"], batch["obs"], a))

    def td_loss(phi):  # slides ~L606: ½ (Q_φ(s, a) − y)², y = c r + γ (1 − d) Q_φ'(s', μ_θ'(s'))
        next_a = jax.vmap(actor.apply, (None, 0))(targets["theta"], batch["next_obs"])
        next_q = jax.vmap(critic.apply, (None, 0, 0))(targets["phi"], batch["next_obs"], next_a)
        y = config.reward_scale * batch["reward"] + config.discount * (1 - batch["terminated"]) * next_q
        q = jax.vmap(critic.apply, (None, 0, 0))(phi, batch["obs"], batch["action"])
        return jnp.mean(0.5 * (q - y) ** 2)

    # each gradient is its own objective's alone: nothing of the actor's cost reaches φ, nothing of the TD loss θ
    _close(grads["theta"], jax.grad(actor_cost)(params["theta"]), atol=1e-7)
    _close(grads["phi"], jax.grad(td_loss)(params["phi"]), atol=1e-7)


def test_actor_gradient_with_an_exact_critic():
    config, actor, _, params, targets, batch = _setup()

    class ExactQ:  # Q(s, a) = −(a − 2)², no parameters to learn
        @staticmethod
        def apply(phi, obs, action):
            return -jnp.sum((action - 2.0) ** 2) + 0.0 * jax.tree_util.tree_leaves(phi)[0].sum()

    grads = _compiled_grads(config, actor, ExactQ, params, targets, batch)
    mu = jax.vmap(actor.apply, (None, 0))(params["theta"], batch["obs"])[:, 0]
    jac = jax.vmap(jax.jacobian(lambda th, s: actor.apply(th, s)[0]), (None, 0))(params["theta"], batch["obs"])
    expected = jax.tree_util.tree_map(lambda j: jnp.einsum("k,k...->...", 2.0 * (mu - 2.0), j) / B, jac)
    _close(grads["theta"], expected, atol=1e-6)


def test_learner_update_moves_targets_by_polyak():
    env, params = make("Pendulum-v1")
    config = ddpg.DDPGConfig(hidden=(8,), batch_size=B, tau=0.25)
    learner = ddpg.make_learner(env, params, config)
    state = learner.init(jax.random.key(0))
    _, _, _, _, _, batch = _setup()
    new, metrics = jax.jit(learner.learn, static_argnums=1)(state, lambda key: batch, jax.random.key(1))
    expected = jax.tree_util.tree_map(lambda p, t: 0.25 * p + 0.75 * t, new.params, state.targets)
    _close(new.targets, expected, atol=1e-7)
    assert set(metrics) >= {"loss", "grad_norm", "q_mean"}


def test_pendulum_reduced():
    """Reduced (CI): both of 2 seeds reach ≥ −200 within 20k steps (a uniform policy scores about −1,200)."""
    reached, final = steps_to_threshold("ddpg", "Pendulum-v1", -200.0, 20_000)
    assert all(s is not None for s in reached), f"steps to -200 per seed {reached}, final mean return {final}"


@pytest.mark.slow
def test_pendulum_full(learning_bench):
    """Full size: ≥ −200 within 50k steps on at least 4 of 5 seeds (bench/learning.py)."""
    result = learning_bench.run_check(learning_bench.CHECKS["ddpg-pendulum"])
    steps = [s["steps_to_threshold"] for s in result["per_seed"]]
    assert result["passed"], f"{result['seeds_reached']}/5 seeds reached -200: steps {steps}"


def test_actor_stays_in_the_box_and_starts_at_init_action():
    from scg.envs.spaces import Box

    obs_space, box = Box.make(-1.0, 1.0, (3,)), Box.make([-2.0, 0.0], [2.0, 1.0], (2,))
    actor = make_actor(obs_space, box, (16,), init_action=[-1.0, 0.25])
    theta = actor.init(jax.random.key(0))
    obs = jax.random.normal(jax.random.key(1), (64, 3))
    a = jax.vmap(actor.apply, (None, 0))(theta, obs)
    np.testing.assert_allclose(a.mean(0), [-1.0, 0.25], atol=0.05)  # the last layer is small: every state near it
    far = jax.vmap(actor.apply, (None, 0))(jax.tree_util.tree_map(lambda x: 100 * x, theta), obs)
    assert np.all((far >= np.array([-2.0, 0.0])) & (far <= np.array([2.0, 1.0])))
    with pytest.raises(ValueError, match="strictly inside the action box"):
        make_actor(obs_space, box, (16,), init_action=2.0)
    with pytest.raises(ValueError, match="bounded action box"):
        make_actor(obs_space, Box.make(-np.inf, np.inf, (1,)), (16,))


def test_host_path_trains_on_gymnasium_pendulum():
    """Gymnasium's own Pendulum-v1 stepped on the host: 3 iterations of 20 steps of 2 envs; the 2nd ends the warm-up and learns."""
    from scg.algorithms.offpolicy import host_train

    config = {"hidden": (8,), "num_envs": 2, "horizon": 20, "warmup_steps": 80, "batch_size": 8}
    states, metrics = host_train("ddpg", "Pendulum-v1", config, seeds=(0,), num_iterations=3)
    assert metrics["env_steps"].tolist() == [[40.0, 40.0, 40.0]]
    assert np.isnan(metrics["loss"][0, 0]) and np.all(np.isfinite(metrics["loss"][0, 1:]))
    assert int(states[0].buffer.size) == 120


def test_cli_chunks_hold_at_least_a_thousand_steps():
    from scg.algorithms import run_config

    ddpg_run = run_config.resolve("ddpg", "Pendulum-v1", seeds=1, steps=10)
    assert ddpg_run["chunk"] == 1_000  # one env step per iteration
    assert run_config.resolve("reinforce", "CartPole-v1", seeds=1, steps=10)["chunk"] == 5
    assert run_config.resolve("ddpg", "Pendulum-v1", seeds=1, steps=10, chunk=7)["chunk"] == 7
