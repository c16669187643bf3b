"""Shared helpers for the benchmark scripts: timing, fits, environment, atomic JSON.

Timing rules used by every script here:

- each function is warmed up (compiled) before it is timed;
- one sample is one call followed by ``jax.block_until_ready`` on its output;
- functions that are compared are timed *interleaved* (A, B, A, B, ... in a
  shuffled order each round) in the same process, so slow drift of the machine
  (another process, frequency scaling) hits both alike;
- we report medians (and the 25/75 percentiles), never means.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import tempfile
import time
from typing import Any, Callable

import jax
import numpy as np


def call_time(fn: Callable, *args) -> float:
    """Seconds for one call of ``fn(*args)`` up to ``block_until_ready`` of its output."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def interleaved(fns: dict[str, Callable], args: tuple, *, reps: int = 200, warmup: int = 3,
                max_seconds: float | None = None, seed: int = 0) -> dict[str, dict]:
    """Time every function in ``fns`` on the same ``args``, interleaved; medians in seconds.

    Returns ``{name: {"median_s", "p25_s", "p75_s", "reps"}}``. Stops early after
    ``max_seconds`` of timing (at least 10 rounds are always run).
    """
    for fn in fns.values():
        for _ in range(warmup):
            call_time(fn, *args)
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    start = time.perf_counter()
    for r in range(reps):
        rng.shuffle(names)
        for name in names:
            samples[name].append(call_time(fns[name], *args))
        if max_seconds is not None and r >= 10 and time.perf_counter() - start > max_seconds:
            break
    return {name: summary(s) for name, s in samples.items()}


def compiled_training_run(make, num_envs: int, iterations: int):
    """Compile ``run_all(states, iterations)`` of ``make({"num_envs": num_envs})``; ``(compiled, states, timings)``.

    ``make`` is an ``scg.algorithms.make_train``-style factory returning ``(init_all, run_all)``.
    """
    init_all, run_all = make({"num_envs": num_envs})
    states = jax.block_until_ready(init_all(jax.random.split(jax.random.key(0), 1)))
    t0 = time.perf_counter()
    lowered = run_all.lower(states, iterations)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, states, {"trace_s": t1 - t0, "xla_compile_s": t2 - t1}


def training_throughput(makers: dict, num_envs: int, horizon: int, iterations: int, reps: int,
                        max_seconds: float) -> dict:
    """Whole training iterations of ``makers["scg"]`` vs ``makers["handwritten"]``, interleaved; env steps per second."""
    fns, compile_times = {}, {}
    for name, make in makers.items():
        compiled, states, compile_times[name] = compiled_training_run(make, num_envs, iterations)
        fns[name] = (lambda c, s: lambda: c(s))(compiled, states)
    timing = interleaved(fns, (), reps=reps, warmup=1, max_seconds=max_seconds)
    steps = num_envs * horizon * iterations
    out = {"num_envs": num_envs, "horizon": horizon, "iterations_per_call": iterations, "env_steps_per_call": steps}
    for name in fns:
        out[name] = {**timing[name], **compile_times[name], "steps_per_s": steps / timing[name]["median_s"]}
    out["ratio_scg_over_handwritten_time"] = timing["scg"]["median_s"] / timing["handwritten"]["median_s"]
    out["within_5_percent"] = out["ratio_scg_over_handwritten_time"] <= 1.05
    return out


def summary(samples) -> dict:
    s = np.asarray(samples)
    return {
        "median_s": float(np.median(s)),
        "p25_s": float(np.percentile(s, 25)),
        "p75_s": float(np.percentile(s, 75)),
        "reps": int(s.size),
    }


def timed(fn: Callable, *args) -> tuple[Any, float]:
    """``(fn(*args) blocked until ready, seconds)``: for one-off (first-call, compile) timings."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - t0


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of ``log y`` against ``log x``: the growth exponent ``k`` in ``y ~ x**k``."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])


def environment() -> dict:
    """The configuration a reader needs to compare numbers across machines."""
    dev = jax.devices()[0]
    return {
        "jax_version": jax.__version__,
        "jaxlib_version": getattr(jax.lib, "__version__", None) or _jaxlib_version(),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', str(dev))}",
        "num_devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "x64": bool(jax.config.jax_enable_x64),
        "prng_impl": str(jax.config.jax_default_prng_impl),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_start": list(os.getloadavg()),  # the machine may be shared: read timings with this in mind
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _jaxlib_version():
    try:
        import jaxlib

        return jaxlib.__version__
    except Exception:  # pragma: no cover - informative only
        return None


def write_json_atomic(path: str, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: a temp file in the same folder, then ``os.replace``.

    A reader never sees a half-written file, and an interrupted run leaves the
    previous results in place. Non-finite floats are written as ``null``.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_finite(obj), f, indent=2, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_unless_quick(args, result: dict) -> dict:
    """Write ``result`` to ``args.out`` atomically unless ``args.quick`` (a smoke run keeps the committed file)."""
    if not args.quick:
        write_json_atomic(str(args.out), result)
        print(f"wrote {args.out}")
    return result


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _finite(obj.item())
    return obj


MUJOCO_INSTALL = 'MuJoCo is not installed: pip install -e ".[mujoco]"  (or pip install "gymnasium[mujoco]")'


def needing_mujoco(make: Callable):
    """``make()`` (it creates a MuJoCo environment), or exit with how to install MuJoCo where it is missing."""
    try:
        import mujoco  # noqa: F401

        return make()
    except ImportError as err:
        raise SystemExit(f"{MUJOCO_INSTALL}\n({err})") from err
    except Exception as err:  # gymnasium.error.DependencyNotInstalled
        if "mujoco" in str(err).lower():
            raise SystemExit(f"{MUJOCO_INSTALL}\n({err})") from err
        raise
