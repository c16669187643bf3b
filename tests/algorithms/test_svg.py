"""SVG(0) and SVG(1) (``scg.algorithms.svg0``, ``svg1``): their update graphs against exact answers, and Pendulum-v1.

1. A one-step linear-Gaussian problem with a quadratic cost (1-d): ``s ~ N(0, 1)``,
   ``a ~ π_θ = N(k s + b, σ²)``, ``s' = A s + B a + σ_ζ ζ``, objective ``J(θ) = E[r(s, a) + γ V(s')]``
   with ``r = −(s² + ρ a²)`` and the quadratic ``V(s') = −P s'² − c₀``. The exact ``∇_θ J``
   comes from ``scg.testing.exact_grad`` (Gauss–Hermite quadrature, exact for polynomials). SVG(0)'s
   graph with the exact ``Q(s, a) = r + γ E[V(s')]`` and SVG(1)'s graph with the exact ``V`` and the
   exact model (recorded transitions, inferred noise, importance weights from a different behaviour
   policy) pass the z-test against it; each has ≥ 10× lower per-component variance than the
   score-function estimator of the same gradient; a wrong ``Q``, a wrong model, and SVG(1) without
   its importance weights on off-policy data fail the same test.
2. SVG(1)'s noise inference on a recorded 200-step Pendulum-v1 trajectory (networks at their
   initialisation): the graph's values reproduce the recorded actions and next observations to 1e-5.
3. Every gradient is its own objective's alone (to 1e-7, float32): the actor's is the hand-written
   pathwise gradient with critic and model fixed, the critic's the TD loss's, the model's the least
   squares loss's; so the actor never moves the critic or the model, and the critic loss never the actor.
4. Pendulum-v1: reduced (CI): both of 2 seeds reach a mean return ≥ −200 (last 20 episodes) within
   15k env steps (measured: about 7.5k for both algorithms; a uniform policy scores about −1,200);
   full (slow): ≥ −200 within 50k (SVG(0)) / 100k (SVG(1)) env steps on ≥ 4 of 5 seeds.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import scg
from scg import dist, testing
from scg.algorithms import ALGORITHMS, make_train, svg0, svg1
from scg.algorithms.networks import make_q, make_value
from scg.algorithms.train import steps_to_reach
from scg.envs.registry import make

# -- 1. the linear-Gaussian problem --------------------------------------------------------------
A, B, SZ, RHO, GAMMA, P, C0 = 0.9, 0.5, 0.3, 0.1, 0.9, 2.0, 0.5
THETA = {"k": jnp.array(-0.4), "b": jnp.array(0.3), "log_std": jnp.array(np.log(0.5), jnp.float32)}
BEHAVIOUR = (-0.1, 0.0, 0.8)  # k, b, σ of the policy that recorded SVG(1)'s transitions
REPLICATES = 20_000
PENDULUM, PENDULUM_PARAMS = make("Pendulum-v1")
PENDULUM_REWARD = svg1.known_reward(PENDULUM, PENDULUM_PARAMS)  # r(obs_t, a_t), differentiable

LINEAR = svg0.GaussianPolicy(
    init=None,
    dist=lambda th, obs: dist.Normal(th["k"] * obs + th["b"], jnp.exp(th["log_std"])),
    log_std=lambda th: th["log_std"],
)


def reward(obs, action):
    return -jnp.sum(obs**2 + RHO * action**2)


class ExactQ:  # Q(s, a) = r(s, a) + γ E[V(A s + B a + σ_ζ ζ)];  φ = {"P": P} (a wrong P is a wrong Q)
    @staticmethod
    def apply(phi, obs, action):
        mean = A * obs + B * action
        return reward(obs, action) + GAMMA * jnp.sum(-phi["P"] * (mean**2 + SZ**2) - C0)


class ExactV:  # V(s) = −P s² − c₀
    @staticmethod
    def apply(psi, obs):
        return jnp.sum(-psi["P"] * obs**2) - C0


def exact_model(m, obs, action):  # s' = A s + B a (+ ζ, inferred); the model's reward head is unused
    return m["A"] * obs + m["B"] * action, jnp.float32(0.0)


def truth_graph(estimator=None) -> scg.Graph:
    """The problem itself: ``s``, ``a``, ``s'`` all sampled, cost ``−(r + γ V(s'))``."""
    g = scg.Graph("lq_truth")
    theta, scale = g.input("theta"), g.input("s_scale", differentiable=False)
    s = g.stochastic("s", lambda c: dist.Normal(jnp.zeros(1), c), scale)
    a = g.stochastic("a", lambda th, s: LINEAR.dist(th, s), theta, s, estimator=estimator)
    s1 = g.stochastic("s1", lambda s, a: dist.Normal(A * s + B * a, SZ), s, a)
    g.cost("c", lambda s, a, s1: -(reward(s, a) + GAMMA * ExactV.apply({"P": P}, s1)), s, a, s1)
    return g


def lq_batch(key, n, behaviour):
    """``n`` transitions of the problem recorded under the behaviour policy ``(k, b, σ)``."""
    k_s, k_a, k_z = jax.random.split(key, 3)
    kb, bb, sb = behaviour
    s = jax.random.normal(k_s, (n, 1))
    a = kb * s + bb + sb * jax.random.normal(k_a, (n, 1))
    s1 = A * s + B * a + SZ * jax.random.normal(k_z, (n, 1))
    log_prob = jnp.sum(dist.Normal(kb * s + bb, sb).log_prob(a), -1)
    return {"obs": s, "action": a, "reward": jax.vmap(reward)(s, a), "next_obs": s1, "terminated": jnp.zeros(n),
            "log_prob": log_prob}


def _exact():
    return testing.exact_grad(truth_graph(), {"theta": THETA, "s_scale": jnp.array(1.0)}, wrt=("theta",))["theta"]


def _svg0_draws(q_params):
    config = svg0.SVG0Config(discount=GAMMA)
    fn = scg.compile(svg0.update_graph(LINEAR, ExactQ, (1,), (1,), config)).grad_fn(
        {"theta": THETA, "phi": q_params, "targets": q_params}, num_samples=1, wrt=("theta",))

    def one(key):
        k_batch, k_graph = jax.random.split(key)
        batch = lq_batch(k_batch, 1, BEHAVIOUR)
        del batch["log_prob"]  # SVG(0) records no extras
        return fn({"theta": THETA, "phi": q_params, "targets": q_params}, k_graph, {"batch": batch})["theta"]

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(1), REPLICATES))


def _svg1_draws(model, *, behaviour=BEHAVIOUR, weighted=True, max_weight=1e6):
    config = svg1.SVG1Config(discount=GAMMA, max_weight=max_weight)
    v = {"P": jnp.array(P)}
    graph = svg1.update_graph(LINEAR, ExactV, svg1.Model(None, exact_model), reward, (1,), (1,), config)
    inputs = {"theta": THETA, "psi": v, "model": model, "targets": v}
    fn = scg.compile(graph).grad_fn(inputs, num_samples=1, wrt=("theta",))

    def one(key):
        k_batch, k_graph = jax.random.split(key)
        batch = lq_batch(k_batch, 1, behaviour)
        if not weighted:  # pretend the data were on-policy: w = 1
            batch["log_prob"] = jnp.sum(LINEAR.dist(THETA, batch["obs"]).log_prob(batch["action"]), -1)
        return fn(inputs, k_graph, {"batch": batch, "a": batch["action"], "s_next": batch["next_obs"]})["theta"]

    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(2), REPLICATES))


def _score_draws():
    est = scg.compile(truth_graph("score"))
    draws = est.grad_samples({"theta": THETA, "s_scale": jnp.array(1.0)}, jax.random.key(3),
                             num_replicates=REPLICATES, wrt=("theta",))
    return draws["theta"]


def _variance_ratio(reference, draws) -> dict:
    return {k: float(np.var(reference[k]) / np.var(draws[k])) for k in draws}


@pytest.fixture(scope="module")
def lq():
    return {"exact": _exact(), "score": _score_draws()}


def test_svg0_with_the_exact_q_is_unbiased_and_beats_the_score_function(lq):
    draws = _svg0_draws({"P": jnp.array(P)})
    result = testing.assert_unbiased(draws, lq["exact"])
    ratio = _variance_ratio(lq["score"], draws)
    print(f"SVG(0): {result}; variance ratio score/SVG(0) {ratio}")
    assert min(ratio.values()) >= 10.0, ratio


def test_svg0_with_a_wrong_q_is_biased(lq):
    print(f"SVG(0), Q with P/2: {testing.assert_biased(_svg0_draws({'P': jnp.array(0.5 * P)}), lq['exact'])}")


def test_svg1_with_the_exact_model_and_value_is_unbiased_and_beats_the_score_function(lq):
    exact_model_params = {"A": jnp.array(A), "B": jnp.array(B)}
    off = _svg1_draws(exact_model_params)  # recorded by another policy, importance weighted
    on = _svg1_draws(exact_model_params, behaviour=(THETA["k"], THETA["b"], float(jnp.exp(THETA["log_std"]))),
                     max_weight=5.0)  # recorded by π_θ itself: w = 1
    for draws in (off, on):
        result = testing.assert_unbiased(draws, lq["exact"])
        ratio = _variance_ratio(lq["score"], draws)
        print(f"SVG(1): {result}; variance ratio score/SVG(1) {ratio}")
        assert min(ratio.values()) >= 10.0, ratio


def test_svg1_with_a_wrong_model_or_without_weights_is_biased(lq):
    wrong_model = testing.assert_biased(_svg1_draws({"A": jnp.array(A), "B": jnp.array(0.5 * B)}), lq["exact"])
    unweighted = testing.assert_biased(_svg1_draws({"A": jnp.array(A), "B": jnp.array(B)}, weighted=False), lq["exact"])
    print(f"SVG(1), model with B/2: {wrong_model}; without weights: {unweighted}")


# -- 2., 3. networks on Pendulum-v1 ---------------------------------------------------------------
N = 200


def _pendulum_record(policy, theta):
    """A 200-step Pendulum-v1 trajectory under ``π_θ``, as replay transitions with ``log π_old``."""
    env, env_params = make("Pendulum-v1")
    obs0, state0 = env.reset(jax.random.key(0), env_params)

    def step(carry, key):
        obs, state = carry
        k_act, k_env = jax.random.split(key)
        d = policy.dist(theta, obs)
        action = d.sample(k_act)
        next_obs, state, r, terminated, _, _ = env.step(k_env, state, action, env_params)
        row = {"obs": obs, "action": action, "reward": r, "next_obs": next_obs,
               "terminated": terminated.astype(jnp.float32), "log_prob": jnp.sum(d.log_prob(action))}
        return (next_obs, state), row

    return jax.lax.scan(step, (obs0, state0), jax.random.split(jax.random.key(1), N))[1]


def _close(a, b, atol=1e-7):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=atol)


def _svg1_setup():
    env, env_params = make("Pendulum-v1")
    obs_space, action_space = env.observation_space(env_params), env.action_space(env_params)
    config = svg1.SVG1Config(hidden=(16, 16), model_hidden=(16, 16), discount=0.9, reward_scale=0.5, max_weight=2.0)
    policy = svg0.gaussian_policy(obs_space, action_space, config.hidden)
    value = make_value(obs_space, config.hidden)
    model = svg1.make_model((3,), (1,), config.model_hidden)
    keys = jax.random.split(jax.random.key(5), 4)
    theta_old = policy.init(keys[0])
    record = _pendulum_record(policy, theta_old)
    leaves, treedef = jax.tree_util.tree_flatten(theta_old)  # π_θ ≠ π_old: the weights are not all 1
    theta = treedef.unflatten([x + 0.1 * jax.random.normal(k, x.shape) for x, k in
                               zip(leaves, jax.random.split(keys[3], len(leaves)))])
    params = {"theta": theta, "psi": value.init(keys[1]), "model": model.init(keys[2])}
    return config, policy, value, model, params, record


@pytest.mark.parametrize("known_reward", [True, False])
def test_svg1_noise_inference_reproduces_the_record_and_gradients_are_separate(known_reward):
    config, policy, value, model, params, record = _svg1_setup()
    rew = PENDULUM_REWARD if known_reward else None
    graph = svg1.update_graph(policy, value, model, rew, (3,), (1,), config)
    targets = jax.tree_util.tree_map(lambda x: 0.5 * x, params["psi"])
    inputs = {**params, "targets": targets}
    fn = scg.compile(graph).grad_fn(inputs, num_samples=N, wrt=("theta", "psi", "model"), with_values=True)
    grads, values = jax.jit(fn)(inputs, jax.random.key(9), {"batch": record, "a": record["action"],
                                                             "s_next": record["next_obs"]})
    np.testing.assert_allclose(values["a"], record["action"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(values["s_next"], record["next_obs"], atol=1e-5, rtol=0)
    print("noise inference: max |a - a_rec|", float(jnp.max(jnp.abs(values["a"] - record["action"]))),
          "max |s' - s'_rec|", float(jnp.max(jnp.abs(values["s_next"] - record["next_obs"]))))
    if known_reward:  # the known reward is the environment's, from the observation before the step
        np.testing.assert_allclose(jax.vmap(PENDULUM_REWARD)(record["obs"], record["action"]), record["reward"],
                                   atol=1e-4, rtol=1e-5)
    sg = jax.lax.stop_gradient
    s, a_rec, s1_rec, d = record["obs"], record["action"], record["next_obs"], record["terminated"]
    w = jnp.minimum(jnp.exp(jnp.sum(jax.vmap(policy.dist, (None, 0))(params["theta"], s).log_prob(a_rec), -1)
                            - record["log_prob"]), config.max_weight)
    assert float(jnp.min(w)) < 1.0 < float(jnp.max(w))  # weights that matter, some truncated or not

    def actor_cost(theta):  # −w [c r(s, a') + γ (1 − d) V(f(s, a') + ζ)], a' = μ_θ + σ_θ sg(η), model and V fixed
        def one(s, a_rec, s1_rec, d, w):
            pi = policy.dist(theta, s)
            a = pi.loc + pi.scale * sg((a_rec - pi.loc) / pi.scale)
            f, r_hat = model.apply(params["model"], s, a)
            s1 = f + sg(s1_rec - f)
            r = PENDULUM_REWARD(s, a) if known_reward else r_hat
            return -w * (config.reward_scale * r + config.discount * (1 - d) * value.apply(params["psi"], s1))

        return jnp.mean(jax.vmap(one)(s, a_rec, s1_rec, d, w))

    def value_loss(psi):
        v_next = jax.vmap(value.apply, (None, 0))(targets, s1_rec)
        y = config.reward_scale * record["reward"] + config.discount * (1 - d) * v_next
        return jnp.mean(0.5 * w * (jax.vmap(value.apply, (None, 0))(psi, s) - y) ** 2)

    def model_loss(m):
        f, r_hat = jax.vmap(model.apply, (None, 0, 0))(m, s, a_rec)
        loss = 0.5 * jnp.sum((f - s1_rec) ** 2, -1) + (0.0 if known_reward else 0.5 * (r_hat - record["reward"]) ** 2)
        return jnp.mean(loss)

    _close(grads["theta"], jax.grad(actor_cost)(params["theta"]))
    _close(grads["psi"], jax.grad(value_loss)(params["psi"]))
    _close(grads["model"], jax.grad(model_loss)(params["model"]))
    assert _norm(grads["theta"]) > 0 and _norm(grads["model"]) > 0


def _norm(tree) -> float:
    return float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(tree))))


def test_svg0_gradients_are_the_pathwise_gradient_and_the_td_gradient():
    env, env_params = make("Pendulum-v1")
    obs_space, action_space = env.observation_space(env_params), env.action_space(env_params)
    config = svg0.SVG0Config(hidden=(16, 16), discount=0.9, reward_scale=0.5)
    policy = svg0.gaussian_policy(obs_space, action_space, config.hidden)
    critic = make_q(obs_space, action_space, config.hidden)
    keys = jax.random.split(jax.random.key(6), 3)
    params = {"theta": policy.init(keys[0]), "phi": critic.init(keys[1])}
    targets = critic.init(keys[2])
    record = _pendulum_record(policy, params["theta"])
    inputs = {**params, "targets": targets}
    fn = scg.compile(svg0.update_graph(policy, critic, (3,), (1,), config)).grad_fn(
        inputs, num_samples=N, wrt=("theta", "phi"), with_values=True)
    del record["log_prob"]  # SVG(0) records no extras
    grads, values = jax.jit(fn)(inputs, jax.random.key(9), {"batch": record})
    sg = jax.lax.stop_gradient
    s, a_rec, d = record["obs"], record["action"], record["terminated"]
    q = jax.vmap(critic.apply, (None, 0, 0))

    def reparam(theta, obs, z):
        pi = jax.vmap(policy.dist, (None, 0))(theta, obs)
        return pi.loc + pi.scale * z

    def actor_cost(theta):  # slides ~L548: −Q_φ(s, μ_θ(s) + σ_θ z), the graph's fresh z, φ fixed
        pi = jax.vmap(policy.dist, (None, 0))(params["theta"], s)
        z = sg((values["a"] - pi.loc) / pi.scale)
        return -jnp.mean(q(params["phi"], s, reparam(theta, s, z)))

    def td_loss(phi):
        next_a = reparam(params["theta"], record["next_obs"], values["z_next"])
        y = config.reward_scale * record["reward"] + config.discount * (1 - d) * q(targets, record["next_obs"], next_a)
        return jnp.mean(0.5 * (q(phi, s, a_rec) - y) ** 2)

    _close(grads["theta"], jax.grad(actor_cost)(params["theta"]))
    _close(grads["phi"], jax.grad(td_loss)(params["phi"]))
    assert _norm(grads["theta"]) > 0


# -- 4. Pendulum-v1 -------------------------------------------------------------------------------
def _pendulum(algo, seeds, max_steps, *, need, chunk=5_000):
    """Steps to −200 per seed; the run stops early once ``need`` seeds got there (later steps change nothing)."""
    config = ALGORITHMS[algo].configure("Pendulum-v1")
    env, env_params = make("Pendulum-v1")
    init, run = make_train(algo, env, env_params, config)
    states, chunks = init(jax.random.split(jax.random.key(0), seeds)), []
    for _ in range(max_steps // chunk):
        states, metrics = run(states, chunk // (config.num_envs * config.horizon))
        chunks.append(jax.tree_util.tree_map(np.asarray, metrics))
        metrics = {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}
        reached = steps_to_reach(metrics, -200.0, max_steps=max_steps)
        if sum(s is not None for s in reached) >= need:
            break
    print(f"{algo}: steps to -200 per seed {reached}")
    return reached, metrics["mean_return"][:, -1]


@pytest.mark.parametrize("algo", ["svg0", "svg1"])
def test_pendulum_reduced(algo):
    """Reduced (CI): both of 2 seeds reach ≥ −200 within 15k env steps."""
    reached, final = _pendulum(algo, 2, 15_000, need=2)
    assert all(s is not None for s in reached), f"{algo}: steps to -200 per seed {reached}, final mean return {final}"


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["svg0", "svg1"])
def test_pendulum_full(algo, learning_bench):
    """Full size: ≥ −200 within 50k (SVG(0)) / 100k (SVG(1)) env steps on at least 4 of 5 seeds (bench/learning.py)."""
    result = learning_bench.run_check(learning_bench.CHECKS[f"{algo}-pendulum"])
    steps = [s["steps_to_threshold"] for s in result["per_seed"]]
    assert result["passed"], f"{algo}: {result['seeds_reached']}/5 seeds reached -200: steps {steps}"


@pytest.mark.parametrize("algo", ["svg0", "svg1"])
def test_learner_steps_every_part_and_moves_the_target_by_polyak(algo):
    """One ``learn``: every parameter set moves, the target is ``τ ψ_new + (1 − τ) ψ'``, ``act`` records ``log π``."""
    module, config_class = {"svg0": (svg0, svg0.SVG0Config), "svg1": (svg1, svg1.SVG1Config)}[algo]
    env, env_params = make("Pendulum-v1")
    config = config_class(hidden=(8,), batch_size=N, tau=0.25)
    learner = module.make_learner(env, env_params, config)
    state = learner.init(jax.random.key(0))
    policy = svg0.gaussian_policy(env.observation_space(env_params), env.action_space(env_params), (8,))
    record = _pendulum_record(policy, state.params["theta"])
    if algo == "svg0":
        del record["log_prob"]
    action, extras = learner.act(state, record["obs"][0], jax.random.key(1))
    assert action.shape == (1,) and set(extras) == ({"log_prob"} if algo == "svg1" else set())
    new, metrics = jax.jit(learner.learn, static_argnums=1)(state, lambda key: record, jax.random.key(2))
    critic = "phi" if algo == "svg0" else "psi"
    _close(new.targets, jax.tree_util.tree_map(lambda p, t: 0.25 * p + 0.75 * t, new.params[critic], state.targets))
    for name in new.params:
        moved = [float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(new.params[name]),
                                                                   jax.tree_util.tree_leaves(state.params[name]))]
        assert max(moved) > 0, name
    assert set(metrics) >= {"loss", "grad_norm", "q_mean", "sigma_mean"}
    assert all(np.isfinite(float(v)) for v in metrics.values())


