"""How far is RPG's Algorithm 1 from the gradients it is said to estimate?

Levy & Ermon (2018) call the estimator of Theorem 3 / Eq. 8 unbiased for "the
policy gradient of the relaxed problem" (Eq. 5), and Algorithm 1 evaluates it
along sampled *real* trajectories ``x_{t+1} = f(x_t, a_t)``. On the toy of
``tests/scg/test_relaxed.py`` (2-d state, 3 actions, 5 steps, softmax policy,
quadratic terminal cost) this script measures, with many replicates, the mean
of four estimators against two exact gradients:

- ``relaxed``: ``∇ r(x̄_T)`` through the exact relaxed recursion (Eq. 5), plain JAX;
- ``real``: ``∇ E[r(x_T)]`` of the real stochastic system, by enumerating all
  ``3**5`` action sequences.

Estimators: ``rpg_exact`` (Eq. 8 along ``x̄``, ``exact=True``: unbiased for
``relaxed``, the check the tests assert), ``alg1_f`` (``exact=False``, the score
multiplies ``f(x_t, a_t)`` as in Eq. 8), ``alg1_delta`` (``exact=False``, the
score multiplies ``f̂_t = x_{t+1} - x_t`` as written in Algorithm 1), and
``reinforce`` (plain score function on the real system: a sanity check of the
``real`` reference). Each row gives per-component z-scores
``(mean - exact)/stderr``, the largest |z|, and the relative error
``|mean - exact| / |exact|`` (Euclidean norms over all parameters). Settings:
the toy as in the tests, with affine dynamics (no ``tanh``), with a policy that
ignores the state (``W = 0``), and with the policy's logits scaled by 4 (close
to deterministic, where the relaxation meets the real system).

Usage::

    python bench/rpg_algorithm1_gap.py     # writes bench/results/rpg_gap.json
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere without installing

import scg  # noqa: E402
from scg import testing  # noqa: E402
from tests.scg.test_relaxed import (  # noqa: E402
    A,
    B,
    PARAMS,
    T,
    build_toy,
    dynamics,
    policy,
    real_cost,
    relaxed_cost,
    terminal_cost,
)

REPLICATES = 200 * 1024


def affine(x, a):
    return A @ x + B[a]


def reinforce_graph(f) -> scg.Graph:
    """The real system with score-function actions: ``E[r(x_T)]``'s gradient, unbiased (Schulman 2016, Eq. 36)."""
    g = scg.Graph("rpg_real")
    x, W, b = g.input("x0"), g.input("W"), g.input("b")
    for t in range(T):
        a = g.stochastic(f"a{t}", policy, x, W, b, estimator="score")
        x = g.deterministic(f"x{t + 1}", f, x, a)
    g.cost("r", terminal_cost, x)
    return g


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.asarray(tree[k], np.float64).reshape(-1) for k in sorted(tree)])


def compare(draws, exact) -> dict:
    result = testing.z_test({k: draws[k] for k in sorted(draws)}, {k: exact[k] for k in sorted(exact)})
    mean, target = _flat({k: np.asarray(draws[k]).mean(0) for k in draws}), _flat(exact)
    return {
        "max_abs_z": round(result.max_abs_z, 2),
        "z": [round(float(z), 2) for z in result.z],
        "relative_error": round(float(np.linalg.norm(mean - target) / np.linalg.norm(target)), 4),
        "unbiased_at_5_sigma": result.passed,
    }


def run_setting(name: str, params: dict, f, key) -> dict:
    exact = {
        "relaxed": jax.jit(jax.grad(lambda p: relaxed_cost(p, f)))(params),
        "real": jax.jit(jax.grad(lambda p: real_cost(p, f)))(params),
    }
    graphs = {
        "rpg_exact": build_toy(exact=True, f=f),
        "alg1_f": build_toy(exact=False, f=f),
        "alg1_delta": build_toy(exact=False, delta=True, f=f),
        "reinforce": reinforce_graph(f),
    }
    out = {
        "relaxed_grad": _flat(exact["relaxed"]).round(5).tolist(),
        "real_grad": _flat(exact["real"]).round(5).tolist(),
        "relaxed_vs_real_relative_difference": round(
            float(np.linalg.norm(_flat(exact["relaxed"]) - _flat(exact["real"])) / np.linalg.norm(_flat(exact["real"]))), 4
        ),
        "estimators": {},
    }
    for i, (est_name, g) in enumerate(graphs.items()):
        draws = scg.compile(g).grad_samples(params, jax.random.fold_in(key, i), num_replicates=REPLICATES)
        out["estimators"][est_name] = {
            "mean": _flat({k: np.asarray(v).mean(0) for k, v in draws.items()}).round(5).tolist(),
            "vs_relaxed": compare(draws, exact["relaxed"]),
            "vs_real": compare(draws, exact["real"]),
        }
    print(f"{name}: relaxed vs real differ by {out['relaxed_vs_real_relative_difference']:.3f} (relative)")
    for est_name, row in out["estimators"].items():
        r, e = row["vs_relaxed"], row["vs_real"]
        print(
            f"  {est_name:11s} vs relaxed: max|z| {r['max_abs_z']:8.1f} rel.err {r['relative_error']:.3f}   "
            f"vs real: max|z| {e['max_abs_z']:8.1f} rel.err {e['relative_error']:.3f}"
        )
    return out


def main() -> None:
    start = time.time()
    key = jax.random.key(2018)
    settings = {
        "toy": (PARAMS, dynamics),
        "affine_dynamics": (PARAMS, affine),
        "state_independent_policy": ({**PARAMS, "W": jnp.zeros_like(PARAMS["W"])}, dynamics),
        "near_deterministic_policy": ({**PARAMS, "W": 4 * PARAMS["W"], "b": 4 * PARAMS["b"]}, dynamics),
    }
    results = {
        "description": __doc__.split("Usage::")[0].strip(),
        "parameter_order": "b (3), W (3x2 row-major), x0 (2)",
        "replicates": REPLICATES,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0]),
        "settings": {},
    }
    for i, (name, (params, f)) in enumerate(settings.items()):
        results["settings"][name] = run_setting(name, params, f, jax.random.fold_in(key, i))
    results["seconds"] = round(time.time() - start, 1)
    path = ROOT / "bench" / "results" / "rpg_gap.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(results, fh, indent=1)
    os.replace(tmp, path)
    print(f"wrote {path} in {results['seconds']} s")


if __name__ == "__main__":
    main()
