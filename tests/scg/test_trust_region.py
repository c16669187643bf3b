"""Trust-region steps: CG against a dense solve, Fisher-vector products against explicit Hessians
and JᵀMJ, line-search decisions computed by hand, value-function fit against least squares."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from scg import trust_region as tr

N_STATES = 6


def flat(tree):
    return ravel_pytree(tree)[0]


def dense(make_matvec, params):
    """The matrix of the pytree linear map ``make_matvec(params)``, all columns at once under jit."""
    x, unravel = ravel_pytree(params)
    columns = lambda p: jax.vmap(lambda e: flat(make_matvec(p)(unravel(e))), out_axes=1)(jnp.eye(x.size))
    return jax.jit(columns)(params)


def hessian(f, params):
    """The dense Hessian of ``f`` in the flattened parameters (jitted: eager ``jax.hessian`` is slow)."""
    x, unravel = ravel_pytree(params)
    return jax.jit(jax.hessian(lambda z: f(unravel(z))))(x)


# --- a linear-softmax categorical policy over fixed states ----------------------------------------


def categorical_problem(seed=0):
    k = jax.random.split(jax.random.key(seed), 5)
    x = jax.random.normal(k[0], (N_STATES, 3))
    params = {"w": jax.random.normal(k[1], (3, 4)), "b": 0.5 * jax.random.normal(k[2], (4,))}
    actions = jax.random.randint(k[3], (N_STATES,), 0, 4)
    adv = jax.random.normal(k[4], (N_STATES,))
    logits_fn = lambda p: x @ p["w"] + p["b"]
    logp_old = jax.nn.log_softmax(logits_fn(params))

    def loss_fn(p):  # -L_θold(θ), Eq. 35, in cost units
        logp = jax.nn.log_softmax(logits_fn(p))
        ratio = jnp.exp(jnp.take_along_axis(logp - logp_old, actions[:, None], axis=1)[:, 0])
        return -jnp.mean(ratio * adv)

    def kl_fn(p):  # mean KL(π_old ‖ π_p), analytic
        logp = jax.nn.log_softmax(logits_fn(p))
        return jnp.mean(jnp.sum(jnp.exp(logp_old) * (logp_old - logp), axis=1))

    return params, logits_fn, loss_fn, kl_fn


def test_conjugate_gradient_matches_solve_on_a_pytree():
    a = jax.random.normal(jax.random.key(1), (5, 5))
    a = a @ a.T + 0.5 * jnp.eye(5)
    b = {"u": jnp.array([1.0, -2.0]), "v": jnp.array([0.5, 3.0, -1.0])}
    _, unravel = ravel_pytree(b)
    matvec = lambda t: unravel(a @ flat(t))
    # 30 iterations on a 5×5 system: the residual test must freeze the iterate (no 0/0 after convergence).
    x = jax.jit(lambda b: tr.conjugate_gradient(matvec, b, iters=30))(b)
    np.testing.assert_allclose(flat(x), jnp.linalg.solve(a, flat(b)), rtol=1e-5, atol=1e-5)
    x = tr.conjugate_gradient(matvec, b, iters=30, damping=0.7)
    np.testing.assert_allclose(flat(x), jnp.linalg.solve(a + 0.7 * jnp.eye(5), flat(b)), rtol=1e-5, atol=1e-5)


def test_fisher_vector_products_match_explicit_fisher():
    params, logits_fn, _, kl_fn = categorical_problem()
    x, unravel = ravel_pytree(params)
    fisher = hessian(kl_fn, params)
    # Independent slow path: J^T M J with M = diag(p) - p p^T per state (Eq. 21).
    jac = jax.jit(jax.jacobian(lambda z: logits_fn(unravel(z))))(x)  # (N, 4, d)
    p = jax.nn.softmax(logits_fn(params))
    m = jax.vmap(lambda p: jnp.diag(p) - jnp.outer(p, p))(p)
    np.testing.assert_allclose(jnp.einsum("nai,nab,nbj->ij", jac, m, jac) / N_STATES, fisher, atol=1e-5)

    hvp = lambda p: tr.hvp_fvp(kl_fn, p, damping=0.0)
    gn = lambda p: tr.gauss_newton_fvp(logits_fn, tr.categorical_fisher, p, scale=1 / N_STATES, damping=0.0)
    np.testing.assert_allclose(dense(hvp, params), fisher, atol=1e-5)
    np.testing.assert_allclose(dense(gn, params), fisher, atol=1e-5)
    damped = lambda p: tr.hvp_fvp(kl_fn, p, damping=0.3)
    np.testing.assert_allclose(dense(damped, params), fisher + 0.3 * jnp.eye(x.size), atol=1e-5)


def test_cg_direction_is_damped_natural_gradient():
    params, _, loss_fn, kl_fn = categorical_problem()
    lam = 0.05
    fisher = hessian(kl_fn, params)  # singular: logits + c·1 leave π unchanged
    g = jax.grad(loss_fn)(params)
    direction = lambda p, g: tr.conjugate_gradient(tr.hvp_fvp(kl_fn, p, damping=lam), jax.tree.map(jnp.negative, g), iters=60)
    s = jax.jit(direction)(params, g)
    expected = jnp.linalg.solve(fisher + lam * jnp.eye(fisher.shape[0]), -flat(g))
    np.testing.assert_allclose(flat(s), expected, rtol=1e-3, atol=1e-4 * jnp.abs(expected).max())


@pytest.mark.parametrize("jitting", ["static_argnames", "closure"])
def test_trpo_step_lands_near_the_kl_boundary_and_improves(jitting):
    params, logits_fn, loss_fn, kl_fn = categorical_problem()
    delta = 1e-4
    kw = dict(max_kl=delta, cg_iters=20, cg_damping=1e-4)
    if jitting == "static_argnames":
        new, info = jax.jit(tr.trpo_step, static_argnames=("loss_fn", "kl_fn"))(loss_fn, kl_fn, params, **kw)
    else:
        new, info = jax.jit(lambda p: tr.trpo_step(loss_fn, kl_fn, p, **kw))(params)
    assert bool(info.accepted) and float(info.step_fraction) == 1.0
    step = flat(new) - flat(params)
    fisher = hessian(kl_fn, params)
    np.testing.assert_allclose(0.5 * step @ fisher @ step, delta, rtol=0.02)  # ½ β² sᵀFs = δ, up to damping
    kl = float(kl_fn(new))
    assert 0.85 * delta < kl <= delta  # the exact KL: the quadratic model plus small higher-order terms
    np.testing.assert_allclose(info.kl, kl, rtol=1e-5)
    assert float(loss_fn(new)) < float(loss_fn(params))
    np.testing.assert_allclose(info.improvement, loss_fn(params) - loss_fn(new), rtol=1e-4)
    np.testing.assert_allclose(info.expected_improvement, -flat(jax.grad(loss_fn)(params)) @ step, rtol=1e-4)


def test_trpo_step_with_gauss_newton_fvp_agrees_with_hvp():
    params, logits_fn, loss_fn, kl_fn = categorical_problem(seed=3)

    def both(p):
        fvp = tr.gauss_newton_fvp(logits_fn, tr.categorical_fisher, p, scale=1 / N_STATES, damping=0.1)
        return tr.trpo_step(loss_fn, kl_fn, p, fvp=fvp)[0], tr.trpo_step(loss_fn, kl_fn, p, cg_damping=0.1)[0]

    a, b = jax.jit(both)(params)
    np.testing.assert_allclose(flat(a), flat(b), rtol=1e-4, atol=1e-6)


# --- line-search decisions on a 1-d quadratic metric (F = 1, s = -g), computed by hand ------------

QUAD_KL = lambda p: 0.5 * jnp.sum(p["w"] ** 2)


def test_line_search_backtracks_when_the_linear_model_is_wrong():
    # loss = -w + 10 w²; δ = 0.5 gives β = 1. Fractions 1, ½, ¼, ⅛ all raise the loss;
    # 1/16: loss = -0.0390625, improvement/expected = 0.625 > 0.1 → accepted.
    loss = lambda p: jnp.sum(-p["w"] + 10.0 * p["w"] ** 2)
    new, info = jax.jit(lambda p: tr.trpo_step(loss, QUAD_KL, p, max_kl=0.5, cg_damping=0.0))({"w": jnp.zeros(1)})
    assert bool(info.accepted)
    np.testing.assert_allclose(info.step_fraction, 1 / 16)
    np.testing.assert_allclose(new["w"], [1 / 16])
    np.testing.assert_allclose(info.expected_improvement, 1 / 16)
    np.testing.assert_allclose(info.improvement, 1 / 16 - 10 / 256, rtol=1e-6)
    assert float(info.kl) <= 0.5


def test_line_search_backtracks_when_the_kl_is_violated():
    # The quadratic model of the KL says β = 0.1 hits δ, but the true KL has a quartic term.
    kl = lambda p: jnp.sum(0.5 * p["w"] ** 2 + 100.0 * p["w"] ** 4)
    loss = lambda p: -jnp.sum(p["w"])
    new, info = tr.trpo_step(loss, kl, {"w": jnp.zeros(2)}, max_kl=0.01, cg_damping=0.0)
    assert bool(info.accepted) and float(info.step_fraction) == 0.5
    np.testing.assert_allclose(new["w"], [0.05, 0.05])
    assert float(kl(new)) <= 0.01


@pytest.mark.parametrize(
    "loss",
    [lambda p: jnp.sum(-p["w"] + 1e4 * p["w"] ** 2), lambda p: jnp.sum(p["w"] ** 2)],
    ids=["no-fraction-improves", "stationary"],
)
def test_no_acceptable_step_returns_params_unchanged(loss):
    params = {"w": jnp.zeros(1)}
    new, info = jax.jit(lambda p: tr.trpo_step(loss, QUAD_KL, p, max_kl=0.5, max_backtracks=4))(params)
    assert not bool(info.accepted)
    np.testing.assert_array_equal(new["w"], params["w"])
    assert float(info.step_fraction) == 0.0 and float(info.improvement) == 0.0
    assert all(np.isfinite(v) for v in info)


# --- a Gaussian policy: JᵀMJ with M = diag(1/σ², 2) against the Hessian of the analytic KL --------


def test_normal_fisher_gauss_newton_equals_kl_hessian():
    k = jax.random.split(jax.random.key(7), 4)
    x = jax.random.normal(k[0], (N_STATES, 3))
    params = {"w": jax.random.normal(k[1], (3, 2)), "b": jax.random.normal(k[2], (2,)), "log_std": jnp.array([-0.5, 0.3])}

    def dist_params(p):
        mean = x @ p["w"] + p["b"]
        return mean, jnp.broadcast_to(p["log_std"], mean.shape)

    mean_old, log_std_old = dist_params(params)

    def kl_fn(p):  # KL(N(μ_old, σ_old²) ‖ N(μ, σ²)), summed over action dims, mean over states
        mean, log_std = dist_params(p)
        var_ratio = jnp.exp(2 * (log_std_old - log_std))
        kl = log_std - log_std_old + 0.5 * (var_ratio + (mean - mean_old) ** 2 * jnp.exp(-2 * log_std)) - 0.5
        return jnp.mean(jnp.sum(kl, axis=1))

    gn = lambda p: tr.gauss_newton_fvp(dist_params, tr.normal_fisher, p, scale=1 / N_STATES, damping=0.0)
    hvp = lambda p: tr.hvp_fvp(kl_fn, p, damping=0.0)
    hess = hessian(kl_fn, params)
    np.testing.assert_allclose(dense(gn, params), hess, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dense(hvp, params), hess, rtol=1e-5, atol=1e-5)


# --- value function in a trust region (Eq. 33-34) --------------------------------------------------


def regression_problem(n=32):
    k = jax.random.split(jax.random.key(11), 3)
    obs = jax.random.normal(k[0], (n, 3))
    targets = obs @ jnp.array([1.0, -2.0, 0.5]) + 3.0 + 0.1 * jax.random.normal(k[1], (n,))
    return obs, targets


def linear_value(p, s):
    return s @ p["w"] + p["b"]


def mlp_value(p, s):
    return jnp.tanh(s @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]


MLP_PARAMS = {"w1": 0.5 * jax.random.normal(jax.random.key(3), (3, 8)), "b1": jnp.zeros(8), "w2": jnp.zeros(8), "b2": jnp.zeros(())}


@pytest.mark.parametrize(
    "value_fn, params",
    [(linear_value, {"w": jnp.zeros(3), "b": jnp.zeros(())}), (mlp_value, MLP_PARAMS)],
    ids=["linear", "mlp"],
)
def test_value_fit_one_step_reduces_error_within_the_constraint(value_fn, params):
    obs, targets = regression_problem()
    eps = 0.01
    new, info = jax.jit(lambda p: tr.fit_value_trust_region(value_fn, p, obs, targets, max_kl=eps))(params)
    values = lambda p: jax.vmap(value_fn, (None, 0))(p, obs)
    sigma2 = jnp.mean((values(params) - targets) ** 2)
    np.testing.assert_allclose(info.loss_before, sigma2, rtol=1e-6)
    kl = jnp.mean((values(new) - values(params)) ** 2) / (2 * sigma2)  # Eq. 33 constraint
    assert bool(info.accepted)
    assert float(kl) <= eps and float(kl) > 0.5 * eps  # far from the fit: the boundary is active
    assert float(jnp.mean((values(new) - targets) ** 2)) < float(sigma2)


def test_value_fit_repeated_steps_converge_to_least_squares():
    obs, targets = regression_problem()
    design = jnp.concatenate([obs, jnp.ones((obs.shape[0], 1))], axis=1)
    solution = jnp.linalg.lstsq(design, targets)[0]

    def step(p, _):
        p, info = tr.fit_value_trust_region(linear_value, p, obs, targets, max_kl=0.05)
        return p, info.loss_after

    params, losses = jax.jit(lambda p: jax.lax.scan(step, p, None, length=60))({"w": jnp.zeros(3), "b": jnp.zeros(())})
    assert bool(jnp.all(jnp.diff(losses) <= 1e-7))
    np.testing.assert_allclose(jnp.append(params["w"], params["b"]), solution, atol=1e-3)


# -- shared pieces of the policy losses (TRPO and PPO) --------------------------------------


def test_mean_kl_sums_over_action_elements_and_weights_positions():
    from scg import dist

    p = dist.Normal(jnp.zeros((3, 2)), jnp.ones((3, 2)))
    q = dist.Normal(jnp.ones((3, 2)) * jnp.array([[1.0], [2.0], [3.0]]), jnp.ones((3, 2)))
    per_state = np.array([1.0, 4.0, 9.0])  # ½ Σ_2 (Δμ)²
    np.testing.assert_allclose(tr.mean_kl(p, q), per_state.mean(), rtol=1e-6)
    w = jnp.array([1.0, 0.0, 3.0])
    np.testing.assert_allclose(tr.mean_kl(p, q, w), (1.0 + 27.0) / 4.0, rtol=1e-6)


def test_normalize_advantages_with_and_without_weights():
    adv = jnp.array([1.0, 2.0, 3.0, 10.0])
    np.testing.assert_allclose(tr.normalize_advantages(adv), (adv - adv.mean()) / (adv.std() + 1e-8), rtol=1e-6)
    w = jnp.array([1.0, 1.0, 1.0, 0.0])  # the weighted statistics ignore the last position
    got = tr.normalize_advantages(adv, w)
    np.testing.assert_allclose(got[:3], (adv[:3] - 2.0) / (adv[:3].std() + 1e-8), rtol=1e-6)


@pytest.mark.parametrize("family", ["categorical", "normal"])
def test_fisher_product_kinds_agree_with_the_explicit_fisher(family):
    """A linear policy over a batch: Hessian-of-KL and JᵀMJ products equal the weighted mean of ∇log p ∇log pᵀ."""
    from scg import dist

    x = jax.random.normal(jax.random.key(0), (6, 3))
    w = jnp.array([1.0, 2.0, 0.5, 1.0, 0.0, 1.5])
    params = {"w": 0.3 * jax.random.normal(jax.random.key(1), (3, 2)), "log_std": jnp.array([0.1, -0.2])}
    if family == "categorical":
        dists_fn = lambda p: dist.Categorical(logits=x @ p["w"])  # noqa: E731
    else:
        dists_fn = lambda p: dist.Normal(x @ p["w"], jnp.broadcast_to(jnp.exp(p["log_std"]), (6, 2)))  # noqa: E731
    # The reference: the dense Hessian of each row's KL(p_old ‖ p_θ) at θ_old (the row's Fisher matrix), weighted.
    old = jax.lax.stop_gradient(dists_fn(params))
    row_kl = lambda p: dist.kl_divergence(old, dists_fn(p)).reshape(6, -1).sum(-1)  # noqa: E731
    f_explicit = sum(w[i] * hessian(lambda p: row_kl(p)[i], params) for i in range(6)) / jnp.sum(w)
    for kind in ("hessian", "gauss_newton"):
        f = dense(lambda p: tr.fisher_product(kind, dists_fn, p, w, damping=0.0), params)
        np.testing.assert_allclose(f, f_explicit, rtol=1e-4, atol=1e-6, err_msg=kind)
