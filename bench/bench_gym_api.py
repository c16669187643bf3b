"""Steps per second through gymnasium's own API: ``gymnasium.make`` and ``gymnasium.make_vec`` of ``scg/CartPole-v1``.

What a user of gymnasium sees, measured in one process, interleaved round by
round (each round runs every contender once, in a shuffled order):

- one environment, ``gymnasium.make`` (with gymnasium's default wrappers), a
  Python loop of ``step`` with ``reset`` when an episode ends: gymnasium's own
  ``CartPole-v1`` against ``scg/CartPole-v1`` (``scg.envs.GymnasiumEnv``: one
  jitted call and one device-to-host transfer per step);
- ``--num-envs`` environments: ``gymnasium.make_vec(..., vectorization_mode="sync")``
  of gymnasium's CartPole (``SyncVectorEnv``), the same of ``scg/CartPole-v1``
  (``SyncVectorEnv`` of ``GymnasiumEnv``), and ``gymnasium.make_vec("scg/CartPole-v1")``
  (``scg.envs.GymnasiumVectorEnv``: all environments in one jitted call).

Every contender is warmed up (compiled) before it is timed; we report medians.

Usage::

    python bench/bench_gym_api.py            # writes bench/results/gym_api.json
    python bench/bench_gym_api.py --quick    # small sizes, does not overwrite the results file
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import gymnasium
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scg.envs  # noqa: E402,F401  (registers scg/<id>)
from _util import environment, write_unless_quick  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "gym_api.json"


def single_loop(env, actions: np.ndarray):
    """A closure running ``len(actions)`` steps of one env, resetting when an episode ends."""

    def run():
        for a in actions:
            _, _, terminated, truncated, _ = env.step(int(a))
            if terminated or truncated:
                env.reset()

    env.reset(seed=0)
    return run


def vector_loop(venv, actions: np.ndarray):
    """A closure running ``len(actions)`` steps of a vector env (its own autoreset)."""

    def run():
        for a in actions:
            venv.step(a)

    venv.reset(seed=0)
    return run


def interleaved_rates(runs: dict, steps: dict, rounds: int, seed: int = 0) -> dict:
    """Median env steps per second of each closure in ``runs`` (``steps[name]`` env steps per call)."""
    for run in runs.values():  # warm-up: compiles the jitted steps
        run()
    times = {name: [] for name in runs}
    names = list(runs)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
    return {name: {"steps_per_s": steps[name] / statistics.median(t), "median_s": statistics.median(t),
                   "env_steps_per_call": steps[name], "rounds": rounds} for name, t in times.items()}


def call_latency_us(chains: int, calls: int = 2_000) -> float:
    """Median wall time (µs) of one synchronous call of a jitted program made of ``chains`` independent
    elementwise chains on 256 floats, its result copied to the host (as each ``step`` does).

    The diagnosis of the vector env's speed: XLA:CPU runs a program of one chain inline in the calling
    thread, but hands a program with independent parts to its thread pool, and on this machine the
    hand-off to another core and back costs tens of microseconds, more than the work (a 64-env
    CartPole step costs ~6 µs inside a ``lax.scan``).
    """
    import jax
    import jax.numpy as jnp

    def program(x):
        return x + sum(jnp.sin(x * (j + 1)).sum() for j in range(chains))

    f, x = jax.jit(program), jnp.ones(256)
    np.asarray(f(x))
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        x = f(x)
        np.asarray(x)
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single-steps", type=int, default=20_000, help="steps of one env per call")
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--vector-steps", type=int, default=300, help="vector steps per call")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small sizes; does not overwrite the results file")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.single_steps, args.vector_steps, args.rounds = 2_000, 30, 2
    rng = np.random.default_rng(0)
    one = rng.integers(2, size=args.single_steps)
    many = rng.integers(2, size=(args.vector_steps, args.num_envs))
    n = args.num_envs

    single = interleaved_rates(
        {"gymnasium": single_loop(gymnasium.make("CartPole-v1"), one),
         "scg": single_loop(gymnasium.make("scg/CartPole-v1"), one)},
        {"gymnasium": len(one), "scg": len(one)}, args.rounds)
    vector = interleaved_rates(
        {"gymnasium_sync": vector_loop(gymnasium.make_vec("CartPole-v1", n, vectorization_mode="sync"), many),
         "scg_sync": vector_loop(gymnasium.make_vec("scg/CartPole-v1", n, vectorization_mode="sync"), many),
         "scg_make_vec": vector_loop(gymnasium.make_vec("scg/CartPole-v1", n), many)},
        {k: many.size for k in ("gymnasium_sync", "scg_sync", "scg_make_vec")}, args.rounds)
    latency = {f"{k}_chains": call_latency_us(k, 200 if args.quick else 2_000) for k in (1, 2, 8)}
    rate = lambda table, k: table[k]["steps_per_s"]  # noqa: E731
    result = {
        "config": vars(args) | {"out": str(args.out)},
        "environment": environment(),
        "single": single,
        "vector": vector,
        "call_latency_us": latency,  # call_latency_us(): one jitted call, synchronous, by independent chains
        "ratios": {
            "single_scg_over_gymnasium": rate(single, "scg") / rate(single, "gymnasium"),
            "make_vec_over_gymnasium_sync": rate(vector, "scg_make_vec") / rate(vector, "gymnasium_sync"),
            "make_vec_over_scg_sync": rate(vector, "scg_make_vec") / rate(vector, "scg_sync"),
        },
    }
    for table in (single, vector):
        for name, row in table.items():
            print(f"{name:>16}: {row['steps_per_s']:>12,.0f} env steps/s")
    print("one synchronous jitted call: " + ", ".join(f"{k.replace('_', ' ')} {v:.0f} µs" for k, v in latency.items()))
    for name, value in result["ratios"].items():
        print(f"{name}: {value:.2f}")
    return write_unless_quick(args, result)


if __name__ == "__main__":
    main()
