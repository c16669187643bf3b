"""Throughput of the DDPG update: ``scg.algorithms.ddpg`` (compiled graph) against hand-written JAX DDPG.

``scg.algorithms.ddpg.make_learner(...).learn`` (one gradient of the update graph for actor and
critic, two Adam steps, Polyak targets) against :mod:`handwritten_ddpg` (the same update written by
hand, cleanRL / purejaxrl style), on Pendulum-v1 shapes (3 observations, 1 action in [-2, 2]), with
the default DDPG config (hidden (256, 256), batch 256) and with hidden (64, 64) (``TUNED``'s
Pendulum-v1 networks), both jitted, timed two ways:

(a) ``one_update``: one update on a given minibatch, ``(state, minibatch) -> (state, metrics)``;
(b) ``scan``: ``--updates`` (100) updates in one ``lax.scan``, each drawing its own minibatch from
    a full replay buffer (100,000 Pendulum transitions of uniform random actions), as
    ``scg.algorithms.offpolicy`` runs its learning phase; metrics averaged over the updates.

Before timing, for each config: the hand-written init gives the compiled learner's parameters for
the same key (exactly); one update from the same state on the same minibatch gives the same
parameters, targets, Adam moments and metrics (to float tolerance; they come out bitwise equal);
and the two scans, fed keys that draw the same minibatches, give the same state after all updates.

Timings: each function is compiled twice under two function names (two programs that differ only
in names can run a few percent apart, bench/README.md), all four executables are timed interleaved
in one process (``_util.interleaved``), one call + ``block_until_ready`` per sample; a version's
time is the mean of its two copies' medians, and ``ratio`` is compiled / hand-written.

Usage::

    python bench/bench_ddpg.py            # ~3-4 min on 2 shared CPU cores; writes bench/results/ddpg.json
    python bench/bench_ddpg.py --quick    # few repetitions (smoke test, < 1 min)
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import re
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scg.algorithms import ddpg, replay  # noqa: E402
from scg.envs.classic_control import Pendulum  # noqa: E402
from scg.envs.wrappers import AutoReset  # noqa: E402

import _util  # noqa: E402
import handwritten_ddpg as hw  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ddpg.json")
ENV = Pendulum()
PARAMS = ENV.default_params
CONFIGS = {"default": ddpg.DDPGConfig(), "hidden64": ddpg.DDPGConfig(hidden=(64, 64))}
COPIES = 2


def log(*args):
    print(*args, flush=True)


def fill_buffer(capacity: int, key, num_envs: int = 100) -> replay.ReplayState:
    """A full buffer of Pendulum transitions under uniform random actions, stored as ``offpolicy`` stores them."""
    env = AutoReset(ENV)
    low, high = ENV.action_space(PARAMS).low_array, ENV.action_space(PARAMS).high_array
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, num_envs), PARAMS)

    def step(carry, k):
        obs, state = carry
        k_act, k_env = jax.random.split(k)
        action = jax.random.uniform(k_act, (num_envs, *low.shape), jnp.float32, low, high)
        ts = jax.vmap(env.step, (0, 0, 0, None))(jax.random.split(k_env, num_envs), state, action, PARAMS)
        tr = {"obs": obs.astype(jnp.float32), "action": action, "reward": ts.reward.astype(jnp.float32),
              "next_obs": ts.info["final_obs"].astype(jnp.float32), "terminated": ts.terminated.astype(jnp.float32)}
        return (ts.obs, ts.state), tr

    steps = -(-capacity // num_envs)
    _, traj = jax.jit(lambda c, ks: jax.lax.scan(step, c, ks))((obs, state), jax.random.split(k_run, steps))
    flat = jax.tree_util.tree_map(lambda x: x.reshape((steps * num_envs, *x.shape[2:]))[:capacity], traj)
    example = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), flat)
    return jax.block_until_ready(replay.add(replay.init(example, capacity), flat))


def to_handwritten(state: ddpg.DDPGState) -> hw.TrainState:
    """The same arrays in the hand-written layout (parameters, targets and optimizer states are shared)."""
    return hw.TrainState(state.params["theta"], state.params["phi"], state.targets["theta"], state.targets["phi"],
                         state.opt["theta"], state.opt["phi"])


def _errors(a, b) -> dict:
    pairs = list(zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    assert len(pairs) == len(jax.tree_util.tree_leaves(a)) == len(jax.tree_util.tree_leaves(b))
    abs_err = max(float(jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))) for x, y in pairs)
    rel_err = max(float(jnp.max(jnp.abs(x - y)) / (jnp.max(jnp.abs(y)) + 1e-12)) for x, y in pairs
                  if jnp.issubdtype(x.dtype, jnp.floating))
    return {"max_abs_err": abs_err, "max_rel_err": rel_err}


def _named(fn, name):
    """``fn`` under another function name, so that ``jax.jit`` compiles another executable of the same program."""
    def call(*args):
        return fn(*args)

    call.__name__ = call.__qualname__ = name
    return call


def build(config: ddpg.DDPGConfig):
    """The compiled learner, the hand-written update, and the two timed functions of each (not yet jitted)."""
    learner = ddpg.make_learner(ENV, PARAMS, config)
    space = ENV.action_space(PARAMS)
    hand = hw.build(ENV.observation_space(PARAMS).shape[0], space.low_array, space.high_array,
                    {k: getattr(config, k) for k in hw.DEFAULT_CONFIG})

    def scg_one(state, batch, key):
        return learner.learn(state, lambda _: batch, key)

    def scg_scan(state, buffer, keys):  # offpolicy.make's learn_phase
        sample = lambda k: replay.sample(buffer, k, config.batch_size)  # noqa: E731
        state, metrics = jax.lax.scan(lambda s, k: learner.learn(s, sample, k), state, keys)
        return state, jax.tree_util.tree_map(jnp.mean, metrics)

    def hand_one(state, batch, key):
        return hand.update(state, batch)

    def hand_scan(state, buffer, keys):
        return hand.train(state, hw.Transition(**buffer.data), buffer.size, keys)

    return learner, hand, {"scg": (scg_one, scg_scan), "handwritten": (hand_one, hand_scan)}


def check_same(config, learner, hand, compiled, buffer, key, updates: int) -> dict:
    """Same init, same one-step update (state and metrics), same state after ``updates`` scanned updates.

    ``compiled[version]`` is ``(one_update, scan)``, executables of the timed functions.
    """
    k_init, k_batch, k_update, k_scan = jax.random.split(key, 4)
    state = learner.init(k_init)
    hand_init = hand.init(k_init)
    init_err = _errors(to_handwritten(state), hand_init)
    batch = replay.sample(buffer, k_batch, config.batch_size)
    s_scg, m_scg = compiled["scg"][0](state, batch, k_update)
    s_hand, m_hand = compiled["handwritten"][0](to_handwritten(state), hw.Transition(**batch), k_update)
    moved = _errors(s_scg.params, state.params)["max_abs_err"]
    one = {**_errors(to_handwritten(s_scg), s_hand), "metrics": _errors(m_scg, m_hand), "max_abs_param_change": moved}
    # the compiled learn draws its minibatch with the first half of split(key): give the hand-written scan those keys
    keys = jax.random.split(k_scan, updates)
    hand_keys = jax.vmap(lambda k: jax.random.split(k)[0])(keys)
    s_scg, m_scg = compiled["scg"][1](state, buffer, keys)
    s_hand, m_hand = compiled["handwritten"][1](to_handwritten(state), buffer, hand_keys)
    scan = {**_errors(to_handwritten(s_scg), s_hand), "metrics": _errors(m_scg, m_hand), "updates": updates,
            "max_abs_param_change": _errors(s_scg.params, state.params)["max_abs_err"]}
    out = {"init": init_err, "one_update": one, "scan": scan}
    ok = (init_err["max_abs_err"] == 0.0 and moved > 0 and one["max_rel_err"] < 1e-5 and one["metrics"]["max_rel_err"] < 1e-5
          and scan["max_rel_err"] < 1e-4 and scan["metrics"]["max_rel_err"] < 1e-4)
    if not ok:
        raise AssertionError(f"hand-written and compiled DDPG disagree: {out}")
    return out


def stablehlo_ops(lowered) -> int:
    return sum(1 for line in lowered.as_text().splitlines() if "stablehlo." in line)


def optimized_hlo_counts(compiled) -> dict:
    """Instructions of XLA's optimized program (all computations, fused bodies included), fusions and dots."""
    kinds = re.findall(r"= \S+ ([a-z][a-z0-9-]*)\(", compiled.as_text())
    return {"instructions": len(kinds), "fusion": kinds.count("fusion"), "dot": kinds.count("dot")}


