"""Chunked training into a run directory: metrics, checkpoints, progress, Ctrl-C and resume.

Training is :func:`scg.algorithms.make_train`: each chunk of ``chunk``
iterations is one ``jit`` of a ``lax.scan`` (seeds ``vmap``-ed), so the host
only sees the state between chunks, where it appends the metrics
(:mod:`scg.algorithms.metrics_log`), writes the checkpoint
(:mod:`scg.algorithms.checkpoint`) and moves the progress bar. The files are
those of :mod:`scg.algorithms.run_files`; the process holds the run's lock
(:class:`scg.algorithms.run_files.RunLock`) from before it writes the first
file until it has written the last.

Runs train whole iterations: ``steps`` is rounded up to the next whole
iteration. Where the config fixes the env steps of an iteration
(:func:`steps_per_iteration`), the first chunk is cut to what ``steps`` needs;
otherwise (episodes of varying length) it is ``chunk`` iterations, and later
chunks are cut by the steps per iteration the earlier ones measured.

A sweep (``config["sweep"]``) trains every point of its grid on every seed in
the same chunks: its members (:func:`scg.algorithms.run_config.members`) take
the place of the seeds everywhere here, and each metrics row names its point
(``"sweep": {"lr": 0.001}``) beside its ``seed``.

The members are split over the devices of a mesh (:mod:`scg.algorithms.parallel`): by default the most of
``jax.devices()`` that divide them evenly, so on CPU, after :func:`scg.algorithms.parallel.use_cpu_devices`,
one host device per core. Under ``jax.distributed`` every process trains its share and process 0 alone
writes the run directory (the others read it only to resume, so it must be on a filesystem they share).
``config.json`` records the devices of the latest session (``"devices"``). A run with ``"env_shards"`` (fewer
seeds than devices: :func:`scg.algorithms.train.make_train`) puts each seed's shards on a second mesh axis
(:func:`scg.algorithms.parallel.run_mesh`); its checkpoint keeps every shard, its ``params.npz`` shard 0's.
"""
from __future__ import annotations

import contextlib
import functools
import math
import sys
import time
from pathlib import Path

import jax
import numpy as np

from scg.algorithms import checkpoint
from scg.algorithms.config import Config
from scg.algorithms.interrupt import DeferredInterrupt
from scg.algorithms.metrics_log import append_rows, metric_rows, read_metrics, truncate_metrics
from scg.algorithms.plots import plot_runs
from scg.algorithms import parallel, run_config
from scg.algorithms.run_config import algorithm_config, members, seed_keys
from scg.algorithms.run_files import (
    CHECKPOINT, CONFIG, CURVE, METRICS, RunError, RunLock, atomic_write, remove_stale_temporaries, write_json,
)
from scg.algorithms.train import make_train, member_states
from scg.envs import registry


@functools.lru_cache(maxsize=8)
def _compiled(algo: str, env_name: str, config: Config, sweep: tuple | None, mesh, env_shards: int):
    env, params = registry.make(env_name)
    return make_train(algo, env, params, config, sweep=None if sweep is None else {k: list(v) for k, v in sweep},
                      mesh=mesh, env_shards=env_shards)


def compiled(config: dict, mesh=None):
    """``make_train`` of a run's configuration (its sweep included) over ``mesh``, once per process,
    configuration and mesh (repeated runs share the chunk)."""
    sweep = config.get("sweep")
    key = None if sweep is None else tuple((k, tuple(v)) for k, v in sweep.items())
    return _compiled(config["algo"], config["env"], algorithm_config(config), key, mesh, run_config.env_shards(config))


def _progress_bar(tqdm, total: int, initial: int, desc: str, enabled: bool):
    """tqdm's bar on a terminal; elsewhere (a log file, a pipe, CI) one line per chunk instead of carriage returns.

    Both count env steps per seed (the slowest seed's; a sweep's members count as seeds); the speed of all seeds
    together is in the postfix (:func:`speed_text`), in place of tqdm's own rate, which would count one seed's steps.
    """
    if not enabled or sys.stderr.isatty():
        return tqdm(total=total, initial=initial, unit="step", disable=not enabled, desc=desc, bar_format=_BAR_FORMAT)
    return _LinePerChunk(total, initial, desc)


_BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} steps per seed [{elapsed}<{remaining}{postfix}]"


def speed_text(env_steps: float, seconds: float, seeds: int) -> str:
    """``"T env steps/s (P per seed)"``: T the ``env_steps`` of all ``seeds`` together over ``seconds``,
    P = T / seeds."""
    total = env_steps / max(seconds, 1e-9)
    return f"{total:,.0f} env steps/s ({total / seeds:,.0f} per seed)"


def chunk_postfix(mean_return: float, env_steps: float, seconds: float, seeds: int, compiled: bool) -> str:
    """What the bar shows after a chunk: the mean return (where an episode finished) and the chunk's speed, or,
    for a chunk that compiled first (its size had not run yet), how long compiling and running it took."""
    parts = [f"mean_return {mean_return:.1f}"] if math.isfinite(mean_return) else []
    parts.append(f"compiled and ran in {seconds:.1f} s" if compiled else speed_text(env_steps, seconds, seeds))
    return ", ".join(parts)


