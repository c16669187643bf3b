"""Training on every core, every device and several processes: the members of a run sharded over a ``Mesh``.

A run's members (its seeds, times its sweep points: :func:`scg.algorithms.train.sweep_members`) are independent,
so they are split over the devices along one mesh axis, ``"members"``: each device trains its share of the
``vmap`` and nothing crosses devices inside a chunk. This is JAX's own machinery, nothing home-made: a
:class:`jax.sharding.Mesh`, a :class:`jax.sharding.NamedSharding` of ``PartitionSpec("members")`` on every leaf of
the state and the metrics, ``jax.jit`` with those shardings (GSPMD partitions the program), and for several
processes ``jax.distributed`` with CPU collectives through gloo.

On CPU, XLA runs a small program on about one core; :func:`use_cpu_devices` (called before JAX initialises its
backend) exposes one host device per core, so a run of 4 seeds on a 2-core machine trains 2 seeds per core.
Typical use from Python::

    from scg.algorithms import parallel
    parallel.use_cpu_devices()                       # first, before any JAX computation: one device per core
    mesh = parallel.member_mesh(members=4)           # the most devices that split 4 members evenly
    init, run = scg.algorithms.make_train("ppo", env, params, {"num_envs": 16}, mesh=mesh)
    states, metrics = run(init(seed_keys(4)), 10)    # each of 2 devices trains 2 of the 4 seeds
    metrics = parallel.Placement(mesh).gather(metrics)   # numpy, on every process
    # (under jax.distributed, pass keys made global: parallel.Placement(mesh).put(keys, replicated=True))

Sharding over members gives the numbers of one device to float rounding, usually bit for bit
(tests/algorithms/test_parallel.py). Fewer members than devices (one seed on 1,024 environments): the run's
``env_shards`` (:func:`scg.algorithms.make_train`) splits each member's environments into shards that average
their gradients before every optax step, and :func:`run_mesh` puts the shards on a second mesh axis,
:data:`ENV_AXIS`, where that mean is an all-reduce (data parallelism, as ``pmap`` with ``pmean`` would do)::

    mesh = parallel.run_mesh(members=1, env_shards=2)  # 1 x 2 devices
    init, run = scg.algorithms.make_train("ppo", env, params, {"num_envs": 1024}, mesh=mesh, env_shards=2)
"""
from __future__ import annotations

import os
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "members"
ENV_AXIS = "envs"  # the axis of a member's environment shards (scg.algorithms.train.ENV_AXIS)


def _backend_started() -> bool:
    from jax._src import xla_bridge  # no public query; JAX's own check of "too late to configure"

    return xla_bridge.backends_are_initialized()


def cpu_count() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _forced_by_flags() -> int | None:
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.startswith("--xla_force_host_platform_device_count="):
            return int(flag.split("=", 1)[1])
    return None


def use_cpu_devices(count: int | None = None) -> int:
    """Expose ``count`` XLA:CPU host devices (default: one per core, :func:`cpu_count`); returns the count.

    Must run before JAX initialises its backend (before the first array or computation): it sets JAX's
    ``jax_num_cpu_devices``; with ``count=None`` after that, it returns the CPU devices JAX has. ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` set by the user wins (``count``
    must then be ``None`` or ``N``). Called again with the same count, or after the backend started with that many
    devices, it does nothing; otherwise a ``RuntimeError`` says to call it first. GPUs are not affected: on a
    machine with a GPU, JAX's default devices are the GPUs.
    """
    if count is None and _backend_started():  # too late to choose: what JAX has
        return len(jax.devices("cpu"))
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise ValueError(f"the number of CPU devices must be a positive integer, got {count!r}")
    forced = _forced_by_flags()
    if forced is not None:
        if count not in (None, forced):
            raise ValueError(f"XLA_FLAGS sets --xla_force_host_platform_device_count={forced}, but {count} CPU "
                             "devices were asked for; unset that flag or ask for the same number")
        return forced
    count = cpu_count() if count is None else count
    if _backend_started():
        have = len(jax.devices("cpu"))
        if have != count:
            raise RuntimeError(f"JAX already started with {have} CPU device(s), so {count} cannot be set now; call "
                               "scg.algorithms.parallel.use_cpu_devices before any JAX computation")
        return count
    jax.config.update("jax_num_cpu_devices", count)
    return count


def init_distributed(coordinator: str, num_processes: int, process_id: int, *, heartbeat_timeout_s: int = 20,
                     initialization_timeout_s: int = 120) -> None:
    """``jax.distributed.initialize`` for a run over ``num_processes`` processes, this one ``process_id``.

    ``coordinator`` is ``HOST:PORT`` of process 0, which hosts the coordination service. On CPU the collectives go
    through gloo. Must run before JAX initialises its backend, as :func:`use_cpu_devices`. A process that does not
    arrive within ``initialization_timeout_s`` fails the start; one that dies later is noticed by the others'
    collectives at once (gloo: connection closed) or by the coordination service after ``heartbeat_timeout_s``.
    """
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"--coordinator must be HOST:PORT (e.g. 127.0.0.1:12345), got {coordinator!r}")
    if not 1 <= num_processes or not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id must be in 0..{num_processes - 1} for --num-processes {num_processes}, "
                         f"got {process_id}")
    if _backend_started():
        raise RuntimeError("JAX already started; call scg.algorithms.parallel.init_distributed before any JAX "
                           "computation")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id, heartbeat_timeout_seconds=heartbeat_timeout_s,
                               initialization_timeout=initialization_timeout_s)


