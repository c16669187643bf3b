"""Training runs on disk: a run directory, chunked training with checkpoints, metrics and plots.

A run lives in ``runs/<name>/``::

    config.json          the resolved configuration (algorithm, environment, seeds, steps, versions)
    metrics.jsonl        one JSON line per iteration per seed, appended and flushed after every chunk
    checkpoint.npz       the whole training state (all seeds) at the last chunk boundary, written atomically
    params.npz           the final parameters, one array per leaf named by its path ("theta/net/0/w"),
                         with a leading seed axis; ``load_params(run_dir)`` rebuilds the nested dict
    learning_curve.png   mean return vs environment steps, mean ± one standard deviation over seeds

Training is :func:`scg.algorithms.make_train`: each chunk of ``chunk`` iterations
is one ``jit`` of a ``lax.scan`` (seeds ``vmap``-ed), so the host only sees the
state between chunks, where it writes metrics, the checkpoint and the progress
bar. A checkpoint holds every leaf of the state pytree, PRNG keys as their raw
key data (``jax.random.key_data``); it is restored onto the structure of a fresh
``init`` (``jax.eval_shape``), so a resumed run continues bit for bit.
"""
from __future__ import annotations

import functools
import json
import math
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from scg.algorithms.base import ALGORITHMS
from scg.algorithms.train import make_train
from scg.envs import registry

CONFIG, METRICS, CHECKPOINT = "config.json", "metrics.jsonl", "checkpoint.npz"
PARAMS, CURVE = "params.npz", "learning_curve.png"


class ConfigError(ValueError):
    """An invalid option; the message is one line naming the valid choices."""


def action_kind(space) -> str:
    """``"discrete"`` for a ``Discrete`` action space, ``"continuous"`` for a ``Box``."""
    return "discrete" if hasattr(space, "n") else "continuous"


def env_action_kind(env_name: str) -> str:
    env, params = registry.make(env_name)
    return action_kind(env.action_space(params))