def test_entropy_bonus_adds_minus_beta_to_the_log_std_gradient():
    """With a flat critic (no actor gradient from ``Q``) the log σ gradient is the bonus's alone: ``−β``."""
    env, env_params = make("Pendulum-v1")
    policy = svg0.gaussian_policy(env.observation_space(env_params), env.action_space(env_params), (8,))

    class FlatQ:
        @staticmethod
        def apply(phi, obs, action):
            return phi["c"] + 0.0 * jnp.sum(action)

    theta = policy.init(jax.random.key(0))
    record = _pendulum_record(policy, theta)
    del record["log_prob"]
    inputs = {"theta": theta, "phi": {"c": jnp.array(1.0)}, "targets": {"c": jnp.array(1.0)}}

    def log_std_grad(beta):
        graph = svg0.update_graph(policy, FlatQ, (3,), (1,), svg0.SVG0Config(entropy_bonus=beta))
        fn = scg.compile(graph).grad_fn(inputs, num_samples=N, wrt=("theta",))
        return fn(inputs, jax.random.key(3), {"batch": record})["theta"]["log_std"]

    np.testing.assert_allclose(log_std_grad(0.0), 0.0, atol=1e-7)
    np.testing.assert_allclose(log_std_grad(0.1), -0.1, atol=1e-6)
