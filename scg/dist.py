"""A small set of distributions for stochastic nodes.

Any object with ``sample(key)`` and ``log_prob(value)`` can be returned from a
stochastic node's function (NumPyro's distributions fit this protocol as they
are); the optional members the compiler reads are:

- ``has_rsample`` and ``rsample(key)``: a reparameterised sample, needed by the
  pathwise estimator (Schulman 2016, §5.2.1);
- ``reparameterize(noise)`` and its inverse ``noise(value)``: ``x = g(ε)`` and
  ``ε = g⁻¹(x)``, with which a pathwise node takes an observed value (the
  noise that would have drawn it; SVG(1)/SVG(∞) on recorded transitions);
- ``mean`` and ``variance``: used by the Gaussian-smoothing estimator;
- ``enumerate_support()``: values and weights over the joint support, for exact
  expectations in :mod:`scg.testing` (a finite support, or Gauss-Hermite
  quadrature nodes); :func:`joint_support` reads it, and NumPyro's per-element
  ``enumerate_support(expand=True)`` too;
- ``in_support(value)``: where ``value`` is a possible outcome (a boolean mask
  shaped like it), read to reject ``observed=`` values the distribution cannot
  produce, whose log-probabilities would be ``-inf`` or silently wrong;
- ``param_errors()``: ``(what, bad, values)`` triples naming invalid parameters,
  read by ``scg.compile(graph, checks=True)``.

Every distribution here is a pytree, so it can cross ``jit``/``vmap``.
``log_prob`` is elementwise; the compiler sums it over the node's elements.
:func:`kl_divergence` and :func:`joint_support` take NumPyro distributions as
well; NumPyro itself is optional and imported only when one is passed.
"""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Normal", "Bernoulli", "Categorical", "Distribution", "joint_support", "kl_divergence"]


class Distribution:
    """Base class: subclasses register as pytrees through ``__init_subclass__``."""

    has_rsample = False
    _fields: tuple[str, ...] = ()
    _probs = None  # Bernoulli, Categorical: the probs= given (or None), kept unevaluated for param_errors

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_node(
            cls,
            lambda d: (tuple(getattr(d, f) for f in d._fields), None),
            lambda _, children: cls._from_fields(*children),
        )

    @classmethod
    def _from_fields(cls, *children):
        obj = object.__new__(cls)
        for name, value in zip(cls._fields, children):
            setattr(obj, name, value)
        return obj

    def in_support(self, value) -> jax.Array:
        """Where ``value`` is a possible outcome: a boolean mask shaped like ``value``.

        This default reads ``log_prob``: an outcome is possible where its log-probability is finite.
        Subclasses say it directly, so that invalid parameters (:meth:`param_errors`) are not
        mistaken for an impossible value.
        """
        return jnp.isfinite(self.log_prob(value))

    def param_errors(self) -> tuple:
        """``(what, bad, values)`` per constraint on the parameters: a sentence, a boolean mask of the
        elements that break it, and the values there (broadcastable to ``bad``). Nothing is checked here;
        ``scg.compile(graph, checks=True)`` turns each into a runtime check naming the node."""
        return ()

    def __repr__(self) -> str:
        shown = (f for f in self._fields if not (f.startswith("_") and getattr(self, f) is None))
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in shown)
        return f"{type(self).__name__}({fields})"


class Normal(Distribution):
    """Independent Gaussian per element, ``N(loc, scale**2)``; reparameterisable."""

    has_rsample = True
    _fields = ("loc", "scale")

    def __init__(self, loc, scale):
        self.loc, self.scale = jnp.broadcast_arrays(jnp.asarray(loc, float), jnp.asarray(scale, float))

    @property
    def shape(self):
        return self.loc.shape

    @property
    def mean(self):
        return self.loc

    @property
    def variance(self):
        return self.scale**2

    def reparameterize(self, noise):
        """``x = μ + σ ε``: the value standard normal noise ``ε`` gives (differentiable in ``μ``, ``σ``)."""
        return self.loc + self.scale * noise

    def noise(self, value):
        """``ε = (x − μ) / σ``: the standard normal noise that gives ``value`` (inverse of :meth:`reparameterize`)."""
        return (value - self.loc) / self.scale

    def rsample(self, key):
        return self.reparameterize(jax.random.normal(key, self.loc.shape, self.loc.dtype))

    def sample(self, key):
        return jax.lax.stop_gradient(self.rsample(key))

    def log_prob(self, value):
        z = (value - self.loc) / self.scale
        return -0.5 * z**2 - jnp.log(self.scale) - 0.5 * jnp.log(2 * jnp.pi)

    def in_support(self, value):
        """Every finite real is possible."""
        return jnp.isfinite(jnp.asarray(value))

    def param_errors(self):
        return (
            ("scale must be positive and finite", ~((self.scale > 0) & jnp.isfinite(self.scale)), self.scale),
            ("loc must be finite", ~jnp.isfinite(self.loc), self.loc),
        )

    def enumerate_support(self, num_points: int = 20):
        """Gauss-Hermite nodes ``loc + scale * z_k`` (reparameterised) and constant weights."""
        if self.loc.size > 2:
            raise ValueError("Normal.enumerate_support: quadrature only for up to 2 elements")
        z, w = np.polynomial.hermite_e.hermegauss(num_points)
        w = w / w.sum()
        grids = list(itertools.product(range(num_points), repeat=self.loc.size))
        zs = np.array([[z[i] for i in g] for g in grids]).reshape((len(grids),) + self.loc.shape)
        ws = np.array([np.prod([w[i] for i in g]) for g in grids])
        values = self.loc + self.scale * jnp.asarray(zs, self.loc.dtype)
        return values, jnp.asarray(ws, self.loc.dtype)