class _LinePerChunk:
    """The part of tqdm's interface :func:`train` uses, printing
    ``desc: n / total env steps per seed (p%), postfix, s``."""

    def __init__(self, total: int, initial: int, desc: str):
        self.total, self.n, self.desc, self.postfix, self.start = total, initial, desc, "", time.perf_counter()

    def update(self, n: int) -> None:
        self.n += n
        elapsed = time.perf_counter() - self.start
        postfix = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n:,} / {self.total:,} env steps per seed ({100 * self.n / max(self.total, 1):.0f}%)"
              f"{postfix}, {elapsed:.1f} s", file=sys.stderr, flush=True)

    def set_postfix_str(self, text: str) -> None:  # shown with the next chunk's line
        self.postfix = text

    def close(self) -> None:
        pass


def steps_per_iteration(config: dict) -> int | None:
    """Env steps per seed of one iteration of a run's ``config`` where it fixes them, else ``None``
    (:func:`scg.algorithms.run_config.steps_per_iteration`)."""
    return run_config.steps_per_iteration(config["algorithm_config"])


def resume_point(run_dir) -> dict | None:
    """The progress of the checkpoint a resumed run continues from, or ``None`` when it has nothing to lose
    (neither a checkpoint nor a line of metrics: it was stopped before its first checkpoint) and starts afresh.

    Raises :class:`scg.algorithms.run_files.RunError` when metrics exist without a checkpoint, and
    :class:`scg.algorithms.config.ConfigError` when the checkpoint is damaged; both name the file.
    """
    run_dir = Path(run_dir)
    try:
        return checkpoint.read_progress(run_dir)
    except FileNotFoundError:
        rows = read_metrics(run_dir)
        if not rows:
            return None
        last = max(r["iteration"] for r in rows)
        raise RunError(
            f"{run_dir / CHECKPOINT} is missing, so {run_dir} cannot continue its {METRICS} (iteration {last}); "
            f"restore {CHECKPOINT} from a copy of the run, or train a new run with another --name "
            f"({METRICS} is left as it is)"
        ) from None


class PeerLost(RuntimeError):
    """Under ``jax.distributed``: a collective failed because another process of the run stopped or died."""


def devices_record(mesh) -> dict:
    """What ``config.json`` records of where a session trained: platform, devices, processes."""
    first = mesh.devices.flat[0]
    return {"platform": first.platform, "count": int(mesh.devices.size), "processes": jax.process_count(),
            "kind": getattr(first, "device_kind", first.platform)}


def _collective(fn, *args):
    """``fn(*args)``; with several processes, a failure there means a peer is gone (:class:`PeerLost`)."""
    if jax.process_count() == 1:
        return fn(*args)
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001  (gloo raises ValueError, XLA a JaxRuntimeError)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise PeerLost(f"process {jax.process_index()} of {jax.process_count()} lost contact with the others "
                       f"({first})") from err


