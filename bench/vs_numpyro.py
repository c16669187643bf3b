"""scg beside NumPyro on four ELBOs: bias, variance and time of the gradient (issue 17).

The same model and guide written twice, as an scg graph whose costs are the negative ELBO
``log q(z) - log p(x, z)`` and as a NumPyro ``model``/``guide`` pair, differentiated with respect to
the guide's parameters:

- ``bernoulli_normal``: ``z ~ q = Bernoulli(σ(φ))`` (4 units), prior ``Bernoulli(0.3)``, ``x ~ N(w·z, 1)``;
- ``sbn``: a sigmoid belief net, guide ``q(h1) q(h2 | h1)`` (3 and 2 Bernoulli units, ``h2``'s logits
  ``V h1 + c``), model ``p(h2) p(h1 | h2) p(x | h1)`` with 6 binary pixels;
- ``normal``: a reparameterised ``z ~ N(μ, exp(ρ)²)`` (2 units), prior ``N(0, 1)``, ``x ~ N(z, 1)``, near the
  posterior (μ 0.2 off its mean, σ 0.6 where the posterior's is 0.71);
- ``walk``: a 20-step random walk ``s_{t+1} = s_t + 2 a_t - 1``, ``a_t ~ Bernoulli(σ(θ_t))``, observed
  ``x_t ~ N(s_{t+1}, 2²)``: a :class:`scg.Temporal` in scg, ``numpyro.contrib.control_flow.scan`` in NumPyro.

NumPyro's estimator is ``TraceGraph_ELBO`` (score-function terms with its dependency tracking) for the
discrete models and ``Trace_ELBO`` for ``normal``. scg's variants: ``naive`` (``log q`` as a plain cost,
``g.cost(..., scg.dist_of(z), z)``, which keeps the mean-zero score ``∇φ log q(z; φ)``), ``log_prob_cost``
(``g.log_prob_cost``, which drops it, as TraceGraph_ELBO does for a discrete site), and for score-function
nodes ``log_prob_cost + leave_one_out`` (``scg.baselines.LeaveOneOut()`` on every such node).

Reported per model: the exact gradient (enumeration through ``scg.testing.exact_grad``, or closed form
for ``normal`` and ``walk``); per estimator, ``R`` independent estimates of ``PARTICLES`` particles each:
the z-scores of their mean against the exact gradient (``scg.testing.z_test``, Bonferroni threshold for
a 5σ family-wise false alarm), the per-component variance of one estimate and its trace, as a ratio of
NumPyro's; and the median time of one jitted gradient at 1, 64 and 1024 particles (``_util.interleaved``:
scg's ``log_prob_cost`` variant against NumPyro's, interleaved). For ``walk`` the estimates are also
z-tested against ``same_step_credit``, the gradient in which ``a_t`` is credited with its own step's terms
only: what NumPyro's estimate in the scan turns out to be unbiased for.

Usage::

    python bench/vs_numpyro.py            # R = 2000: about 3 minutes on 2 shared CPU cores
    python bench/vs_numpyro.py --quick    # R = 200, particles 1 and 64: a smoke run
    python bench/vs_numpyro.py --quick --out /tmp/vs.json   # without touching the committed results

Needs NumPyro (``pip install -e ".[numpyro]"``). Writes ``bench/results/vs_numpyro.json``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import environment, interleaved, timed, write_json_atomic  # noqa: E402

import scg  # noqa: E402
from scg import dist, testing  # noqa: E402

try:
    import numpyro  # noqa: E402
    import numpyro.distributions as nd  # noqa: E402
    from numpyro.contrib.control_flow import scan  # noqa: E402
    from numpyro.infer import Trace_ELBO, TraceGraph_ELBO  # noqa: E402
except ImportError as err:  # pragma: no cover - the optional extra
    raise SystemExit(f'NumPyro is not installed: pip install -e ".[numpyro]"  ({err})') from err

RESULTS = Path(__file__).resolve().parent / "results"
PARTICLES = 8  # particles per estimate in the bias and variance study (LeaveOneOut needs at least 2)
TIMING_PARTICLES = (1, 64, 1024)


class Case(NamedTuple):
    """One model: the guide's parameters, scg's graph per variant, NumPyro's pair, and the exact gradient."""

    params: dict  # guide parameters: scg's differentiated inputs and NumPyro's param sites, by the same names
    extra_inputs: dict  # scg inputs that are not parameters (a Temporal's initial carried state)
    graphs: dict  # variant -> scg.Graph or scg.Temporal
    model: Callable
    guide: Callable
    elbo: type  # TraceGraph_ELBO or Trace_ELBO
    exact: Callable  # () -> the exact gradient, keyed like params
    other_targets: dict = {}  # name -> () -> another gradient to z-test against (what a biased estimator estimates)


