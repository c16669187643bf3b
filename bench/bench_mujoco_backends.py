"""Hopper steps per second: brax's MJX backend inside one ``jit`` against gymnasium's MuJoCo on the host.

Two ways to run 64 Hopper environments for 1,000 steps of uniformly random actions in ``[-1, 1]^3``:

- ``mjx_scg``: ``scg.envs.brax_adapter.from_brax("hopper", backend="mjx")`` in
  ``scg.envs.rollout`` with ``VecAutoReset(env, 64)``: one jitted ``lax.scan`` of
  1,000 steps over the 64 environments (``vmap``), resets included;
- ``mjx_brax``: the same physics through brax alone, ``vmap(env.step)`` in a
  ``lax.scan`` with no reset (brax's ``EpisodeWrapper`` at 1,000 steps and
  ``auto_reset=False``): the adapter's overhead is the gap to ``mjx_scg``;
- ``gymnasium_sync``: ``gymnasium.make_vec("Hopper-v5", 64, vectorization_mode="sync")``,
  a Python loop of 1,000 ``step`` calls (MuJoCo's C simulator, one environment at a time; its own autoreset).

The contenders are timed interleaved after a warm-up (compilation apart); we report medians.
Needs brax and ``gymnasium[mujoco]`` (``pip install "scg-jax[brax,mujoco]"``).

Usage::

    python bench/bench_mujoco_backends.py           # writes bench/results/mujoco_backends.json
    python bench/bench_mujoco_backends.py --quick   # 8 envs, 100 steps; does not overwrite the results file
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import environment, interleaved, timed, write_json_atomic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "mujoco_backends.json"


def mjx_scg(num_envs: int, num_steps: int):
    """The jitted rollout of the adapted MJX Hopper, and its argument."""
    from scg.envs import VecAutoReset, rollout
    from scg.envs.brax_adapter import from_brax

    env, params = from_brax("hopper", backend="mjx", episode_length=1000)
    venv = VecAutoReset(env, num_envs)
    act = env.action_space(params)

    def policy(obs, key):
        return jax.random.uniform(key, act.shape, minval=-1.0, maxval=1.0)

    run = jax.jit(lambda key: rollout(venv, params, policy, key, num_steps).reward)
    return run, (jax.random.key(0),)


def mjx_brax(num_envs: int, num_steps: int):
    """brax's own ``vmap(step)`` in a ``lax.scan``, no reset, and its argument."""
    from brax import envs

    env = envs.create("hopper", episode_length=1000, auto_reset=False, backend="mjx")

    def run(key):
        key_reset, key_scan = jax.random.split(key)
        state = jax.vmap(env.reset)(jax.random.split(key_reset, num_envs))

        def step(state, key_t):
            action = jax.random.uniform(key_t, (num_envs, env.action_size), minval=-1.0, maxval=1.0)
            state = jax.vmap(env.step)(state, action)
            return state, state.reward

        return jax.lax.scan(step, state, jax.random.split(key_scan, num_steps))[1]

    return jax.jit(run), (jax.random.key(0),)


def gymnasium_sync(num_envs: int, num_steps: int):
    """A closure stepping ``SyncVectorEnv`` of gymnasium's Hopper-v5 ``num_steps`` times."""
    import gymnasium

    venv = gymnasium.make_vec("Hopper-v5", num_envs, vectorization_mode="sync")
    venv.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, (num_steps, num_envs, 3)).astype(np.float32)

    def run():
        for a in actions:
            venv.step(a)
        return jnp.zeros(())  # for block_until_ready

    return run, ()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-envs", type=int, default=64)
    ap.add_argument("--num-steps", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="8 envs, 100 steps; does not overwrite the results file")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.quick:
        args.num_envs, args.num_steps, args.reps = 8, 100, 3
    steps = args.num_envs * args.num_steps
    result = {"environment": environment(), "num_envs": args.num_envs, "num_steps": args.num_steps,
              "env_steps_per_call": steps}
    fns, compile_s = {}, {}
    for name, make in [("mjx_scg", mjx_scg), ("mjx_brax", mjx_brax), ("gymnasium_sync", gymnasium_sync)]:
        fn, fn_args = make(args.num_envs, args.num_steps)
        t0 = time.perf_counter()
        _, compile_s[name] = timed(fn, *fn_args)  # the first call: compilation (and one run) for the jitted ones
        fns[name] = (lambda f, a: lambda: f(*a))(fn, fn_args)
        print(f"{name}: first call {compile_s[name]:.1f} s ({time.perf_counter() - t0:.1f} s)", flush=True)
    timing = interleaved(fns, (), reps=args.reps, warmup=0)
    for name in fns:
        result[name] = {**timing[name], "first_call_s": compile_s[name], "steps_per_s": steps / timing[name]["median_s"]}
        print(f"{name}: {result[name]['steps_per_s']:,.0f} steps/s (median of {timing[name]['reps']})", flush=True)
    result["mjx_scg_over_gymnasium"] = result["mjx_scg"]["steps_per_s"] / result["gymnasium_sync"]["steps_per_s"]
    result["mjx_scg_over_mjx_brax"] = result["mjx_scg"]["steps_per_s"] / result["mjx_brax"]["steps_per_s"]
    if not args.quick:
        write_json_atomic(str(args.out), result)
    return result


if __name__ == "__main__":
    main()