class Bernoulli(Distribution):
    """Independent Bernoulli per element, given ``logits`` or ``probs``; values are floats in {0, 1}."""

    _fields = ("logits", "_probs")

    def __init__(self, logits=None, probs=None):
        if (logits is None) == (probs is None):
            raise ValueError("Bernoulli: give exactly one of logits= or probs=")
        if logits is None:
            probs = jnp.asarray(probs, float)
            logits = jnp.log(probs) - jnp.log1p(-probs)
        self.logits = jnp.asarray(logits, float)
        self._probs = probs  # a reference, no computation: param_errors checks the probs as given

    @property
    def shape(self):
        return self.logits.shape

    @property
    def probs(self):
        return jax.nn.sigmoid(self.logits)

    @property
    def mean(self):
        return self.probs

    def sample(self, key):
        u = jax.random.uniform(key, self.logits.shape, self.logits.dtype)
        return jax.lax.stop_gradient((u < self.probs).astype(self.logits.dtype))

    def log_prob(self, value):
        return value * jax.nn.log_sigmoid(self.logits) + (1 - value) * jax.nn.log_sigmoid(-self.logits)

    def in_support(self, value):
        """``1`` unless ``probs == 0``, ``0`` unless ``probs == 1``; nothing else (NaN logits: see :meth:`param_errors`)."""
        value = jnp.asarray(value)
        return ((value == 1) & (self.logits != -jnp.inf)) | ((value == 0) & (self.logits != jnp.inf))

    def param_errors(self):
        errors = ()
        if self._probs is not None:
            p = self._probs
            errors = (("probs must lie in [0, 1]", ~((p >= 0) & (p <= 1)), p),)
        return errors + (("logits must not be NaN", jnp.isnan(self.logits), self.logits),)

    def enumerate_support(self):
        n = self.logits.size
        if n > 10:
            raise ValueError("Bernoulli.enumerate_support: more than 2**10 joint values")
        values = jnp.asarray(list(itertools.product([0.0, 1.0], repeat=n)), self.logits.dtype)
        values = values.reshape((2**n,) + self.logits.shape)
        weights = jnp.exp(jax.vmap(lambda v: jnp.sum(self.log_prob(v)))(values))
        return values, weights