def compile_copies(fns: dict, args: dict) -> dict:
    """``COPIES`` executables of each version's function (distinct names), lowered and compiled for ``args``."""
    out = {"executables": {}, "copies": {}, "trace_and_compile_s": {}, "stablehlo_ops": {}, "optimized_hlo": {}}
    for version, fn in fns.items():
        out["copies"][version] = [version if c == 0 else f"{version}#{c}" for c in range(COPIES)]
        for c, name in enumerate(out["copies"][version]):
            t0 = time.perf_counter()
            lowered = jax.jit(_named(fn, f"{version}_{fn.__name__}_copy{c}")).lower(*args[version])
            out["executables"][name] = lowered.compile()
            out["trace_and_compile_s"][name] = time.perf_counter() - t0
            out["stablehlo_ops"][version] = stablehlo_ops(lowered)
            out["optimized_hlo"][name] = optimized_hlo_counts(out["executables"][name])
    return out


def interleaved_rounds(calls: dict, *, reps: int, max_seconds: float, warmup: int = 2, seed: int = 0) -> list[dict]:
    """``_util.interleaved``'s rounds (every call once per round, shuffled order), keeping each round's seconds."""
    for fn in calls.values():
        for _ in range(warmup):
            _util.call_time(fn)
    rng, names, rounds = random.Random(seed), list(calls), []
    start = time.perf_counter()
    for r in range(reps):
        rng.shuffle(names)
        rounds.append({name: _util.call_time(calls[name]) for name in names})
        if r >= 10 and time.perf_counter() - start > max_seconds:
            break
    return rounds


