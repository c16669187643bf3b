"""The full-size learning criteria of issue 4, run and recorded: ``bench/results/learning.json``.

Criteria (each over 5 seeds, passed when at least 4 reach the threshold):

- CartPole-v1 (our JAX port): REINFORCE and A2C reach a mean return ≥ 475 within 300k env steps;
- Acrobot-v1 (our JAX port): REINFORCE and A2C reach ≥ -100 within 300k env steps;
- gymnasium's own CartPole-v1 stepped on the host (``scg.algorithms.host``): REINFORCE, ≥ 475 within 300k;
- GAE-TRPO (issue 5): ≥ 475 on CartPole-v1 within 300k env steps, ≥ -250 on Pendulum-v1 within 2M;
- PPO (issue 5, clipped surrogate): ≥ 475 on CartPole-v1 within 300k env steps, ≥ -250 on Pendulum-v1 within 1M;
- the off-policy learners (issue 12) on Pendulum-v1: DDPG, SVG(0) and Smoothie ≥ -200 within 50k env steps,
  SVG(1) within 100k.

"Reach R within N steps": at some iteration whose cumulative ``env_steps`` is
≤ N, the ``mean_return`` metric (the mean of the last 20 finished episodes of
that seed) was ≥ R (``scg.algorithms.train.steps_to_reach``). Each run stops at
the last iteration that fits in N steps; ``final_return`` is the metric there.
JAX-env seeds run in parallel (``make_train``'s ``vmap``, keys
``split(key(0), 5)``); host seeds one after another (``HostEnv`` seeds
``10_000 s + i``). Configs: the algorithm's defaults updated by its
``TUNED[env]`` entry, recorded in the output.

The slow tests (``tests/algorithms/test_learning.py``, ``test_host_path.py``)
call :func:`run_check` on the same ``CHECKS``.

Usage::

    python bench/learning.py                         # all checks, writes bench/results/learning.json
    python bench/learning.py --only a2c-cartpole     # some checks (merged into the existing file)
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import environment, write_json_atomic  # noqa: E402

from scg.algorithms import ALGORITHMS, a2c, ddpg, make_train, ppo, reinforce, smoothie, svg0, svg1, trpo  # noqa: E402
from scg.algorithms.host import train as host_train  # noqa: E402
from scg.algorithms.train import steps_to_reach  # noqa: E402
from scg.envs.registry import make  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "learning.json"
MODULES = {"reinforce": reinforce, "a2c": a2c, "trpo": trpo, "ppo": ppo, "ddpg": ddpg, "svg0": svg0,
           "svg1": svg1, "smoothie": smoothie}


def _check(name, algo, env, threshold, *, collector="jax", max_steps=300_000, seeds=5, min_seeds=4):
    return dict(name=name, algo=algo, env=env, collector=collector, threshold=threshold,
                max_steps=max_steps, seeds=seeds, min_seeds=min_seeds, config=dict(MODULES[algo].TUNED.get(env, {})))


CHECKS = {
    c["name"]: c
    for c in (
        _check("reinforce-cartpole", "reinforce", "CartPole-v1", 475.0),
        _check("a2c-cartpole", "a2c", "CartPole-v1", 475.0),
        _check("reinforce-acrobot", "reinforce", "Acrobot-v1", -100.0),
        _check("a2c-acrobot", "a2c", "Acrobot-v1", -100.0),
        _check("reinforce-host-cartpole", "reinforce", "CartPole-v1", 475.0, collector="host"),
        _check("trpo-cartpole", "trpo", "CartPole-v1", 475.0),
        _check("trpo-pendulum", "trpo", "Pendulum-v1", -250.0, max_steps=2_000_000),
        _check("ppo-cartpole", "ppo", "CartPole-v1", 475.0),
        _check("ppo-pendulum", "ppo", "Pendulum-v1", -250.0, max_steps=1_000_000),
        _check("ddpg-pendulum", "ddpg", "Pendulum-v1", -200.0, max_steps=50_000),
        _check("svg0-pendulum", "svg0", "Pendulum-v1", -200.0, max_steps=50_000),
        _check("svg1-pendulum", "svg1", "Pendulum-v1", -200.0, max_steps=100_000),
        _check("smoothie-pendulum", "smoothie", "Pendulum-v1", -200.0, max_steps=50_000),
    )
}


def run_check(check: dict) -> dict:
    """Train ``check["seeds"]`` seeds for at most ``max_steps`` env steps each; per-seed steps to threshold."""
    config = ALGORITHMS[check["algo"]].configure(overrides=check["config"])  # check["config"]: TUNED[env] or {}
    iterations = check["max_steps"] // (config.num_envs * config.horizon)
    start = time.perf_counter()
    if check["collector"] == "host":
        _, metrics = host_train(check["algo"], check["env"], check["config"], seeds=range(check["seeds"]),
                                num_iterations=iterations)
    else:
        env, env_params = make(check["env"])
        init, run = make_train(check["algo"], env, env_params, check["config"])
        states = init(jax.random.split(jax.random.key(0), check["seeds"]))
        _, metrics = run(states, iterations)
        metrics = jax.tree_util.tree_map(np.asarray, metrics)
    wall = time.perf_counter() - start
    reached = steps_to_reach(metrics, check["threshold"], max_steps=check["max_steps"])
    returns = np.asarray(metrics["mean_return"])
    per_seed = [
        {"seed": i, "steps_to_threshold": s, "final_return": float(returns[i, -1]), "best_return": float(np.nanmax(returns[i]))}
        for i, s in enumerate(reached)
    ]
    n_reached = sum(s is not None for s in reached)
    return {
        **check,
        "config": config.to_dict(),
        "iterations": int(iterations),
        "env_steps": float(np.sum(metrics["env_steps"][0])),
        "seeds_reached": n_reached,
        "passed": n_reached >= check["min_seeds"],
        "per_seed": per_seed,
        "wall_s": wall,  # compile + run, all seeds; noisy on a shared machine
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CHECKS), help="run these checks only")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    names = args.only or list(CHECKS)
    out = Path(args.out)
    results = json.loads(out.read_text()).get("checks", {}) if args.only and out.exists() else {}
    for name in names:
        result = run_check(CHECKS[name])
        results[name] = result
        steps = [s["steps_to_threshold"] for s in result["per_seed"]]
        print(f"{name}: {result['seeds_reached']}/{result['seeds']} seeds reached {result['threshold']} "
              f"(steps {steps}) -> {'PASS' if result['passed'] else 'FAIL'}  [{result['wall_s']:.0f} s]", flush=True)
        write_json_atomic(str(out), {"environment": environment(), "checks": results})
    return 0 if all(r["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
