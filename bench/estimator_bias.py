"""Bias and variance of the Gumbel-softmax and straight-through Gumbel estimators against the temperature τ.

Gumbel-softmax (Jang et al. 2017, Eq. 2; Maddison et al. 2017, binary Concrete) is
pathwise through a relaxed sample: unbiased for ``∇ E[f(y_τ)]``, so its bias for
``∇ E[f(z)]`` should vanish as ``τ → 0`` while its variance grows (about ``1/τ``).
Straight-through Gumbel (Jang et al. §2.2) evaluates ``f`` at the exact draw and
differentiates the relaxation: its bias need not vanish. Two graphs, nonlinear
costs (a cubic term, so that straight-through's τ → 0 limit is not exact: for a
cost of degree ≤ 2 in each Bernoulli element it is):

- ``bernoulli``: ``z ~ Bernoulli(σ(φ))``, D = 4, ``f = (w·z − 0.7)² + 0.3 (w·z)³``;
- ``categorical``: ``a ~ softmax(θ)``, K = 5, ``f = (v·e_a − 0.7)² + 0.3 (v·e_a)³``
  (``e_a`` the one-hot; the estimators feed the relaxed vector in its place).

For each τ in {2, 1, 0.5, 0.25, 0.1, 0.05, 0.02}: ``N`` one-sample gradient
estimates (``grad_samples``), the relative bias ``‖mean − ∇‖ / ‖∇‖`` with its
standard error (delta method), the noise floor ``‖stderr‖ / ‖∇‖`` (the relative
bias cannot be resolved below it), a debiased estimate
``sqrt(max(0, ‖mean − ∇‖² − Σ stderr²)) / ‖∇‖``, the max |z| of the per-component
z-test, and the trace of the per-sample covariance ``Σ_i Var ĝ_i`` with its
standard error. ``∇`` is exact (``scg.testing.exact_grad``, enumeration); the
unbiased score function's variance is given for reference.

Usage::

    python bench/estimator_bias.py            # N = 100k: 35 s on 2 shared cores (compile-bound)
    python bench/estimator_bias.py --quick    # N = 5k, τ in {1, 0.1}: a smoke run, about 10 s
    python bench/estimator_bias.py --quick --out /tmp/eb.json   # without touching the committed results

Writes ``bench/results/estimator_bias.json`` and ``bench/results/estimator_bias.png``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import environment, write_json_atomic  # noqa: E402

import scg  # noqa: E402
from scg import dist, testing  # noqa: E402
from scg.estimators.gumbel_softmax import gumbel_softmax  # noqa: E402
from scg.estimators.straight_through import straight_through  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TEMPERATURES = (2.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.02)
QUICK_TEMPERATURES = (1.0, 0.1)
ESTIMATORS = {"gumbel_softmax": gumbel_softmax, "straight_through": straight_through}

W, PHI = jnp.array([2.0, -1.5, 1.0, 0.8]), jnp.array([0.3, -0.5, 1.0, -1.2])
V, THETA = jnp.array([1.5, -1.0, 0.5, 2.0, -0.5]), jnp.array([0.2, -0.4, 0.6, -0.1, 0.3])


def cost(s):
    return (s - 0.7) ** 2 + 0.3 * s**3


def bernoulli(estimator) -> scg.Graph:
    g = scg.Graph("bernoulli")
    z = g.stochastic("z", lambda p: dist.Bernoulli(logits=p), g.input("phi"), estimator=estimator)
    g.cost("f", lambda z: cost(jnp.dot(W, z)), z)
    return g


def categorical(estimator) -> scg.Graph:
    g = scg.Graph("categorical")
    a = g.stochastic("a", lambda t: dist.Categorical(logits=t), g.input("theta"), estimator=estimator)
    one_hot = lambda a: jax.nn.one_hot(a, V.shape[0]) if jnp.ndim(a) == 0 else a  # an index, or a (relaxed) one-hot
    g.cost("f", lambda a: cost(jnp.dot(V, one_hot(a))), a)
    return g


GRAPHS = {"bernoulli": (bernoulli, {"phi": PHI}), "categorical": (categorical, {"theta": THETA})}


def measure(samples, exact: np.ndarray) -> dict:
    """Relative bias (± stderr), noise floor, debiased bias, max |z|, and the variance trace (± stderr)."""
    d = np.concatenate([np.asarray(x, np.float64).reshape(len(x), -1) for x in jax.tree_util.tree_leaves(samples)], 1)
    n, scale = d.shape[0], np.linalg.norm(exact)
    mean = d.mean(0)
    se = d.std(0, ddof=1) / np.sqrt(n)
    b = mean - exact
    norm = np.linalg.norm(b)
    q = np.sum((d - mean) ** 2, axis=1)  # per-replicate squared deviation: its mean is the variance trace
    return {
        "rel_bias": float(norm / scale),
        "rel_bias_se": float(np.linalg.norm(b * se) / norm / scale),
        "rel_noise_floor": float(np.linalg.norm(se) / scale),
        "rel_bias_debiased": float(np.sqrt(max(0.0, norm**2 - np.sum(se**2))) / scale),
        "max_abs_z": float(np.max(np.abs(b / se))),
        "var_trace": float(q.mean() * n / (n - 1)),
        "var_trace_se": float(q.std(ddof=1) / np.sqrt(n)),
    }


def run(replicates: int, seed: int, temperatures=TEMPERATURES) -> dict:
    out = {}
    for graph, (build, inputs) in GRAPHS.items():
        exact_tree = testing.exact_grad(build("score"), inputs)
        exact = np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree_util.tree_leaves(exact_tree)])
        score = scg.compile(build("score")).grad_samples(inputs, jax.random.key(seed), num_replicates=replicates)
        rows = {"exact_grad": exact.tolist(), "exact_grad_norm": float(np.linalg.norm(exact)),
                "score": measure(score, exact)}
        for name, factory in ESTIMATORS.items():
            rows[name] = {}
            for i, tau in enumerate(temperatures):
                est = scg.compile(build(factory(tau)))
                samples = est.grad_samples(inputs, jax.random.key(seed + 1 + i), num_replicates=replicates)
                rows[name][str(tau)] = measure(samples, exact)
        out[graph] = rows
    return out


def plot(path: Path, results: dict, temperatures=TEMPERATURES) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = np.asarray(temperatures)
    fig, (ax_b, ax_v) = plt.subplots(1, 2, figsize=(12, 4.5))
    for graph, style in (("bernoulli", "-o"), ("categorical", "--s")):
        rows = results[graph]
        for name, color in (("gumbel_softmax", "C0"), ("straight_through", "C1")):
            r = [rows[name][str(t)] for t in temperatures]
            ax_b.errorbar(taus, [x["rel_bias"] for x in r], yerr=[x["rel_bias_se"] for x in r], fmt=style, color=color,
                          label=f"{name}, {graph}", capsize=2)
            ax_b.plot(taus, [x["rel_noise_floor"] for x in r], ":", color=color, lw=0.8)
            ax_v.plot(taus, [x["var_trace"] for x in r], style, color=color, label=f"{name}, {graph}")
        ax_v.axhline(rows["score"]["var_trace"], color="k" if graph == "bernoulli" else "grey",
                     ls=style[:-1], lw=1, label=f"score (unbiased), {graph}")
    ax_b.set(xscale="log", yscale="log", xlabel="temperature τ", ylabel="‖E[ĝ] − ∇‖ / ‖∇‖",
             title="relative bias (dotted: noise floor ‖stderr‖/‖∇‖)")
    ax_v.set(xscale="log", yscale="log", xlabel="temperature τ", ylabel="tr Cov[ĝ] per sample", title="variance")
    for ax in (ax_b, ax_v):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5k replicates, τ in {1, 0.1} (about 10 s)")
    parser.add_argument("--replicates", type=int, default=None, help="replicates per (graph, estimator, τ); default 100k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "estimator_bias.json"), help="output JSON; the PNG goes beside it")
    args = parser.parse_args(argv)
    replicates = args.replicates or (5_000 if args.quick else 100_000)
    temperatures = QUICK_TEMPERATURES if args.quick else TEMPERATURES
    env_info = environment()
    t0 = time.perf_counter()
    results = run(replicates, args.seed, temperatures)
    wall = time.perf_counter() - t0
    result = {
        "benchmark": "estimator_bias", "quick": args.quick, "environment": env_info, "wall_s": round(wall, 2),
        "config": {"replicates": replicates, "num_samples": 1, "seed": args.seed, "temperatures": list(temperatures),
                   "bernoulli": {"phi": PHI.tolist(), "w": W.tolist(), "cost": "(w.z - 0.7)^2 + 0.3 (w.z)^3"},
                   "categorical": {"theta": THETA.tolist(), "v": V.tolist(),
                                   "cost": "(v.e_a - 0.7)^2 + 0.3 (v.e_a)^3"}},
        "results": results,
    }
    out = Path(args.out)
    write_json_atomic(str(out), result)
    plot(out.with_suffix(".png"), results, temperatures)
    for graph, rows in results.items():
        print(f"{graph}: ‖∇‖ = {rows['exact_grad_norm']:.4f}, score variance trace {rows['score']['var_trace']:.4g}, "
              f"score max|z| {rows['score']['max_abs_z']:.2f}")
        for name in ESTIMATORS:
            for tau in temperatures:
                r = rows[name][str(tau)]
                print(f"  {name:17s} τ={tau:<5} rel bias {r['rel_bias']:.4f} ± {r['rel_bias_se']:.4f} "
                      f"(floor {r['rel_noise_floor']:.4f}, debiased {r['rel_bias_debiased']:.4f}, max|z| {r['max_abs_z']:6.1f})  "
                      f"var trace {r['var_trace']:.4g} ± {r['var_trace_se']:.2g}")
    print(f"wrote {out} and {out.with_suffix('.png')} in {wall:.1f} s")
    return result


if __name__ == "__main__":
    main()
