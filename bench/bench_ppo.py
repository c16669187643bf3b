"""Training throughput of PPO on CartPole: ``scg.algorithms.ppo`` (compiled graph) against hand-written JAX PPO.

``scg.algorithms.ppo`` (the MDP graph with GAE credit, rolled out by the compiler,
minibatches replayed with ``compiled.replay``) against :mod:`handwritten_ppo`
(the same algorithm, networks, GAE, minibatching, optimizer and config written
by hand), each run as ``scg.algorithms.make_train`` runs it: one ``jit`` of a
``lax.scan`` over whole training iterations (rollout, GAE, ``epochs`` ×
``num_minibatches`` Adam steps), one seed, ``num_envs`` ∈ {4, 16, 64, 256,
1024}, horizon 128, in purejaxrl's configuration by default (``--config purejaxrl``:
lr 2.5e-4 annealed to 0 over the iterations of a timed call, entropy 0.01, the
clipped value loss, the rest as :mod:`purejaxrl_parity`'s ``scg_config_parity`` and
``reference_config``; orthogonal init on scg's side only, which costs nothing per
step), or scg's defaults (``--config default``, entropy off).

Before timing, the two are checked to compute the same thing on one batch
sampled by the compiled graph: the same ``log π_θold``, ``V``, GAE advantages
and targets, and the same gradient of the minibatch loss on the whole batch.
Timings: compilation (``lower().compile()``) apart, then both compiled calls
interleaved in one process (``_util.interleaved``), medians; env steps per
second = ``num_envs × horizon × iterations per call / median seconds``. A
breakdown at 4, 16 and 1,024 envs times the data collection alone (rollout,
``log π_θold``, ``V``, GAE and targets; :func:`scg.algorithms.ppo.collect` against
the hand-written ``collect``).

Usage::

    python bench/bench_ppo.py            # ~4-5 min on 2 shared CPU cores; writes bench/results/ppo.json
    python bench/bench_ppo.py --quick    # sizes 4 and 64, few repeats (smoke test)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scg.algorithms import ALGORITHMS, common, make_train, ppo  # noqa: E402
from scg.envs.classic_control import CartPole  # noqa: E402

import _util  # noqa: E402
import handwritten_ppo as hw  # noqa: E402
from purejaxrl_parity import reference_config, scg_config_parity  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ppo.json")
ENV = CartPole()
PARAMS = ENV.default_params
HORIZON = ppo.PPOConfig().horizon


def log(*args):
    print(*args, flush=True)


def _rel_err(a, b) -> float:
    pairs = zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))
    return max(float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-12)) for x, y in pairs)


def check_same(num_envs: int = 16, seed: int = 0) -> dict:
    """One batch sampled by the compiled graph: the hand-written GAE, targets and loss gradient agree with scg's."""
    config = ppo.PPOConfig(num_envs=num_envs)
    mdp = common.compile_mdp(ENV, PARAMS, config, gae_lambda=config.gae_lambda)
    key = jax.random.key(seed)
    params = common.init_params(mdp, key)
    rollout = common.reset_envs(ENV, PARAMS, jax.random.fold_in(key, 1), num_envs)
    inputs, batch = common.sample(mdp, params, rollout, jax.random.fold_in(key, 2))
    v, st = batch.values, batch.steps  # st: the typed view (reward units)
    adv_scg = -mdp.compiled.advantages(inputs, v)["a"]  # reward units
    sw = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731  [N, T] -> [T, N]
    value = hw.value_fn(params["phi"], sw(st.obs))
    logits = jax.nn.log_softmax(hw.logits_fn(params["theta"], sw(st.obs)))
    logp = jnp.take_along_axis(logits, sw(st.action)[..., None], axis=-1)[..., 0]
    hb = hw.Batch(sw(st.obs), sw(st.action), logp, value, sw(st.reward), sw(st.terminated), sw(st.truncated),
                  sw(st.final_obs))
    adv_hw = hw.gae(hb, hw.value_fn(params["phi"], hb.final_obs), config.discount, config.gae_lambda)
    out = {
        "num_envs": num_envs, "horizon": HORIZON, "episode_ends": int(jnp.sum(st.done)),
        "max_abs_logp_err": float(jnp.max(jnp.abs(sw(st.log_prob) - logp))),
        "max_abs_value_err": float(jnp.max(jnp.abs(sw(st.value) - value))),
        "max_abs_advantage_err": float(jnp.max(jnp.abs(sw(adv_scg) - adv_hw))),
    }
    # The loss gradient on the whole batch as one minibatch, at parameters moved away from θ_old.
    size = num_envs * HORIZON
    flat = lambda x: x.reshape((size, *x.shape[2:]))  # noqa: E731
    target = adv_hw + value
    hw_mb = {"obs": flat(hb.obs), "action": flat(hb.action), "logp_old": flat(logp), "adv": flat(adv_hw), "target": flat(target)}
    moved = jax.tree_util.tree_map(lambda x: x * 1.3 + 0.01, params)  # away from θ_old: ratios ≠ 1, some clipped
    g_hw = jax.grad(lambda p: hw.ppo_loss(p, hw_mb, config.to_dict())[0])(moved)
    scg_mb = {"values": jax.tree_util.tree_map(flat, v), "logp_old": flat(st.log_prob),
              "adv": -flat(sw(adv_hw)), "target": flat(sw(target))}  # [N, T] order, cost-unit advantages
    beta = jnp.float32(config.kl_beta)
    g_scg = jax.grad(lambda p: ppo.minibatch_loss(p, mdp, config, inputs, scg_mb, beta)[0])(moved)
    out["max_rel_grad_err"] = _rel_err(g_scg, g_hw)
    ok = all(out[k] < 1e-4 for k in ("max_abs_logp_err", "max_abs_value_err", "max_abs_advantage_err")) and out["max_rel_grad_err"] < 1e-4
    if not ok:
        raise AssertionError(f"hand-written and compiled PPO disagree: {out}")
    return out