class Categorical(Distribution):
    """Categorical over the last axis of ``logits``; values are int32 indices."""

    _fields = ("logits", "_probs")

    def __init__(self, logits=None, probs=None):
        if (logits is None) == (probs is None):
            raise ValueError("Categorical: give exactly one of logits= or probs=")
        if logits is None:
            probs = jnp.asarray(probs, float)
            logits = jnp.log(probs)
        self.logits = jax.nn.log_softmax(jnp.asarray(logits, float), axis=-1)
        self._probs = probs  # a reference, no computation: log_softmax hides probs that do not sum to 1

    @property
    def shape(self):
        return self.logits.shape[:-1]

    @property
    def num_categories(self) -> int:
        return self.logits.shape[-1]

    @property
    def probs(self):
        return jnp.exp(self.logits)

    def sample(self, key):
        return jax.random.categorical(key, jax.lax.stop_gradient(self.logits), axis=-1).astype(jnp.int32)

    def log_prob(self, value):
        value = jnp.asarray(value, jnp.int32)
        return jnp.take_along_axis(self.logits, value[..., None], axis=-1)[..., 0]

    def in_support(self, value):
        """Whole numbers in ``[0, num_categories)`` whose category has nonzero probability.

        ``log_prob`` would truncate ``1.5`` to ``1`` and read an index out of range as the last category.
        """
        value = jnp.asarray(value)
        k = self.num_categories
        index = jnp.clip(value, 0, k - 1).astype(jnp.int32)
        possible = jnp.take_along_axis(self.logits, index[..., None], axis=-1)[..., 0] != -jnp.inf
        return (value >= 0) & (value < k) & (index == value) & possible

    def param_errors(self):
        errors = ()
        if self._probs is not None:
            p = self._probs
            total = jnp.sum(p, axis=-1)
            tol = 1e-6 + self.num_categories * float(jnp.finfo(p.dtype).eps)  # float rounding of the sum
            errors = (
                ("probs must be non-negative (and not NaN)", ~(p >= 0), p),
                (f"probs must sum to 1 over the last axis (within {tol:.1e})", ~(jnp.abs(total - 1) <= tol), total),
            )
        what = "logits must not be NaN (NaN or +inf logits, or -inf in every category, give NaN)"
        return errors + ((what, jnp.isnan(self.logits), self.logits),)

    def enumerate_support(self):
        k, n = self.num_categories, int(np.prod(self.shape))
        if k**n > 1024:
            raise ValueError("Categorical.enumerate_support: more than 1024 joint values")
        values = jnp.asarray(list(itertools.product(range(k), repeat=n)), jnp.int32).reshape((k**n,) + self.shape)
        weights = jnp.exp(jax.vmap(lambda v: jnp.sum(self.log_prob(v)))(values))
        return values, weights


def kl_divergence(p, q) -> jax.Array:
    """``KL(p ‖ q)`` per element (summed over a Categorical's categories), in closed form.

    The trust-region constraint of TRPO (Schulman 2016, Eq. 35, ``KL(π_old ‖ π_θ)``)
    and PPO's adaptive penalty read it. ``p`` and ``q`` must be of the same class;
    a user's distribution class takes part by offering ``p.kl(q)``.

    Two NumPyro distributions go to ``numpyro.distributions.kl.kl_divergence``
    (NumPyro's registry: Normal, Independent, MultivariateNormal, Dirichlet, ...);
    the pairs it has no form for that scg has (NumPyro 0.22 registers neither
    Bernoulli nor Categorical given by logits) get scg's closed form below.

    Example:
        >>> from scg import dist
        >>> float(dist.kl_divergence(dist.Normal(0.0, 1.0), dist.Normal(1.0, 1.0)))
        0.5
    """
    if _is_numpyro(p) and _is_numpyro(q):
        return _numpyro_kl(p, q)
    if type(p) is not type(q):
        raise TypeError(f"kl_divergence: p and q must be the same distribution class, got {type(p).__name__} and {type(q).__name__}")
    if isinstance(p, Normal):
        ratio = (p.scale / q.scale) ** 2
        return 0.5 * (ratio + ((p.loc - q.loc) / q.scale) ** 2 - 1.0 - jnp.log(ratio))
    if isinstance(p, Categorical):
        return jnp.sum(p.probs * (p.logits - q.logits), axis=-1)
    if isinstance(p, Bernoulli):
        log_p1, log_p0 = jax.nn.log_sigmoid(p.logits), jax.nn.log_sigmoid(-p.logits)
        log_q1, log_q0 = jax.nn.log_sigmoid(q.logits), jax.nn.log_sigmoid(-q.logits)
        return p.probs * (log_p1 - log_q1) + (1 - p.probs) * (log_p0 - log_q0)
    if hasattr(p, "kl"):
        return p.kl(q)
    raise TypeError(f"kl_divergence: no closed form for {type(p).__name__}; give the class a kl(q) method")


# -- NumPyro distributions -------------------------------------------------------------
def _is_numpyro(d) -> bool:
    """Whether ``d`` follows NumPyro's protocol (``batch_shape``, ``event_shape``, ``has_enumerate_support``).

    Read from the object, so that nothing here imports NumPyro unless one of its distributions is passed.
    """
    return hasattr(type(d), "has_enumerate_support") and hasattr(d, "batch_shape") and hasattr(d, "event_shape")


def _numpyro_kl(p, q) -> jax.Array:
    from numpyro.distributions import kl as numpyro_kl  # optional dependency: only NumPyro arguments get here

    try:
        return numpyro_kl.kl_divergence(p, q)
    except NotImplementedError as err:
        pair = _as_scg(p), _as_scg(q)
        if None in pair or type(pair[0]) is not type(pair[1]):
            raise TypeError(
                f"kl_divergence: neither NumPyro nor scg has a closed form for KL({type(p).__name__} ‖ "
                f"{type(q).__name__}); register one with numpyro.distributions.kl.register_kl"
            ) from err
        return kl_divergence(*pair)


