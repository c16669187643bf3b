"""Generate ``notebooks/01_graphs_and_estimators.ipynb``: ``python notebooks/make_01.py`` (sources), ``python notebooks/regenerate.py`` (with outputs)."""
from _generate import write

NAME = "01_graphs_and_estimators.ipynb"

CELLS = [
    ("md", r"""# Graphs and their gradient estimators

A *stochastic computation graph* (Schulman 2016, Ch. 5, Definition 3) is a directed acyclic graph with
input nodes (the parameters θ we differentiate with respect to), deterministic nodes (functions of
their parents) and stochastic nodes (distributed conditionally on their parents); some deterministic
nodes are designated *costs*. We want ∇_θ E[Σ costs].

`scg` compiles such a graph into a *surrogate loss* whose gradient is an unbiased estimate of that
gradient (Corollary 1). This notebook builds a small graph, looks at it, checks its gradient against
the exact one, and then compares the score-function, pathwise and baseline estimators on one node."""),
    ("code", r"""%matplotlib inline
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import SVG, display

import scg
from scg import baselines, dist, render, testing

t_start = time.time()"""),
    ("md", r"""## 1. A graph with a pathwise and a score-function node

`x ~ N(θ, 1)` is reparameterisable (`x = θ + ε`), so by default its gradient flows *through* the sample
(the pathwise derivative). `z ~ Bernoulli(sigmoid(x))` is discrete: no path through the sample exists,
so its gradient uses the score function ∇log p(z) (Schulman 2016, Eq. 36). In the picture circles are
stochastic nodes, squares deterministic ones, θ is a plain symbol, and the cost has a double border,
as in the thesis' Figure 11."""),
    ("code", r"""g = scg.Graph("readme")
theta = g.input("theta")
x = g.stochastic("x", lambda theta: dist.Normal(theta, 1.0), theta)  # pathwise by default
z = g.stochastic("z", lambda x: dist.Bernoulli(logits=x), x)  # score function by default
y = g.deterministic("y", lambda x, z: jnp.sin(x) + z, x, z)
g.cost("f", lambda y, theta: (y - theta) ** 2, y, theta)
g  # a Graph displays as an SVG picture"""),
    ("md", r"""Before inputs are known the default estimators read `auto`. Compiling and planning with example
inputs resolves them. The caption lists the score-function terms of the surrogate of **Corollary 1**,

$$L = \sum_{w} \log p(w \mid \mathrm{DEPS}_w)\,\hat Q_w + \sum_{c} c, \qquad \hat Q_w = \sum_{c \succ w} c,$$

here a single term for `z` multiplied by the cost `f` downstream of it. Because `x` is pathwise,
θ reaches `z`'s distribution through a differentiable path, so DEPS_z = {θ, x}."""),
    ("code", r"""est = scg.compile(g)
inputs = {"theta": 0.3}
display(SVG(render.to_svg(g, compiled=est, inputs=inputs)))
render.score_terms(est, inputs)"""),
    ("md", r"""## 2. The gradient against the exact one

`scg.testing.exact_grad` computes ∇E[f] exactly: it enumerates `z` and integrates `x` by Gauss–Hermite
quadrature, then differentiates that with `jax.grad`. The estimator is unbiased (Theorem 1 and
Corollary 1), so the mean of many independent estimates must agree with it up to Monte Carlo error;
`testing.z_test` checks that at 5 standard errors."""),
    ("code", r"""exact = testing.exact_grad(g, inputs)
one = est.grad(inputs, jax.random.key(0), num_samples=1000)
draws = est.grad_samples(inputs, jax.random.key(1), num_replicates=20_000)
result = testing.z_test(draws, exact)
print(f"exact gradient            {float(exact['theta']):+.4f}")
print(f"one estimate, 1000 samples {float(one['theta']):+.4f}")
print(result)
assert result.passed"""),
    ("md", r"""## 3. One node, three estimators

Take `x ~ N(θ, 1)` with cost `f = (x − 2)²`, so E[f] = (θ − 2)² + 1 and ∇_θ E[f] = 2(θ − 2). Three unbiased
estimators of it:

* **score function** (Eq. 36): f(x) ∇_θ log p(x; θ) = (x − 2)² (x − θ);
* **pathwise** (reparameterise x = θ + ε): ∂f/∂x = 2(x − 2);
* **score function with a baseline** (Theorem 2): (f(x) − b) ∇_θ log p(x; θ), unbiased whenever b does
  not depend on x. `baselines.LeaveOneOut()` uses, for each of the N samples of one call, the mean cost
  of the *other* N − 1 samples, which are independent of it.

Each estimate below averages N = 8 samples; we draw 20 000 independent estimates of each kind."""),
    ("code", r"""def one_node(**kw):
    h = scg.Graph("one_node")
    t = h.input("theta")
    x = h.stochastic("x", lambda t: dist.Normal(t, 1.0), t, **kw)
    h.cost("f", lambda x: (x - 2.0) ** 2, x)
    return h


variants = {
    "score": one_node(estimator="score"),
    "pathwise": one_node(estimator="pathwise"),
    "score + leave-one-out": one_node(estimator="score", baseline=baselines.LeaveOneOut()),
}
point, N, R = {"theta": 0.0}, 8, 20_000
exact1 = testing.exact_grad(variants["score"], point)
samples, results = {}, {}
for i, (name, h) in enumerate(variants.items()):
    samples[name] = np.asarray(scg.compile(h).grad_samples(point, jax.random.key(10 + i), num_replicates=R, num_samples=N)["theta"])
    results[name] = testing.z_test({"theta": samples[name]}, exact1)

print(f"exact: {float(exact1['theta']):+.3f}")
print(f"{'estimator':24s} {'mean':>8s} {'stderr':>8s} {'|z|':>6s} {'var per sample':>15s}")
for name, s in samples.items():
    r = results[name]
    print(f"{name:24s} {r.mean[0]:+8.3f} {r.stderr[0]:8.4f} {r.max_abs_z:6.2f} {N * s.var():15.2f}")
    assert r.passed, name"""),
    ("md", r"""All three are unbiased (their z-tests pass) but their variances differ a lot. At θ = 0 the per-sample
variance of the score-function estimator is E[(x−2)⁴x²] − 16 = 87 and that of the pathwise one
4 Var(x) = 4. The baseline b ≈ E[f] = 5 removes the part of the score function's variance that came from
the mean of f multiplying the zero-mean score (x − θ): what is left, E[(f − 5)²x²] − 16 = 42 (plus a little
for estimating b from 7 samples), is due to f varying with x, which no baseline can remove. The pathwise
estimator uses ∂f/∂x directly and is twenty times better here; the score function is what we have when
there is no path through the sample (a discrete `z`, a simulator)."""),
    ("code", r"""fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.5))
names = list(samples)
bars = ax0.bar(names, [N * samples[n].var() for n in names], color=["#b35900", "#1a7a1a", "#3366aa"])
ax0.bar_label(bars, fmt="%.1f")
ax0.set_ylabel("variance per sample")
ax0.set_title("gradient variance at θ = 0")
bins = np.linspace(-16, 4, 81)
for n, c in zip(names, ["#b35900", "#1a7a1a", "#3366aa"]):
    ax1.hist(samples[n], bins=bins, histtype="step", color=c, label=n, density=True)
ax1.axvline(float(exact1["theta"]), color="k", ls="--", label="exact")
ax1.set_xlabel(f"estimate of ∇θ E[f] (mean of N = {N} samples)")
ax1.legend(fontsize=8)
fig.tight_layout()
plt.show()"""),
    ("md", r"""### A baseline that breaks Theorem 2

Theorem 2 requires the baseline of `w` to depend only on nodes that `w` does not influence.
`baselines.BatchMean()` subtracts the mean over *all* N samples, including the sample itself, so it
is correlated with that sample's score: the score term shrinks by a factor 1 − 1/N and the estimate is
biased. The same z-test detects it."""),
    ("code", r"""bad = scg.compile(one_node(estimator="score", baseline=baselines.BatchMean()))
bad_draws = bad.grad_samples(point, jax.random.key(20), num_replicates=R, num_samples=N)
bad_result = testing.z_test(bad_draws, exact1)
print(bad_result)
print(f"expected mean (1 - 1/N) * exact = {(1 - 1 / N) * float(exact1['theta']):+.3f}")
assert not bad_result.passed
print(f"notebook ran in {time.time() - t_start:.1f} s")"""),
]


if __name__ == "__main__":
    write(CELLS, NAME)