def time_copies(built: dict, args: dict, *, reps: int, max_seconds: float) -> dict:
    """All executables interleaved; medians, the ratio of the versions' means of copies, and the paired ratio.

    ``paired_ratio`` is the median over rounds of (scg's mean of copies / hand-written's mean of copies)
    within one round: calls made seconds apart, so a burst of load on the shared machine hits both.
    """
    copies = built["copies"]
    calls = {name: (lambda f, a: lambda: f(*a))(built["executables"][name], args[v])
             for v, names in copies.items() for name in names}
    rounds = interleaved_rounds(calls, reps=reps, max_seconds=max_seconds)
    t = {name: _util.summary([r[name] for r in rounds]) for name in calls}
    mean_of = {v: float(np.mean([t[n]["median_s"] for n in names])) for v, names in copies.items()}
    spread = {v: max(t[n]["median_s"] for n in names) / min(t[n]["median_s"] for n in names) for v, names in copies.items()}
    ratio = mean_of["scg"] / mean_of["handwritten"]
    per_round = [np.mean([r[n] for n in copies["scg"]]) / np.mean([r[n] for n in copies["handwritten"]]) for r in rounds]
    return {"timings": t, "copies": copies, "mean_of_copies_s": mean_of, "copy_spread": spread,
            "ratio_scg_over_handwritten": ratio, "within_5_percent": ratio <= 1.05,
            "paired_ratio": {"median": float(np.median(per_round)), "p25": float(np.percentile(per_round, 25)),
                             "p75": float(np.percentile(per_round, 75)), "rounds": len(per_round)},
            "trace_and_compile_s": built["trace_and_compile_s"], "stablehlo_ops": built["stablehlo_ops"],
            "optimized_hlo": built["optimized_hlo"], "loadavg_after": list(os.getloadavg())}