def _log_q(g: scg.Graph, z, naive: bool) -> None:
    """The ELBO's ``+log q(z)`` cost: written plainly (``naive``), or as ``g.log_prob_cost``."""
    if naive:
        g.cost(f"log_q_{z.name}", lambda d, z: jnp.sum(d.log_prob(z)), scg.dist_of(z), z)
    else:
        g.log_prob_cost(f"log_q_{z.name}", z)


def _variants(build: Callable, discrete: bool) -> dict:
    out = {"naive": build(naive=True, baseline=None), "log_prob_cost": build(naive=False, baseline=None)}
    if discrete:
        out["log_prob_cost+leave_one_out"] = build(naive=False, baseline=scg.baselines.LeaveOneOut())
    return out


def _jit_exact(graph) -> Callable:
    return lambda params: jax.jit(lambda p: testing.exact_grad(graph, p))(params)


# -- bernoulli_normal -----------------------------------------------------------------------------
BN_PHI = jnp.array([0.3, -0.5, 1.0, -1.2])
BN_PRIOR = jnp.full(4, jnp.log(0.3) - jnp.log(0.7))
BN_W, BN_X = jnp.array([1.0, -0.5, 2.0, 0.8]), 1.5


def bernoulli_normal() -> Case:
    def build(naive, baseline):
        g = scg.Graph("bernoulli_normal")
        z = g.stochastic("z", lambda p: dist.Bernoulli(logits=p), g.input("phi"), baseline=baseline)
        _log_q(g, z, naive)
        g.cost("log_p", lambda z: -(jnp.sum(dist.Bernoulli(logits=BN_PRIOR).log_prob(z)) + dist.Normal(BN_W @ z, 1.0).log_prob(BN_X)), z)
        return g

    def guide():
        numpyro.sample("z", nd.Bernoulli(logits=numpyro.param("phi", BN_PHI)).to_event(1))

    def model():
        z = numpyro.sample("z", nd.Bernoulli(logits=BN_PRIOR).to_event(1))
        numpyro.sample("x", nd.Normal(BN_W @ z, 1.0), obs=BN_X)

    graphs = _variants(build, discrete=True)
    return Case({"phi": BN_PHI}, {}, graphs, model, guide, TraceGraph_ELBO, lambda: _jit_exact(graphs["naive"])({"phi": BN_PHI}))


# -- sbn ------------------------------------------------------------------------------------------
_rng = np.random.default_rng(17)
SBN_A, SBN_A0 = jnp.asarray(_rng.normal(size=(3, 2)), jnp.float32), jnp.asarray(_rng.normal(size=3) * 0.5, jnp.float32)
SBN_B, SBN_B0 = jnp.asarray(_rng.normal(size=(6, 3)), jnp.float32), jnp.asarray(_rng.normal(size=6) * 0.5, jnp.float32)
SBN_X = jnp.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
SBN_PARAMS = {"phi1": jnp.array([0.2, -0.4, 0.6]), "v": jnp.asarray(_rng.normal(size=(2, 3)) * 0.5, jnp.float32),
              "c": jnp.array([0.1, -0.3])}


