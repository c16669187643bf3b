"""Checkpoints and final parameters of a run, as ``.npz`` files written atomically.

A checkpoint holds every leaf of the state pytree, PRNG keys as their raw key
data (``jax.random.key_data``); it is restored onto the structure of a template
state (a fresh ``init``, abstractly: ``jax.eval_shape``), so a resumed run
continues bit for bit.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from scg.algorithms.config import ConfigError
from scg.algorithms.run_files import CHECKPOINT, PARAMS, atomic_write


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def save(run_dir: Path, state, progress: dict) -> None:
    """Every leaf of ``state`` (keys as key data) plus ``progress`` (iteration, env steps, wall time), atomically."""
    leaves = jax.tree_util.tree_leaves(state)
    arrays = {f"leaf_{i:05d}": np.asarray(jax.random.key_data(x) if _is_key(x) else x) for i, x in enumerate(leaves)}
    impls = [str(jax.random.key_impl(x)) if _is_key(x) else None for x in leaves]
    meta = json.dumps({**progress, "key_impls": impls})
    atomic_write(Path(run_dir) / CHECKPOINT, lambda f: np.savez(f, meta=np.array(meta), **arrays))


def _damaged(path: Path, err: Exception) -> ConfigError:
    reason = " ".join(str(err).split())  # one line
    return ConfigError(f"{path} is damaged ({type(err).__name__}: {reason}); restore it from a copy of the run, "
                       "or train a new run with another --name (the run's metrics.jsonl is left as it is)")


def read_progress(run_dir: Path) -> dict:
    """The progress a checkpoint records (iteration, per-seed env steps, wall time), without reading its arrays.

    Raises ``FileNotFoundError`` if there is none, :class:`scg.algorithms.config.ConfigError` naming the file
    if it is not a readable checkpoint.
    """
    meta = _read_meta(Path(run_dir) / CHECKPOINT)
    meta.pop("key_impls")
    return meta


def _read_meta(path: Path) -> dict:
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
        if not isinstance(meta, dict):
            raise ValueError("its progress record is not a JSON object")
        iteration, env_steps = meta["iteration"], meta["env_steps"]
        if not isinstance(iteration, int) or not isinstance(env_steps, list) or not env_steps:
            raise ValueError("its progress record has no iteration and env steps")
        meta["env_steps"] = [float(x) for x in env_steps]
        if not isinstance(meta["key_impls"], list):
            raise ValueError("its record of PRNG key types is not a list")
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, zlib.error) as err:
        raise _damaged(path, err) from None
    return meta


def load(run_dir: Path, template):
    """Return ``(state, progress)``: the saved leaves unflattened onto the structure of ``template``.

    ``template`` is a state (or its ``jax.eval_shape``) of the run's configuration; a checkpoint
    of another shape, or a damaged one, raises :class:`scg.algorithms.config.ConfigError` naming the file.
    """
    path = Path(run_dir) / CHECKPOINT
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    meta = _read_meta(path)
    impls = meta.pop("key_impls")
    try:
        with np.load(path) as data:
            if len(impls) != len(t_leaves):
                raise ConfigError(f"{path} does not match the state of this run's algorithm and config")
            saved = [data[f"leaf_{i:05d}"] for i in range(len(t_leaves))]  # reading checks each array's CRC
        leaves = []
        for t, x, impl in zip(t_leaves, saved, impls):
            leaf = jax.random.wrap_key_data(jnp.asarray(x), impl=impl) if impl else jnp.asarray(x, dtype=t.dtype)
            if leaf.shape != t.shape:
                raise ConfigError(f"{path}: a leaf of shape {leaf.shape}, the config expects {t.shape}")
            leaves.append(leaf)
    except ConfigError:
        raise
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, zlib.error) as err:
        raise _damaged(path, err) from None
    return jax.tree_util.tree_unflatten(treedef, leaves), meta


def _path_name(path) -> str:
    return "/".join(str(getattr(p, "key", getattr(p, "idx", getattr(p, "name", p)))) for p in path)


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
