"""The example graphs of Schulman (2016), Ch. 5, with concrete distributions and functions.

Each constructor returns ``(graph, inputs)``: a :class:`scg.Graph` and a dict
of example inputs. The distributions are discrete (enumerable) or Gaussian
with polynomial costs in the Gaussian variables, so that
:func:`scg.testing.exact_expectation` computes the expected cost exactly
(enumeration, and Gauss-Hermite quadrature, which is exact for polynomials).
Tests, notebooks and docs reuse them.

- :func:`figure11`: the five simple graphs of Figure 11 (§5.2.3).
- :func:`nvil`: neural variational inference with Bernoulli latents (§5.10.1, Eq. 42-43).
- :func:`vae`: the reparameterised variational autoencoder (§5.10.1).
- :func:`readme_graph`: the graph of the README.

Example:
    >>> import jax, scg
    >>> from scg import testing
from scg.testing import examples
    >>> g, inputs = examples.figure11(5)
    >>> grads = scg.compile(g).grad(inputs, jax.random.key(0), num_samples=8)
    >>> sorted(grads)
    ['theta', 'x0']
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from scg import dist
from scg.graph import Graph

__all__ = ["figure11", "nvil", "vae", "readme_graph"]


def _stochastic(g: Graph, name, fn, *parents, estimators=None, baselines=None):
    estimators, baselines = estimators or {}, baselines or {}
    return g.stochastic(name, fn, *parents, estimator=estimators.get(name), baseline=baselines.get(name))


def figure11(k: int, *, estimators: dict | None = None, baselines: dict | None = None, simulator: bool = False):
    """Graph ``k`` (1 to 5) of Figure 11 (Schulman 2016, §5.2.3), with the estimator the figure shows.

    1. ``x = x(θ)`` deterministic, ``y ~ p(·|x)``, cost ``f(y)``:
       ``∂x/∂θ · ∂/∂x log p(y|x) · f(y)``.
       Here ``x = 2 tanh(θ)``, ``y ~ Bernoulli(logits=x)`` (two units).
    2. ``x ~ p(·|θ)``, ``y = y(x)`` deterministic, cost ``f(y)``:
       ``∂/∂θ log p(x|θ) · f(y(x))`` (``y`` needs no derivative: the path is blocked by ``x``).
       Here ``x ~ Categorical(logits=θ)`` over three values, ``y`` a table lookup.
    3. ``x ~ p(·|θ)``, ``y ~ p(·|x)``, cost ``f(y)``: ``∂/∂θ log p(x|θ) · f(y)``
       (``p(y|x)`` does not appear). Here ``x ~ Bernoulli(logits=θ)`` (two units) and
       ``y ~ Bernoulli(logits=2x - 1)``; with ``simulator=True``, ``y`` is a
       ``g.simulate`` node drawing the same law with no density.
    4. ``x ~ p(·|θ)``, ``y = y(θ)`` deterministic, cost ``f(x, y)``:
       ``∂/∂θ log p(x|θ) · f(x, y(θ)) + ∂y/∂θ · ∂f/∂y``.
       Here ``x ~ Normal(θ, 1)`` with ``estimator="score"`` (as in the figure), ``y = θ²``,
       ``f = (x - y)² + x``.
    5. ``x1 ~ p(·|θ, x0)``, ``x2 ~ p(·|θ, x1)``, costs ``f1(x1)``, ``f2(x2)``:
       ``∂/∂θ log p(x1|θ, x0) · (f1 + f2) + ∂/∂θ log p(x2|θ, x1) · f2``.
       Here ``x_t ~ Bernoulli(logits=θ[0] + θ[1] x_{t-1})``, ``f1 = 2 x1``, ``f2 = (x2 - 0.8)²``
       and ``x0`` is a floating-point input (it gets a gradient too).

    Args:
        k: which graph.
        estimators, baselines: per stochastic node name, passed to ``g.stochastic``
            (to build deliberately wrong variants in tests).
        simulator: graph 3 only: make ``y`` a simulated node.

    Returns:
        ``(graph, inputs)``.
    """
    g = Graph(f"figure11_{k}")
    kw = dict(estimators=estimators, baselines=baselines)
    theta = g.input("theta")
    if k == 1:
        x = g.deterministic("x", lambda t: 2.0 * jnp.tanh(t), theta)
        y = _stochastic(g, "y", lambda x: dist.Bernoulli(logits=x), x, **kw)
        g.cost("f", lambda y: jnp.sum((y - jnp.array([0.2, 0.7])) ** 2) + 1.5 * y[0] * y[1], y)
        return g, {"theta": jnp.array([0.3, -0.5])}
    if k == 2:
        x = _stochastic(g, "x", lambda t: dist.Categorical(logits=t), theta, **kw)
        y = g.deterministic("y", lambda x: jnp.array([-1.0, 0.5, 2.0])[x], x)
        g.cost("f", lambda y: (y - 1.0) ** 2, y)
        return g, {"theta": jnp.array([0.2, -0.4, 0.1])}
    if k == 3:
        x = _stochastic(g, "x", lambda t: dist.Bernoulli(logits=t), theta, **kw)
        if simulator:
            y = g.simulate("y", lambda key, x: dist.Bernoulli(logits=2.0 * x - 1.0).sample(key), x)
        else:
            y = _stochastic(g, "y", lambda x: dist.Bernoulli(logits=2.0 * x - 1.0), x, **kw)
        g.cost("f", lambda y: jnp.sum(jnp.array([1.0, -2.0]) * y) + 3.0 * y[0] * y[1], y)
        return g, {"theta": jnp.array([0.4, -0.3])}
    if k == 4:
        est = {"x": "score", **(estimators or {})}
        x = _stochastic(g, "x", lambda t: dist.Normal(t, 1.0), theta, estimators=est, baselines=baselines)
        y = g.deterministic("y", lambda t: t**2, theta)
        g.cost("f", lambda x, y: (x - y) ** 2 + x, x, y)
        return g, {"theta": jnp.array(0.7)}
    if k == 5:
        x0 = g.input("x0")
        step = lambda t, prev: dist.Bernoulli(logits=t[0] + t[1] * prev)
        x1 = _stochastic(g, "x1", step, theta, x0, **kw)
        x2 = _stochastic(g, "x2", step, theta, x1, **kw)
        g.cost("f1", lambda x1: 2.0 * x1, x1)
        g.cost("f2", lambda x2: (x2 - 0.8) ** 2, x2)
        return g, {"theta": jnp.array([0.2, -0.7]), "x0": jnp.array(1.0)}
    raise ValueError(f"figure11: k must be 1..5, got {k!r}")


def _bernoulli_layer(params, h):
    return dist.Bernoulli(logits=params["W"] @ h + params["b"])


def _log_prob(params, given, value):
    return jnp.sum(_bernoulli_layer(params, given).log_prob(value))


def _neg_r(q, p, below, h):
    """``log q(h | below) - log p(below | h)``: one term of the negated bound."""
    return _log_prob(q, below, h) - _log_prob(p, h, below)


def _log_prior(theta, h):
    return jnp.sum(dist.Bernoulli(logits=theta["top"]).log_prob(h))


def nvil(*, num_layers: int = 2, h1_baseline_reads: str = "x"):
    """NVIL (Mnih & Gregor 2014) as in Schulman (2016), §5.10.1 and Figure 13 (left).

    Generative model ``p_θ(x|h1) p_θ(h1|h2) p_θ(h2|h3) p_θ(h3)`` and inference
    network ``q_φ(h1|x) q_φ(h2|h1) q_φ(h3|h2)``, every layer Bernoulli with
    logits affine in the layer below (two units per latent layer, three
    observed units). The costs are the negated terms of the variational bound,
    ``c_i = -r_i`` with ``r1 = log p(x|h1) - log q(h1|x)``,
    ``r2 = log p(h1|h2) - log q(h2|h1)`` (plus ``log p(h2)`` when ``h2`` is the
    top layer), ``r3 = log p(h2|h3) p(h3) - log q(h3|h2)``. The compiled
    estimator is Eq. 42 for ``θ`` and Eq. 43 for ``φ``::

        ∂L/∂φ ≈ ∂/∂φ log q(h1|x) (Q̂1 - b1(x)) + ∂/∂φ log q(h2|h1) (Q̂2 - b2(h1)) + ...

    with ``Q̂1 = c1 + c2 (+ c3)``, ``Q̂2 = c2 (+ c3)``, plus the pathwise terms of
    ``-log q`` inside the costs (zero in expectation). The baselines
    ``b_i = w_i · (input) + v_i`` are deterministic nodes with their own
    parameters ``psi`` (which get no gradient from this objective).

    Args:
        num_layers: 2 (``h1, h2``) or 3 (``h1, h2, h3``).
        h1_baseline_reads: what ``b1`` reads: ``"x"`` (legal), or ``"h2"`` /
            ``"c1"``, nodes that ``h1`` influences, which Theorem 2 forbids
            (compiling then raises :class:`scg.GraphError`).

    Returns:
        ``(graph, inputs)`` with inputs ``x`` (data, ``differentiable=False``),
        ``theta``, ``phi`` and ``psi`` (dicts of arrays).
    """
    if num_layers not in (2, 3):
        raise ValueError(f"nvil: num_layers must be 2 or 3, got {num_layers!r}")
    if h1_baseline_reads not in ("x", "h2", "c1"):
        raise ValueError(f"nvil: h1_baseline_reads must be 'x', 'h2' or 'c1', got {h1_baseline_reads!r}")
    g = Graph(f"nvil{num_layers}")
    x = g.input("x", differentiable=False)
    theta, phi, psi = g.input("theta"), g.input("phi"), g.input("psi")
    h1 = g.stochastic("h1", lambda ph, x: _bernoulli_layer(ph["q1"], x), phi, x, baseline="b1")
    h2 = g.stochastic("h2", lambda ph, h1: _bernoulli_layer(ph["q2"], h1), phi, h1, baseline="b2")
    g.cost("c1", lambda th, ph, x, h1: _neg_r(ph["q1"], th["p1"], x, h1), theta, phi, x, h1)
    if num_layers == 2:
        g.cost("c2", lambda th, ph, h1, h2: _neg_r(ph["q2"], th["p2"], h1, h2) - _log_prior(th, h2), theta, phi, h1, h2)
    else:
        h3 = g.stochastic("h3", lambda ph, h2: _bernoulli_layer(ph["q3"], h2), phi, h2, baseline="b3")
        g.cost("c2", lambda th, ph, h1, h2: _neg_r(ph["q2"], th["p2"], h1, h2), theta, phi, h1, h2)
        g.cost("c3", lambda th, ph, h2, h3: _neg_r(ph["q3"], th["p3"], h2, h3) - _log_prior(th, h3), theta, phi, h2, h3)
        g.deterministic("b3", lambda ps, h2: ps["w3"] @ h2 + ps["v3"], psi, h2)
    g.deterministic("b1", lambda ps, v: jnp.sum(ps["w1"] * v) + ps["v1"], psi, h1_baseline_reads)
    g.deterministic("b2", lambda ps, h1: ps["w2"] @ h1 + ps["v2"], psi, h1)

    key = jax.random.key(11)
    shapes = {"p1": (3, 2), "p2": (2, 2), "q1": (2, 3), "q2": (2, 2)}
    if num_layers == 3:
        shapes.update(p3=(2, 2), q3=(2, 2))
    params = {}
    for i, (name, (rows, cols)) in enumerate(sorted(shapes.items())):
        kw, kb = jax.random.split(jax.random.fold_in(key, i))
        params[name] = {"W": jax.random.normal(kw, (rows, cols)), "b": 0.5 * jax.random.normal(kb, (rows,))}
    theta_v = {k: v for k, v in params.items() if k.startswith("p")}
    theta_v["top"] = jnp.array([0.3, -0.4])
    phi_v = {k: v for k, v in params.items() if k.startswith("q")}
    read_shape = {"x": (3,), "h2": (2,), "c1": ()}[h1_baseline_reads]
    psi_v = {"w1": jnp.full(read_shape, 0.5), "v1": jnp.array(2.0), "w2": jnp.array([0.3, -0.2]), "v2": jnp.array(1.0)}
    if num_layers == 3:
        psi_v.update(w3=jnp.array([0.1, 0.1]), v3=jnp.array(0.5))
    inputs = {"x": jnp.array([1.0, 0.0, 1.0]), "theta": theta_v, "phi": phi_v, "psi": psi_v}
    return g, inputs


def vae(*, estimator: str | None = None):
    """The variational autoencoder (Kingma & Welling 2013) as in Schulman (2016), §5.10.1, Figure 13 (right).

    ``h ~ q_φ(·|x) = N(μ_φ(x), σ_φ²)`` (two dimensions), prior ``p(h) = N(0, I)``,
    likelihood ``p_θ(x|h) = N(W h + c, σ_x² I)`` (three dimensions). The costs
    are the negated bound ``L_re = E[log p(x|h) + log p(h)] + H[q_φ]``, the
    entropy in closed form as in the thesis. With the default (pathwise)
    estimator, ``h = μ + σ ε`` and::

        ∂L/∂θ ≈ ∂/∂θ log p_θ(x|h)
        ∂L/∂φ ≈ [∂/∂h log p(x|h) + ∂/∂h log p(h)] ∂h/∂φ + ∂/∂φ H[q_φ]

    ``estimator="score"`` gives the original, unreparameterised graph:
    ``∂/∂φ log q(h|x) · (Q̂_h)`` in place of the first term for ``φ``.

    Returns:
        ``(graph, inputs)`` with inputs ``x`` (data), ``theta`` and ``phi`` (dicts).
    """
    g = Graph("vae")
    x = g.input("x", differentiable=False)
    theta, phi = g.input("theta"), g.input("phi")
    q = lambda ph, x: dist.Normal(ph["A"] @ x + ph["a"], jnp.exp(ph["log_sigma"]))
    h = g.stochastic("h", q, phi, x, estimator=estimator)
    g.cost("nll", lambda th, x, h: -dist.Normal(th["W"] @ h + th["c"], jnp.exp(th["log_sx"])).log_prob(x), theta, x, h,
           reduce="sum")
    g.cost("nprior", lambda h: -dist.Normal(0.0, 1.0).log_prob(h), h, reduce="sum")
    g.cost("neg_entropy", lambda ph: -jnp.sum(ph["log_sigma"] + 0.5 * jnp.log(2 * jnp.pi * jnp.e)), phi)
    inputs = {
        "x": jnp.array([0.5, -1.0, 1.5]),
        "theta": {"W": jnp.array([[1.0, -0.5], [0.3, 0.8], [-0.7, 0.2]]), "c": jnp.array([0.1, 0.0, -0.2]),
                  "log_sx": jnp.array(-0.3)},
        "phi": {"A": jnp.array([[0.4, -0.3, 0.2], [0.1, 0.5, -0.2]]), "a": jnp.array([0.2, -0.1]),
                "log_sigma": jnp.array([-0.5, -0.2])},
    }
    return g, inputs


def readme_graph():
    """The README's graph: ``x ~ N(θ, 1)`` (pathwise), ``z ~ Bernoulli(logits=x)`` (score),
    ``y = sin(x) + z``, cost ``f = (y - θ)²``.

    Its estimator combines both rules of Theorem 1 (Schulman 2016, Eq. 38)::

        ∂/∂θ log p(ẑ|x(θ, ε)) · f̂ + ∂f/∂θ (through x = θ + ε and the direct edge)

    Returns:
        ``(graph, {"theta": 0.3})``, the README's inputs.
    """
    g = Graph("readme")
    theta = g.input("theta")
    x = g.stochastic("x", lambda theta: dist.Normal(theta, 1.0), theta)
    z = g.stochastic("z", lambda x: dist.Bernoulli(logits=x), x)
    y = g.deterministic("y", lambda x, z: jnp.sin(x) + z, x, z)
    g.cost("f", lambda y, theta: (y - theta) ** 2, y, theta)
    return g, {"theta": 0.3}
