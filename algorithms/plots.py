"""Learning curves of runs, fit for a paper: one panel per environment, mean return vs environment steps over
seeds, shaded by ± one standard error of the mean (or the seeds' min–max range).

The band never leaves what a return can be. A band of ± one standard error ``s/√n`` (``s`` with ``n − 1``)
stays within the seeds' range: with ``d_i = x_i − min x ≥ 0``, ``(Σ d_i)² ≥ Σ d_i²`` gives
``mean − min ≥ s/√n`` (and likewise at the top), where ± one standard deviation does not (seeds 0, 0, 500 of
CartPole: 167 ± 236 reaches −69). It is clipped to that range all the same (against rounding), and to the
environment's return bounds where :data:`RETURN_BOUNDS` knows them (CartPole's returns lie in [0, 500]).

A sweep's run (``scg train --sweep lr=...``) draws one curve per sweep point, each with its band over the seeds,
labelled ``"lr = 0.001"``.

Example:
    >>> import numpy as np
    >>> centre, lo, hi = seed_band(np.array([[0.0, 10.0], [480.0, 500.0]]), "se", bounds=(0.0, 500.0))
    >>> centre.tolist(), lo.tolist(), hi.tolist()
    ([5.0, 490.0], [0.0, 480.0], [10.0, 500.0])
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from scg.algorithms.config import sweep_points
from scg.algorithms.metrics_log import read_metrics
from scg.algorithms.run_files import atomic_write, read_config

BANDS = {"se": "mean ± s.e. over seeds", "minmax": "mean, min–max over seeds"}
# (lowest, highest) undiscounted return of one episode, from each environment's reward and episode length.
RETURN_BOUNDS = {
    "CartPole-v1": (0.0, 500.0),  # +1 a step, at most 500 steps
    "Acrobot-v1": (-500.0, 0.0),  # -1 a step until the goal, at most 500 steps
    "MountainCar-v0": (-200.0, 0.0),  # -1 a step until the goal, at most 200 steps
    "Pendulum-v1": (-200 * (math.pi**2 + 0.1 * 8.0**2 + 0.001 * 2.0**2), 0.0),  # -(θ² + .1 θ̇² + .001 u²) a step
}


def _number(x) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else np.nan  # null: no episode yet


def seed_returns(run_dir, point: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(env_steps [I], returns [I, S])``: each seed's ``mean_return`` per iteration (NaN where a seed had no
    finished episode yet), iterations before any seed's first episode dropped; env steps averaged over seeds.
    ``point`` picks the rows of one point of a sweep (their ``"sweep"``); ``None``, those without one."""
    by_iter: dict[int, dict[int, dict]] = {}
    for r in read_metrics(run_dir):
        if r.get("sweep") == point:
            by_iter.setdefault(r["iteration"], {})[r["seed"]] = r
    seeds = sorted({s for rows in by_iter.values() for s in rows})
    xs, returns = [], []
    for it in sorted(by_iter):
        rows = by_iter[it]
        values = [_number(rows[s].get("mean_return")) if s in rows else np.nan for s in seeds]
        if np.all(np.isnan(values)):
            continue
        xs.append(np.mean([r["env_steps"] for r in rows.values()]))
        returns.append(values)
    return np.array(xs, dtype=np.float64), np.array(returns, dtype=np.float64).reshape(len(xs), len(seeds))


def seed_band(returns: np.ndarray, band: str = "se", bounds: tuple[float, float] | None = None):
    """``(centre, lo, hi)`` of ``returns [I, S]`` over its seed axis, ignoring NaN seeds.

    ``centre`` is the mean; ``band="se"`` gives ``mean ± s/√n`` (``s`` the sample standard deviation of the ``n``
    seeds with a value; 0 for one seed), ``band="minmax"`` the seeds' range. ``lo, hi`` are clipped to that range
    (a no-op but for rounding, see the module docs) and to ``bounds``, the environment's return bounds.
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {sorted(BANDS)}, got {band!r}")
    returns = np.asarray(returns, dtype=np.float64)
    if returns.ndim != 2:
        raise ValueError(f"returns must be [iterations, seeds], got shape {returns.shape}")
    n = np.sum(~np.isnan(returns), axis=1)
    if np.any(n == 0):
        raise ValueError(f"returns has iterations with no seed's value (rows {np.flatnonzero(n == 0).tolist()})")
    centre, low, high = np.nanmean(returns, axis=1), np.nanmin(returns, axis=1), np.nanmax(returns, axis=1)
    if band == "se":
        s = np.sqrt(np.nansum((returns - centre[:, None]) ** 2, axis=1) / np.maximum(n - 1, 1))
        err = np.where(n > 1, s / np.sqrt(n), 0.0)
        lo, hi = np.maximum(centre - err, low), np.minimum(centre + err, high)
    else:
        lo, hi = low, high
    if bounds is not None:
        lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
    return centre, lo, hi


def draw_curve(ax, x, returns, *, label: str, band: str = "se", bounds=None, color=None):
    """Draw the mean of ``returns [I, S]`` against ``x [I]`` on ``ax`` with its :func:`seed_band` shaded; the line."""
    if len(x) == 0:  # no episode finished yet: the run is in the legend, without a curve
        return ax.plot([], [], label=label, color=color)[0]
    centre, lo, hi = seed_band(returns, band, bounds)
    (line,) = ax.plot(x, centre, label=label, color=color, linewidth=1.6)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def _labels(configs: list[dict], run_dirs: list[Path]) -> list[str]:
    """``"ppo, 5 seeds"`` per run; the run's folder name is added where two runs of one panel would read alike."""
    short = [f"{c['algo']}, {c['seeds']} seed{'s' * (c['seeds'] != 1)}" for c in configs]
    keys = [(c["env"], s) for c, s in zip(configs, short)]
    return [f"{d.name}: {s}" if keys.count(k) > 1 else s for d, s, k in zip(run_dirs, short, keys)]


