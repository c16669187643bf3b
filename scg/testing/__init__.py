"""Checking gradient estimators against exact answers.

Two halves, and a report:

- :func:`exact_expectation` computes ``E[Σ costs]`` of a small graph exactly,
  as a differentiable function of the inputs: discrete nodes are enumerated
  over their joint support, Gaussian nodes integrated by Gauss-Hermite quadrature
  (exact for polynomials up to degree ``2·quadrature - 1``, and to float
  precision for the smooth functions of test graphs). ``jax.grad`` and
  ``jax.hessian`` of it give exact gradients and Hessians.
- :func:`z_test` compares independent Monte Carlo estimates with an exact
  answer: per component ``z = (mean - exact) / stderr``, with the threshold
  corrected for the number of components (Bonferroni), so that a correct
  estimator fails with probability about that of a single 5-sigma event
  while a biased one, given enough replicates, fails for sure.
- :func:`variance_report` (:mod:`scg.testing.variance`) splits an estimator's
  variance by node, to choose estimators node by node.

Example:
    >>> import jax, scg
    >>> from scg import dist, testing
    >>> g = scg.Graph(); t = g.input("t")
    >>> x = g.stochastic("x", lambda t: dist.Bernoulli(logits=t), t)
    >>> _ = g.cost("c", lambda x: (x - 0.3) ** 2, x)
    >>> est = scg.compile(g)
    >>> exact = jax.grad(lambda t: testing.exact_expectation(g, {"t": t}))(0.5)
    >>> draws = est.grad_samples({"t": 0.5}, jax.random.key(0), num_replicates=4000)
    >>> testing.z_test(draws, {"t": exact}).passed
    True
"""
from __future__ import annotations

import math
import statistics
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scg._program.analysis import analyse
from scg.dist import joint_support
from scg.errors import GraphError
from scg.graph import Graph
from scg.testing.variance import VarianceReport, variance_report  # noqa: F401 (re-exported)


# -- exact expectations ----------------------------------------------------------------
def exact_expectation(graph: Graph, inputs: dict, *, quadrature: int = 20) -> jax.Array:
    """``E[Σ costs]`` by enumeration (discrete nodes) and Gauss-Hermite quadrature (Normal nodes).

    Differentiable in ``inputs``. The graph's distributions must have a joint
    support or quadrature that :func:`scg.dist.joint_support` reads: all of
    :mod:`scg.dist` (within size limits), NumPyro's discrete distributions and
    its Normal; simulated nodes cannot be enumerated.
    """
    a = analyse(graph)
    values: dict[str, Any] = {k: jax.tree_util.tree_map(lambda v: jnp.asarray(v)[None], inputs[k]) for k in a.inputs}
    weight = jnp.ones((1,))
    for name in a.order:
        node = a.nodes[name]
        args = [values[p] for p in node.parents]
        if node.kind in ("input", "loss"):  # losses are outside the expected cost
            continue
        if node.kind in ("deterministic", "cost"):
            out = jax.vmap(node.fn, axis_size=weight.shape[0])(*args)
            if node.kind == "cost" and node.spec.reduce:
                out = jax.vmap(jnp.sum if node.spec.reduce == "sum" else jnp.mean)(out)
            values[name] = out
        elif node.kind == "expectation":
            def expect(*xs, node=node):
                support, w = joint_support(node.spec.dist_fn(*xs), quadrature=quadrature)
                fx = jax.vmap(lambda s: node.fn(*xs, s))(support)
                return jax.tree_util.tree_map(lambda v: jnp.tensordot(w, v, axes=1), fx)

            values[name] = jax.vmap(expect, axis_size=weight.shape[0])(*args)
        elif node.kind == "stochastic":
            dists = jax.vmap(node.fn, axis_size=weight.shape[0])(*args)
            support, w = jax.vmap(lambda d: joint_support(d, quadrature=quadrature))(dists)  # [W, K, ...], [W, K]
            worlds, k = w.shape
            values = {n: _repeat(v, k) for n, v in values.items()}
            values[name] = support.reshape((worlds * k,) + support.shape[2:])
            weight = (weight[:, None] * w).reshape(worlds * k)
        else:
            raise GraphError(f"exact_expectation: node {name!r} ({node.kind}) cannot be enumerated")
    total = sum((values[c] for c in a.costs), jnp.zeros_like(weight))
    return jnp.sum(weight * total)


