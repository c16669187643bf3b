"""Training throughput of REINFORCE on CartPole: the compiled graph against hand-written JAX and an eager loop.

Part 1 (throughput). ``scg.algorithms.reinforce`` (the MDP graph of Figure 14
compiled by scg, Eq. 44) against :mod:`handwritten_reinforce` (the same
algorithm, networks, optimizers and sizes written by hand in JAX), each run as
``scg.algorithms.make_train`` runs it: one ``jit`` of a ``lax.scan`` over
iterations (rollout + policy step + value refit per iteration), one seed.
Before timing, the hand-written policy gradient and returns are checked equal
to the compiled graph's on the same trajectory (fed to the graph as
``observed`` values). Timings are interleaved medians (``_util.interleaved``);
compilation (``lower().compile()``) is timed apart. Environment steps per second
= ``num_envs × horizon × iterations / median seconds``. A breakdown times the
two halves of an iteration alone (rollout + gradient + returns; value refit),
and diagnostic variants of the compiled gradient locate any gap.

Part 2 (eager). :mod:`eager_reinforce`: gymnasium's CartPole stepped on the
host, a jitted policy call per step, jitted ``jax.grad`` per update; its steps
per second against part 1's, same process.

Part 3 (compile time vs horizon). For the REINFORCE MDP graph with horizon
10, 100 and 1,000: seconds in ``scg.compile``, planning, tracing
(``jit(grad_fn).lower``) and XLA compilation; the same for the flat,
unrolled graph (the compiler's general path) at 10 and 30 steps (100 steps
did not compile within 5 minutes in a trial, so it is left out).

Usage::

    python bench/bench_training.py           # ~9 min on 2 CPU cores; writes bench/results/training.json
    python bench/bench_training.py --quick   # ~2 min smoke test (64 envs only, fewer repeats)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import gymnasium
import jax
import jax.numpy as jnp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scg  # noqa: E402
from scg.algorithms import common, make_train, reinforce  # noqa: E402
from scg.algorithms.mdp import Transition, actor_critic_graph, mdp_batch, simulated_transition  # noqa: E402
from scg.algorithms.networks import make_policy, make_value  # noqa: E402
from scg.envs.classic_control import CartPole  # noqa: E402
from scg.envs.wrappers import AutoReset  # noqa: E402

import _util  # noqa: E402
import eager_reinforce  # noqa: E402
import handwritten_reinforce as hw  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "training.json")
ENV = CartPole()
PARAMS = ENV.default_params
HORIZON = reinforce.ReinforceConfig().horizon


def log(*args):
    print(*args, flush=True)


# -- the two must compute the same thing ------------------------------------------------------------------
def check_same_gradient(num_envs: int = 16, horizon: int = 50, seed: int = 0) -> dict:
    """One hand-written rollout, fed to the compiled graph as observed data: same ∇θ and same returns."""
    config = reinforce.ReinforceConfig(num_envs=num_envs, horizon=horizon)
    mdp = common.compile_mdp(ENV, PARAMS, config)
    key = jax.random.key(seed)
    params = common.init_params(mdp, key)
    rollout0 = common.reset_envs(ENV, PARAMS, jax.random.fold_in(key, 1), num_envs)
    stepper = AutoReset(ENV)

    def step(carry, key_t):  # the hand-written rollout, also recording the env states the graph carries
        obs_t, state_t = carry
        k_act, k_env = jax.random.split(key_t)
        a_t = jax.random.categorical(k_act, hw.logits_fn(params["theta"], obs_t))
        ts = jax.vmap(stepper.step, (0, 0, 0, None))(jax.random.split(k_env, num_envs), state_t, a_t, PARAMS)
        return (ts.obs, ts.state), (obs_t, a_t, ts)

    keys = jax.random.split(jax.random.fold_in(key, 2), horizon)
    _, (obs, act, ts) = jax.lax.scan(step, (rollout0.obs, rollout0.state), keys)
    batch = hw.Batch(obs, act, ts.reward.astype(jnp.float32), ts.terminated, ts.truncated, ts.info["final_obs"])
    g_hw, ret_hw = hw.policy_grad(params["theta"], params["phi"], batch, config.discount)

    swap = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731  [T, N, ...] -> [N, T, ...]
    transition = jax.tree_util.tree_map(
        swap, Transition(ts.obs, ts.state, batch.reward, ts.terminated, ts.truncated, ts.info["final_obs"])
    )
    inputs, observed = common.mdp_inputs(params, rollout0)
    grads, values = mdp.grad_and_values(inputs, key, {**observed, "a": swap(act), "transition": transition})
    ret_scg = -mdp.compiled.cost_to_go(inputs, values)
    leaves = zip(jax.tree_util.tree_leaves(grads["theta"]), jax.tree_util.tree_leaves(g_hw))
    grad_err = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-12)) for a, b in leaves)
    ret_err = float(jnp.max(jnp.abs(ret_scg - swap(ret_hw))))
    ok = grad_err < 1e-4 and ret_err < 1e-3
    if not ok:
        raise AssertionError(f"hand-written and compiled REINFORCE disagree: grad rel err {grad_err}, returns err {ret_err}")
    return {"num_envs": num_envs, "horizon": horizon, "episode_ends": int((ts.terminated | ts.truncated).sum()),
            "max_rel_grad_err": grad_err, "max_abs_return_err": ret_err}


# -- part 1: throughput ------------------------------------------------------------------------------------
def throughput(num_envs: int, iterations: int, reps: int, max_seconds: float, value_epochs: int | None = None) -> dict:
    """Whole training iterations, compiled graph vs hand-written, interleaved; env steps per second.

    ``value_epochs=1`` leaves the policy gradient (rollout, score terms, returns) most of an iteration: the
    configuration in which a compiled gradient that ran backwards through the rollout's scan took 1.97x the
    hand-written time (issue 18); the default 20 epochs of value refit hide such a gap."""
    extra = {} if value_epochs is None else {"value_epochs": value_epochs}
    makers = {
        "scg": lambda c: make_train("reinforce", ENV, PARAMS, {**c, **extra}),
        "handwritten": lambda c: hw.make_train(ENV, PARAMS, {**c, **extra}),
    }
    return _util.training_throughput(makers, num_envs, HORIZON, iterations, reps, max_seconds)


def breakdown(num_envs: int, reps: int, max_seconds: float, diagnostics: bool) -> dict:
    """One iteration's two halves alone: (a) rollout + policy gradient + returns, (b) value refit."""
    config = reinforce.ReinforceConfig(num_envs=num_envs)
    mdp = common.compile_mdp(ENV, PARAMS, config)
    parts = hw.build(ENV, PARAMS, config.to_dict())
    key = jax.random.key(0)
    params = common.init_params(mdp, key)
    rollout0 = common.reset_envs(ENV, PARAMS, key, num_envs)
    inputs, observed = common.mdp_inputs(params, rollout0)

    def scg_pg(inputs, observed, key, grad_and_values=mdp.grad_and_values):
        grads, values = grad_and_values(inputs, key, observed)
        returns = -mdp.compiled.cost_to_go(inputs, values)
        return grads["theta"], returns, mdp_batch(values).obs, common.advance(rollout0, values)

    def hw_pg(inputs, observed, key):
        (obs, env_state), batch = parts.rollout(inputs["theta"], observed["obs"], observed["state"], key)
        grads, returns = hw.policy_grad(inputs["theta"], inputs["phi"], batch, config.discount)
        stats = hw.update_stats(hw.Stats(rollout0.stats.running, rollout0.stats.recent, rollout0.stats.count),
                                batch.reward, batch.terminated | batch.truncated)
        return grads, returns, batch.obs, (obs, env_state, stats)

    pg = {"scg": jax.jit(scg_pg), "handwritten": jax.jit(hw_pg)}
    if diagnostics:  # variants of the compiled estimator, to locate a gap
        example = {"theta": params["theta"], "phi": params["phi"], "obs": inputs["obs"], "state": inputs["state"]}
        only_theta = mdp.compiled.grad_fn(example, num_samples=num_envs, with_values=True, wrt=("theta",))
        grads_only = mdp.compiled.grad_fn(example, num_samples=num_envs, wrt=("theta",))
        pg["scg_wrt_theta_only"] = jax.jit(lambda i, o, k: scg_pg(i, o, k, only_theta))
        pg["scg_grad_without_values"] = jax.jit(lambda i, o, k: grads_only(i, k, o))
        pg["scg_sample_only"] = jax.jit(lambda i, o, k: mdp.compiled.sample(i, k, num_samples=num_envs, observed=o))

        def sample_then_rescore(i, o, k):  # the graph's rollout without gradient, then the hand-written batched ∇
            v = mdp.compiled.sample(i, k, num_samples=num_envs, observed=o)
            tr, sw = v["transition"], lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
            batch = hw.Batch(sw(v["obs"]), sw(v["a"]), sw(tr.reward.astype(jnp.float32)), sw(tr.terminated),
                             sw(tr.truncated), sw(tr.final_obs))
            return hw.policy_grad(i["theta"], i["phi"], batch, config.discount)

        pg["scg_sample_then_batched_rescore"] = jax.jit(sample_then_rescore)
        pg["handwritten_rollout_only"] = jax.jit(lambda i, o, k: parts.rollout(i["theta"], o["obs"], o["state"], k))
    compile_s = {}
    for name, f in pg.items():
        _, compile_s[name] = _util.timed(f, inputs, observed, key)
    pg_t = _util.interleaved(pg, (inputs, observed, key), reps=reps, warmup=1, max_seconds=max_seconds)

    opt = reinforce.optax.adam(config.value_lr)
    phi, opt_state = params["phi"], opt.init(params["phi"])
    obs = jax.random.normal(key, (num_envs, HORIZON, 4))
    targets = jax.random.normal(key, (num_envs, HORIZON))
    fit = {
        "scg": jax.jit(lambda p, s, o, t: common.fit_value(mdp.value, p, opt, s, o, t, config.value_epochs)),
        "handwritten": jax.jit(parts.fit_value),
    }
    for f in fit.values():
        _util.timed(f, phi, opt_state, obs, targets)
    fit_t = _util.interleaved(fit, (phi, opt_state, obs, targets), reps=reps, warmup=1, max_seconds=max_seconds)
    return {
        "num_envs": num_envs,
        "rollout_gradient_returns": {n: {**pg_t[n], "first_call_s": compile_s[n]} for n in pg},
        "ratio_rollout_gradient": pg_t["scg"]["median_s"] / pg_t["handwritten"]["median_s"],
        "value_refit": fit_t,
        "ratio_value_refit": fit_t["scg"]["median_s"] / fit_t["handwritten"]["median_s"],
    }