def usable_devices(members: int, available: int) -> int:
    """The most devices, at most ``available``, that split ``members`` evenly (each device the same share)."""
    return max(d for d in range(1, min(members, available) + 1) if members % d == 0)


def member_mesh(members: int, devices: int | None = None) -> Mesh:
    """A one-axis mesh (``"members"``) over the devices that will train ``members`` members.

    ``devices=None``: the most of ``jax.devices()`` (every process's, under ``jax.distributed``) that split the
    members evenly (:func:`usable_devices`); a number asks for exactly that many, and must divide ``members``.
    With several processes every process must hold a share: the mesh spans all of them.
    """
    available = jax.devices()
    if devices is None:
        count = usable_devices(members, len(available))
        if jax.process_count() > 1 and count < len(available):
            raise ValueError(f"{members} members cannot be split evenly over the {len(available)} devices of "
                             f"{jax.process_count()} processes; train a multiple of {len(available)} seeds")
    else:
        if devices > len(available):
            raise ValueError(f"--devices {devices}: only {len(available)} device(s) available "
                             f"({available[0].platform})")
        if members % devices:
            raise ValueError(f"--devices {devices} does not split the run's {members} members (seeds x sweep "
                             f"points) evenly; choose a divisor of {members}, or train a multiple of {devices} seeds")
        count = devices
    return Mesh(np.asarray(available[:count]), (AXIS,))


def run_mesh(members: int, env_shards: int = 1, devices: int | None = None) -> Mesh:
    """The mesh a run of ``members`` members, each in ``env_shards`` environment shards, trains on.

    With ``env_shards == 1``: :func:`member_mesh`. Otherwise two axes, ``(AXIS, ENV_AXIS)``: the members over
    the most devices that split them evenly, then each member's shards over the most of the rest that split
    the shards evenly (``devices`` of ``jax.devices()`` in all, default all of them; a number must be used
    exactly). Under ``jax.distributed`` the mesh must span every process's devices.
    """
    if env_shards == 1:
        return member_mesh(members, devices)
    available = jax.devices()
    total = len(available) if devices is None else devices
    if total > len(available):
        raise ValueError(f"--devices {total}: only {len(available)} device(s) available ({available[0].platform})")
    along_members = usable_devices(members, total)
    along_envs = usable_devices(env_shards, total // along_members)
    used = along_members * along_envs
    if used != total and (devices is not None or jax.process_count() > 1):
        raise ValueError(f"{members} member(s) in {env_shards} env shard(s) each cannot use {total} devices evenly "
                         f"(at most {along_members} x {along_envs}); choose seeds and --env-shards whose product "
                         f"is a multiple of {total}")
    return Mesh(np.asarray(available[:used]).reshape(along_members, along_envs), (AXIS, ENV_AXIS))


def _is_key(x) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


class Placement(NamedTuple):
    """Where a run's state lives: every leaf split along its leading (member) axis over ``mesh``, and along its
    second (shard) axis over the mesh's second axis where it has one (:func:`run_mesh`)."""

    mesh: Mesh

    @property
    def sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(*self.mesh.axis_names))

    def put(self, tree, *, replicated: bool = False):
        """Host values (every process holds all of them) as global arrays sharded over the mesh along their
        leading axes (``replicated``: a whole copy on every device); PRNG keys too."""
        sharding = NamedSharding(self.mesh, PartitionSpec()) if replicated else self.sharding

        def put_leaf(x):
            if _is_key(x):
                data = self.put(np.asarray(jax.random.key_data(x)), replicated=replicated)
                impl = jax.random.key_impl(x)
                return jax.jit(lambda d: jax.random.wrap_key_data(d, impl=impl), out_shardings=sharding)(data)
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

        return jax.tree_util.tree_map(put_leaf, tree)

    def gather(self, tree):
        """The whole of every leaf on this process, as numpy arrays (PRNG keys as local key arrays)."""
        if jax.process_count() == 1:
            return jax.tree_util.tree_map(_local_copy, tree)
        from jax.experimental import multihost_utils

        def gather_leaf(x):
            if _is_key(x):
                data = multihost_utils.process_allgather(jax.random.key_data(x), tiled=True)
                return jax.random.wrap_key_data(np.asarray(data), impl=jax.random.key_impl(x))
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))

        return jax.tree_util.tree_map(gather_leaf, tree)


def _local_copy(x):
    if _is_key(x):
        return jax.random.wrap_key_data(np.asarray(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    return np.asarray(x)
