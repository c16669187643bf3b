"""Trust-region steps for any differentiable objective over a parameter pytree (TRPO).

Schulman (2016, §3.12) solves, at each iteration,

    minimise  loss(θ)   subject to   D̄_KL(θ_old, θ) ≤ δ

by (1) a search direction from a linear model of the loss and a quadratic model
of the constraint, ``D̄_KL ≈ ½ Δᵀ F Δ``: ``s ≈ -F⁻¹ g`` by conjugate gradient
with Fisher-vector products ``v ↦ F v``; (2) the step ``β s`` with
``β = √(2δ / sᵀFs)``, which puts the quadratic model on the boundary; (3) a
backtracking line search on the exact loss and constraint. Fisher-vector
products come either from the Hessian of the KL (``hvp_fvp``, the "simpler"
method of §3.12.1) or as ``JᵀMJ`` with ``M`` the analytic Fisher matrix in
distribution-parameter space (``gauss_newton_fvp``, Eq. 21); ``fisher_product``
builds either for a policy given as ``θ ↦`` its batched distributions. The
mean KL of the constraint is ``mean_kl`` (PPO's penalty uses it too). The same machinery
fits a value function in a trust region (§4.5, Eq. 33–34:
``fit_value_trust_region``).

Losses are in cost units: ``loss_fn`` is minimised, so for a policy it is the
negated surrogate ``-L_θold(θ)`` of Eq. 35. Everything is a pure function of
pytrees, runs under ``jit`` (fixed iteration counts, ``lax`` loops) and takes
the objective as an ordinary Python callable closed over by the caller's ``jit``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from scg.dist import Categorical, Normal, kl_divergence

__all__ = [
    "weighted_mean",
    "mean_kl",
    "normalize_advantages",
    "conjugate_gradient",
    "hvp_fvp",
    "gauss_newton_fvp",
    "categorical_fisher",
    "normal_fisher",
    "fisher_product",
    "TRPOInfo",
    "trpo_step",
    "fit_value_trust_region",
]

_tree_axpy = lambda a, x, y: jax.tree.map(lambda xi, yi: a * xi + yi, x, y)  # a·x + y


def weighted_mean(x: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    """``Σ w x / Σ w`` (the plain mean when ``weights`` is None); ``weights`` has the shape of ``x``."""
    if weights is None:
        return jnp.mean(x)
    assert x.shape == weights.shape, f"weighted_mean: {x.shape} vs weights {weights.shape}"
    return jnp.sum(weights * x) / jnp.sum(weights)


def normalize_advantages(adv: jax.Array, weights: jax.Array | None = None, *, eps: float = 1e-8) -> jax.Array:
    """``(Â - mean Â) / (std Â + eps)`` with (weighted) batch statistics, as PPO and TRPO customarily use them.

    The scale of the advantages is then independent of the reward's; a TRPO step is invariant to it,
    so there it amounts to subtracting a constant baseline (modular_rl does it, the thesis does not say).
    """
    mean = weighted_mean(adv, weights)
    return (adv - mean) / (jnp.sqrt(weighted_mean((adv - mean) ** 2, weights)) + eps)


def mean_kl(p, q, weights: jax.Array | None = None, *, batch_ndim: int = 1) -> jax.Array:
    """``D̄_KL = mean_n KL(p_n ‖ q_n)`` over the leading ``batch_ndim`` axes (Schulman 2016, Eq. 35's constraint).

    Each position's KL is summed over the action's elements (a diagonal Gaussian's
    dimensions); the mean is weighted by ``weights`` (shape: the batch axes) if given.

    >>> from scg.dist import Normal
    >>> float(mean_kl(Normal(jnp.zeros((2, 3)), 1.0), Normal(jnp.ones((2, 3)), 1.0)))  # 3 × ½
    1.5
    """
    kl = kl_divergence(p, q)
    kl = kl.reshape(kl.shape[:batch_ndim] + (-1,)).sum(-1)
    return weighted_mean(kl, weights)


def conjugate_gradient(matvec: Callable, b, *, iters: int = 10, residual_tol: float = 1e-10, damping: float = 0.0):
    """Approximately solve ``(A + damping·I) x = b`` for symmetric positive-definite ``A``.

    Conjugate gradient (Nocedal & Wright, Alg. 5.2; Schulman 2016, §3.12) from
    ``x = 0``, with exactly ``iters`` matrix-vector products; once the squared
    residual ``‖r‖²`` drops below ``residual_tol`` the iterate is frozen (the
    loop still runs, so shapes and cost are fixed under ``jit``/``vmap``).

    Args:
      matvec: ``v ↦ A v`` on pytrees shaped like ``b``.
      b: right-hand side, any pytree of arrays.
      iters: number of CG iterations (the thesis uses 10).
      residual_tol: threshold on ``‖r‖²`` below which iteration stops.
      damping: ``λ`` added to the diagonal of ``A``.

    Returns:
      ``x``, a pytree shaped like ``b``.

    >>> A = jnp.array([[2.0, 1.0], [1.0, 3.0]])
    >>> x = conjugate_gradient(lambda v: {"u": A @ v["u"]}, {"u": jnp.array([1.0, 2.0])}, iters=2)
    >>> bool(jnp.allclose(A @ x["u"], jnp.array([1.0, 2.0]), atol=1e-5))
    True
    """
    b_flat, unravel = ravel_pytree(b)

    def mv(v):
        return ravel_pytree(matvec(unravel(v)))[0] + damping * v

    def body(_, state):
        x, r, p, rr = state
        active = rr > residual_tol
        ap = mv(p)
        alpha = jnp.where(active, rr / jnp.where(active, p @ ap, 1.0), 0.0)
        x, r = x + alpha * p, r - alpha * ap
        rr_new = r @ r
        p = jnp.where(active, r + rr_new / jnp.where(active, rr, 1.0) * p, p)
        return x, r, p, jnp.where(active, rr_new, rr)

    init = (jnp.zeros_like(b_flat), b_flat, b_flat, b_flat @ b_flat)
    x, *_ = jax.lax.fori_loop(0, iters, body, init)
    return unravel(x)


def hvp_fvp(kl_fn: Callable, params, *, damping: float = 0.1) -> Callable:
    """Fisher-vector product ``v ↦ (∇²kl(params) + damping·I) v`` as forward-over-reverse AD.

    ``kl_fn(p)`` is the mean ``KL(π_old ‖ π_p)`` with ``π_old`` held fixed, and
    ``params`` must equal the old parameters: there its Hessian is the average
    Fisher matrix (§3.12, ``A_ij = ∂_i ∂_j D̄_KL``; §3.12.1 last method). The
    gradient is linearised once, so each product costs one JVP.
    """
    _, hvp = jax.linearize(jax.grad(kl_fn), params)
    return lambda v: _tree_axpy(damping, v, hvp(v))


def gauss_newton_fvp(
    dist_params_fn: Callable, fisher_fn: Callable, params, *, scale: float = 1.0, damping: float = 0.1
) -> Callable:
    """Fisher-vector product ``v ↦ (JᵀMJ + damping·I) v`` (Schulman 2016, §3.12.1, Eq. 21).

    Args:
      dist_params_fn: ``params ↦ μ``, a pytree of (batched) distribution parameters.
      fisher_fn: ``(μ, t) ↦ M t``, the Fisher matrix in ``μ``-space applied to a
        tangent ``t`` shaped like ``μ``, summed over the batch (e.g.
        ``categorical_fisher``, ``normal_fisher``).
      params: the point (the old parameters) at which ``J = ∂μ/∂θ`` is taken.
      scale: multiplies ``JᵀMJ``; ``1/N`` averages over ``N`` rows, as the mean KL does.
      damping: ``λ`` added to the diagonal.

    Multiplication by ``J`` is a JVP and by ``Jᵀ`` its transpose, both from one
    linearisation. Unlike ``hvp_fvp`` this drops the second term of Eq. 21 by
    construction, so the result is positive semi-definite at any ``params``.
    """
    mu, jvp = jax.linearize(dist_params_fn, params)
    vjp = jax.linear_transpose(jvp, params)

    def matvec(v):
        (jt_m_j_v,) = vjp(fisher_fn(mu, jvp(v)))
        return jax.tree.map(lambda v_i, f_i: scale * f_i + damping * v_i, v, jt_m_j_v)

    return matvec


def categorical_fisher(logits, v):
    """``M v`` for a softmax over the last axis: ``M = diag(p) - ppᵀ`` per row, ``p = softmax(logits)``.

    This is the Hessian of ``KL(p ‖ softmax(z))`` in ``z`` at ``z = logits``
    (singular along ``z + c·1``, which leaves the distribution unchanged).
    """
    p = jax.nn.softmax(logits, axis=-1)
    return p * v - p * jnp.sum(p * v, axis=-1, keepdims=True)


def normal_fisher(mean_logstd, v):
    """``M v`` for a diagonal Gaussian parameterised by ``(mean, log_std)``: ``M = diag(1/σ², 2)``.

    ``mean_logstd`` and ``v`` are pairs ``(mean, log_std)`` of equal shapes
    (broadcast a state-independent ``log_std`` to the batch in
    ``dist_params_fn`` so that each row counts once). The mean–log-std block is
    zero at ``θ = θ_old``.
    """
    mean, log_std = mean_logstd
    v_mean, v_log_std = v
    assert mean.shape == log_std.shape == v_mean.shape == v_log_std.shape, "normal_fisher: shapes differ"
    return jax.tree.unflatten(jax.tree.structure(v), [v_mean * jnp.exp(-2.0 * log_std), 2.0 * v_log_std])


def fisher_product(kind: str, dists_fn: Callable, params, weights: jax.Array | None = None, *, damping: float = 0.1):
    """``v ↦ (F + damping·I) v``, ``F`` the (weighted) mean Fisher matrix of the policy ``dists_fn`` at ``params``.

    Args:
      kind: ``"hessian"``, the Hessian of the mean KL from ``dists_fn(params)`` (``hvp_fvp``; §3.12.1's
        "simpler" method), or ``"gauss_newton"``, ``JᵀMJ`` with the analytic ``M`` of a
        ``Categorical`` or ``Normal`` policy (``gauss_newton_fvp``; §3.12.1, Eq. 21).
      dists_fn: ``params ↦`` a distribution batched over ``[B]`` positions (e.g. a replayed policy).
      params: the old parameters ``θ_old``, where the product is taken.
      weights: ``[B]`` weights of the positions in the mean (None: equal).
      damping: ``λ`` added to the diagonal.

    At ``θ_old`` the two kinds agree (Eq. 21's second term vanishes there).
    """
    b = jax.tree.leaves(jax.eval_shape(dists_fn, params))[0].shape[0]
    weights = jnp.ones(b) if weights is None else weights
    if kind == "hessian":
        old = jax.lax.stop_gradient(dists_fn(params))
        return hvp_fvp(lambda p: mean_kl(old, dists_fn(p), weights), params, damping=damping)
    if kind != "gauss_newton":
        raise ValueError(f"fisher_product: kind must be 'hessian' or 'gauss_newton', got {kind!r}")
    scale = weights / jnp.sum(weights)  # each row's weight in the mean
    per_row = lambda x: x * scale.reshape((-1,) + (1,) * (x.ndim - 1))  # noqa: E731
    d = dists_fn(params)
    if isinstance(d, Categorical):
        return gauss_newton_fvp(lambda p: dists_fn(p).logits, lambda mu, t: per_row(categorical_fisher(mu, t)),
                                params, damping=damping)
    if isinstance(d, Normal):
        def mean_logstd(p):
            d = dists_fn(p)
            return d.loc, jnp.broadcast_to(jnp.log(d.scale), d.loc.shape)

        return gauss_newton_fvp(mean_logstd, lambda mu, t: jax.tree.map(per_row, normal_fisher(mu, t)),
                                params, damping=damping)
    raise TypeError(f"fisher_product: 'gauss_newton' knows Categorical and Normal policies, got {type(d).__name__}")


class TRPOInfo(NamedTuple):
    """Diagnostics of one trust-region step; improvements are decreases of the loss."""

    loss_before: jax.Array
    loss_after: jax.Array
    improvement: jax.Array  # loss_before - loss_after (0 when rejected)
    expected_improvement: jax.Array  # model's predicted decrease at the accepted fraction
    kl: jax.Array  # constraint value at the returned parameters (0 when rejected)
    step_fraction: jax.Array  # accepted fraction of the full step; 0 when rejected
    accepted: jax.Array  # bool
    shs: jax.Array  # sᵀFs for the CG direction s (damped F)


def _line_search(loss_fn, kl_fn, params, full_step, loss0, expected, max_kl, backtrack_ratio, max_backtracks, accept_ratio):
    """Try fractions 1, r, r², … (``max_backtracks`` in all); accept the first one that decreases the
    loss by more than 0 and by at least ``accept_ratio × expected(fraction)`` with ``kl ≤ max_kl``."""

    def evaluate(k):
        frac = backtrack_ratio**k
        new = _tree_axpy(frac, full_step, params)
        loss, kl = jnp.asarray(loss_fn(new), loss0.dtype), jnp.asarray(kl_fn(new), loss0.dtype)
        improve = loss0 - loss
        ok = (improve > 0) & (improve >= accept_ratio * expected(frac)) & (kl <= max_kl)
        return ok, frac, loss, kl

    def cond(state):
        k, ok, *_ = state
        return (~ok) & (k < max_backtracks)

    def body(state):
        k, *_ = state
        return (k + 1, *evaluate(k.astype(loss0.dtype)))

    zero = jnp.zeros_like(loss0)
    _, ok, frac, loss, kl = jax.lax.while_loop(cond, body, (jnp.array(0), jnp.array(False), zero, loss0, zero))
    frac, loss, kl = jnp.where(ok, frac, 0.0), jnp.where(ok, loss, loss0), jnp.where(ok, kl, 0.0)
    # `where`, not a zero fraction: a rejected step may hold non-finite values (e.g. CG on a non-SPD matrix).
    new = jax.tree.map(lambda s_i, p_i: jnp.where(ok, p_i + frac * s_i, p_i).astype(p_i.dtype), full_step, params)
    return new, ok, frac, loss, kl


def trpo_step(
    loss_fn: Callable,
    kl_fn: Callable,
    params,
    *,
    max_kl: float = 0.01,
    cg_iters: int = 10,
    cg_damping: float = 0.1,
    fvp: Callable | None = None,
    backtrack_ratio: float = 0.5,
    max_backtracks: int = 10,
    accept_ratio: float = 0.1,
):
    """One TRPO update: natural-gradient direction, step to the KL boundary, line search (§3.12).

    Args:
      loss_fn: ``params ↦`` scalar to minimise (e.g. ``-L_θold(θ)`` of Eq. 35).
      kl_fn: ``params ↦ D̄_KL(θ_old, θ)``, the mean KL from the fixed old policy.
      params: ``θ_old``, any pytree.
      max_kl: ``δ``.
      cg_iters: CG iterations for ``s ≈ -F⁻¹g`` (thesis: 10).
      cg_damping: ``λ`` in ``F + λI`` for the default ``fvp = hvp_fvp(kl_fn, params)``.
      fvp: optional ``v ↦ F v`` (e.g. ``gauss_newton_fvp(...)``), used as given,
        damping included; ``cg_damping`` is then ignored.
      backtrack_ratio, max_backtracks: the fractions tried are
        ``backtrack_ratio**k`` for ``k < max_backtracks``.
      accept_ratio: a step is accepted iff the loss decreases (> 0), by at least
        ``accept_ratio`` times the decrease predicted by the linear model
        ``-gᵀΔ``, and ``kl_fn ≤ max_kl``. ``accept_ratio = 0`` is exactly the
        thesis's rule ("shrink β until the objective improves", with the KL
        indicator); the default 0.1 is Schulman's modular_rl code.

    Returns:
      ``(new_params, TRPOInfo)``; if no fraction is accepted, ``new_params`` is
      ``params`` and ``info.accepted`` is False.

    Deviation: ``sᵀFs`` is recomputed with one extra product instead of being
    read off CG. The full step's quadratic-model KL is exactly ``δ``, so whether
    it passes the exact check ``kl ≤ δ`` depends on the sign of the higher-order
    terms; if it fails, the first backtrack (KL ≈ δ/4) is taken.

    >>> loss = lambda p: -p["w"].sum()
    >>> kl = lambda p: 0.5 * jnp.sum(jnp.tanh(p["w"]) ** 2)  # Hessian I at w = 0
    >>> new, info = trpo_step(loss, kl, {"w": jnp.zeros(2)}, max_kl=0.01, cg_damping=0.0)
    >>> bool(info.accepted), float(info.step_fraction), [round(float(w), 3) for w in new["w"]]
    (True, 1.0, [0.1, 0.1])
    """
    loss0, g = jax.value_and_grad(loss_fn)(params)
    fvp = hvp_fvp(kl_fn, params, damping=cg_damping) if fvp is None else fvp
    s = conjugate_gradient(fvp, jax.tree.map(jnp.negative, g), iters=cg_iters)
    s_flat, g_flat = ravel_pytree(s)[0], ravel_pytree(g)[0]
    shs = s_flat @ ravel_pytree(fvp(s))[0]
    beta = jnp.where(shs > 0, jnp.sqrt(2.0 * max_kl / jnp.where(shs > 0, shs, 1.0)), 0.0)
    full_step = jax.tree.map(lambda x: beta * x, s)
    linear = -beta * (g_flat @ s_flat)  # predicted decrease of the full step
    new, ok, frac, loss, kl = _line_search(
        loss_fn, kl_fn, params, full_step, loss0, lambda f: f * linear, max_kl, backtrack_ratio, max_backtracks, accept_ratio
    )
    return new, TRPOInfo(loss0, loss, loss0 - loss, frac * linear, kl, frac, ok, shs)


def fit_value_trust_region(
    value_fn: Callable,
    params,
    obs,
    targets,
    *,
    max_kl: float = 0.01,
    cg_iters: int = 10,
    damping: float = 1e-3,
    backtrack_ratio: float = 0.5,
    max_backtracks: int = 10,
    accept_ratio: float = 0.1,
):
    """One trust-region regression step for a value function (Schulman 2016, §4.5, Eq. 33–34).

    Minimises ``(1/N) Σ_n (V_φ(s_n) - V̂_n)²`` subject to
    ``(1/N) Σ_n (V_φ(s_n) - V_φold(s_n))² / (2σ²) ≤ ε`` with
    ``σ² = (1/N) Σ_n (V_φold(s_n) - V̂_n)²`` (= ``info.loss_before``): the mean KL
    between Gaussians ``N(V_φold(s), σ²)`` and ``N(V_φ(s), σ²)``. The metric is
    the Gauss-Newton matrix of that constraint, ``H = (1/N) Σ_n j_n j_nᵀ / σ²``
    with ``j_n = ∇_φ V_φ(s_n)`` (plus ``damping·I``), applied as ``JᵀMJ``.

    Args:
      value_fn: ``(params, obs_single) ↦`` scalar; mapped over ``obs`` with ``vmap``.
      params: ``φ_old``.
      obs: pytree of observations with leading axis ``N``.
      targets: ``V̂``, shape ``(N,)``.
      max_kl: ``ε``.
      cg_iters, damping: CG iterations and Tikhonov damping of ``H``.
      backtrack_ratio, max_backtracks, accept_ratio: line search as in ``trpo_step``,
        measured against the Gauss-Newton model's predicted decrease.

    Returns:
      ``(new_params, TRPOInfo)`` with ``kl`` the constraint value of Eq. 33.

    Deviations: (i) the step along ``s ≈ -H⁻¹g`` is scaled to the boundary
    ``½ αsᵀHs = ε`` (as in the thesis) *or* to the minimiser of the Gauss-Newton
    model of the loss along ``s``, whichever is shorter; the thesis always goes
    to the boundary, which overshoots when the least-squares fit is already
    closer than ``ε`` (and would keep repeated fits from converging). (ii) Eq. 34
    as printed drops ``σ²`` from ``H``; we keep it so ``ε`` means the KL of
    Eq. 33. (iii) A backtracking line search on the exact loss and constraint
    follows (as in §3.12): for a linear ``V`` the model is exact and the first
    fraction is accepted; for a nonlinear ``V`` it guards against a bad model.
    """
    targets = jnp.asarray(targets)
    assert targets.ndim == 1, f"targets must have shape (N,), got {targets.shape}"
    n = targets.shape[0]
    values = lambda p: jax.vmap(value_fn, (None, 0))(p, obs)
    v_old = values(params)
    assert v_old.shape == targets.shape, f"value_fn must return scalars, got batch shape {v_old.shape}"
    v_old = jax.lax.stop_gradient(v_old)

    loss_fn = lambda p: jnp.mean((values(p) - targets) ** 2)
    loss0, g = jax.value_and_grad(loss_fn)(params)
    sigma2 = jnp.maximum(loss0, jnp.finfo(loss0.dtype).tiny)
    kl_fn = lambda p: jnp.mean((values(p) - v_old) ** 2) / (2.0 * sigma2)

    fvp = gauss_newton_fvp(values, lambda _, t: t, params, scale=1.0 / (n * sigma2), damping=damping)
    s = conjugate_gradient(fvp, jax.tree.map(jnp.negative, g), iters=cg_iters)
    s_flat, g_flat = ravel_pytree(s)[0], ravel_pytree(g)[0]
    shs = s_flat @ ravel_pytree(fvp(s))[0]
    gs = g_flat @ s_flat
    safe_shs = jnp.where(shs > 0, shs, 1.0)
    # Loss Gauss-Newton matrix is 2σ²H, so the model along s is loss0 + α gᵀs + α² σ² sᵀHs.
    alpha = jnp.where(shs > 0, jnp.minimum(jnp.sqrt(2.0 * max_kl / safe_shs), -gs / (2.0 * sigma2 * safe_shs)), 0.0)
    alpha = jnp.maximum(alpha, 0.0)
    full_step = jax.tree.map(lambda x: alpha * x, s)
    lin, quad = -alpha * gs, alpha**2 * sigma2 * shs
    expected = lambda f: f * lin - f**2 * quad
    new, ok, frac, loss, kl = _line_search(
        loss_fn, kl_fn, params, full_step, loss0, expected, max_kl, backtrack_ratio, max_backtracks, accept_ratio
    )
    return new, TRPOInfo(loss0, loss, loss0 - loss, expected(frac), kl, frac, ok, shs)