def _as_scg(d):
    """The scg distribution equal to NumPyro distribution ``d`` (Normal, Bernoulli, Categorical), else None."""
    import numpyro.distributions as nd  # optional dependency: only NumPyro arguments get here

    if isinstance(d, nd.Normal):
        return Normal(d.loc, d.scale)
    if isinstance(d, (nd.BernoulliLogits, nd.BernoulliProbs)):
        return Bernoulli(logits=d.logits)
    if isinstance(d, (nd.CategoricalLogits, nd.CategoricalProbs)):
        return Categorical(logits=d.logits)
    return None


# -- exact expectations ------------------------------------------------------------------
MAX_JOINT_SUPPORT = 1024  # joint values a finite support may have in joint_support (as scg's Bernoulli, Categorical)


def joint_support(d, *, quadrature: int = 20) -> tuple[jax.Array, jax.Array]:
    """``(values, weights)`` over the joint support of all of ``d``'s elements, for exact expectations.

    ``values`` is ``[K, *shape]`` (one joint outcome of every element per row) and ``weights`` ``[K]``
    sums to 1, so ``E[f(x)] = Σ_k weights[k] f(values[k])``, differentiable in ``d``'s parameters:
    through ``weights = p(values)`` for a finite support, through the reparameterised nodes
    ``loc + scale · z_k`` (constant weights) of Gauss-Hermite quadrature for a Normal, exact for
    polynomials of degree up to ``2 · quadrature - 1``. :mod:`scg.testing` reads it.

    Both protocols are accepted:

    - scg's: ``d.enumerate_support()`` already returns the joint ``(values, weights)``; a
      reparameterisable distribution with a ``variance`` (a Normal) is asked for ``quadrature`` nodes;
    - NumPyro's: ``d.enumerate_support(expand=True)`` gives each element's values only,
      ``[K, *batch_shape, *event_shape]`` (the same ``K`` values for every element); the joint
      support is their product over the ``batch_shape`` elements, ``K ** n`` rows, weighted by
      ``exp(Σ log_prob)``. A NumPyro ``Normal`` (no finite support) gets the quadrature of scg's.

    Raises:
        ValueError: a support of more than ``MAX_JOINT_SUPPORT`` joint values, a Normal of more
            than 2 elements, or a NumPyro distribution with neither a finite support nor quadrature.

    Example:
        >>> from scg import dist
        >>> values, weights = dist.joint_support(dist.Bernoulli(probs=[0.5, 0.25]))
        >>> values.shape, [round(float(w), 4) for w in weights]
        ((4, 2), [0.375, 0.125, 0.375, 0.125])
    """
    if not _is_numpyro(d):
        if getattr(d, "has_rsample", False) and hasattr(d, "variance"):
            return d.enumerate_support(quadrature)
        return d.enumerate_support()
    if getattr(d, "has_enumerate_support", False):
        return _product_support(d)
    import numpyro.distributions as nd  # optional dependency: only NumPyro arguments get here

    if isinstance(d, nd.Normal):
        return Normal(d.loc, d.scale).enumerate_support(quadrature)  # broadcast to the batch shape
    raise ValueError(
        f"joint_support: NumPyro's {type(d).__name__} has no finite support (has_enumerate_support is False) and "
        f"no quadrature here (only Normal has one); use a discrete or Normal distribution for an exact expectation"
    )


def _product_support(d) -> tuple[jax.Array, jax.Array]:
    """The joint support of a NumPyro distribution from its per-element ``enumerate_support(expand=True)``."""
    batch, event = tuple(d.batch_shape), tuple(d.event_shape)
    per = jnp.asarray(d.enumerate_support(expand=True))  # [K, *batch, *event]
    k, n = per.shape[0], math.prod(batch)
    if k**n > MAX_JOINT_SUPPORT:
        raise ValueError(
            f"joint_support: {type(d).__name__} of batch shape {batch} has {k}**{n} joint values, more than "
            f"{MAX_JOINT_SUPPORT}; enumerate a smaller distribution"
        )
    index = np.array(list(itertools.product(range(k), repeat=n)), np.int32).reshape(k**n, n)  # row -> value index per element
    values = per.reshape((k, n) + event)[index, np.arange(n)]  # [K**n, n, *event]
    values = values.reshape((k**n,) + batch + event)
    weights = jnp.exp(jax.vmap(lambda v: jnp.sum(d.log_prob(v)))(values))
    return values, weights