# -- part 2: eager ------------------------------------------------------------------------------------------
def eager(num_envs: int, iterations: int) -> dict:
    agent = eager_reinforce.EagerReinforce({"num_envs": num_envs}, seed=0)
    t0 = time.perf_counter()
    agent.iteration()  # compiles the jitted pieces
    first = time.perf_counter() - t0
    times = [_util.call_time(agent.iteration) for _ in range(iterations)]
    agent.close()
    s = _util.summary(times)
    return {"num_envs": num_envs, "horizon": HORIZON, "first_iteration_s": first, **s,
            "steps_per_s": num_envs * HORIZON / s["median_s"]}


# -- part 3: compile time vs horizon -------------------------------------------------------------------------
def unrolled_mdp_graph(policy, value, horizon: int) -> scg.Graph:
    """The REINFORCE MDP written as one flat graph of ``horizon`` copies of the step (the general path).

    Same nodes per step as :func:`scg.algorithms.mdp.actor_critic_graph` (baseline ``-V(obs_t)``, policy, simulated
    transition, cost), without episode flags, bootstrap or discount: for compile time only.
    """
    stepper = AutoReset(ENV)
    g = scg.Graph(f"mdp_unrolled_{horizon}")
    theta, phi = g.input("theta"), g.input("phi")
    obs, state = g.input("obs", differentiable=False), g.input("state", differentiable=False)
    for t in range(horizon):
        v = g.deterministic(f"v{t}", lambda phi, o: -value.apply(phi, o), phi, obs)
        a = g.stochastic(f"a{t}", policy.dist, theta, obs, estimator="score", baseline=v)
        tr = g.simulate(f"transition{t}", lambda k, s, a: stepper.step(k, s, a, PARAMS), state, a)
        g.cost(f"r{t}", lambda tr: -tr.reward.astype(jnp.float32), tr)
        obs = g.deterministic(f"obs{t + 1}", lambda tr: tr.obs, tr)
        state = g.deterministic(f"state{t + 1}", lambda tr: tr.state, tr)
    return g


