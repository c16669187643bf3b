"""Time-varying linear-Gaussian dynamics fits with a GMM prior, in pure JAX (jit / scan / vmap safe).

Levy & Ermon (2018, RPG), §"Scalable estimation of the dynamics" (seed
``000_d3fdf85e82e3b8b1.txt`` L164-L172): model the dynamics around the latest
trajectories as ``x_{t+1} ~ N(A_t x_t + B_t u_t + c_t, F_t)`` (L170), with a
GMM prior over the pooled points ``y = [x_t; u_t; x_{t+1}]`` of past
trajectories and nearby steps (Levine & Abbeel 2014): "At each iteration, we
update our prior using the current trajectories and fit our model" (L172).
The paper gives no formulas (it defers to Levine et al. 2016); the ones here
are those of the reference implementation ``cbfinn/gps`` as read in
``shared/specs/spec-rpg-svg.md`` §A6, written for fixed shapes:

* **buffer** (``DynamicsPrior``): a ring of the last ``max_trajectories``
  trajectories (reference: 20; it keeps ``max_samples - 1`` = 19, we keep
  exactly ``max_trajectories``, ours), with an alive mask instead of ragged episodes.
* **EM** (``em``): masked, fixed iteration count, warm started; random-label
  initialisation (``init_gmm``) on the first call and whenever the number of
  clusters in use changes; reboot of clusters with ``π_k < 1e-4 / K``;
  ``Σ_k += 1e-6 I`` after each M-step (reference values).
* **prior at step t** (``prior_moments``) and the normal-inverse-Wishart MAP
  fit, conditioned into ``A_t, B_t, c_t, F_t`` (``fit``, vmapped over ``t``).

Choices that are ours (not the paper's, not the reference's), with reasons:

* Static shapes: ``K = max(2, min(50, ⌊capacity·T / 20⌋))`` slots (the
  reference's formula for a full buffer); of them ``K_a = max(2, min(K,
  ⌊N_alive / 20⌋))`` are in use (the reference's ``K`` for the current fill),
  never decreasing, the others kept at ``π_k ≈ 0``. All ``K`` in use on a
  part-filled buffer leaves few points per cluster, degenerate clusters EM
  does not leave (measured on the test system, 10 trajectories per call, 4
  calls, 5 seeds: median ``A_t`` error 0.008-0.014, against 0.011-0.025 with
  all 20 clusters in use from the first call).
* EM runs ``max(iterations, first_iterations)`` scan steps; those past the
  active count are skipped by ``lax.cond`` (under ``vmap`` both branches run).
  Like the reference, EM stops when the log-likelihood decreases, here by
  freezing, keeping the better previous GMM, and only for a decrease larger
  than ``1e-6·Σ_n |log p(y_n)|`` (float32 rounding, ``LL_TOLERANCE``). The reference's
  convergence test ``|Δ| < 1e-5·LL_prev`` never fires for a negative LL; we have none.
* Float32 numerics. Near-deterministic dynamics make ``x_{t+1}`` almost a
  linear function of ``(x_t, u_t)``, so cluster covariances have condition
  numbers ~ (scale/noise)² ≈ 1e6, the limit of float32 Cholesky. We store each
  cluster's Cholesky factor (``GMM.chols``) and update it in the previous
  factor's whitened coordinates (``_refined_factors``); ``fit`` never forms a
  covariance: the NIW joint is a stack of pseudo-points and one QR gives
  ``[A B]``, ``c`` and ``F`` (``_condition``). Same formulas; measured on
  near-deterministic data (noise 1e-3): raw EM LL jitter at convergence
  ≤ 1.5e-6·Σ|log p(y_n)| (with formed covariances it was ~2e-4 of |LL|, and
  EM stopped after a few steps), and with ``reg``s of 1e-8 the Hand Mass Jacobian to 1e-5.
  Direct factorisations (initialisation, reboots) add ``1e-5·diag(Σ_k)``.
* ``n0 = max(N_gmm - 2 - D, 1) / N_gmm`` (floored to stay positive on a small
  buffer). Padded points are replaced by zeros before any arithmetic, so
  garbage (even NaN) in them changes nothing. Optional k-means++ labels
  (``init_labels="kmeans++"``) for separated clusters; not the default.

Shapes (time-major, like ``scg.envs.Trajectory``): ``x [T, m, dX]``,
``u [T, m, dU]``, ``x_next [T, m, dX]``, ``mask [T, m]`` (nonzero = a real transition).

Example:
    >>> T, m, dX, dU = 5, 4, 2, 1
    >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    >>> x = jax.random.normal(k1, (T, m, dX)); u = jax.random.normal(k2, (T, m, dU))
    >>> x_next = 0.9 * x + 0.5 * u; mask = jnp.ones((T, m))
    >>> prior = init_prior(k3, horizon=T, dim_x=dX, dim_u=dU)
    >>> prior, log_liks = update_prior(prior, k3, x, u, x_next, mask)
    >>> model = fit(prior, x, u, x_next, mask)
    >>> model.A.shape, predict(model, 0, x[0, 0], u[0, 0]).shape
    ((5, 2, 2), (2,))
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp

MAX_CLUSTERS = 50  # reference dynamics/config.py
MIN_POINTS_PER_CLUSTER = 20  # reference dynamics/config.py
EM_COV_REG = 1e-6  # reference gmm.py: Σ_k += 1e-6 I after each M-step
INIT_COV_REG = 2e-6  # reference gmm.py: random-label initialisation
REBOOT_MASS = 1e-4  # reference gmm.py: clusters with π_k < 1e-4 / K are rebooted
RELATIVE_JITTER = 1e-5  # ours: float32 guard, relative to each covariance's own diagonal
_TINY = 1e-30  # ours: floor for masses before a log
LL_TOLERANCE = 1e-6  # ours: an LL decrease below this × Σ|log p(y_n)| is float32 rounding, not a reason to stop


class GMM(NamedTuple):
    """A Gaussian mixture over joint points ``y``: ``p(y) = Σ_k π_k N(y; μ_k, Σ_k)``."""

    log_weights: jax.Array  # log π_k, [K]
    means: jax.Array  # μ_k, [K, D]
    covs: jax.Array  # Σ_k, [K, D, D]
    chols: jax.Array | None = None  # lower Cholesky factors L_k of Σ_k (ours; None: computed from covs)


class DynamicsPrior(NamedTuple):
    """The GMM prior and the ring buffer it is fitted on (a fixed-size pytree)."""

    gmm: GMM
    points: jax.Array  # [capacity, T, D], y = [x_t; u_t; x_{t+1}], zeros where padded
    mask: jax.Array  # [capacity, T], 1.0 for a real transition
    count: jax.Array  # int32, trajectories added so far (0: the next update initialises the GMM)
    num_active: jax.Array  # int32, clusters in use (ours: the reference's K for the current fill, never decreasing)


class LinearGaussian(NamedTuple):
    """``x_{t+1} ~ N(A_t x_t + B_t u_t + c_t, F_t)`` for every step (RPG L170)."""

    A: jax.Array  # [T, dX, dX]
    B: jax.Array  # [T, dX, dU]
    c: jax.Array  # [T, dX]
    F: jax.Array  # [T, dX, dX]


# -- input checks -------------------------------------------------------------------------------


def default_num_clusters(capacity: int, horizon: int) -> int:
    """``max(2, min(50, ⌊capacity·T / 20⌋))``: the reference's K for a full buffer (spec A6)."""
    return max(2, min(MAX_CLUSTERS, (capacity * horizon) // MIN_POINTS_PER_CLUSTER))


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_number(fn: str, name: str, value, *, positive: bool = False) -> None:
    """``value > 0`` (``positive``) or ``>= 0`` when it is a concrete number; traced values pass unchecked."""
    if isinstance(value, (int, float)) and not (value > 0 if positive else value >= 0):
        raise ValueError(f"{fn}: {name} must be {'> 0' if positive else '>= 0'}, got {value!r}")


def _check_batch(fn: str, x, u, x_next, mask):
    """Rank/shape checks of one batch; returns float arrays and ``(T, m, dX, dU)``."""
    x, u, x_next, mask = (jnp.asarray(a, jnp.float32) for a in (x, u, x_next, mask))
    if x.ndim != 3:
        raise ValueError(f"{fn}: x must be [T, m, dX], got shape {x.shape}")
    T, m, dim_x = x.shape
    if u.ndim != 3 or u.shape[:2] != (T, m):
        raise ValueError(f"{fn}: u must be [T, m, dU] with T, m = {T}, {m} (from x), got shape {u.shape}")
    if x_next.shape != x.shape:
        raise ValueError(f"{fn}: x_next must have the shape of x {x.shape}, got {x_next.shape}")
    if mask.shape != (T, m):
        raise ValueError(f"{fn}: mask must be [T, m] = {(T, m)}, got shape {mask.shape}")
    return x, u, x_next, mask, (T, m, dim_x, u.shape[2])


def _check_against_prior(fn: str, prior: DynamicsPrior, dims) -> None:
    T, _, dim_x, dim_u = dims
    _, horizon, dim = prior.points.shape
    if T != horizon:
        raise ValueError(f"{fn}: x has T = {T} steps but the prior was made with horizon = {horizon}")
    if 2 * dim_x + dim_u != dim:
        raise ValueError(f"{fn}: x, u give D = 2*{dim_x} + {dim_u} = {2 * dim_x + dim_u} but the prior's "
                         f"points have D = {dim} (check dim_x / dim_u of init_prior)")


def _joint_points(x, u, x_next, mask):
    """``y = [x; u; x_next]`` with padded points set to zero, and the 0/1 weights ``[T, m]``."""
    alive = mask > 0
    y = jnp.concatenate([x, u, x_next], axis=-1)
    return jnp.where(alive[..., None], y, 0.0), alive.astype(y.dtype)


# -- Gaussian mixture --------------------------------------------------------------------------


def _eye_like(mat):
    return jnp.eye(mat.shape[-1], dtype=mat.dtype)


def _direct_factors(norm_resp, points, means, absolute: float):
    """Cholesky factors of ``Σ_k = Σ_n w̃_nk (y_n - μ_k)(y_n - μ_k)ᵀ + absolute·I``, built from centred points.

    A float32 guard (ours) adds ``RELATIVE_JITTER·diag(Σ_k)`` so the factor exists;
    used for the initialisation, rebooted clusters, and as a fallback.
    """
    diff = points[None] - means[:, None]  # [K, N, D]
    cov = jnp.einsum("knd,kne->kde", norm_resp.T[:, :, None] * diff, diff)  # two operands: no [K, N, D, D] temporary
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    diag = jnp.diagonal(cov, axis1=-2, axis2=-1)
    return jnp.linalg.cholesky(cov + (absolute + RELATIVE_JITTER * diag)[..., None] * _eye_like(cov))


def _gmm_from_factors(log_weights, means, chols) -> GMM:
    covs = chols @ jnp.swapaxes(chols, -1, -2)
    return GMM(log_weights, means, 0.5 * (covs + jnp.swapaxes(covs, -1, -2)), chols)


def _with_factors(gmm: GMM) -> GMM:
    """``gmm`` with its Cholesky factors (computed from ``covs`` when it was built without them)."""
    return gmm if gmm.chols is not None else gmm._replace(chols=jnp.linalg.cholesky(gmm.covs))


def _whiten(gmm: GMM, points):
    """``L_k^{-1} (y_n - μ_k)`` for every cluster and point, ``[K, D, N]``."""
    # L_k^{-1} once per cluster, then one batched product: XLA:CPU's triangular solve with N right-hand sides
    # is slow (121 ms against 8.7 ms at K = 50, N = 4000, D = 9). Centre before multiplying: L^{-1} y - L^{-1} μ
    # cancels in the thin directions (2.5 ms, but 4x the LL rounding jitter on near-deterministic data).
    inverse = jax.vmap(lambda chol: solve_triangular(chol, _eye_like(chol), lower=True))(gmm.chols)
    return jnp.einsum("kde,kne->kdn", inverse, points[None] - gmm.means[:, None])


def _log_densities(gmm: GMM, whitened):
    """``log π_k + log N(y_n; μ_k, Σ_k)`` from the whitened points, ``[N, K]``."""
    dim = whitened.shape[1]
    half_log_det = jnp.sum(jnp.log(jnp.diagonal(gmm.chols, axis1=-2, axis2=-1)), axis=-1)  # [K]
    log_n = -0.5 * jnp.sum(whitened**2, axis=1) - half_log_det[:, None] - 0.5 * dim * math.log(2 * math.pi)
    return log_n.T + gmm.log_weights


def log_joint(gmm: GMM, points: jax.Array) -> jax.Array:
    """``log π_k + log N(y_n; μ_k, Σ_k)`` for points ``[N, D]`` via the Cholesky factors: ``[N, K]``."""
    gmm = _with_factors(gmm)
    return _log_densities(gmm, _whiten(gmm, points))


def _standardised(points, weights):
    """Points divided by each coordinate's (alive) standard deviation: the distances of k-means++ seeding."""
    total = jnp.maximum(weights.sum(), 1.0)
    mean = weights @ points / total
    std = jnp.sqrt(weights @ (points - mean) ** 2 / total)
    return points / jnp.where(std > 0, std, 1.0)


def kmeans_plus_plus_labels(key: jax.Array, points: jax.Array, weights: jax.Array, num_clusters: int,
                            num_active=None) -> jax.Array:
    """Labels from k-means++ seeding (Arthur & Vassilvitskii 2007; ours, not the reference's): ``[N]`` int32.

    Centres are drawn among the alive points, the first uniformly, each next one
    with probability ∝ its squared (standardised) distance to the nearest centre
    so far; every point is labelled with its nearest of the ``num_active`` centres.
    """
    num_active = num_clusters if num_active is None else num_active
    scaled = _standardised(points, weights)

    def draw(dist2, key_k):
        key_k, k = key_k
        logits = jnp.where(weights > 0, jnp.log(jnp.maximum(weights * dist2, _TINY)), -jnp.inf)
        centre = scaled[jax.random.categorical(key_k, logits)]
        new = jnp.minimum(dist2, jnp.sum((scaled - centre) ** 2, axis=1))
        return jnp.where(k < num_active, new, dist2), centre

    keys = jax.random.split(key, num_clusters)
    _, centres = jax.lax.scan(draw, jnp.ones(points.shape[0], points.dtype), (keys, jnp.arange(num_clusters)))
    dist2 = jnp.sum((scaled[:, None] - centres[None]) ** 2, axis=-1)
    return jnp.argmin(jnp.where(jnp.arange(num_clusters) < num_active, dist2, jnp.inf), axis=1).astype(jnp.int32)


def init_gmm(key: jax.Array, points: jax.Array, weights: jax.Array, num_clusters: int, num_active=None, *,
             labels: str = "random") -> GMM:
    """Initial mixture from labels (reference ``GMM.update``): random labels ``~ U{0..K_a-1}``, or k-means++.

    ``μ_k`` is the mean of the alive points labelled ``k`` (the overall mean if
    there are none), ``Σ_k = (1/K_a) Σ_{l_n = k} (y_n - μ_k)(y_n - μ_k)ᵀ + 2e-6 I``
    (the reference's ``1/K``, not ``1/N_k``), ``π_k = 1/K_a``, for the ``K_a =
    num_active`` (default ``num_clusters``, may be traced) clusters in use; the
    others get the overall mean and covariance and ``π_k ≈ 0``. ``labels``:
    ``"random"`` (the reference) or ``"kmeans++"`` (:func:`kmeans_plus_plus_labels`,
    ours: random labels start every cluster near the overall mean, and EM may
    then merge separated clusters). Deterministic given ``key``.
    """
    num_active = num_clusters if num_active is None else num_active
    if labels == "random":
        drawn = jax.random.randint(key, (points.shape[0],), 0, num_active)
    elif labels == "kmeans++":
        drawn = kmeans_plus_plus_labels(key, points, weights, num_clusters, num_active)
    else:
        raise ValueError(f"init_gmm: labels must be 'random' or 'kmeans++', got {labels!r}")
    in_use = jnp.arange(num_clusters) < num_active
    member = jax.nn.one_hot(drawn, num_clusters, dtype=points.dtype) * weights[:, None]  # [N, K]
    counts = member.sum(axis=0)
    total = jnp.maximum(weights.sum(), 1.0)
    overall = weights @ points / total
    means = jnp.where((counts > 0)[:, None], member.T @ points / jnp.maximum(counts, 1.0)[:, None], overall)
    scatter_weights = jnp.where(in_use[None], member / num_active, (weights / total)[:, None])
    chols = _direct_factors(scatter_weights, points, means, INIT_COV_REG)
    log_weights = jnp.where(in_use, -jnp.log(jnp.asarray(num_active, points.dtype)), math.log(_TINY))
    return _gmm_from_factors(log_weights - logsumexp(log_weights), means, chols)


def _e_step(gmm: GMM, points, weights):
    """Whitened points, responsibilities ``log p(k | y_n)``, the log-likelihood ``Σ_n w_n log p(y_n)``
    and its rounding scale ``Σ_n w_n |log p(y_n)|``."""
    whitened = _whiten(gmm, points)
    log_p = _log_densities(gmm, whitened)
    log_norm = logsumexp(log_p, axis=1)
    return whitened, log_p - log_norm[:, None], jnp.sum(weights * log_norm), jnp.sum(weights * jnp.abs(log_norm))


def _refined_factors(gmm: GMM, whitened, norm_resp, means):
    """Factors of the new ``Σ_k + 1e-6 I`` as ``L_k chol(L_k^{-1} (Σ_k + 1e-6 I) L_k^{-T})`` (ours, float32).

    ``L_k`` is the previous factor: in its whitened coordinates the new
    covariance is near the identity, so its Cholesky factor is accurate even
    when ``Σ_k`` is nearly singular (near-deterministic dynamics make
    ``x_{t+1}`` almost a linear function of ``x_t, u_t``: condition ~ 1/noise²).
    Same matrix as the reference's, without squaring that condition number in float32.
    """
    shift = jax.vmap(lambda chol, d: solve_triangular(chol, d, lower=True))(gmm.chols, means - gmm.means)
    centred = whitened - shift[:, :, None]  # L_k^{-1}(y_n - μ_k^new), [K, D, N]
    inverse = jax.vmap(lambda chol: solve_triangular(chol, _eye_like(chol), lower=True))(gmm.chols)
    inner = jnp.einsum("kdn,ken->kde", norm_resp.T[:, None, :] * centred, centred)  # two operands: no [K, D, D, N]
    inner = inner + EM_COV_REG * inverse @ jnp.swapaxes(inverse, -1, -2)
    return gmm.chols @ jnp.linalg.cholesky(0.5 * (inner + jnp.swapaxes(inner, -1, -2)))


def _m_step(gmm: GMM, whitened, log_resp, points, weights, in_use) -> GMM:
    """Reference M-step on the alive points, with reboot of clusters whose mass is below ``1e-4 / K``.

    Clusters not ``in_use`` are rebooted at every step and keep ``π_k ≈ 0``.
    """
    num_active = in_use.sum()
    resp = jnp.exp(log_resp) * weights[:, None]
    total = jnp.maximum(weights.sum(), 1.0)
    mass = jnp.where(in_use, resp.sum(axis=0) / total, 0.0)  # π_k
    reboot = mass < REBOOT_MASS / num_active
    norm_resp = jnp.where(reboot[None], (weights / total)[:, None], resp / jnp.maximum(mass * total, _TINY)[None])
    means = norm_resp.T @ points
    refined = _refined_factors(gmm, whitened, norm_resp, means)
    direct = _direct_factors(norm_resp, points, means, EM_COV_REG)
    use_direct = reboot | ~jnp.all(jnp.isfinite(refined), axis=(1, 2))
    chols = jnp.where(use_direct[:, None, None], direct, refined)
    log_weights = jnp.log(jnp.maximum(mass, _TINY))
    return _gmm_from_factors(log_weights - logsumexp(log_weights), means, chols)


def em(gmm: GMM, points: jax.Array, weights: jax.Array, *, iterations: int, active=None, in_use=None,
       stop_on_decrease: bool = True) -> tuple[GMM, jax.Array]:
    """Masked EM from ``gmm`` on points ``[N, D]`` with 0/1 ``weights [N]`` (reference ``GMM.update``).

    Args:
      gmm: the starting mixture (warm start, or ``init_gmm``).
      points, weights: the data; points with weight 0 are ignored.
      iterations: static number of scan steps.
      active: optional (traced) number of steps that run; later ones keep the GMM.
      in_use: optional boolean ``[K]``, the clusters in use (default all); the others keep ``π_k ≈ 0``.
      stop_on_decrease: freeze at the first step whose log-likelihood is lower
        than the previous one by more than ``LL_TOLERANCE·Σ_n w_n |log p(y_n)|`` or NaN,
        keeping the previous GMM (reference: stop at any decrease, in float64).

    Returns:
      ``(gmm, log_liks)``: ``log_liks[i] = Σ_n w_n log p(y_n)`` of the GMM kept
      after step ``i``; with ``stop_on_decrease`` no step lowers it by more than
      ``LL_TOLERANCE·Σ_n w_n |log p(y_n)|``: the float32 rounding of the sum, whose
      terms (and the parts of each log density) cancel, so ``|LL|`` is no measure of it.
    """
    active = iterations if active is None else active
    in_use = jnp.ones(gmm.log_weights.shape, bool) if in_use is None else in_use
    gmm = _with_factors(gmm)

    def step(carry, i):
        old, stopped = carry[:5], carry[5]
        run = (~stopped) & (i < active)

        def update(_):
            new = _m_step(*old[:3], points, weights, in_use)
            return (new, *_e_step(new, points, weights))

        new = jax.lax.cond(run, update, lambda _: old, None)
        accept = run & ((new[3] >= old[3] - LL_TOLERANCE * old[4]) | (not stop_on_decrease))
        keep = jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new, old)
        return (*keep, stopped | (run & ~accept)), keep[3]

    start = (gmm, *_e_step(gmm, points, weights), jnp.array(False))
    carry, log_liks = jax.lax.scan(step, start, jnp.arange(iterations))
    return carry[0], log_liks


# -- the prior -------------------------------------------------------------------------------


def init_prior(key: jax.Array, *, horizon: int, dim_x: int, dim_u: int, max_trajectories: int = 20,
               num_clusters: int | None = None) -> DynamicsPrior:
    """An empty buffer of ``max_trajectories`` trajectories and a placeholder GMM (identity clusters).

    Args:
      key: accepted for the ``(init, update)`` signature; unused (the placeholder is
        deterministic, the first ``update_prior`` draws the labels from its own key).
      horizon: ``T``, steps per trajectory. dim_x, dim_u: ``dX``, ``dU`` (``D = 2 dX + dU``).
      max_trajectories: buffer capacity (reference: 20).
      num_clusters: ``K``, the cluster slots (at most this many are used, see
        :func:`update_prior`); default :func:`default_num_clusters` ``(max_trajectories, horizon)``.
    """
    del key
    horizon = _positive_int("horizon", horizon)
    dim_x = _positive_int("dim_x", dim_x)
    dim_u = _positive_int("dim_u", dim_u, minimum=0)
    capacity = _positive_int("max_trajectories", max_trajectories)
    k = default_num_clusters(capacity, horizon) if num_clusters is None else _positive_int("num_clusters", num_clusters)
    dim = 2 * dim_x + dim_u
    eye = jnp.broadcast_to(jnp.eye(dim, dtype=jnp.float32), (k, dim, dim))
    gmm = GMM(jnp.full((k,), -math.log(k), jnp.float32), jnp.zeros((k, dim), jnp.float32), eye, eye)
    zero = jnp.zeros((), jnp.int32)
    return DynamicsPrior(gmm, jnp.zeros((capacity, horizon, dim), jnp.float32),
                         jnp.zeros((capacity, horizon), jnp.float32), zero, zero)


def update_prior(prior: DynamicsPrior, key: jax.Array, x, u, x_next, mask, *, iterations: int = 10,
                 first_iterations: int = 50, init_labels: str = "random") -> tuple[DynamicsPrior, jax.Array]:
    """Append the ``m`` trajectories to the ring buffer and refit the GMM by EM over the buffer (RPG L172).

    Clusters in use: ``K_a = max(2, min(K, ⌊N_alive / 20⌋))`` for the alive points
    in the buffer (the reference's ``⌊N·T / 20⌋``), never decreasing (ours: the
    alive count of variable-length episodes fluctuates). When ``K_a`` changes
    (always on the first call), the GMM is initialised from random labels
    drawn from ``key`` (:func:`init_gmm`, as the reference does when ``K``
    changes) and ``first_iterations`` EM steps run; otherwise EM warm starts
    from ``prior.gmm`` and runs ``iterations``. If ``m > capacity`` only the
    last ``capacity`` trajectories are kept. ``init_labels``: ``"random"`` (the
    reference) or ``"kmeans++"`` (ours), see :func:`init_gmm`.

    Returns:
      ``(prior, log_liks)``, ``log_liks`` of length ``max(iterations, first_iterations)``
      (see :func:`em`; entries past the active count repeat the last value).
    """
    x, u, x_next, mask, dims = _check_batch("update_prior", x, u, x_next, mask)
    _check_against_prior("update_prior", prior, dims)
    iterations = _positive_int("iterations", iterations, minimum=0)
    if init_labels not in ("random", "kmeans++"):
        raise ValueError(f"update_prior: init_labels must be 'random' or 'kmeans++', got {init_labels!r}")
    first_iterations = _positive_int("first_iterations", first_iterations, minimum=0)
    capacity, horizon, dim = prior.points.shape
    y, alive = _joint_points(x, u, x_next, mask)
    y, alive = jnp.swapaxes(y, 0, 1)[-capacity:], jnp.swapaxes(alive, 0, 1)[-capacity:]  # trajectory-major
    skipped = dims[1] - y.shape[0]
    slots = (prior.count + skipped + jnp.arange(y.shape[0])) % capacity
    points, buffer_mask = prior.points.at[slots].set(y), prior.mask.at[slots].set(alive)
    flat_points, flat_weights = points.reshape(-1, dim), buffer_mask.reshape(-1)
    k = prior.gmm.log_weights.shape[0]
    by_fill = jnp.clip(flat_weights.sum() // MIN_POINTS_PER_CLUSTER, 2, k).astype(jnp.int32)
    num_active = jnp.maximum(by_fill, prior.num_active).astype(jnp.int32) if k >= 2 else jnp.int32(k)
    restart = (prior.count == 0) | (num_active != prior.num_active)
    start = jax.lax.cond(restart,
                         lambda: init_gmm(key, flat_points, flat_weights, k, num_active, labels=init_labels),
                         lambda: _with_factors(prior.gmm))
    gmm, log_liks = em(start, flat_points, flat_weights, iterations=max(iterations, first_iterations),
                       active=jnp.where(restart, first_iterations, iterations), in_use=jnp.arange(k) < num_active)
    return DynamicsPrior(gmm, points, buffer_mask, prior.count + dims[1], num_active), log_liks


def _prior_log_weights(gmm: GMM, points, weights):
    """``log ω_k = logsumexp_i log p(k | y_i) - log N_t`` over the alive points; ``log π_k`` when there are none."""
    log_p = log_joint(gmm, points)
    log_resp = jnp.where(weights[:, None] > 0, log_p - logsumexp(log_p, axis=1, keepdims=True), -jnp.inf)
    count = weights.sum()
    return jnp.where(count > 0, logsumexp(log_resp, axis=0) - jnp.log(jnp.maximum(count, 1.0)), gmm.log_weights)


def prior_moments(gmm: GMM, points: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(μ0, Φ)`` under the mean responsibility of the alive points ``[m, D]`` (reference ``GMM.inference``).

    ``ω_k`` = mean of ``p(k | y_i)`` over alive ``i`` (``π_k`` with none alive),
    ``μ0 = Σ_k ω_k μ_k``, ``Φ = Σ_k ω_k (Σ_k + (μ_k - μ0)(μ_k - μ0)ᵀ)``.
    """
    omega = jnp.exp(_prior_log_weights(gmm, points, weights))
    mu0 = omega @ gmm.means
    diff = gmm.means - mu0
    return mu0, jnp.einsum("k,kde->de", omega, gmm.covs + diff[:, :, None] * diff[:, None, :])


def _niw_rows(gmm: GMM, points, weights, strength, n0_raw):
    """The NIW MAP joint of spec A6 as ``(μ, R)`` with ``Σ = RᵀR``: the data plus the prior as pseudo-points.

    ``N_t ≥ 2``: ``Σ = (N_t Σ̂ + sΦ + N_t s/(N_t + s) (μ̂ - μ0)(μ̂ - μ0)ᵀ) / (N_t + s n0)``, ``μ = μ̂``
    (``s`` = strength); ``N_t < 2``: ``Σ = Φ/n0``, ``μ = μ0``. The rows are
    ``y_i - μ̂``, ``sqrt(ω_k) L_kᵀ``, ``sqrt(ω_k) (μ_k - μ0)`` and ``μ̂ - μ0``, each scaled,
    so no covariance is formed (and its condition number never squared).
    """
    omega = jnp.exp(_prior_log_weights(gmm, points, weights))
    mu0 = omega @ gmm.means
    count = weights.sum()
    enough = count >= 2
    mu_hat = weights @ points / jnp.maximum(count, 1.0)
    denom = count + strength * n0_raw
    data_scale = jnp.where(enough, 1.0 / jnp.sqrt(denom), 0.0)
    prior_scale = jnp.where(enough, jnp.sqrt(strength / denom), 1.0 / jnp.sqrt(n0_raw))
    gap_scale = jnp.where(enough, jnp.sqrt(count * strength / ((count + strength) * denom)), 0.0)
    root = jnp.sqrt(omega)
    rows = jnp.concatenate([
        data_scale * (points - mu_hat) * weights[:, None],
        prior_scale * (root[:, None, None] * jnp.swapaxes(gmm.chols, -1, -2)).reshape(-1, points.shape[1]),
        prior_scale * root[:, None] * (gmm.means - mu0),
        gap_scale * (mu_hat - mu0)[None],
    ])
    return jnp.where(enough, mu_hat, mu0), rows


def _condition(mu, rows, dim_x: int, dim_u: int, reg: float):
    """Condition ``N(μ, RᵀR + reg I_zz)`` on ``z = [x; u]``: ``[A B] = Σ_x'z Σ_zz^{-1}``, ``c``, ``F`` (spec A6).

    One QR of the rows, with ``sqrt(reg) I`` rows appended on the ``z`` columns:
    ``R = [[R_zz, R_zx'], [0, R_x'x']]`` gives ``[A B]ᵀ = R_zz^{-1} R_zx'`` and
    ``F = R_x'x'ᵀ R_x'x' = Σ_x'x' - [A B] (Σ_zz + reg I) [A B]ᵀ`` (PSD by construction).
    """
    p = dim_x + dim_u
    ridge = jnp.concatenate([jnp.sqrt(reg) * jnp.eye(p, dtype=rows.dtype), jnp.zeros((p, dim_x), rows.dtype)], 1)
    r = jnp.linalg.qr(jnp.concatenate([rows, ridge]), mode="r")
    gain = solve_triangular(r[:p, :p], r[:p, p:], lower=False).T  # [dX, p]
    c = mu[p:] - gain @ mu[:p]
    return gain[:, :dim_x], gain[:, dim_x:], c, r[p:, p:].T @ r[p:, p:]


def fit(prior: DynamicsPrior, x, u, x_next, mask, *, strength: float = 1.0, reg: float = 1e-6) -> LinearGaussian:
    """Per-step NIW MAP fit regularised by the GMM prior at step ``t``'s points, vmapped over ``t`` (spec A6).

    At each ``t`` (reference ``DynamicsLRPrior.fit`` + ``gauss_fit_joint_prior``):
    ``(μ0, Φ)`` = :func:`prior_moments` of step ``t``'s alive points;
    ``m = strength``, ``n0 = max(N_gmm - 2 - D, 1) / N_gmm`` (``N_gmm`` = alive
    points in the buffer), ``Φ``, ``n0`` times ``strength``;
    ``Σ = (N_t Σ̂ + Φ + N_t m/(N_t + m) (μ̂ - μ0)(μ̂ - μ0)ᵀ) / (N_t + n0)``, ``μ = μ̂``;
    with ``N_t < 2`` alive points the prior alone, ``Σ = Φ/n0``, ``μ = μ0``.
    Then ``Σ_zz += reg I`` and the Gaussian is conditioned on ``z = [x_t; u_t]``.

    Returns:
      ``LinearGaussian`` with ``A [T, dX, dX]``, ``B [T, dX, dU]``, ``c [T, dX]``, ``F [T, dX, dX]``.
    """
    x, u, x_next, mask, dims = _check_batch("fit", x, u, x_next, mask)
    _check_against_prior("fit", prior, dims)
    _check_number("fit", "strength", strength, positive=True)
    _check_number("fit", "reg", reg)
    _, _, dim_x, dim_u = dims
    dim = prior.points.shape[2]
    gmm = _with_factors(prior.gmm)
    y, alive = _joint_points(x, u, x_next, mask)
    num_points = prior.mask.sum()
    n0_raw = jnp.maximum(num_points - 2 - dim, 1.0) / jnp.maximum(num_points, 1.0)

    def one_step(y_t, alive_t):
        mu, rows = _niw_rows(gmm, y_t, alive_t, strength, n0_raw)
        return _condition(mu, rows, dim_x, dim_u, reg)

    return LinearGaussian(*jax.vmap(one_step)(y, alive))


def fit_least_squares(x, u, x_next, mask, *, reg: float = 0.0) -> LinearGaussian:
    """Per-step (ridge) least squares of ``x_{t+1}`` on ``[x_t, u_t, 1]`` over the alive points (the reference fit).

    ``reg`` penalises ``A, B`` (not ``c``); with fewer alive points than ``dX + dU + 1``
    the minimum-norm solution. ``F`` is the residual covariance (divided by ``N_t``).
    """
    x, u, x_next, mask, (_, _, dim_x, dim_u) = _check_batch("fit_least_squares", x, u, x_next, mask)
    _check_number("fit_least_squares", "reg", reg)
    p = dim_x + dim_u
    ridge = jnp.concatenate([jnp.sqrt(jnp.asarray(reg, jnp.float32)) * jnp.eye(p), jnp.zeros((p, 1))], axis=1)

    def one_step(x_t, u_t, x_next_t, mask_t):
        alive = (mask_t > 0).astype(x_t.dtype)[:, None]
        design = jnp.where(alive > 0, jnp.concatenate([x_t, u_t, jnp.ones_like(alive)], axis=1), 0.0)
        target = jnp.where(alive > 0, x_next_t, 0.0)
        weights, *_ = jnp.linalg.lstsq(jnp.concatenate([design, ridge]),
                                       jnp.concatenate([target, jnp.zeros((p, dim_x))]))
        resid = (target - design @ weights) * alive
        cov = resid.T @ resid / jnp.maximum(alive.sum(), 1.0)
        return weights[:dim_x].T, weights[dim_x:p].T, weights[p], cov

    return LinearGaussian(*jax.vmap(one_step)(x, u, x_next, mask))


def predict(model: LinearGaussian, t, x, u) -> jax.Array:
    """The model's mean ``A_t x + B_t u + c_t`` for ``x [..., dX]``, ``u [..., dU]``."""
    x, u = jnp.asarray(x), jnp.asarray(u)
    dim_x, dim_u = model.B.shape[1:]
    if x.shape[-1:] != (dim_x,):
        raise ValueError(f"predict: x must end in dX = {dim_x}, got shape {x.shape}")
    if u.shape[-1:] != (dim_u,):
        raise ValueError(f"predict: u must end in dU = {dim_u}, got shape {u.shape}")
    return (jnp.einsum("ij,...j->...i", model.A[t], x) + jnp.einsum("ij,...j->...i", model.B[t], u)
            + model.c[t])