def sbn() -> Case:
    def build(naive, baseline):
        g = scg.Graph("sbn")
        phi1, v, c = g.input("phi1"), g.input("v"), g.input("c")
        h1 = g.stochastic("h1", lambda p: dist.Bernoulli(logits=p), phi1, baseline=baseline)
        h2 = g.stochastic("h2", lambda v, c, h1: dist.Bernoulli(logits=v @ h1 + c), v, c, h1, baseline=baseline)
        _log_q(g, h1, naive)
        _log_q(g, h2, naive)
        g.cost("log_p_h2", lambda h2: -jnp.sum(dist.Bernoulli(logits=jnp.zeros(2)).log_prob(h2)), h2)
        g.cost("log_p_h1", lambda h1, h2: -jnp.sum(dist.Bernoulli(logits=SBN_A @ h2 + SBN_A0).log_prob(h1)), h1, h2)
        g.cost("log_p_x", lambda h1: -jnp.sum(dist.Bernoulli(logits=SBN_B @ h1 + SBN_B0).log_prob(SBN_X)), h1)
        return g

    def guide():
        h1 = numpyro.sample("h1", nd.Bernoulli(logits=numpyro.param("phi1", SBN_PARAMS["phi1"])).to_event(1))
        logits = numpyro.param("v", SBN_PARAMS["v"]) @ h1 + numpyro.param("c", SBN_PARAMS["c"])
        numpyro.sample("h2", nd.Bernoulli(logits=logits).to_event(1))

    def model():
        h2 = numpyro.sample("h2", nd.Bernoulli(logits=jnp.zeros(2)).to_event(1))
        h1 = numpyro.sample("h1", nd.Bernoulli(logits=SBN_A @ h2 + SBN_A0).to_event(1))
        numpyro.sample("x", nd.Bernoulli(logits=SBN_B @ h1 + SBN_B0).to_event(1), obs=SBN_X)

    graphs = _variants(build, discrete=True)
    return Case(dict(SBN_PARAMS), {}, graphs, model, guide, TraceGraph_ELBO, lambda: _jit_exact(graphs["naive"])(SBN_PARAMS))


# -- normal ---------------------------------------------------------------------------------------
N_X = jnp.array([1.3, -0.4])  # x ~ N(z, 1), z ~ N(0, 1): the posterior is N(x / 2, 1/2)
N_PARAMS = {"mu": N_X / 2 + 0.2, "rho": jnp.log(jnp.full(2, 0.6))}


def normal() -> Case:
    def build(naive, baseline):
        g = scg.Graph("normal")
        z = g.stochastic("z", lambda m, r: dist.Normal(m, jnp.exp(r)), g.input("mu"), g.input("rho"))
        _log_q(g, z, naive)
        g.cost("log_p", lambda z: -jnp.sum(dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(z, 1.0).log_prob(N_X)), z)
        return g

    def guide():
        mu, rho = numpyro.param("mu", N_PARAMS["mu"]), numpyro.param("rho", N_PARAMS["rho"])
        numpyro.sample("z", nd.Normal(mu, jnp.exp(rho)).to_event(1))

    def model():
        z = numpyro.sample("z", nd.Normal(0.0, 1.0).expand([2]).to_event(1))
        numpyro.sample("x", nd.Normal(z, 1.0).to_event(1), obs=N_X)

    def exact():
        """``-ELBO = Σ -ρ + (μ² + s²)/2 + ((x - μ)² + s²)/2 + const``, ``s = exp(ρ)``."""
        mu, s2 = N_PARAMS["mu"], jnp.exp(2 * N_PARAMS["rho"])
        return {"mu": mu - (N_X - mu), "rho": -1.0 + 2 * s2}

    return Case(dict(N_PARAMS), {}, _variants(build, discrete=False), model, guide, Trace_ELBO, exact)


# -- walk -----------------------------------------------------------------------------------------
T, SIGMA = 20, 2.0
W_X = jnp.linspace(0.5, 4.0, T)  # observations drifting upwards
W_THETA = jnp.asarray(np.random.default_rng(3).normal(size=T) * 0.5, jnp.float32)