def compile_time(graph_fn, num_samples: int = 8) -> dict:
    """Seconds in ``scg.compile``, planning, tracing and XLA compilation of the jitted gradient; then one run."""
    obs_space, act_space = ENV.observation_space(PARAMS), ENV.action_space(PARAMS)
    policy, value = make_policy(obs_space, act_space, (64, 64)), make_value(obs_space, (64, 64))
    key = jax.random.key(0)
    obs, state = ENV.reset(key, PARAMS)
    inputs = {"theta": policy.init(key), "phi": value.init(key), "obs": obs, "state": state}
    graph = graph_fn(policy, value)
    t0 = time.perf_counter()
    compiled = scg.compile(graph)
    t1 = time.perf_counter()
    compiled._plan(inputs)
    t2 = time.perf_counter()
    fn = jax.jit(compiled.grad_fn(inputs, num_samples=num_samples, wrt=("theta",)))
    lowered = fn.lower(inputs, key)
    t3 = time.perf_counter()
    exe = lowered.compile()
    t4 = time.perf_counter()
    _, run_s = _util.timed(exe, inputs, key)
    parts = {"analyse_s": t1 - t0, "plan_s": t2 - t1, "trace_s": t3 - t2, "xla_compile_s": t4 - t3}
    nodes = len(graph.step if isinstance(graph, scg.Temporal) else graph)
    return {**parts, "first_call_s": sum(parts.values()), "run_s": run_s, "nodes": nodes}