def point_label(point: dict) -> str:
    """A sweep point as a legend reads it: ``"lr = 0.001"`` (fields joined by ``", "``)."""
    return ", ".join(f"{k} = {v:g}" for k, v in point.items())


def _curves(config: dict, label: str, color: str, alone: bool) -> list[tuple[dict | None, str, str]]:
    """``(sweep point, label, colour)`` of each curve of a run: the run's own, or one per point of its sweep
    (labelled by the point, after the run's label where the panel holds other runs; colours C0, C1, ...)."""
    sweep = config.get("sweep")
    if sweep is None:
        return [(None, label, color)]
    points = sweep_points(sweep)
    return [(p, point_label(p) if alone else f"{label}: {point_label(p)}", f"C{i % 10}") for i, p in enumerate(points)]


def _colors(configs: list[dict]) -> list[str]:
    """One colour per algorithm, the same in every panel; one per run where a panel holds an algorithm twice."""
    pairs = [(c["env"], c["algo"]) for c in configs]
    keys = [c["algo"] for c in configs] if len(set(pairs)) == len(pairs) else list(range(len(configs)))
    order = list(dict.fromkeys(keys))
    return [f"C{order.index(k) % 10}" for k in keys]


def figure(run_dirs, title: str | None = None, band: str = "se"):
    """A matplotlib ``Figure``, one panel per environment (in the runs' order): each run's mean return vs
    environment steps with a band over seeds (``band``: ``"se"``, ± one standard error, or ``"minmax"``; see
    :func:`seed_band`), labelled ``"algorithm, N seeds"``; a sweep's run has a curve per point (:func:`_curves`)."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, works headless
    from matplotlib.ticker import EngFormatter

    if band not in BANDS:
        raise ValueError(f"band must be one of {sorted(BANDS)}, got {band!r}")
    run_dirs = [Path(d) for d in run_dirs]
    configs = [read_config(d) for d in run_dirs]
    envs = list(dict.fromkeys(c["env"] for c in configs))
    cols = min(len(envs), 3)
    rows = -(-len(envs) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.3 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, env in zip(axes, envs):
        alone = sum(c["env"] == env for c in configs) == 1
        for d, c, label, color in zip(run_dirs, configs, _labels(configs, run_dirs), _colors(configs)):
            if c["env"] == env:
                for point, text, colour in _curves(c, label, color, alone):
                    x, returns = seed_returns(d, point)
                    draw_curve(ax, x, returns, label=text, band=band, bounds=RETURN_BOUNDS.get(env), color=colour)
        ax.set_title(env if len(envs) > 1 or title else f"{env}: {BANDS[band]}", fontsize="medium")
        ax.set_xlabel("environment steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 150k, 1.5M: long step counts never run together
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small", frameon=False)
    for ax in axes[:: cols]:
        ax.set_ylabel("mean return (last 20 episodes)")
    for ax in axes[len(envs):]:
        ax.set_visible(False)
    if len(envs) > 1 or title:
        fig.suptitle(title or BANDS[band], fontsize="medium")
    return fig


def plot_runs(run_dirs, out, title: str | None = None, band: str = "se") -> Path:
    """:func:`figure` of the runs written atomically to the PNG ``out`` (its folder created); an ``OSError``
    names ``out``. The ``scg plot`` command and every run's ``learning_curve.png``."""
    fig = figure(run_dirs, title, band)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=150))
    return out