def run_config(label, config, buffer, *, updates, reps_one, reps_scan, seconds_one, seconds_scan) -> dict:
    jax.clear_caches()  # release the previous config's executables
    gc.collect()
    learner, hand, fns = build(config)
    key = jax.random.key(0)
    state = learner.init(jax.random.fold_in(key, 1))
    batch = replay.sample(buffer, jax.random.fold_in(key, 2), config.batch_size)
    k_update, keys = jax.random.fold_in(key, 3), jax.random.split(jax.random.fold_in(key, 4), updates)
    parts = {
        "one_update": {"scg": (state, batch, k_update), "handwritten": (to_handwritten(state), hw.Transition(**batch), k_update)},
        "scan": {"scg": (state, buffer, keys), "handwritten": (to_handwritten(state), buffer, keys)},
    }
    built = {part: compile_copies({v: f[i] for v, f in fns.items()}, args) for i, (part, args) in enumerate(parts.items())}
    compiled = {v: tuple(built[part]["executables"][v] for part in parts) for v in fns}
    out = {"hidden": list(config.hidden), "batch_size": config.batch_size,
           "check": check_same(config, learner, hand, compiled, buffer, key, updates)}
    log(f"[check] {label}: one update max rel err {out['check']['one_update']['max_rel_err']:.2e}, "
        f"after {updates} scanned updates {out['check']['scan']['max_rel_err']:.2e}")
    budget = {"one_update": (reps_one, seconds_one), "scan": (reps_scan, seconds_scan)}
    for part, args in parts.items():
        reps, seconds = budget[part]
        r = time_copies(built[part], args, reps=reps, max_seconds=seconds)
        per = 1 if part == "one_update" else updates
        r["per_update_s"] = {v: s / per for v, s in r["mean_of_copies_s"].items()}
        out[part] = r
        log(f"[{part}] {label}: scg {1e6 * r['per_update_s']['scg']:.0f} us/update, hand-written "
            f"{1e6 * r['per_update_s']['handwritten']:.0f} us/update, ratio {r['ratio_scg_over_handwritten']:.3f} "
            f"(copy spread scg {r['copy_spread']['scg']:.3f}, hand {r['copy_spread']['handwritten']:.3f}; "
            f"paired ratio {r['paired_ratio']['median']:.3f}; {r['timings']['scg']['reps']} rounds; "
            f"load {os.getloadavg()[0]:.1f})")
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke test)")
    ap.add_argument("--updates", type=int, default=100, help="updates per scanned call")
    ap.add_argument("--configs", nargs="*", choices=sorted(CONFIGS), help="default: all")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    names = args.configs or list(CONFIGS)
    # seconds of timing per config: a 100-update scan of the default config takes ~0.4 s a call, four executables a round
    budget = {n: dict(reps_one=20, reps_scan=5, seconds_one=3, seconds_scan=5) if args.quick else
              dict(reps_one=3000, reps_scan=300, seconds_one=15, seconds_scan=75 if n == "default" else 30)
              for n in names}
    start = time.perf_counter()
    capacity = CONFIGS["default"].buffer_size
    config = {
        "algorithm": "ddpg", "env": ENV.name, "obs_shape": list(ENV.observation_space(PARAMS).shape),
        "action_shape": list(ENV.action_space(PARAMS).shape),
        "ddpg_configs": {n: {k: list(v) if isinstance(v, tuple) else v for k, v in CONFIGS[n].to_dict().items()}
                         for n in names},
        "updates_per_scan": args.updates, "buffer": f"{capacity} Pendulum transitions, uniform random actions (full)",
        "copies_per_version": COPIES, "timing_budget": budget, "quick": args.quick, **_util.environment(),
        "note": "2 shared CPU cores; other processes ran at the same time: timings are noisy, see p25/p75",
    }
    results = {"config": config, "results": {}}
    buffer = fill_buffer(capacity, jax.random.key(123))
    for name in names:
        results["results"][name] = run_config(name, CONFIGS[name], buffer, updates=args.updates, **budget[name])
        _util.write_json_atomic(args.out, results)  # partial results survive an interrupted run
    results["summary"] = {
        name: {part: {"per_update_us": {v: 1e6 * s for v, s in r[part]["per_update_s"].items()},
                      "ratio_scg_over_handwritten": r[part]["ratio_scg_over_handwritten"],
                      "paired_ratio": r[part]["paired_ratio"]["median"]}
               for part in ("one_update", "scan")}
        for name, r in results["results"].items()
    }
    results["summary"]["wall_s"] = time.perf_counter() - start
    results["summary"]["loadavg_end"] = list(os.getloadavg())
    _util.write_json_atomic(args.out, results)
    log(f"wrote {args.out} in {results['summary']['wall_s']:.0f} s")
    return results


if __name__ == "__main__":
    main()
