"""RPG (Levy & Ermon 2018, Algorithm 1): the compiled gradient against a hand-written recursion, Temporal against
the unrolled graph, the record replayed, and learning on Hand Mass and Cart Pole."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import scg
from scg.algorithms import dynamics, rpg
from scg.algorithms.config import ConfigError
from scg.algorithms.networks import make_policy
from scg.envs.classic_control import CartPole, Pendulum
from scg.envs.paper import HandMass

M, T = 3, 40  # episodes and steps of the recorded batch (Cart Pole episodes end before T for some seeds)


def _setup(env, params, jacobian="fitted", trajectory="real", horizon=T):
    config = rpg.resolve(rpg.RPGConfig, dict(num_envs=M, jacobian=jacobian, trajectory=trajectory))
    task = rpg.task_for(env)
    policy = make_policy(env.observation_space(params), env.action_space(params), config.hidden)
    theta = policy.init(jax.random.key(1))
    # A slightly trained-looking policy: scale the last layer up so that the score terms are not tiny.
    theta["net"][-1]["w"] = theta["net"][-1]["w"] * 100.0
    eps = rpg.collect(env, params, policy, theta, jax.random.key(2), M, horizon)
    x, u, x_next, mask = rpg.model_data(task, eps)
    prior = dynamics.init_prior(jax.random.key(3), horizon=horizon, dim_x=x.shape[-1], dim_u=u.shape[-1],
                                num_clusters=config.num_clusters)
    prior, _ = dynamics.update_prior(prior, jax.random.key(4), x, u, x_next, mask, iterations=config.em_iterations,
                                     first_iterations=config.first_em_iterations)
    model = dynamics.fit(prior, x, u, x_next, mask)
    return config, task, policy, theta, eps, model


def _cartpole_short():
    env = CartPole()
    return env, env.default_params._replace(max_steps_in_episode=T)


def algorithm1(env, params, task, policy, theta, eps, model, jacobian, alpha):
    """Algorithm 1 (~L230-247) in plain JAX: forward tangents ``∇_φ x_t``, per episode, L238 read as ``∇_φ x_t``.

    Returns the gradient of the mean cost ``-(1/m) Σ_i ĝ_i`` (the compiled graph descends on ``-r̃``).
    """
    flat, unravel = ravel_pytree(theta)
    step = rpg._true_step(task, env, params) if jacobian == "true" else None
    weight = jnp.ones_like(eps.alive) if task.absorbing else eps.alive

    def episode(i):
        g, J = jnp.zeros_like(flat), jnp.zeros((task.state(eps.obs[0, i]).shape[0], flat.size))
        x = task.state(eps.obs[0, i])
        for t in range(eps.alive.shape[0]):
            alive, a = eps.alive[t, i], eps.action[t, i]
            clock, clock_next = task.clock(eps.obs[t, i]), task.clock(eps.next_obs[t, i])
            logp = lambda th, xx: policy.dist(unravel(th), task.join(xx, clock)).log_prob(a)  # noqa: E731
            s_theta, s_x = jax.grad(logp, argnums=(0, 1))(flat, x)
            x_next = jnp.where(alive > 0, task.state(eps.next_obs[t, i]), x)
            f_hat = alive * (x_next - x)
            A = model.A[t] if step is None else jax.jacfwd(lambda xx: step(xx, clock, a))(x)
            J_next = A @ J + jnp.outer(f_hat, s_theta) + jnp.outer(f_hat, s_x @ J)
            J = jnp.where(alive > 0, J_next, J)
            grad_r = jax.grad(lambda xx: task.reward(xx, clock_next, alpha))(x_next)
            g = g + weight[t, i] * grad_r @ J
            x = x_next
        return g

    return unravel(-jnp.mean(jnp.stack([episode(i) for i in range(eps.alive.shape[1])]), axis=0))


def _compiled_grad(env, params, config, task, policy, theta, eps, model, key=jax.random.key(5)):
    compiled = scg.compile(rpg.temporal(env, params, policy, task, config, eps.alive.shape[0]))
    x = jax.vmap(jax.vmap(task.state))(eps.obs)
    observed = {"rec": rpg.records(task, eps, model), "x": x[0]}
    return compiled, observed, compiled.grad({"theta": theta, "x": x[0, 0]}, key, num_samples=M, observed=observed,
                                             wrt=["theta"])["theta"]


def _rel(a, b):
    a, b = ravel_pytree(a)[0], ravel_pytree(b)[0]
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("jacobian", ["true", "fitted"])
@pytest.mark.parametrize("which", ["cartpole", "handmass"])
def test_compiled_gradient_equals_algorithm1(which, jacobian):
    env, params = _cartpole_short() if which == "cartpole" else (HandMass(), HandMass().default_params)
    config, task, policy, theta, eps, model = _setup(env, params, jacobian)
    assert float(jnp.sum(eps.alive)) > 10  # the batch has real steps
    _, _, got = _compiled_grad(env, params, config, task, policy, theta, eps, model)
    alpha = task.alpha
    want = algorithm1(env, params, task, policy, theta, eps, model, jacobian, alpha)
    assert _rel(got, want) < 1e-5, _rel(got, want)
    assert float(ravel_pytree(want)[0] @ ravel_pytree(want)[0]) > 0  # not trivially zero


def test_a_wrong_recursion_is_caught():
    """The same check fails for Algorithm 1 without its third line (the policy's dependence on the state)."""
    env, params = _cartpole_short()
    config, task, policy, theta, eps, model = _setup(env, params, "true")
    _, _, got = _compiled_grad(env, params, config, task, policy, theta, eps, model)
    stopped = lambda th, o: policy.dist(th, jax.lax.stop_gradient(o))  # noqa: E731
    wrong = algorithm1(env, params, task, policy._replace(dist=stopped), theta, eps, model, "true", task.alpha)
    assert _rel(got, wrong) > 1e-2


def test_record_is_replayed():
    """With the record observed, the carried states are the recorded ones (to float precision)."""
    env, params = _cartpole_short()
    config, task, policy, theta, eps, model = _setup(env, params)
    compiled, observed, _ = _compiled_grad(env, params, config, task, policy, theta, eps, model)
    x = jax.vmap(jax.vmap(task.state))(eps.obs)
    values = compiled.sample({"theta": theta, "x": x[0, 0]}, jax.random.key(0), num_samples=M, observed=observed)
    want = jnp.swapaxes(jax.vmap(jax.vmap(task.state))(eps.next_obs), 0, 1)
    alive = jnp.swapaxes(eps.alive, 0, 1)
    np.testing.assert_allclose(np.where(alive[..., None] > 0, values["x_next"], want), want, atol=1e-6)


@pytest.mark.parametrize("trajectory", ["real", "relaxed"])
def test_temporal_equals_unrolled_graph(trajectory):
    """Expectation nodes inside scg.Temporal give the values (and, on the record, the gradients) of the unrolled graph."""
    env, params = HandMass(), HandMass().default_params
    horizon = params.horizon
    config, task, policy, theta, eps, model = _setup(env, params, "fitted", trajectory, horizon)
    recs = rpg.records(task, eps, model)
    x = jax.vmap(jax.vmap(task.state))(eps.obs)
    temporal = scg.compile(rpg.temporal(env, params, policy, task, config, horizon))
    g = scg.Graph("unrolled")
    node = g.input("x")
    for t in range(horizon):
        rpg.step_graph(env, params, policy, task, config, suffix=str(t), x=node, g=g)
        node = next(n for n in g.nodes if n.name == f"x_next{t}")
    flat = scg.compile(g)
    for i in range(M):
        rec_i = jax.tree_util.tree_map(lambda v: v[i : i + 1], recs)
        obs_t = {"rec": rec_i, "x": x[0, i][None]}
        obs_f = {f"rec{t}": jax.tree_util.tree_map(lambda v: v[:, t], rec_i) for t in range(horizon)}
        inputs = {"theta": theta, "x": x[0, i]}
        v_t = temporal.value(inputs, jax.random.key(0), num_samples=1, observed=obs_t)
        v_f = flat.value(inputs, jax.random.key(0), num_samples=1, observed=obs_f)
        np.testing.assert_allclose(v_t, v_f, rtol=1e-5, atol=1e-7)
        if trajectory == "real":  # the draws are the recorded actions: the gradients match exactly
            g_t = temporal.grad(inputs, jax.random.key(0), num_samples=1, observed=obs_t, wrt=["theta"])["theta"]
            g_f = flat.grad(inputs, jax.random.key(0), num_samples=1, observed=obs_f, wrt=["theta"])["theta"]
            assert _rel(g_t, g_f) < 1e-5


def test_bad_input():
    with pytest.raises(ConfigError, match="no task definition"):
        rpg.make(Pendulum(), Pendulum().default_params)
    with pytest.raises(ConfigError, match="jacobian"):
        rpg.make(CartPole(), CartPole().default_params, {"jacobian": "exact"})


def _train(env, params, config, iterations, seeds=2):
    init, update = rpg.make(env, params, config)
    run = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda st, _: update(st), s, None, length=iterations)))
    _, metrics = run(jax.vmap(init)(jax.random.split(jax.random.key(0), seeds)))
    return metrics


def test_learns_cartpole_with_fitted_dynamics():
    """RPG with the fitted dynamics learns Cart Pole (200-step episodes): random actions last ~22 steps.

    Asserted on the seed-mean curve's best 5-iteration average, not the last iteration: measured, one of two
    seeds climbs to ~94 and then falls back to ~40 while the other holds 200 (``bench/rpg_tables.py`` reports
    the same instability at full length).
    """
    env, params = CartPole(), CartPole().default_params._replace(max_steps_in_episode=200)
    metrics = _train(env, params, {}, 40)
    curve = np.nanmean(np.asarray(metrics["mean_return"]), axis=0)
    best = np.max(np.convolve(curve, np.ones(5) / 5, mode="valid"))
    assert best >= 100, curve