def walk() -> Case:
    def build(naive, baseline):
        step = scg.Graph("walk")
        theta = step.input("theta")
        s, t = step.input("s", differentiable=False), step.input("t", differentiable=False)
        a = step.stochastic("a", lambda th, t: dist.Bernoulli(logits=th[t]), theta, t, baseline=baseline)
        s1 = step.deterministic("s_next", lambda s, a: s + 2 * a - 1, s, a)
        step.deterministic("t_next", lambda t: t + 1, t)
        _log_q(step, a, naive)
        step.cost("log_p", lambda a, s1, t: -(dist.Bernoulli(logits=0.0).log_prob(a) + dist.Normal(s1, SIGMA).log_prob(W_X[t])),
                  a, s1, t)
        return scg.Temporal(step, carry={"s": "s_next", "t": "t_next"}, horizon=T)

    def guide():
        def step(s, th):
            return s + 2 * numpyro.sample("a", nd.Bernoulli(logits=th)) - 1, None

        scan(step, 0.0, numpyro.param("theta", W_THETA))

    def model():
        def step(s, x_t):
            s = s + 2 * numpyro.sample("a", nd.Bernoulli(logits=0.0)) - 1
            numpyro.sample("x", nd.Normal(s, SIGMA), obs=x_t)
            return s, None

        scan(step, 0.0, W_X)

    def exact():
        """``-ELBO = Σ_t KL(q_t ‖ Bernoulli(½)) + ((x_t - m_t)² + v_t) / (2σ²) + const``, with the walk's mean
        ``m_t = Σ_{u≤t} (2 p_u - 1)`` and variance ``v_t = Σ_{u≤t} 4 p_u (1 - p_u)`` under the guide."""
        def neg_elbo(theta):
            p = jax.nn.sigmoid(theta)
            kl = p * jnp.log(2 * p) + (1 - p) * jnp.log(2 * (1 - p))
            m, v = jnp.cumsum(2 * p - 1), jnp.cumsum(4 * p * (1 - p))
            return jnp.sum(kl) + jnp.sum(((W_X - m) ** 2 + v) / (2 * SIGMA**2))

        return {"theta": jax.grad(neg_elbo)(W_THETA)}

    def same_step_credit():
        """The gradient when ``a_t``'s score is credited with its own step's terms only (its KL and ``x_t``), not
        with the later observations its step feeds through the carried ``s``: ``∂θ_t`` of
        ``KL_t + ((x_t - m_t)² + v_t) / (2σ²)``, the other steps' probabilities held."""
        def credited(theta):
            p = jax.nn.sigmoid(theta)
            kl = p * jnp.log(2 * p) + (1 - p) * jnp.log(2 * (1 - p))
            own = jnp.eye(T, dtype=bool)  # row t: step t's p differentiated, the others' held
            pt = jnp.where(own, p, jax.lax.stop_gradient(p))  # [t, u]
            upto = jnp.tril(jnp.ones((T, T)))  # [t, u]: u <= t
            m, v = jnp.sum(upto * (2 * pt - 1), 1), jnp.sum(upto * 4 * pt * (1 - pt), 1)
            return jnp.sum(kl) + jnp.sum(((W_X - m) ** 2 + v) / (2 * SIGMA**2))

        return {"theta": jax.grad(credited)(W_THETA)}

    extra = {"s": jnp.asarray(0.0), "t": jnp.asarray(0, jnp.int32)}
    return Case({"theta": W_THETA}, extra, _variants(build, discrete=True), model, guide, TraceGraph_ELBO, exact,
                {"same_step_credit": same_step_credit})


CASES = {"bernoulli_normal": bernoulli_normal, "sbn": sbn, "normal": normal, "walk": walk}


# -- measuring ------------------------------------------------------------------------------------
def numpyro_grad(case: Case, particles: int) -> Callable:
    """NumPyro's gradient of its loss (the negative ELBO) w.r.t. the guide's parameters: ``(params, key) -> grads``."""
    elbo = case.elbo(num_particles=particles)
    return jax.jit(jax.grad(lambda p, k: elbo.loss(k, p, case.model, case.guide)))


def scg_grad(case: Case, graph, particles: int) -> Callable:
    """scg's jitted gradient, ``(params, key) -> grads``, the extra inputs held."""
    inputs = {**case.params, **case.extra_inputs}
    fn = jax.jit(scg.compile(graph).grad_fn(inputs, num_samples=particles, wrt=tuple(case.params)))
    return lambda p, k: fn({**p, **case.extra_inputs}, k)


def replicates(grad: Callable, params: dict, key, num: int) -> dict:
    """``num`` independent estimates, stacked: ``lax.map`` over keys in batches of up to 250."""
    keys = jax.random.split(key, num)
    return jax.jit(lambda ks: jax.lax.map(lambda k: grad(params, k), ks, batch_size=min(num, 250)))(keys)


def summarise(draws: dict, exact: dict, names) -> dict:
    """z-test of the mean against ``exact`` (with the mean and its standard error); the per-component variance of
    one estimate and its trace. Components are flattened in the order of ``names``."""
    z = testing.z_test({n: draws[n] for n in names}, {n: exact[n] for n in names})
    d = np.concatenate([np.asarray(draws[n], np.float64).reshape(np.shape(draws[n])[0], -1) for n in names], axis=1)
    var = d.var(0, ddof=1)
    return {"max_abs_z": z.max_abs_z, "threshold": float(z.threshold), "passed": z.passed, "z": z.z.tolist(),
            "mean": z.mean.tolist(), "stderr": z.stderr.tolist(), "var": var.tolist(), "var_trace": float(var.sum())}