def _repeat(tree, k: int):
    return jax.tree_util.tree_map(lambda v: jnp.repeat(v, k, axis=0), tree)


def exact_grad(graph: Graph, inputs: dict, *, wrt=None, quadrature: int = 20) -> dict:
    """``∇ E[Σ costs]`` exactly, keyed like :meth:`scg.CompiledGraph.grad`."""
    wrt = tuple(wrt) if wrt is not None else tuple(k for k, v in inputs.items() if _floating(v))
    diff = {k: inputs[k] for k in wrt}
    return jax.grad(lambda d: exact_expectation(graph, {**inputs, **d}, quadrature=quadrature))(diff)


def _floating(v) -> bool:
    return all(jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) for x in jax.tree_util.tree_leaves(v))


# -- z-tests ---------------------------------------------------------------------------------
class ZTestResult(NamedTuple):
    """Per-component means, standard errors and z-scores (flattened), and the verdict."""

    mean: np.ndarray
    stderr: np.ndarray
    exact: np.ndarray
    z: np.ndarray
    threshold: float

    @property
    def passed(self) -> bool:
        return bool(np.all(np.abs(self.z) <= self.threshold))

    @property
    def max_abs_z(self) -> float:
        return float(np.max(np.abs(self.z)))

    def __str__(self) -> str:
        i = int(np.argmax(np.abs(self.z)))
        return (
            f"z-test over {self.z.size} component(s): max |z| = {self.max_abs_z:.2f} "
            f"(threshold {self.threshold:.2f}) at component {i}: mean {self.mean[i]:.6g} "
            f"± {self.stderr[i]:.3g} vs exact {self.exact[i]:.6g}"
        )


def threshold(num_components: int, sigmas: float = 5.0) -> float:
    """The |z| bound with the two-sided false-alarm rate of one ``sigmas`` event, split over components."""
    p_one = math.erfc(sigmas / math.sqrt(2.0))
    # The lower tail in float64: 1 - p/(2n) rounds to 1 in float32 (ndtri -> inf, every test passes).
    return -statistics.NormalDist().inv_cdf(p_one / (2.0 * num_components)) if num_components > 1 else sigmas


def z_test(samples, exact, *, sigmas: float = 5.0, atol: float = 1e-6) -> ZTestResult:
    """Compare independent estimates (pytree with a leading replicate axis) with ``exact`` (same pytree, no axis).

    ``atol`` is added in quadrature to the standard error, so zero-variance
    components compare up to float round-off.
    """
    draws = np.concatenate([np.asarray(x, np.float64).reshape(np.shape(x)[0], -1) for x in jax.tree_util.tree_leaves(samples)], axis=1)
    target = np.concatenate([np.asarray(x, np.float64).reshape(-1) for x in jax.tree_util.tree_leaves(exact)])
    if draws.shape[1] != target.shape[0]:
        raise ValueError(f"z_test: samples have {draws.shape[1]} components per replicate, exact has {target.shape[0]}")
    n = draws.shape[0]
    if n < 2:
        raise ValueError("z_test: need at least 2 replicates")
    mean = draws.mean(0)
    stderr = draws.std(0, ddof=1) / math.sqrt(n)
    z = (mean - target) / np.sqrt(stderr**2 + atol**2)
    return ZTestResult(mean, stderr, target, z, threshold(target.size, sigmas))


def assert_unbiased(samples, exact, **kw) -> ZTestResult:
    """Raise AssertionError unless every component passes the z-test."""
    result = z_test(samples, exact, **kw)
    assert result.passed, f"estimator looks biased: {result}"
    return result


def assert_biased(samples, exact, **kw) -> ZTestResult:
    """Raise AssertionError unless some component fails the z-test (for deliberately wrong variants)."""
    result = z_test(samples, exact, **kw)
    assert not result.passed, f"expected a detectable bias, but {result}"
    return result
