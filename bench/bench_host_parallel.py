"""Env steps per second of the host collector, ``HostEnv.collect``, in one process against worker processes (issue 18).

For each env in ``--env-ids`` (default MuJoCo's ``HalfCheetah-v5``, a cheap
step of ~55 µs here, and ``Humanoid-v5``, ~250 µs) and each ``W`` in
``--workers`` (default 1 and 2), two contenders collect the same
``num_steps`` steps of ``W`` copies of the env, with the same jitted policy:

- ``sync_W``: ``HostEnv(..., vectorization="sync")``, gymnasium's ``SyncVectorEnv``:
  the ``W`` copies step one after another in this process;
- ``async_W``: ``HostEnv(..., vectorization="async")``, gymnasium's ``AsyncVectorEnv``:
  one worker process per copy, ``W`` processes stepping in parallel, the
  actions and observations crossing pipes and shared memory each step.

One sample is one ``collect`` call (``W * num_steps`` env steps); all contenders
are built first and timed interleaved (a shuffled order each round), after one
warm-up call each of the same size (it compiles the policy and the key split). We report medians over ``repeats``
rounds, the ratio ``async_W / sync_W`` (what the worker processes buy at the
same number of envs) and every rate over ``sync_1`` (one env in one process).

The policy is "random-ish": uniform actions, plus ``0`` times a function of the
observation so the policy really reads it (a jitted call per step, as in
training). The step of an env must cost more than the pipe round trip of a
worker for ``async`` to win: CartPole (a few µs a step) never does; MuJoCo can.

Usage::

    python bench/bench_host_parallel.py                          # writes bench/results/host_parallel.json
    python bench/bench_host_parallel.py --env-ids Hopper-v5 --workers 1 2 4 --out /tmp/hopper.json
    python bench/bench_host_parallel.py --quick                  # small sizes, does not write the results file
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

import gymnasium
import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import environment, needing_mujoco, write_unless_quick  # noqa: E402
from scg.envs.host import WORKER_START_METHOD, HostEnv  # noqa: E402
from scg.envs.spaces import Discrete  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "host_parallel.json"
DEFAULT_ENV = "HalfCheetah-v5"
DEFAULT_ENVS = (DEFAULT_ENV, "Humanoid-v5")


def random_policy(action_space):
    """A single-example policy ``(theta, obs, key) -> action``: uniform over ``action_space``, reading ``obs``."""
    if isinstance(action_space, Discrete):
        return lambda theta, obs, key: jax.random.randint(key, (), 0, action_space.n) + 0 * jnp.sum(obs).astype(jnp.int32)
    low, high = jnp.asarray(action_space.low), jnp.asarray(action_space.high)
    return lambda theta, obs, key: jax.random.uniform(key, action_space.shape, minval=low, maxval=high) + 0.0 * jnp.sum(obs)


def build(env_id: str, num_envs: int, vectorization: str, seed: int = 0) -> tuple[HostEnv, float]:
    """``(HostEnv, seconds to build it and reset it)``: for ``async`` the seconds of starting the workers."""
    def make():
        return HostEnv(env_id, num_envs, seed=seed, vectorization=vectorization)

    t0 = time.perf_counter()
    host = needing_mujoco(make) if _is_mujoco(env_id) else make()
    return host, time.perf_counter() - t0


def _is_mujoco(env_id: str) -> bool:
    return "mujoco" in str(gymnasium.spec(env_id).entry_point)


def measure(workers_list=(1, 2), repeats: int = 5, env_id: str = DEFAULT_ENV, num_steps: int = 1000,
            seed: int = 0) -> dict:
    """Median env steps/s of ``HostEnv.collect`` for ``sync_W`` and ``async_W``, ``W`` in ``workers_list``, and ratios.

    Returns ``{"env_id", "rates": {name: {...}}, "ratios": {...}, "startup_s": {...}, "loadavg_start", "loadavg_end"}``;
    see the module docstring.
    """
    if repeats < 1 or num_steps < 1 or not workers_list or min(workers_list) < 1:
        raise ValueError(f"repeats, num_steps and every W in workers_list must be >= 1, got "
                         f"repeats={repeats}, num_steps={num_steps}, workers_list={workers_list}")
    hosts, startup, load_start = {}, {}, list(os.getloadavg())
    try:
        for w in workers_list:
            for mode in ("sync", "async"):
                name = f"{mode}_{w}"
                hosts[name], startup[name] = build(env_id, w, mode, seed)
        policy = random_policy(next(iter(hosts.values())).action_space)
        keys = list(jax.random.split(jax.random.key(seed), repeats))  # made before timing: their ops compile once
        for host in hosts.values():  # warm-up: compiles the batched policy for this W, and the key split for num_steps
            host.collect(policy, None, keys[0], num_steps)
        times = {name: [] for name in hosts}
        names, rng = list(hosts), random.Random(seed)
        for r in range(repeats):
            rng.shuffle(names)
            for name in names:
                t0 = time.perf_counter()
                hosts[name].collect(policy, None, keys[r], num_steps)
                times[name].append(time.perf_counter() - t0)
    finally:
        for host in hosts.values():
            host.close()
    rates = {}
    for name, t in times.items():
        steps = hosts[name].num_envs * num_steps
        rates[name] = {"steps_per_s": steps / statistics.median(t), "median_s": statistics.median(t),
                       "min_s": min(t), "max_s": max(t), "env_steps_per_call": steps, "repeats": repeats,
                       "processes": 1 + (hosts[name].num_envs if name.startswith("async") else 0)}
    rate = lambda name: rates[name]["steps_per_s"]  # noqa: E731
    ratios = {f"async_{w}_over_sync_{w}": rate(f"async_{w}") / rate(f"sync_{w}") for w in workers_list}
    base = f"sync_{workers_list[0]}"
    ratios |= {f"{name}_over_{base}": rate(name) / rate(base) for name in rates if name != base}
    return {"env_id": env_id, "num_steps": num_steps, "workers_list": list(workers_list), "rates": rates,
            "ratios": ratios, "startup_s": startup, "loadavg_start": load_start, "loadavg_end": list(os.getloadavg())}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env-ids", nargs="+", default=list(DEFAULT_ENVS), help="gymnasium ids, measured one after another")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="the W values: envs (and worker processes)")
    ap.add_argument("--num-steps", type=int, default=1000, help="steps of every env per collect call")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds; medians over them")
    ap.add_argument("--quick", action="store_true", help="small sizes; does not write the results file")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.num_steps, args.repeats = 100, 2
    env = environment()
    runs = {}
    for env_id in args.env_ids:
        run = runs[env_id] = measure(tuple(args.workers), args.repeats, env_id, args.num_steps)
        print(f"{env_id}, {args.num_steps} steps per call, median of {args.repeats}, load "
              f"{run['loadavg_start'][0]:.2f} -> {run['loadavg_end'][0]:.2f}")
        for name, row in run["rates"].items():
            print(f"{name:>10}: {row['steps_per_s']:>10,.0f} env steps/s  ({row['processes']} processes, "
                  f"start {run['startup_s'][name]:.2f} s)")
        for name, value in run["ratios"].items():
            print(f"  {name}: {value:.2f}")
    result = {
        "config": vars(args) | {"out": str(args.out), "worker_start_method": WORKER_START_METHOD},
        "env_ids": args.env_ids,
        "versions": {"gymnasium": gymnasium.__version__, "mujoco": _version("mujoco")},
        "cpu_count": os.cpu_count(),
        "environment": env | {"loadavg_end": list(os.getloadavg())},
        "runs": runs,
    }
    return write_unless_quick(args, result)


if __name__ == "__main__":
    main()
