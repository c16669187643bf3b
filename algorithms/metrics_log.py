"""``metrics.jsonl``: one JSON line per iteration per seed, env steps cumulative, NaN written as null."""
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


def metric_rows(metrics: dict, seeds: list[int], start_iteration: int, env_steps: np.ndarray, t0: float, t1: float):
    """Turn one chunk's ``[seeds, n]`` metrics into JSON rows; env steps cumulative, wall time interpolated.

    Returns ``(rows, env_steps)``: the rows and each seed's cumulative env steps after the chunk.
    """
    n = metrics["env_steps"].shape[1]
    cumulative = env_steps[:, None] + np.cumsum(metrics["env_steps"].astype(np.float64), axis=1)
    rows = []
    for j in range(n):
        wall = t0 + (t1 - t0) * (j + 1) / n
        for s, seed in enumerate(seeds):
            row = {"iteration": start_iteration + j + 1, "seed": seed, "env_steps": int(cumulative[s, j])}
            row.update({k: _finite(v[s, j]) for k, v in metrics.items() if k != "env_steps"})
            row["wall_time"] = round(wall, 4)
            rows.append(row)
    return rows, cumulative[:, -1]


def truncate_metrics(run_dir: Path, iteration: int) -> None:
    """Keep the lines up to ``iteration`` (a checkpoint's): lines written after it (interrupted mid-boundary) are redone."""
    rows = [r for r in read_metrics(run_dir) if r.get("iteration", 0) <= iteration]
    atomic_write(Path(run_dir) / METRICS, lambda f: f.write("".join(json.dumps(r) + "\n" for r in rows).encode()))