def _coerce(default, value):
    """JSON lists become tuples where the default is a tuple (``hidden=[32,32]``), ints floats for float defaults."""
    if isinstance(default, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def resolve_config(
    algo: str, env: str, *, seeds: int, steps: int, seed: int = 0, chunk: int = 5, overrides: dict | None = None
) -> dict:
    """Check the options and return the full configuration of a run; raises :class:`ConfigError`.

    The algorithm's config is its ``default_config``, updated by its tuned entry for ``env``
    (``Algorithm.tuned``, the module's ``TUNED``), then by ``overrides``. Nothing is written here:
    the CLI validates before it creates a run directory.
    """
    if algo not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algo!r}; choose from: {', '.join(sorted(ALGORITHMS))}")
    if env not in registry.list_envs():
        raise ConfigError(f"unknown environment {env!r}; choose from: {', '.join(registry.list_envs())}")
    kind = env_action_kind(env)
    spec = ALGORITHMS[algo]
    if kind not in spec.action_kinds:
        fits = [e for e in registry.list_envs() if env_action_kind(e) in spec.action_kinds]
        raise ConfigError(
            f"{algo} supports {'/'.join(spec.action_kinds)} actions but {env} has {kind} actions; "
            f"choose an environment from: {', '.join(fits)}"
        )
    for name, value in (("steps", steps), ("seeds", seeds), ("chunk", chunk)):
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"--{name} must be a positive integer, got {value!r}")
    algo_config = {**spec.default_config, **spec.tuned.get(env, {})}  # the algorithm's TUNED[env], if any
    for key, value in (overrides or {}).items():
        if key not in algo_config:
            raise ConfigError(f"unknown {algo} config key {key!r}; choose from: {', '.join(sorted(algo_config))}")
        algo_config[key] = _coerce(algo_config[key], value)
    return {
        "algo": algo,
        "env": env,
        "action_kind": kind,
        "seed": seed,
        "seeds": seeds,
        "steps": steps,
        "chunk": chunk,
        "algorithm_config": algo_config,
        "versions": _versions(),
    }


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("scg", "jax", "jaxlib", "optax", "numpy", "gymnasium"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _algo_config(config: dict) -> dict:
    defaults = ALGORITHMS[config["algo"]].default_config
    return {k: _coerce(defaults.get(k), v) for k, v in config["algorithm_config"].items()}


@functools.lru_cache(maxsize=8)
def _compiled(algo: str, env_name: str, algo_config_json: str):
    """``make_train`` once per process and configuration, so repeated runs reuse the jitted chunk."""
    config = _algo_config({"algo": algo, "algorithm_config": json.loads(algo_config_json)})
    env, params = registry.make(env_name)
    return make_train(algo, env, params, config)


def compiled(config: dict):
    return _compiled(config["algo"], config["env"], json.dumps(config["algorithm_config"], sort_keys=True))


def seed_keys(config: dict) -> jax.Array:
    """One key per seed: seed ``s`` trains from ``jax.random.key(s)``."""
    return jnp.stack([jax.random.key(s) for s in seed_list(config)])


def strong_types(state):
    """Drop weak types (``jnp.full(n, jnp.nan)`` is weakly typed, its checkpointed copy is not), so a fresh and a
    restored state have the same abstract signature and share one compiled chunk."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, x.dtype) if getattr(x, "weak_type", False) else x, state)


def seed_list(config: dict) -> list[int]:
    return list(range(config["seed"], config["seed"] + config["seeds"]))


# -- files --------------------------------------------------------------------------------------------------------


def atomic_write(path: Path, write) -> None:
    """Write through ``write(file)`` to a temporary file in the same folder, then ``os.replace`` it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def save_checkpoint(run_dir: Path, state, progress: dict) -> None:
    """Every leaf of ``state`` (keys as key data) plus ``progress`` (iteration, env steps, wall time), atomically."""
    leaves = jax.tree_util.tree_leaves(state)
    arrays = {f"leaf_{i:05d}": np.asarray(jax.random.key_data(x) if _is_key(x) else x) for i, x in enumerate(leaves)}
    impls = [str(jax.random.key_impl(x)) if _is_key(x) else None for x in leaves]
    meta = json.dumps({**progress, "key_impls": impls})
    atomic_write(Path(run_dir) / CHECKPOINT, lambda f: np.savez(f, meta=np.array(meta), **arrays))


def load_checkpoint(run_dir: Path, config: dict):
    """Return ``(state, progress)``: the saved leaves unflattened onto the structure of a fresh ``init``."""
    init_all, _ = compiled(config)
    template = jax.eval_shape(init_all, seed_keys(config))
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    with np.load(Path(run_dir) / CHECKPOINT) as data:
        meta = json.loads(str(data["meta"]))
        if len(meta["key_impls"]) != len(t_leaves):
            raise ConfigError(f"{run_dir}/{CHECKPOINT} does not match the state of {config['algo']} with this config")
        saved = [data[f"leaf_{i:05d}"] for i in range(len(t_leaves))]
    leaves = []
    for t, x, impl in zip(t_leaves, saved, meta["key_impls"]):
        leaf = jax.random.wrap_key_data(jnp.asarray(x), impl=impl) if impl else jnp.asarray(x, dtype=t.dtype)
        if leaf.shape != t.shape:
            raise ConfigError(f"{run_dir}/{CHECKPOINT}: a leaf of shape {leaf.shape}, the config expects {t.shape}")
        leaves.append(leaf)
    meta.pop("key_impls")
    return jax.tree_util.tree_unflatten(treedef, leaves), meta


def _path_name(path) -> str:
    parts = []
    for p in path:
        parts.append(str(getattr(p, "key", getattr(p, "idx", getattr(p, "name", p)))))
    return "/".join(parts)


def save_params(run_dir: Path, state) -> None:
    """``state.params`` (or the whole state when it has none) as ``params.npz``, one array per leaf path."""
    tree = getattr(state, "params", state)
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = {_path_name(p): np.asarray(jax.random.key_data(x) if _is_key(x) else x) for p, x in flat}
    atomic_write(Path(run_dir) / PARAMS, lambda f: np.savez(f, **arrays))


def load_params(run_dir) -> dict:
    """The final parameters of a run as nested dicts/lists of numpy arrays (leading axis: seed).

    Example: ``load_params("runs/x")["theta"]["net"][0]["w"][0]`` is seed 0's first policy layer.
    """
    with np.load(Path(run_dir) / PARAMS) as data:
        flat = {k: data[k] for k in data.files}
    root: dict = {}
    for name, value in flat.items():
        node, parts = root, name.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def listify(node):
        if not isinstance(node, dict):
            return node
        node = {k: listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[str(i)] for i in range(len(node))]
        return node

    return listify(root)


def read_metrics(run_dir: Path) -> list[dict]:
    """The lines of ``metrics.jsonl``; a line cut short by a crash is skipped."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None  # JSON has no NaN: "no episode finished yet" is null


def metric_rows(metrics: dict, config: dict, start_iteration: int, env_steps: np.ndarray, t0: float, t1: float):
    """Turn one chunk's ``[seeds, n]`` metrics into JSON lines; env steps cumulative, wall time interpolated."""
    n = metrics["env_steps"].shape[1]
    cumulative = env_steps[:, None] + np.cumsum(metrics["env_steps"].astype(np.float64), axis=1)
    rows = []
    for j in range(n):
        wall = t0 + (t1 - t0) * (j + 1) / n
        for s, seed in enumerate(seed_list(config)):
            row = {"iteration": start_iteration + j + 1, "seed": seed, "env_steps": int(cumulative[s, j])}
            row.update({k: _finite(v[s, j]) for k, v in metrics.items() if k != "env_steps"})
            row["wall_time"] = round(wall, 4)
            rows.append(row)
    return rows, cumulative[:, -1]


class _DeferredInterrupt:
    """While training, the first Ctrl-C asks to stop at the next chunk boundary (an interrupted XLA call can leave
    the process unable to exit cleanly); a second one raises ``KeyboardInterrupt`` at once."""

    def __init__(self, bar):
        self.bar, self.requested, self.previous = bar, False, None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.bar.write("stopping after this chunk (Ctrl-C again to stop now)", file=sys.stderr)

    def __enter__(self):
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # leave custom or ignored SIGINT be
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def stop_requested(self) -> bool:
        """Whether Ctrl-C was pressed. A call, so that a signal another thread received has run its handler
        (CPython runs pending handlers on the main thread when a Python function starts)."""
        return self.requested

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _truncate_metrics(run_dir: Path, iteration: int) -> None:
    """Keep the metric lines up to the checkpoint: lines written after it (interrupted mid-boundary) are redone."""
    rows = [r for r in read_metrics(run_dir) if r.get("iteration", 0) <= iteration]
    atomic_write(Path(run_dir) / METRICS, lambda f: f.write("".join(json.dumps(r) + "\n" for r in rows).encode()))


# -- training -----------------------------------------------------------------------------------------------------


def train(run_dir, config: dict, *, resume: bool = False, progress: bool = True, on_chunk=None) -> dict:
    """Train ``config`` (from :func:`resolve_config`) into ``run_dir`` chunk by chunk; returns a summary dict.

    With ``resume`` the state and progress come from ``checkpoint.npz`` and
    ``metrics.jsonl`` is cut back to the checkpoint. Ctrl-C stops at the next
    chunk boundary (twice: at once); a ``KeyboardInterrupt`` leaves on disk
    what the last boundary wrote, and the summary says ``interrupted``.
    ``on_chunk(progress)`` is called after each checkpoint.
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    init_all, run_all = compiled(config)
    if resume and (run_dir / CHECKPOINT).exists():
        state, prog = load_checkpoint(run_dir, config)
        _truncate_metrics(run_dir, prog["iteration"])
    else:
        state = strong_types(init_all(seed_keys(config)))
        prog = {"iteration": 0, "env_steps": [0.0] * config["seeds"], "wall_time": 0.0, "steps_per_iteration": None}
        atomic_write(run_dir / METRICS, lambda f: None)
        save_checkpoint(run_dir, state, prog)
    target, chunk = config["steps"], config["chunk"]
    done = lambda prog: min(min(prog["env_steps"]), target)  # noqa: E731  (the slowest seed sets the pace)
    bar = tqdm(total=target, initial=int(done(prog)), unit="step", disable=not progress, desc=run_dir.name)
    clock = time.perf_counter() - prog["wall_time"]  # wall time continues across resumed sessions
    stop, interrupted = _DeferredInterrupt(bar), False
    try:
        with stop, open(run_dir / METRICS, "a") as f:
            while done(prog) < target:
                per_iter = prog["steps_per_iteration"]  # unknown until the first chunk has run
                n = min(chunk, math.ceil((target - done(prog)) / per_iter)) if per_iter else chunk
                t0 = time.perf_counter() - clock
                new_state, metrics = run_all(state, n)
                metrics = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
                t1 = time.perf_counter() - clock
                rows, env_steps = metric_rows(metrics, config, prog["iteration"], np.asarray(prog["env_steps"]), t0, t1)
                f.write("".join(json.dumps(r) + "\n" for r in rows))
                f.flush()
                per_iter = float(np.max(metrics["env_steps"].sum(axis=1)) / n)
                if per_iter <= 0:
                    raise RuntimeError(f"{config['algo']} reported no environment steps in {n} iterations")
                new_prog = {"iteration": prog["iteration"] + n, "env_steps": env_steps.tolist(), "wall_time": t1,
                            "steps_per_iteration": per_iter}
                save_checkpoint(run_dir, new_state, new_prog)
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
        save_params(run_dir, state)
    rows = read_metrics(run_dir)
    if rows:
        plot_runs([run_dir], run_dir / CURVE)
    final = [r.get("mean_return") for r in rows if r["iteration"] == prog["iteration"]]
    return {"run_dir": str(run_dir), "interrupted": interrupted, "iteration": prog["iteration"],
            "env_steps": prog["env_steps"], "wall_time": prog["wall_time"], "final_mean_return": final}


# -- plots --------------------------------------------------------------------------------------------------------


def learning_curve(run_dir) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(env_steps, mean, std)`` of ``mean_return`` over seeds per iteration (dropping those before any episode)."""
    by_iter: dict[int, list] = {}
    for r in read_metrics(run_dir):
        by_iter.setdefault(r["iteration"], []).append(r)
    xs, means, stds = [], [], []
    for it in sorted(by_iter):
        values = np.array([np.nan if r.get("mean_return") is None else r["mean_return"] for r in by_iter[it]])
        if np.all(np.isnan(values)):
            continue
        xs.append(np.mean([r["env_steps"] for r in by_iter[it]]))
        means.append(np.nanmean(values))
        stds.append(np.nanstd(values))
    return np.array(xs), np.array(means), np.array(stds)


def plot_runs(run_dirs, out, title: str | None = None) -> Path:
    """One figure: for each run, mean return vs environment steps, shaded ± one standard deviation over seeds."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, works headless

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    envs = set()
    for run_dir in map(Path, run_dirs):
        config = json.loads((run_dir / CONFIG).read_text())
        envs.add(config["env"])
        x, mean, std = learning_curve(run_dir)
        label = f"{run_dir.name} ({config['algo']}, {config['seeds']} seed{'s' * (config['seeds'] > 1)})"
        (line,) = ax.plot(x, mean, label=label)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("mean return (last 20 episodes)")
    ax.set_title(title or ", ".join(sorted(envs)) + ": mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=110))
    return out
