"""Chunked training into a run directory: metrics, checkpoints, progress, Ctrl-C and resume.

Training is :func:`scg.algorithms.make_train`: each chunk of ``chunk``
iterations is one ``jit`` of a ``lax.scan`` (seeds ``vmap``-ed), so the host
only sees the state between chunks, where it appends the metrics
(:mod:`scg.algorithms.metrics_log`), writes the checkpoint
(:mod:`scg.algorithms.checkpoint`) and moves the progress bar. The files are
those of :mod:`scg.algorithms.run_files`.
"""
from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path

import jax
import numpy as np

from scg.algorithms import checkpoint
from scg.algorithms.config import Config
from scg.algorithms.interrupt import DeferredInterrupt
from scg.algorithms.metrics_log import metric_rows, read_metrics, truncate_metrics
from scg.algorithms.plots import plot_runs
from scg.algorithms.run_config import algorithm_config, seed_keys, seed_list
from scg.algorithms.run_files import CHECKPOINT, CURVE, METRICS, atomic_write
from scg.algorithms.train import make_train
from scg.envs import registry


@functools.lru_cache(maxsize=8)
def _compiled(algo: str, env_name: str, config: Config):
    env, params = registry.make(env_name)
    return make_train(algo, env, params, config)


def compiled(config: dict):
    """``make_train`` of a run's configuration, once per process and configuration (repeated runs share the chunk)."""
    return _compiled(config["algo"], config["env"], algorithm_config(config))


def train(run_dir, config: dict, *, resume: bool = False, progress: bool = True, on_chunk=None) -> dict:
    """Train ``config`` (from :func:`scg.algorithms.run_config.resolve`) into ``run_dir`` chunk by chunk.

    With ``resume`` the state and progress come from ``checkpoint.npz`` and
    ``metrics.jsonl`` is cut back to the checkpoint. Ctrl-C stops at the next
    chunk boundary (twice: at once); a ``KeyboardInterrupt`` leaves on disk
    what the last boundary wrote, and the summary says ``interrupted``.
    ``on_chunk(progress)`` is called after each checkpoint. Returns a summary dict.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    init_all, run_all = compiled(config)
    if resume and (run_dir / CHECKPOINT).exists():
        state, prog = checkpoint.load(run_dir, jax.eval_shape(init_all, seed_keys(config)))
        truncate_metrics(run_dir, prog["iteration"])
    else:
        state = checkpoint.strong_types(init_all(seed_keys(config)))
        prog = {"iteration": 0, "env_steps": [0.0] * config["seeds"], "wall_time": 0.0, "steps_per_iteration": None}
        atomic_write(run_dir / METRICS, lambda f: None)
        checkpoint.save(run_dir, state, prog)
    target, chunk = config["steps"], config["chunk"]
    done = lambda prog: min(min(prog["env_steps"]), target)  # noqa: E731  (the slowest seed sets the pace)
    bar = tqdm(total=target, initial=int(done(prog)), unit="step", disable=not progress, desc=run_dir.name)
    clock = time.perf_counter() - prog["wall_time"]  # wall time continues across resumed sessions
    stop, interrupted = DeferredInterrupt(bar), False
    try:
        with stop, open(run_dir / METRICS, "a") as f:
            while done(prog) < target:
                per_iter = prog["steps_per_iteration"]  # unknown until the first chunk has run
                n = min(chunk, math.ceil((target - done(prog)) / per_iter)) if per_iter else chunk
                t0 = time.perf_counter() - clock
                new_state, metrics = run_all(state, n)
                metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
                t1 = time.perf_counter() - clock
                rows, env_steps = metric_rows(
                    metrics, seed_list(config), prog["iteration"], np.asarray(prog["env_steps"]), t0, t1
                )
                f.write("".join(json.dumps(r) + "\n" for r in rows))
                f.flush()
                per_iter = float(np.max(metrics["env_steps"].sum(axis=1)) / n)
                if per_iter <= 0:
                    raise RuntimeError(f"{config['algo']} reported no environment steps in {n} iterations")
                new_prog = {"iteration": prog["iteration"] + n, "env_steps": env_steps.tolist(), "wall_time": t1,
                            "steps_per_iteration": per_iter}
                checkpoint.save(run_dir, new_state, new_prog)
                bar.update(int(done(new_prog) - done(prog)))
                state, prog = new_state, new_prog
                with np.errstate(all="ignore"):
                    mean_return = float(np.nanmean(metrics.get("mean_return", np.full((1, 1), np.nan))[:, -1]))
                if math.isfinite(mean_return):
                    bar.set_postfix(mean_return=f"{mean_return:.1f}")
                if on_chunk is not None:
                    on_chunk(prog)
                if stop.stop_requested():
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    if not interrupted:
        checkpoint.save_params(run_dir, state)
    rows = read_metrics(run_dir)
    if rows:
        plot_runs([run_dir], run_dir / CURVE)
    final = [r.get("mean_return") for r in rows if r["iteration"] == prog["iteration"]]
    return {"run_dir": str(run_dir), "interrupted": interrupted, "iteration": prog["iteration"],
            "env_steps": prog["env_steps"], "wall_time": prog["wall_time"], "final_mean_return": final}