def compile_vs_horizon(horizons, flat_horizons) -> dict:
    out = {"temporal": [], "unrolled": []}
    for h in horizons:
        r = compile_time(lambda pi, v, h=h: actor_critic_graph(simulated_transition(ENV, PARAMS), pi, v, horizon=h))
        out["temporal"].append({"horizon": h, **r})
        log(f"  temporal T={h}: first call {r['first_call_s']:.2f}s (trace {r['trace_s']:.2f}, xla {r['xla_compile_s']:.2f})")
    for h in flat_horizons:
        r = compile_time(lambda pi, v, h=h: unrolled_mdp_graph(pi, v, h))
        out["unrolled"].append({"horizon": h, **r})
        log(f"  unrolled T={h}: first call {r['first_call_s']:.2f}s ({r['nodes']} nodes)")
    t = out["temporal"]
    out["temporal_first_call_ratio_longest_over_shortest"] = t[-1]["first_call_s"] / t[0]["first_call_s"]
    out["temporal_loglog_slope"] = _util.loglog_slope([r["horizon"] for r in t], [r["first_call_s"] for r in t])
    if len(out["unrolled"]) > 1:
        u = out["unrolled"]
        out["unrolled_loglog_slope"] = _util.loglog_slope([r["horizon"] for r in u], [r["first_call_s"] for r in u])
    return out


