"""Environment steps per second: the JAX environments against gymnasium's CartPole.

For CartPole-v1 (``scg.envs.classic_control``) and HandMass (``scg.envs.paper``),
at 1, 64, 1,024 and 4,096 parallel environments: random actions, one jitted
``lax.scan`` over ``--steps`` steps of a ``vmap`` over environments, with
auto-reset (``scg.envs.wrappers.VecAutoReset``; at 4,096 CartPoles also the
per-environment ``AutoReset`` and no reset at all, to show where the time
goes). Compile time is measured apart (``lower().compile()``);
run time is the median of ``--repeats`` calls, each ended by
``block_until_ready``. In the same run: gymnasium's CartPole stepped one env
at a time in a Python loop, and as ``gymnasium.vector.SyncVectorEnv`` of 64
(plus, for context, gymnasium's NumPy-vectorised ``CartPoleVectorEnv``, and
gymnax if it is importable; it is never installed by this script).

Usage::

    python bench/bench_envs.py            # writes bench/results/envs.json
    python bench/bench_envs.py --quick    # smaller sizes, for a smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gymnasium
import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from scg.envs.classic_control import CartPole  # noqa: E402
from scg.envs.spaces import Discrete  # noqa: E402
from scg.envs.wrappers import AutoReset, VecAutoReset  # noqa: E402

NUM_ENVS = (1, 64, 1024, 4096)
RESULTS = Path(__file__).resolve().parent / "results" / "envs.json"


def sample_batch(space, key: jax.Array, n: int) -> jax.Array:
    """``n`` random actions in one call (one PRNG draw per step, not one key per environment)."""
    if isinstance(space, Discrete):
        return jax.random.randint(key, (n,), 0, space.n, dtype=space.dtype)
    low, high = np.broadcast_to(space.low_array, space.shape), np.broadcast_to(space.high_array, space.shape)
    return jax.random.uniform(key, (n,) + space.shape, space.dtype, low, high)


def make_rollout(env, num_envs: int, num_steps: int, reset: str = "vec"):
    """A jitted ``key -> (sum of rewards, number of episode ends)`` running ``num_envs x num_steps`` env steps.

    Per step, one key gives the actions of all environments (``sample_batch``). ``reset``:

    * ``"vec"``: ``scg.envs.wrappers.VecAutoReset``, one key per step for the batch;
      initial states are drawn only for the ended environments (the library's
      way to run many environments);
    * ``"per_env"``: ``vmap`` of ``scg.envs.wrappers.AutoReset``, one key per
      environment, a reset drawn for every environment at every step;
    * ``"none"``: ``vmap`` of the bare ``step``; ended episodes run on past their
      end (an ablation: what the dynamics alone cost).
    """
    params = env.default_params
    space = env.action_space(params)
    if reset == "vec":
        venv = VecAutoReset(env, num_envs)
        init, step = venv.reset, venv.step
    else:
        stepper = AutoReset(env) if reset == "per_env" else env
        vstep = jax.vmap(stepper.step, (0, 0, 0, None))
        init = lambda k, p: jax.vmap(env.reset, (0, None))(jax.random.split(k, num_envs), p)  # noqa: E731
        step = lambda k, s, a, p: vstep(jax.random.split(k, num_envs), s, a, p)  # noqa: E731

    def scan_body(states, key_t):
        k_act, k_env = jax.random.split(key_t)
        ts = step(k_env, states, sample_batch(space, k_act, num_envs), params)
        return ts.state, (ts.reward.sum(), (ts.terminated | ts.truncated).sum())

    def rollout(key):
        k_reset, k_scan = jax.random.split(key)
        _, states = init(k_reset, params)
        _, (r, done) = jax.lax.scan(scan_body, states, jax.random.split(k_scan, num_steps))
        return r.sum(), done.sum()

    return jax.jit(rollout)


# The PRNG implementation of the keys handed to the rollout. The environments are
# agnostic; on CPU, threefry (JAX's default) dominates the cost of random actions and
# auto-resets, and the counter-based "rbg" generator (jax.random.key(seed, impl="rbg"),
# or jax_default_prng_impl=rbg) is the usual remedy. Both are measured.
PRNG_IMPL = "rbg"


def bench_jax(env, num_envs: int, num_steps: int, repeats: int, prng: str | None = None, reset: str = "vec") -> dict:
    out = _time_compiled(make_rollout(env, num_envs, num_steps, reset), num_envs, num_steps, repeats, prng or PRNG_IMPL)
    return out | {"reset": reset}


def _time_compiled(rollout, num_envs: int, num_steps: int, repeats: int, prng: str = "threefry2x32") -> dict:
    key = lambda i: jax.random.key(i, impl=prng)  # noqa: E731
    t0 = time.perf_counter()
    compiled = rollout.lower(key(0)).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(key(0)))  # warm-up (allocations)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        _, n_done = jax.block_until_ready(compiled(key(i + 1)))
        times.append(time.perf_counter() - t0)
    run_s = statistics.median(times)
    return dict(
        num_envs=num_envs,
        num_steps=num_steps,
        prng=prng,
        compile_s=compile_s,
        run_s_median=run_s,
        run_s_all=times,
        steps_per_s=num_envs * num_steps / run_s,
        episodes_ended=int(n_done),
    )


def bench_gym_single(total_steps: int, repeats: int) -> dict:
    env = gymnasium.make("CartPole-v1")
    actions = np.random.default_rng(0).integers(2, size=total_steps)
    times = []
    for i in range(repeats):
        env.reset(seed=i)
        t0 = time.perf_counter()
        for a in actions:
            _, _, term, trunc, _ = env.step(int(a))
            if term or trunc:
                env.reset()
        times.append(time.perf_counter() - t0)
    env.close()
    return dict(num_envs=1, total_steps=total_steps, run_s_median=statistics.median(times), run_s_all=times,
                steps_per_s=total_steps / statistics.median(times))


def bench_gym_vector(make_vec, num_envs: int, num_steps: int, repeats: int) -> dict:
    """Any gymnasium ``VectorEnv`` (its own autoreset); ``num_envs * num_steps`` env steps per repeat."""
    venv = make_vec()
    actions = np.random.default_rng(0).integers(2, size=(num_steps, num_envs))
    times = []
    for i in range(repeats):
        venv.reset(seed=i)
        t0 = time.perf_counter()
        for a in actions:
            venv.step(a)
        times.append(time.perf_counter() - t0)
    venv.close()
    return dict(num_envs=num_envs, num_steps=num_steps, run_s_median=statistics.median(times), run_s_all=times,
                steps_per_s=num_envs * num_steps / statistics.median(times))


def bench_gymnax(num_envs: int, num_steps: int, repeats: int) -> dict | None:
    """gymnax's CartPole-v1 with the same scan, only if ``import gymnax`` works."""
    try:
        import gymnax
    except ImportError:
        return None
    genv, gparams = gymnax.make("CartPole-v1")

    def rollout(key):
        k_reset, k_scan = jax.random.split(key)
        _, states = jax.vmap(genv.reset, (0, None))(jax.random.split(k_reset, num_envs), gparams)

        def body(states, keys):
            def one(state, key):
                k_act, k_env = jax.random.split(key)
                a = genv.action_space(gparams).sample(k_act)
                _, state, r, done, _ = genv.step(k_env, state, a, gparams)
                return state, r

            states, r = jax.vmap(one)(states, keys)
            return states, r.sum()

        return jax.lax.scan(body, states, jax.random.split(k_scan, (num_steps, num_envs)))[1].sum()

    compiled = jax.jit(rollout).lower(jax.random.key(0)).compile()
    jax.block_until_ready(compiled(jax.random.key(0)))
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(jax.random.key(i + 1)))
        times.append(time.perf_counter() - t0)
    return dict(num_envs=num_envs, num_steps=num_steps, run_s_median=statistics.median(times),
                steps_per_s=num_envs * num_steps / statistics.median(times))


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000, help="scan length of each JAX rollout")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--gym-steps", type=int, default=20_000, help="steps of the single gymnasium env per repeat")
    ap.add_argument("--gym-vec-steps", type=int, default=500, help="steps of the 64-env SyncVectorEnv per repeat")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test); does not overwrite the results file")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--prng", default="rbg", choices=["threefry2x32", "rbg", "unsafe_rbg"],
                    help="PRNG implementation of the rollout keys (a threefry row at 4,096 envs is always added)")
    args = ap.parse_args(argv)
    global PRNG_IMPL
    PRNG_IMPL = args.prng
    if args.quick:
        args.steps, args.repeats, args.gym_steps, args.gym_vec_steps = 50, 2, 500, 20
    num_envs = NUM_ENVS

    envs, notes = {"CartPole-v1": CartPole()}, []
    try:
        from scg.envs.paper import HandMass

        envs["HandMass"] = HandMass()
    except ImportError as e:
        notes.append(f"HandMass skipped: scg.envs.paper.HandMass not importable ({e})")
        print(notes[-1])

    results = {"jax": {}, "gymnasium": {}}
    for name, env in envs.items():
        results["jax"][name] = []
        for n in num_envs:
            r = bench_jax(env, n, args.steps, args.repeats)
            results["jax"][name].append(r)
            print(f"jax  {name:12s} N={n:5d}  compile {r['compile_s']:6.2f}s  run {r['run_s_median']:7.4f}s  "
                  f"{r['steps_per_s']:14,.0f} steps/s")
    notes.append("auto-reset: scg.envs.wrappers.VecAutoReset (initial states drawn only for the ended environments)")

    g1 = bench_gym_single(args.gym_steps, args.repeats)
    print(f"gymnasium CartPole single env:        {g1['steps_per_s']:14,.0f} steps/s")
    g64 = bench_gym_vector(
        lambda: gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make("CartPole-v1")] * 64),
        64, args.gym_vec_steps, args.repeats,
    )
    print(f"gymnasium CartPole SyncVectorEnv(64): {g64['steps_per_s']:14,.0f} steps/s")
    gnp = bench_gym_vector(
        lambda: gymnasium.make_vec("CartPole-v1", num_envs=4096, vectorization_mode="vector_entry_point"),
        4096, max(args.gym_vec_steps // 5, 10), args.repeats,
    )
    print(f"gymnasium CartPoleVectorEnv(4096) (NumPy-vectorised, context only): {gnp['steps_per_s']:14,.0f} steps/s")
    results["gymnasium"] = {"single": g1, "sync_vector_64": g64, "numpy_vector_4096": gnp}

    gx = bench_gymnax(4096, args.steps, args.repeats)
    if gx is None:
        notes.append("gymnax not importable: comparison skipped (not installed on purpose)")
    else:
        results["gymnax_cartpole_4096"] = gx

    # Where the time goes at 4,096 envs: the same scan without auto-reset (states run on past the end;
    # only the cost matters), with the per-environment AutoReset (a fresh initial state drawn for every
    # env at every step), and with threefry instead of rbg keys.
    abl = bench_jax(CartPole(), 4096, args.steps, args.repeats, reset="none")
    print(f"jax  CartPole-v1  N= 4096  without auto-reset (ablation): {abl['steps_per_s']:14,.0f} steps/s")
    results["jax_ablation_cartpole_4096_no_autoreset"] = abl
    per_env = bench_jax(CartPole(), 4096, args.steps, args.repeats, reset="per_env")
    print(f"jax  CartPole-v1  N= 4096  vmap(AutoReset) per env:      {per_env['steps_per_s']:14,.0f} steps/s")
    results["jax_cartpole_4096_per_env_autoreset"] = per_env
    tf = bench_jax(CartPole(), 4096, args.steps, args.repeats, prng="threefry2x32")
    print(f"jax  CartPole-v1  N= 4096  threefry keys:              {tf['steps_per_s']:14,.0f} steps/s")
    results["jax_cartpole_4096_threefry"] = tf

    jax_cp = {r["num_envs"]: r["steps_per_s"] for r in results["jax"]["CartPole-v1"]}
    ratios = {
        f"jax_cartpole_{n}_over_gym_sync_vector_64": jax_cp[n] / g64["steps_per_s"] for n in num_envs
    } | {f"jax_cartpole_{n}_over_gym_single": jax_cp[n] / g1["steps_per_s"] for n in num_envs}
    ratios["jax_cartpole_4096_over_gym_numpy_vector_4096"] = jax_cp[4096] / gnp["steps_per_s"]
    ratios["jax_cartpole_4096_no_autoreset_over_gym_sync_vector_64"] = abl["steps_per_s"] / g64["steps_per_s"]
    ratios["jax_cartpole_4096_per_env_autoreset_over_gym_sync_vector_64"] = per_env["steps_per_s"] / g64["steps_per_s"]
    ratios["jax_cartpole_4096_threefry_over_gym_sync_vector_64"] = tf["steps_per_s"] / g64["steps_per_s"]
    target = 100.0
    out = {
        "config": {
            "num_envs": list(num_envs),
            "jax_scan_steps": args.steps,
            "repeats": args.repeats,
            "gym_single_steps": args.gym_steps,
            "gym_sync_vector_steps": args.gym_vec_steps,
            "quick": args.quick,
            "jax": jax.__version__,
            "gymnasium": gymnasium.__version__,
            "devices": [str(d) for d in jax.devices()],
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "results": results,
        "ratios": ratios,
        "target": {"jax_cartpole_4096_over_gym_sync_vector_64": target,
                   "met": ratios["jax_cartpole_4096_over_gym_sync_vector_64"] >= target},
        "notes": notes,
    }
    for k, v in ratios.items():
        print(f"{k:50s} {v:10.1f}x")
    for note in notes:
        print("note:", note)
    if not args.quick or args.out != RESULTS:
        write_json_atomic(args.out, out)
        print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