def _any_process(flag: bool) -> bool:
    """Whether ``flag`` holds on any process (all processes must ask together)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.any(_collective(multihost_utils.process_allgather, np.asarray([flag]))))


def train(run_dir, config: dict, *, resume: bool = False, progress: bool = True, on_start=None, on_chunk=None,
          on_rows=None, devices: int | None = None) -> dict:
    """Train ``config`` (from :func:`scg.algorithms.run_config.resolve`) into ``run_dir`` chunk by chunk.

    With ``resume`` the state and progress come from ``checkpoint.npz`` and
    ``metrics.jsonl`` is cut back to the checkpoint; ``config.json`` is
    (re)written only once the checkpoint has loaded. Ctrl-C, from the start
    (compilation included), stops at the next chunk boundary (twice: at once);
    a ``KeyboardInterrupt`` leaves on disk what the last boundary wrote, and
    the summary says ``interrupted``. ``on_start(progress)`` is called once the
    state is ready (``progress`` with the ``"devices"`` record beside it),
    ``on_chunk(progress)`` after each checkpoint, ``on_rows(rows)`` with each
    chunk's metric rows once ``metrics.jsonl`` has them (another log:
    :class:`scg.algorithms.metrics_log.TensorBoardLog`). Before anything is
    written it raises :class:`scg.algorithms.run_files.RunError`
    (another process trains the run; metrics without a checkpoint) or
    :class:`scg.algorithms.config.ConfigError` (a damaged checkpoint); an
    ``OSError`` later (a full disk) names the file and leaves the last
    checkpoint as it was. ``devices``: how many devices train the members (all of every process's, under
    ``jax.distributed``); ``None`` takes the most that split them evenly
    (:func:`scg.algorithms.parallel.member_mesh`). Under ``jax.distributed`` a process that loses the others
    raises :class:`PeerLost`, leaving what the last checkpoint holds. Returns a summary dict.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    per_iter = steps_per_iteration(config)
    points, seeds = zip(*members(config))  # per member of the states' leading axis
    sweep = None if config.get("sweep") is None else list(points)
    prog = {"iteration": 0, "env_steps": [0.0] * len(seeds), "wall_time": 0.0, "steps_per_iteration": per_iter}
    target, chunk = config["steps"], config["chunk"]
    done = lambda prog: min(min(prog["env_steps"]), target)  # noqa: E731  (the slowest seed sets the pace)
    shards = run_config.env_shards(config)
    mesh = parallel.run_mesh(len(seeds), shards, devices)
    placement = parallel.Placement(mesh)
    config = {**config, "devices": devices_record(mesh)}
    writer = jax.process_index() == 0  # process 0 alone writes the run directory
    progress = progress and writer
    stop = DeferredInterrupt(lambda text: tqdm.write(text, file=sys.stderr))
    interrupted, saved, bar = False, False, None
    with stop, RunLock(run_dir) if writer else contextlib.nullcontext():
        try:
            if writer:
                remove_stale_temporaries(run_dir)
            start = resume_point(run_dir) if resume else None
            prog, saved = start or prog, start is not None
            if start is None and writer:
                write_json(run_dir / CONFIG, config)  # first: a run stopped while compiling can be resumed
            init_all, run_all = compiled(config, mesh)
            if start is not None:
                state, prog = checkpoint.load(run_dir, jax.eval_shape(init_all, seed_keys(config)))
                state = placement.put(state)
                if writer:
                    write_json(run_dir / CONFIG, config)  # only now that the checkpoint loaded: --steps may grow
                    truncate_metrics(run_dir, prog["iteration"])
            else:
                state = init_all(placement.put(seed_keys(config), replicated=True))
                host_state = _collective(placement.gather, state)
                if writer:
                    atomic_write(run_dir / METRICS, lambda f: None)
                    checkpoint.save(run_dir, host_state, prog)
                saved = True
            if on_start is not None:
                on_start({**prog, "devices": config["devices"]})
            bar = _progress_bar(tqdm, target, int(done(prog)), run_dir.name, progress)
            clock = time.perf_counter() - prog["wall_time"]  # wall time continues across resumed sessions
            sizes_run = set()  # chunk sizes run in this session: the first of each size compiles it
            while done(prog) < target:
                if _any_process(stop.stop_requested()):
                    raise KeyboardInterrupt
                per_iter = prog["steps_per_iteration"] or per_iter  # unknown until a chunk ran, for some algorithms
                n = min(chunk, math.ceil((target - done(prog)) / per_iter)) if per_iter else chunk
                t0 = time.perf_counter() - clock
                new_state, metrics = _collective(run_all, state, n)
                metrics = {k: np.asarray(v) for k, v in _collective(placement.gather, metrics).items()}
                t1 = time.perf_counter() - clock
                rows, env_steps = metric_rows(
                    metrics, list(seeds), prog["iteration"], np.asarray(prog["env_steps"]), t0, t1, sweep=sweep
                )
                if writer:
                    append_rows(run_dir, rows)
                if on_rows is not None and writer:
                    on_rows(rows)
                measured = float(np.max(metrics["env_steps"].sum(axis=1)) / n)
                if measured <= 0:
                    raise RuntimeError(f"{config['algo']} reported no environment steps in {n} iterations")
                new_prog = {"iteration": prog["iteration"] + n, "env_steps": env_steps.tolist(), "wall_time": t1,
                            "steps_per_iteration": measured}
                host_state = _collective(placement.gather, new_state)
                if writer:
                    checkpoint.save(run_dir, host_state, new_prog)
                with np.errstate(all="ignore"):
                    mean_return = float(np.nanmean(metrics.get("mean_return", np.full((1, 1), np.nan))[:, -1]))
                bar.set_postfix_str(chunk_postfix(mean_return, float(metrics["env_steps"].sum()), t1 - t0,
                                                  len(seeds), compiled=n not in sizes_run))
                sizes_run.add(n)
                bar.update(int(done(new_prog) - done(prog)))
                state, prog = new_state, new_prog
                if on_chunk is not None:
                    on_chunk(prog)
            bar.close()
            final_state = _collective(placement.gather, state)
            if writer:
                checkpoint.save_params(run_dir, member_states(final_state, shards))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if bar is not None:
                bar.close()
        rows = read_metrics(run_dir) if writer else []
        if rows:  # interrupted too: the curve of what was kept
            try:
                plot_runs([run_dir], run_dir / CURVE)
            except KeyboardInterrupt:
                interrupted = True
    final = [r.get("mean_return") for r in rows if r["iteration"] == prog["iteration"]]
    return {"run_dir": str(run_dir), "interrupted": interrupted, "checkpoint": saved, "iteration": prog["iteration"],
            "env_steps": prog["env_steps"], "wall_time": prog["wall_time"], "final_mean_return": final}
