"""SVG(∞) learning runs (``scg.algorithms.svginf``), 5 seeds each: ``bench/results/svginf.json``.

Runs (configs: the defaults updated by ``svginf.TUNED[env]``, then the run's own overrides, all recorded):

- ``true-handmass``: true dynamics, HandMassContinuous-v0, ``scg train``'s default budget (160,000 env
  steps = 125 updates of 64 episodes); target mean return ≥ −0.05 (optimum ≈ −0.031, random −0.89);
- ``true-pendulum``: true dynamics, Pendulum-v1, 1,000,000 env steps (spec B9's budget); target ≥ −200;
- ``tvlg-handmass``: the learned time-varying linear-Gaussian model (GMM prior), same budget as above;
- ``tvlg-pendulum``: the same model fitted by least squares (``prior=False``; the GMM prior costs
  0.2–1.5 s per update here), 300,000 env steps. Reported, no target;
- ``mlp-handmass``, ``mlp-pendulum``: the MLP model ``s + MLP([s, a])`` (50 Adam steps per update on the
  update's record), budgets as above (Pendulum 600,000). Reported, no target.

Per seed: ``final_mean_return`` (the training metric at the last update: the mean of the last
``max(20, num_envs)`` episodes), ``eval_return`` (100 fresh episodes of the final stochastic policy) and
``eval_return_mean_action`` (the same with ``a = μ_θ(o)``), ``steps_to_target`` (first cumulative env step
count whose ``mean_return`` ≥ target, ``scg.algorithms.train.steps_to_reach``). ``wall_s`` is the whole
run of the 5 ``vmap``-ed seeds, compilation included. Seeds ``jax.random.key(s)``, ``s = 0 … 4``.

Usage::

    python bench/svginf.py                      # all runs (about 3 minutes on 2 cores)
    python bench/svginf.py --only true-pendulum # some runs, merged into the existing file
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import environment, write_json_atomic  # noqa: E402

import scg.algorithms.svginf as svginf  # noqa: E402  (registers "svginf")
from scg.algorithms import make_train  # noqa: E402
from scg.algorithms.train import seed_keys, steps_to_reach  # noqa: E402
from scg.envs.registry import make  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "svginf.json"
SEEDS = 5
EVAL_EPISODES = 100
RUNS = {
    "true-handmass": dict(env="HandMassContinuous-v0", steps=160_000, target=-0.05, overrides={}),
    "true-pendulum": dict(env="Pendulum-v1", steps=1_000_000, target=-200.0, overrides={}),
    "tvlg-handmass": dict(env="HandMassContinuous-v0", steps=160_000, target=-0.05, overrides={"model": "tvlg"}),
    "tvlg-pendulum": dict(env="Pendulum-v1", steps=300_000, target=-200.0,
                          overrides={"model": "tvlg", "prior": False}),
    "mlp-handmass": dict(env="HandMassContinuous-v0", steps=160_000, target=-0.05, overrides={"model": "mlp"}),
    "mlp-pendulum": dict(env="Pendulum-v1", steps=600_000, target=-200.0, overrides={"model": "mlp"}),
}


def run(name: str) -> dict:
    spec = RUNS[name]
    env, params = make(spec["env"])
    config = svginf.ALGORITHM.configure(spec["env"], spec["overrides"])
    iterations = -(-spec["steps"] // (config.num_envs * config.horizon))
    start = time.perf_counter()
    init, train = make_train("svginf", env, params, config)
    states, metrics = train(init(seed_keys(SEEDS)), iterations)
    metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
    wall = time.perf_counter() - start

    policy = svginf.make_policy(env, params, config)

    def evaluate(theta, key, deterministic):
        return svginf.evaluate(env, params, policy, theta, key, num_episodes=EVAL_EPISODES, horizon=config.horizon,
                               deterministic=deterministic)

    keys = jax.random.split(jax.random.key(10_000), SEEDS)
    sampled = jax.jit(jax.vmap(lambda th, k: evaluate(th, k, False)))(states.params["theta"], keys)
    mean_action = jax.jit(jax.vmap(lambda th, k: evaluate(th, k, True)))(states.params["theta"], keys)
    final = metrics["mean_return"][:, -1]
    result = {
        "env": spec["env"], "target": spec["target"], "seeds": list(range(SEEDS)), "iterations": iterations,
        "config": config.to_dict(),
        "env_steps_per_seed": float(metrics["env_steps"].sum(axis=1)[0]),
        "final_mean_return": final.tolist(),
        "final_mean_return_mean": float(final.mean()),
        "eval_return": np.asarray(sampled).mean(axis=1).tolist(),
        "eval_return_mean": float(np.asarray(sampled).mean()),
        "eval_return_mean_action": np.asarray(mean_action).mean(axis=1).tolist(),
        "steps_to_target": steps_to_reach(metrics, spec["target"]),
        "passed": bool(final.mean() >= spec["target"]),
        "wall_s": wall,
    }
    if "model_error" in metrics:
        result["final_model_error"] = metrics["model_error"][:, -1].tolist()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), help="runs to do (merged into --out)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    out = Path(args.out)
    results = json.loads(out.read_text()) if args.only and out.is_file() else {}
    results.setdefault("runs", {})
    for name in args.only or RUNS:
        results["runs"][name] = r = run(name)
        print(f"{name}: final mean return {r['final_mean_return_mean']:.4g} (per seed "
              f"{', '.join(f'{x:.4g}' for x in r['final_mean_return'])}), eval {r['eval_return_mean']:.4g}, "
              f"{r['env_steps_per_seed']:,.0f} env steps, {r['wall_s']:.1f} s", flush=True)
    results["environment"] = environment()
    write_json_atomic(str(out), results)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