def configs(name: str, num_envs: int, iterations: int) -> tuple[dict, dict]:
    """``(scg overrides, hand-written config)`` of the configuration ``name`` ("purejaxrl" or "default")."""
    if name == "default":
        return {"num_envs": num_envs}, {"num_envs": num_envs}
    return scg_config_parity(num_envs, iterations), reference_config(num_envs, iterations)


def throughput(num_envs: int, iterations: int, reps: int, max_seconds: float, config: str = "purejaxrl") -> dict:
    """Whole training iterations, compiled graph vs hand-written, interleaved; env steps per second."""
    ours, theirs = configs(config, num_envs, iterations)
    makers = {
        "scg": lambda c: make_train("ppo", ENV, PARAMS, {**ours, **c}),
        "handwritten": lambda c: hw.make_train(ENV, PARAMS, {**theirs, **c}),
    }
    return _util.training_throughput(makers, num_envs, HORIZON, iterations, reps, max_seconds)


def breakdown(num_envs: int, reps: int, max_seconds: float, config: str = "purejaxrl") -> dict:
    """Data collection alone (rollout at θ_old, ``log π_θold``, ``V``, GAE, targets, flattening), both versions."""
    ours, theirs = configs(config, num_envs, 1)
    config = ALGORITHMS["ppo"].configure(overrides=ours)
    mdp = common.compile_mdp(ENV, PARAMS, config, gae_lambda=config.gae_lambda)
    parts = hw.build(ENV, PARAMS, theirs)
    key = jax.random.key(0)
    params = common.init_params(mdp, key)
    rollout = common.reset_envs(ENV, PARAMS, key, num_envs)
    fns = {
        "scg": jax.jit(lambda p, r, k: ppo.collect(mdp, config, p, r, k)[2]),
        "handwritten": jax.jit(lambda p, r, k: parts.collect(p, r.obs, r.state, k)[2]),
    }
    for f in fns.values():
        _util.timed(f, params, rollout, key)
    t = _util.interleaved(fns, (params, rollout, key), reps=reps, warmup=1, max_seconds=max_seconds)
    return {"num_envs": num_envs, "collect": t, "ratio_collect": t["scg"]["median_s"] / t["handwritten"]["median_s"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="sizes 4 and 64, few repeats (smoke test)")
    ap.add_argument("--sizes", type=int, nargs="*", help="num_envs values (default 4 16 64 256 1024)")
    ap.add_argument("--config", choices=("purejaxrl", "default"), default="purejaxrl",
                    help="purejaxrl's PPO configuration (entropy on, lr annealing, value clipping) or scg's defaults")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    sizes = tuple(args.sizes or ((4, 64) if args.quick else (4, 16, 64, 256, 1024)))
    # iterations per timed call: ~64k env steps per call at least where it is cheap, one iteration at 1024 envs
    iters = {n: max(1, 128 // n) for n in sizes}
    reps = 5 if args.quick else 30
    start = time.perf_counter()
    config = {
        "algorithm": "ppo", "env": ENV.name, "seeds": 1, "horizon": HORIZON,
        "config_name": args.config,
        "ppo_config": {k: list(v) if isinstance(v, tuple) else v
                       for k, v in {**ppo.PPOConfig().to_dict(), **configs(args.config, 0, 0)[0]}.items()},
        "handwritten_config": configs(args.config, 0, 0)[1],
        "sizes": list(sizes), "iterations_per_call": {str(n): iters[n] for n in sizes}, "max_reps": reps,
        "quick": args.quick, **_util.environment(),
        "note": "2 shared CPU cores; other processes ran at the same time: timings are noisy, see p25/p75",
    }
    log("[check] hand-written PPO == compiled PPO on one batch")
    results = {"config": config, "check": check_same()}
    log(f"  {results['check']}")
    results["throughput"] = []
    for n in sizes:
        log(f"[throughput] {n} envs x {HORIZON} steps, {iters[n]} iteration(s) per call")
        r = throughput(n, iters[n], reps, max_seconds=20 if args.quick else 45, config=args.config)
        results["throughput"].append(r)
        log(f"  scg {r['scg']['steps_per_s']:.0f} steps/s, hand-written {r['handwritten']['steps_per_s']:.0f} steps/s, "
            f"time ratio {r['ratio_scg_over_handwritten_time']:.3f} ({r['scg']['reps']} reps)")
        _util.write_json_atomic(args.out, results)  # partial results survive an interrupted run
    results["breakdown"] = []
    for n in [n for n in sizes if n in (4, 16, 1024)]:
        b = breakdown(n, reps=reps * 2, max_seconds=20 if args.quick else 30, config=args.config)
        results["breakdown"].append(b)
        full = next(r for r in results["throughput"] if r["num_envs"] == n)
        b["collect_share_of_iteration"] = b["collect"]["scg"]["median_s"] / (full["scg"]["median_s"] / iters[n])
        log(f"[collect alone] {n} envs: scg {1e3 * b['collect']['scg']['median_s']:.2f} ms, hand-written "
            f"{1e3 * b['collect']['handwritten']['median_s']:.2f} ms, ratio {b['ratio_collect']:.3f}; "
            f"{100 * b['collect_share_of_iteration']:.0f}% of an scg iteration")
    results["summary"] = {
        "steps_per_s": {str(r["num_envs"]): {k: r[k]["steps_per_s"] for k in ("scg", "handwritten")} for r in results["throughput"]},
        "ratio_scg_over_handwritten_time": {str(r["num_envs"]): r["ratio_scg_over_handwritten_time"] for r in results["throughput"]},
        "ratio_collect_scg_over_handwritten": {str(b["num_envs"]): b["ratio_collect"] for b in results["breakdown"]},
        "wall_s": time.perf_counter() - start,
        "loadavg_end": list(os.getloadavg()),
    }
    _util.write_json_atomic(args.out, results)
    log(f"wrote {args.out} in {results['summary']['wall_s']:.0f} s")
    return results


if __name__ == "__main__":
    main()