def summary(results: dict, iters: dict, wall_s: float) -> dict:
    """The headline numbers, keyed by number of environments."""
    by_n = lambda rows: {r["num_envs"]: r for r in rows}  # noqa: E731
    thr, brk, eag = by_n(results["throughput"]), by_n(results["breakdown"]), by_n(results["eager"])
    return {
        "steps_per_s": {
            str(n): {"scg": t["scg"]["steps_per_s"], "handwritten": t["handwritten"]["steps_per_s"],
                     "eager": eag[n]["steps_per_s"]}
            for n, t in thr.items()
        },
        "ratio_scg_over_handwritten_time": {str(n): t["ratio_scg_over_handwritten_time"] for n, t in thr.items()},
        "ratio_scg_over_handwritten_time_one_value_epoch": {
            str(r["num_envs"]): r["ratio_scg_over_handwritten_time"] for r in results["throughput_one_value_epoch"]},
        "ratio_rollout_gradient_scg_over_handwritten": {str(n): b["ratio_rollout_gradient"] for n, b in brk.items()},
        # how much of a compiled iteration is the value refit (the same code in all three versions)
        "value_refit_share_of_iteration": {
            str(n): brk[n]["value_refit"]["scg"]["median_s"] / (t["scg"]["median_s"] / iters[n]) for n, t in thr.items()
        },
        "speedup_scg_over_eager": {str(n): e["speedup_scg_over_eager"] for n, e in eag.items()},
        "compile_first_call_s_by_horizon": {
            str(r["horizon"]): r["first_call_s"] for r in results["compile_time"]["temporal"]
        },
        "wall_s": wall_s,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64 envs only, fewer repeats (smoke test, ~2 min)")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    quick = args.quick
    sizes = (64,) if quick else (64, 1024)
    # iterations per timed call, timed calls: keep each call >= ~1 s and the whole script < 10 min
    iters = {64: 3 if quick else 5, 1024: 1}
    reps = {64: 3 if quick else 9, 1024: 5}
    start = time.perf_counter()
    config = {
        "algorithm": "reinforce", "env": ENV.name, "seeds": 1, "horizon": HORIZON,
        "reinforce_config": {k: list(v) if isinstance(v, tuple) else v for k, v in reinforce.ReinforceConfig().to_dict().items()},
        "sizes": list(sizes), "iterations_per_call": {str(n): iters[n] for n in sizes},
        "reps": {str(n): reps[n] for n in sizes}, "quick": quick, "gymnasium_version": gymnasium.__version__,
        "devices": [str(d) for d in jax.devices()], **_util.environment(),
        "note": "2 shared CPU cores; other processes ran at the same time: timings are noisy, see p25/p75",
    }
    log("[check] hand-written gradient == compiled gradient on one trajectory")
    results = {"config": config, "check": check_same_gradient()}
    log(f"  {results['check']}")

    results["throughput"], results["throughput_one_value_epoch"], results["breakdown"] = [], [], []
    for n in sizes:
        log(f"[throughput] {n} envs x {HORIZON} steps, {iters[n]} iteration(s) per call")
        r = throughput(n, iters[n], reps[n], max_seconds=60 if n == 64 else 120)
        results["throughput"].append(r)
        log(f"  scg {r['scg']['steps_per_s']:.0f} steps/s, hand-written {r['handwritten']['steps_per_s']:.0f} steps/s, "
            f"time ratio {r['ratio_scg_over_handwritten_time']:.3f}")
        r1 = throughput(n, iters[n], reps[n], max_seconds=60 if n == 64 else 120, value_epochs=1)
        results["throughput_one_value_epoch"].append(r1)
        log(f"  one value epoch: time ratio {r1['ratio_scg_over_handwritten_time']:.3f}")
        b = breakdown(n, reps=3 if quick or n == 1024 else 9, max_seconds=40, diagnostics=(n == 64))
        results["breakdown"].append(b)
        log(f"  rollout+gradient ratio {b['ratio_rollout_gradient']:.3f}; value refit ratio {b['ratio_value_refit']:.3f}")
        for name, t in b["rollout_gradient_returns"].items():
            log(f"    {name}: {1e3 * t['median_s']:.1f} ms [{1e3 * t['p25_s']:.1f}, {1e3 * t['p75_s']:.1f}]")

    results["eager"] = []
    for n in sizes:
        log(f"[eager] {n} envs")
        e = eager(n, iterations=2 if quick or n == 1024 else 4)
        compiled = next(r for r in results["throughput"] if r["num_envs"] == n)
        e["speedup_scg_over_eager"] = compiled["scg"]["steps_per_s"] / e["steps_per_s"]
        e["speedup_handwritten_over_eager"] = compiled["handwritten"]["steps_per_s"] / e["steps_per_s"]
        results["eager"].append(e)
        log(f"  eager {e['steps_per_s']:.0f} steps/s; compiled graph is {e['speedup_scg_over_eager']:.1f}x faster")

    log("[compile time vs horizon]")
    results["compile_time"] = compile_vs_horizon((10, 100, 1000), (10,) if quick else (10, 30))
    results["compile_time"]["note"] = (
        "the unrolled graph at 100 steps is not run: in a trial its XLA compilation had not finished after 300 s "
        "(30 steps: ~51 s), on the same loaded 2-core machine")
    results["summary"] = summary(results, iters, time.perf_counter() - start)
    _util.write_json_atomic(args.out, results)
    log(f"wrote {args.out} in {results['summary']['wall_s']:.0f} s")
    return results


if __name__ == "__main__":
    main()
