"""``metrics.jsonl``: one JSON line per iteration per seed, env steps cumulative, NaN written as null.

A sweep's run has a line per iteration per member: each names its ``seed`` and its sweep point
(``"sweep": {"lr": 0.001}``).

Optionally (``scg train --log tensorboard``) the same rows also go to TensorBoard event files in the run
folder (:class:`TensorBoardLog`); ``metrics.jsonl`` is always written and is what ``scg`` reads back.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from scg.algorithms.run_files import METRICS, atomic_write


def _row(line: bytes) -> dict | None:
    """A metrics line as a dict, or ``None`` for one that is not a complete, well-formed line."""
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(row, dict):
        return None
    ints = all(isinstance(row.get(k), int) and not isinstance(row.get(k), bool) for k in ("iteration", "seed"))
    steps = row.get("env_steps")
    return row if ints and isinstance(steps, (int, float)) and not isinstance(steps, bool) else None


def read_metrics(run_dir: Path) -> list[dict]:
    """The lines of ``metrics.jsonl``; a line cut short by a crash, or any line that is not a metrics record
    (a JSON object with integer ``iteration`` and ``seed`` and numeric ``env_steps``), is skipped."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    rows = (_row(line) for line in path.read_bytes().splitlines())
    return [r for r in rows if r is not None]


def append_rows(run_dir: Path, rows: list[dict]) -> None:
    """Append ``rows`` to ``metrics.jsonl``, unbuffered: on return they are the operating system's.

    An ``OSError`` (a full disk) names the file; a line it cut short is skipped by :func:`read_metrics` and
    removed by :func:`truncate_metrics` on resume.
    """
    path = Path(run_dir) / METRICS
    data = memoryview("".join(json.dumps(r) + "\n" for r in rows).encode())
    try:
        with open(path, "ab", buffering=0) as f:
            while data:
                data = data[f.write(data):]
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from err


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None  # JSON has no NaN: "no episode finished yet" is null


def metric_rows(metrics: dict, seeds: list[int], start_iteration: int, env_steps: np.ndarray, t0: float, t1: float,
                sweep: list[dict] | None = None):
    """Turn one chunk's ``[seeds, n]`` metrics into JSON rows; env steps cumulative, wall time interpolated.

    ``seeds`` (and ``sweep``, where given: the sweep point of each) label the metrics' leading axis: for a sweep
    its members, each row then carrying ``"sweep": point`` after its ``seed``.
    Returns ``(rows, env_steps)``: the rows and each seed's cumulative env steps after the chunk.
    """
    if len(seeds) != metrics["env_steps"].shape[0] or (sweep is not None and len(sweep) != len(seeds)):
        raise ValueError(f"metrics have {metrics['env_steps'].shape[0]} members; got labels for {len(seeds)} seeds"
                         + ("" if sweep is None else f" and {len(sweep)} sweep points"))
    n = metrics["env_steps"].shape[1]
    cumulative = env_steps[:, None] + np.cumsum(metrics["env_steps"].astype(np.float64), axis=1)
    rows = []
    for j in range(n):
        wall = t0 + (t1 - t0) * (j + 1) / n
        for s, seed in enumerate(seeds):
            row = {"iteration": start_iteration + j + 1, "seed": seed}
            if sweep is not None:
                row["sweep"] = sweep[s]
            row["env_steps"] = int(cumulative[s, j])
            row.update({k: _finite(v[s, j]) for k, v in metrics.items() if k != "env_steps"})
            row["wall_time"] = round(wall, 4)
            rows.append(row)
    return rows, cumulative[:, -1]


def truncate_metrics(run_dir: Path, iteration: int) -> None:
    """Keep the lines up to ``iteration`` (a checkpoint's): lines written after it (interrupted mid-boundary) are redone."""
    rows = [r for r in read_metrics(run_dir) if r.get("iteration", 0) <= iteration]
    atomic_write(Path(run_dir) / METRICS, lambda f: f.write("".join(json.dumps(r) + "\n" for r in rows).encode()))


# -- TensorBoard ------------------------------------------------------------------------------------------------------
TENSORBOARD_INSTALL = "pip install 'scg-jax[tensorboard]'"
_NOT_SCALARS = ("iteration", "seed", "sweep", "wall_time")  # the row's coordinates, not metrics


def tensorboard_scalars(rows: list[dict]) -> list[tuple[str, float, int]]:
    """``(tag, value, step)`` of metric rows, step the iteration: per iteration, each metric's mean over the
    seeds that have a value (``tag`` = its name), and each seed's own (``<name>/seed_<s>``); nulls are left out.
    A sweep's rows are kept apart by their point, its tags prefixed by it (``lr=0.001/<name>``)."""
    groups: dict[tuple[int, str], list[dict]] = {}
    for row in rows:
        point = row.get("sweep") or {}
        prefix = "".join(f"{k}={v:g}," for k, v in point.items()).rstrip(",") + "/" * bool(point)
        groups.setdefault((row["iteration"], prefix), []).append(row)
    out = []
    for (step, prefix), group in sorted(groups.items(), key=lambda item: item[0][0]):  # points in row order
        names = dict.fromkeys(k for r in group for k in r if k not in _NOT_SCALARS)
        for name in names:
            values = [(r["seed"], float(r[name])) for r in group if isinstance(r.get(name), (int, float))]
            if values:
                out.append((f"{prefix}{name}", float(np.mean([v for _, v in values])), step))
            out.extend((f"{prefix}{name}/seed_{seed}", v, step) for seed, v in values)
    return out


def _summary_writer():
    try:
        from tensorboardX import SummaryWriter
    except ImportError as err:
        raise ImportError(f"--log tensorboard needs tensorboardX ({err}); install it with: "
                          f"{TENSORBOARD_INSTALL}") from None
    return SummaryWriter


class TensorBoardLog:
    """``log(rows)`` writes metric rows as TensorBoard scalars (:func:`tensorboard_scalars`) to an event file in
    ``run_dir``, so that ``tensorboard --logdir runs/`` shows each run under its folder's name.

    Made before training, it only checks that tensorboardX imports (an ``ImportError`` saying how to install it);
    the event file is created with the first rows, flushed after each call, closed by :meth:`close`. A resumed
    run opens a new file from its first redone iteration on, purging (``purge_step``) what an earlier session
    logged from there.
    """

    def __init__(self, run_dir):
        self.run_dir, self.writer_class, self.writer = Path(run_dir), _summary_writer(), None

    def __call__(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.writer is None:
            first = min(r["iteration"] for r in rows)
            self.writer = self.writer_class(logdir=str(self.run_dir), purge_step=first if first > 1 else None)
        for tag, value, step in tensorboard_scalars(rows):
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