def measure(case: Case, num: int, timing_particles, max_seconds: float, seed: int) -> dict:
    names = tuple(case.params)
    exact = case.exact()
    out = {"exact_grad": np.concatenate([np.asarray(exact[n], np.float64).reshape(-1) for n in names]).tolist(),
           "numpyro_elbo": case.elbo.__name__, "particles_per_estimate": PARTICLES, "replicates": num, "estimators": {}}
    key = jax.random.key(seed)
    grads = {f"scg:{v}": scg_grad(case, g, PARTICLES) for v, g in case.graphs.items()}
    grads["numpyro"] = numpyro_grad(case, PARTICLES)
    others = {name: target() for name, target in case.other_targets.items()}
    out["other_targets"] = {name: {"grad": np.concatenate([np.asarray(t[n], np.float64).reshape(-1) for n in names]).tolist(),
                                   "max_abs_z": {}} for name, t in others.items()}
    for i, (label, grad) in enumerate(grads.items()):
        draws = replicates(grad, case.params, jax.random.fold_in(key, i), num)
        out["estimators"][label] = summarise(draws, exact, names)
        for name, target in others.items():
            out["other_targets"][name]["max_abs_z"][label] = summarise(draws, target, names)["max_abs_z"]
    ref = out["estimators"]["numpyro"]["var_trace"]
    for row in out["estimators"].values():
        row["var_trace_over_numpyro"] = row["var_trace"] / ref
    out["timing"] = {}
    for n in timing_particles:
        fns = {"scg": scg_grad(case, case.graphs["log_prob_cost"], n), "numpyro": numpyro_grad(case, n)}
        first = {k: timed(f, case.params, key)[1] for k, f in fns.items()}  # compile and first call
        timing = interleaved({k: (lambda f: lambda: f(case.params, key))(f) for k, f in fns.items()}, (),
                             reps=200, max_seconds=max_seconds)
        out["timing"][str(n)] = {**{k: {**timing[k], "first_call_s": first[k]} for k in fns},
                                 "scg_over_numpyro": timing["scg"]["median_s"] / timing["numpyro"]["median_s"]}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 replicates, particles 1 and 64")
    parser.add_argument("--replicates", type=int, default=None, help="estimates per estimator; default 2000")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "vs_numpyro.json"))
    args = parser.parse_args(argv)
    num = args.replicates or (200 if args.quick else 2000)
    timing_particles = TIMING_PARTICLES[:2] if args.quick else TIMING_PARTICLES
    env_info = environment()
    t0 = time.perf_counter()
    results = {}
    for name in args.cases:
        t1 = time.perf_counter()
        results[name] = measure(CASES[name](), num, timing_particles, 0.5 if args.quick else 2.0, args.seed)
        results[name]["wall_s"] = round(time.perf_counter() - t1, 2)
        print(report_lines(name, results[name]))
    wall = time.perf_counter() - t0
    result = {"benchmark": "vs_numpyro", "quick": args.quick, "environment": env_info, "wall_s": round(wall, 2),
              "config": {"replicates": num, "particles_per_estimate": PARTICLES, "timing_particles": list(timing_particles),
                         "seed": args.seed, "numpyro_version": numpyro.__version__,
                         "z_test": "scg.testing.z_test: Bonferroni threshold for a 5-sigma family-wise false alarm"},
              "results": results}
    write_json_atomic(args.out, result)
    print(f"wrote {args.out} in {wall:.1f} s")
    return result


def report_lines(name: str, r: dict) -> str:
    lines = [f"{name} ({r['numpyro_elbo']}, {r['particles_per_estimate']} particles, {r['replicates']} estimates, "
             f"{r['wall_s']} s):"]
    for label, e in r["estimators"].items():
        lines.append(f"  {label:34s} max|z| {e['max_abs_z']:6.2f} (threshold {e['threshold']:.2f}, "
                     f"{'ok' if e['passed'] else 'BIASED'})  var trace {e['var_trace']:.4g} "
                     f"({e['var_trace_over_numpyro']:.2f}x NumPyro)")
    for name, t in r.get("other_targets", {}).items():
        zs = ", ".join(f"{k} {z:.2f}" for k, z in t["max_abs_z"].items())
        lines.append(f"  max|z| against {name}: {zs}")
    for n, t in r["timing"].items():
        lines.append(f"  {n:>5} particles: scg {t['scg']['median_s'] * 1e3:8.3f} ms, NumPyro {t['numpyro']['median_s'] * 1e3:8.3f} ms "
                     f"({t['scg_over_numpyro']:.2f}x)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
