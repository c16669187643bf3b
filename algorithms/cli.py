"""The ``scg`` command.

``scg`` alone is ``scg train`` with its defaults: REINFORCE on CartPole-v1,
written to ``runs/<algo>-<env>-<timestamp>/`` (see :mod:`scg.algorithms.run_files` for
the files). ``scg train --algo A --env E --seeds N --steps S`` trains anything
in ``scg.algorithms.ALGORITHMS`` on any environment of ``scg.envs.registry``;
``scg train --resume runs/<name>`` continues an interrupted run; ``--sweep lr=1e-4,3e-4,1e-3``
trains every value (a grid, where given for several fields) on every seed in one compiled program and one run
folder; ``--log tensorboard``
also writes TensorBoard event files beside ``metrics.jsonl``; ``scg list``
shows the choices; ``scg plot runs/a runs/b -o out.png`` compares runs;
``scg eval runs/<name>`` runs the trained policy for fresh episodes, by its mode
and by sampling, and writes ``eval.json`` (``--render out.gif``: one episode drawn).
``scg demo`` compiles the README's graph, estimates its gradient and prints it
next to the exact gradient computed by enumeration and quadrature, with the
z-score of the difference.

Errors are one line on stderr naming the option, file or process, and what to do. Exit codes:

- 2: refused, and nothing was written: a bad option, a file that is not what it should be (a damaged
  ``config.json`` or ``checkpoint.npz``, metrics without a checkpoint), a path of the wrong kind or that
  cannot be written (permissions, a read-only folder), a run another process is training;
- 1: failed while working, by a full disk or another I/O error; the message names the file and, for
  ``train``, what the last checkpoint kept and how to resume;
- 130: interrupted (Ctrl-C); ``train`` says what was kept and how to resume.
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import sys
import time
from pathlib import Path

DEFAULTS = dict(algo="reinforce", env="CartPole-v1", seeds=4, steps=160_000, seed=0, chunk=None)
# errors of a path the user gave (exit 2); any other OSError (a full disk, an I/O error) is a failure (exit 1)
_PATH_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.EISDIR, errno.ENOTDIR, errno.ENOENT, errno.EEXIST,
                errno.ENAMETOOLONG}


# JAX's own persistent compilation cache, off unless asked for: a repeated run then loads its compiled init and chunk
# (the default job's first chunk printed after 3.0 s instead of 5.5 s; the same numbers; 0.4 MB of cache)
_CACHE_HINT = ("To reuse compiled code across runs, set JAX_COMPILATION_CACHE_DIR=<folder> and "
               "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 (JAX's compilation cache; off by default).")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), as for the checks the command makes itself."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _fail(prog: str, message: str, code: int = 2) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def _os_code(err: OSError) -> int:
    return 2 if err.errno in _PATH_ERRORS else 1


def _parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs; values are JSON where they parse (``hidden=[32,32]``, ``policy_lr=0.003``), else text
    (``surrogate=clip``); a value that starts like a JSON list, object or string must parse. A key given twice
    is an error."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--config takes key=value, got {item!r}")
        if key in out:
            raise ValueError(f"--config {key} is given twice; give each key once")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as err:
            if value.lstrip().startswith(("[", "{", '"')):
                raise ValueError(f"--config {item}: not valid JSON ({err.msg} at character {err.pos})") from None
            out[key] = value
    return out


def _parse_sweep(items: list[str]) -> dict | None:
    """``field=v1,v2,...`` per swept field (``None`` for none); each value a number. A field given twice is an
    error; whether it can be swept is :func:`scg.algorithms.run_config.resolve`'s to say."""
    if not items:
        return None
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key or not text:
            raise ValueError(f"--sweep takes field=value,value,..., got {item!r}")
        if key in out:
            raise ValueError(f"--sweep {key} is given twice; give each field once, with all its values")
        try:
            values = [json.loads(v) for v in text.split(",")]
        except json.JSONDecodeError:
            values = None
        if values is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"--sweep {item}: the values must be numbers separated by commas, e.g. {key}=1e-4,3e-4")
        out[key] = values
    return out


def _collision(run_dir: Path) -> str:
    from scg.algorithms.run_files import CONFIG, describe_holder, lock_holder

    holder = lock_holder(run_dir)
    if holder is not None:
        return f"{run_dir} exists and is being trained by {describe_holder(holder)}; choose another --name"
    if (run_dir / CONFIG).is_file():
        return f"{run_dir} exists; continue it with --resume {run_dir} or choose another --name"
    return f"{run_dir} exists and is not a run; choose another --name"


def _new_run(args: argparse.Namespace) -> tuple[Path, dict]:
    from scg.algorithms import run_config

    opt = {k: DEFAULTS[k] if getattr(args, k) is None else getattr(args, k) for k in DEFAULTS}
    overrides, sweep = _parse_overrides(args.config or []), _parse_sweep(args.sweep)
    both = sorted(set(overrides) & set(sweep or {}))
    if both:
        raise ValueError(f"--config and --sweep both set {', '.join(both)}; give each field in one of them")
    config = run_config.resolve(
        opt["algo"], opt["env"], seeds=opt["seeds"], steps=opt["steps"], seed=opt["seed"], chunk=opt["chunk"],
        overrides=overrides, sweep=sweep, env_shards=1 if args.env_shards is None else args.env_shards,
    )
    name = args.name or f"{config['algo']}-{config['env']}-{time.strftime('%Y%m%d-%H%M%S', _start_time())}"
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"--name must be a plain folder name, got {name!r}")
    runs_dir = Path(args.runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise ValueError(f"--runs-dir {runs_dir} is a file, not a folder; pass a folder for the run folders")
    run_dir = runs_dir / name
    if run_dir.exists() and _writer():
        raise ValueError(_collision(run_dir))
    if "sweep" in config:  # whether the algorithm can trace the swept fields, before the folder exists (cached)
        from scg.algorithms import driver

        driver.compiled(config)
    return run_dir, {"name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **config}


def _resumed_run(args: argparse.Namespace) -> tuple[Path, dict]:
    from scg.algorithms import driver, run_config
    from scg.algorithms.config import ConfigError
    from scg.algorithms.run_files import CHECKPOINT, CONFIG, RunError, describe_holder, lock_holder

    run_dir = Path(args.resume)
    if not (run_dir / CONFIG).is_file():
        raise RunError(f"--resume {run_dir}: not a run directory (no {CONFIG})")
    for option in ("algo", "env", "seeds", "seed", "chunk", "name", "config", "sweep", "env_shards"):
        if getattr(args, option) is not None:
            flag = "--" + option.replace("_", "-")
            raise ValueError(f"--resume continues {run_dir} as it was configured; {flag} cannot change")
    holder = lock_holder(run_dir) if _writer() else None  # process 0 of a distributed run may hold it already
    if holder is not None:
        raise RunError(f"--resume {run_dir}: it is being trained by {describe_holder(holder)}; "
                       "wait for it to finish or stop that process")
    config = run_config.load(run_dir)
    steps = config["steps"] if args.steps is None else args.steps
    run_config.resolve(  # --steps must be positive
        config["algo"], config["env"], seeds=config["seeds"], steps=steps, seed=config["seed"], chunk=config["chunk"],
        overrides=config["algorithm_config"], sweep=config.get("sweep"), env_shards=run_config.env_shards(config),
    )
    start = driver.resume_point(run_dir)  # a damaged checkpoint, or metrics without one, is refused here
    trained = min(start["env_steps"]) if start else 0
    if args.steps is not None and steps < trained:
        raise ConfigError(f"--steps {steps:,} is less than the {trained:,.0f} env steps {run_dir} has trained "
                          f"(iteration {start['iteration']} of {run_dir / CHECKPOINT}); pass --steps "
                          f"{trained:.0f} or more, or leave --steps out")
    return run_dir, {**config, "steps": steps}


def _plan(config: dict) -> str:
    """How many env steps the run trains: ``--steps`` rounded up to whole iterations, said with the real numbers."""
    from scg.algorithms.driver import steps_per_iteration

    steps, per_iter = config["steps"], steps_per_iteration(config)
    if per_iter is None:
        return (f"{steps:,} env steps, rounded up to whole iterations ({config['algo']}'s vary in length; "
                f"the first chunk is {config['chunk']} iteration{'s' * (config['chunk'] != 1)})")
    n = math.ceil(steps / per_iter)
    plan = f"{n:,} iteration{'s' * (n != 1)} = {n * per_iter:,} env steps"
    if n * per_iter != steps:
        plan += f" (--steps {steps:,} rounded up to whole iterations of {per_iter:,})"
    return plan


def _grid(sweep: dict) -> str:
    """``"lr = 0.0001, 0.001; gae_lambda = 0.9, 0.95"``: a sweep's values as the first line prints them."""
    return "; ".join(f"{k} = {', '.join(f'{v:g}' for v in vs)}" for k, vs in sweep.items())


def _kept(run_dir: Path) -> str | None:
    """What the checkpoint of ``run_dir`` holds, or ``None`` if it has none."""
    from scg.algorithms import checkpoint
    from scg.algorithms.config import ConfigError

    try:
        prog = checkpoint.read_progress(run_dir)
    except (FileNotFoundError, ConfigError):
        return None
    return f"metrics and checkpoint kept at iteration {prog['iteration']} ({min(prog['env_steps']):,.0f} env steps)"


def _failed(run_dir: Path, err: OSError, created: bool) -> str:
    """The one line for an ``OSError`` while training: the file, what is kept, how to go on."""
    from scg.algorithms.run_files import CONFIG

    what = f"{err.filename or run_dir}: {err.strerror or err}"
    fix = "free some space" if err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)) else "fix that"
    kept = _kept(run_dir)
    if kept is None and not (run_dir / CONFIG).is_file():
        if created:
            try:
                run_dir.rmdir()  # nothing of the run was written: leave no empty folder behind
            except OSError:
                pass
        return f"{what}; nothing was written; {fix} and run the command again"
    kept = kept or f"nothing trained yet, {run_dir / CONFIG} kept"
    return f"{what}; {kept}; {fix} and resume with: scg train --resume {run_dir}"


def _processes() -> int:
    import jax

    return jax.process_count()


def _writer() -> bool:
    """Whether this process writes the run directory: process 0 of a distributed run, or the only process."""
    import jax

    return jax.process_index() == 0


def _start_time():
    """The local time that names a new run: process 0's under ``jax.distributed`` (all processes name it alike)."""
    now = int(time.time())
    if _processes() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        now = int(multihost_utils.broadcast_one_to_all(np.int32(now)))
    return time.localtime(now)


def _start_devices(args: argparse.Namespace) -> int | None:
    """Before JAX starts: one CPU device per core (or ``--devices``), and ``jax.distributed`` when asked. Returns
    the number of devices to train on (all processes' together), ``None`` for the most that fit the members."""
    from scg.algorithms import parallel

    several = (args.coordinator, args.num_processes, args.process_id)
    if any(x is not None for x in several) and not all(x is not None for x in several):
        raise ValueError("--coordinator, --num-processes and --process-id go together; give all three or none")
    if args.devices is not None and args.devices < 1:
        raise ValueError(f"--devices must be a positive integer, got {args.devices}")
    parallel.use_cpu_devices(args.devices)
    if args.coordinator is not None:
        parallel.init_distributed(args.coordinator, args.num_processes, args.process_id)
    return None if args.devices is None else args.devices * _processes()


def _check_devices(config: dict, devices: int | None) -> None:
    """That the run's members split evenly over the devices asked for (:func:`scg.algorithms.parallel.run_mesh`
    raises ``ValueError`` saying what to change)."""
    from scg.algorithms import parallel, run_config

    parallel.run_mesh(len(run_config.members(config)), run_config.env_shards(config), devices)


def _peer_lost(run_dir: Path, err: Exception) -> None:
    """A distributed run lost a process: say what is kept and how to go on, then leave at once (JAX's shutdown
    would wait for the lost process, then abort)."""
    import os

    kept = _kept(run_dir) or "nothing trained yet"
    print(f"scg train: error: {err}; {kept}; start the processes again with --resume {run_dir}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _train(args: argparse.Namespace) -> int:
    from scg.algorithms import driver
    from scg.algorithms.config import ConfigError, sweep_points
    from scg.algorithms.metrics_log import TensorBoardLog
    from scg.algorithms.plots import point_label
    from scg.algorithms.run_files import CONFIG, CURVE, METRICS, PARAMS, RunError

    try:  # every check, before anything is written
        devices = _start_devices(args)
        run_dir, config = _resumed_run(args) if args.resume else _new_run(args)
        _check_devices(config, devices)
        writer = _writer()
        log = TensorBoardLog(run_dir) if args.log == "tensorboard" and writer else None  # nothing before the rows
    except (ValueError, RuntimeError, ImportError) as err:  # ConfigError and RunError among them; no tensorboardX
        return _fail("scg train", str(err))
    if not args.resume and writer:
        try:
            run_dir.mkdir(parents=True)  # not exist_ok: of two runs given one name at once, one gets it
        except FileExistsError:
            return _fail("scg train", _collision(run_dir))
        except OSError as err:
            return _fail("scg train", f"--runs-dir {args.runs_dir}: cannot create {run_dir}: {err.strerror}; "
                                      "pass a --runs-dir you can write to", _os_code(err))

    def announce(prog):
        if not writer:
            return
        where = f" from iteration {prog['iteration']:,}" if prog["iteration"] else ""
        sweep = config.get("sweep")
        points = "" if sweep is None else f" x {math.prod(map(len, sweep.values()))} sweep points ({_grid(sweep)})"
        shards = config.get("env_shards", 1)
        points += f" in {shards} env shards each" if shards != 1 else ""
        print(f"{'resuming' if args.resume else 'training'} {config['algo']} on {config['env']}{where}: "
              f"{config['seeds']} seed(s){points}, {_plan(config)}, {_where(prog['devices'])} -> {run_dir}", flush=True)

    try:
        result = driver.train(run_dir, config, resume=bool(args.resume), progress=not args.quiet, on_start=announce,
                              on_rows=log, devices=devices)
    except driver.PeerLost as err:
        _peer_lost(run_dir, err)
    except (ConfigError, RunError) as err:  # raised before anything was written
        if not args.resume and writer:
            try:
                run_dir.rmdir()  # the folder made above, if still empty
            except OSError:
                pass
        return _fail("scg train", str(err))
    except OSError as err:
        return _fail("scg train", _failed(run_dir, err, created=not args.resume), _os_code(err))
    finally:
        if log is not None:
            log.close()
    if not writer:  # process 0 reports
        return 130 if result["interrupted"] else 0
    steps = min(result["env_steps"])
    if result["interrupted"]:
        if result["checkpoint"]:
            print(f"interrupted: metrics and checkpoint kept at iteration {result['iteration']} "
                  f"({steps:,.0f} env steps) in {run_dir}")
        else:
            print(f"interrupted before the first checkpoint: nothing trained yet, {run_dir / CONFIG} kept")
        print(f"resume with: scg train --resume {run_dir}")
        return 130
    if config.get("sweep") is None:
        print("final mean return (last 20 episodes): " + _final_returns(result["final_mean_return"]))
    else:
        print("final mean return (last 20 episodes) per sweep point:")
        n = config["seeds"]
        for p, point in enumerate(sweep_points(config["sweep"])):
            print(f"  {point_label(point)}: {_final_returns(result['final_mean_return'][p * n:(p + 1) * n])}")
    files = ", ".join(str(run_dir / f) for f in (CONFIG, METRICS, PARAMS, CURVE))
    files += f" and TensorBoard events ({run_dir}/events.out.tfevents.*)" if log is not None else ""
    n = result["iteration"]
    print(f"{steps:,.0f} env steps, {n} iteration{'s' * (n != 1)}, {result['wall_time']:.1f} s; wrote {files}")
    return 0


def _where(d: dict) -> str:
    """``"on 2 cpu devices"`` (``"of 2 processes"`` too): where the session trains, ``config.json``'s record ``d``."""
    text = f"on {d['count']} {d['platform']} device{'s' * (d['count'] != 1)}"
    return text + (f" of {d['processes']} processes" if d["processes"] > 1 else "")


def _final_returns(returns: list) -> str:
    """``"mean (per seed: a, b)"`` of the finished seeds' final mean returns, or ``"no episode finished"``."""
    final = [r for r in returns if r is not None]
    per_seed = ", ".join(f"{r:.1f}" for r in final)
    return f"{sum(final) / len(final):.1f} (per seed: {per_seed})" if final else "no episode finished"


def _list(args: argparse.Namespace) -> int:
    from scg.algorithms import ALGORITHMS
    from scg.algorithms.run_config import action_kind
    from scg.envs import registry

    print("algorithms (action kinds):")
    width = max(map(len, ALGORITHMS), default=0) + 2
    for name in sorted(ALGORITHMS):
        algo = ALGORITHMS[name]
        print(f"  {name:<{width}}{', '.join(algo.action_kinds):<22} {algo.description}")
    print("environments (action space):")
    for name in registry.list_envs():
        try:
            env, params = registry.make(name)
            space = env.action_space(params)
            kind = action_kind(space)
            detail = f"{space.n} actions" if kind == "discrete" else f"shape {space.shape}"
            print(f"  {name:<26} {kind} ({detail})")
        except ImportError as err:
            print(f"  {name:<26} unavailable: {err}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from scg.algorithms.metrics_log import read_metrics
    from scg.algorithms.plots import plot_runs
    from scg.algorithms.run_files import CONFIG, METRICS, RunError, read_config

    for run_dir in map(Path, args.runs):
        if not (run_dir / CONFIG).is_file() or not (run_dir / METRICS).is_file():
            return _fail("scg plot", f"{run_dir} is not a run directory (needs {CONFIG} and {METRICS})")
        try:
            read_config(run_dir)
        except RunError as err:
            return _fail("scg plot", str(err))
        if not read_metrics(run_dir):
            return _fail("scg plot", f"{run_dir / METRICS} has no complete metrics line (it is empty or not "
                                     "metrics); plot runs that have trained at least one chunk")
    out = Path(args.output)
    if out.is_dir():
        return _fail("scg plot", f"-o {out} is a folder; give a file name, e.g. -o {out / 'comparison.png'}")
    try:
        plot_runs(args.runs, out, band=args.band)
    except OSError as err:
        code = _os_code(err)
        fix = "choose another -o" if code == 2 else "free some space and run it again"
        return _fail("scg plot", f"-o {out}: cannot write {err.filename or out}: {err.strerror or err}; {fix}", code)
    print(f"wrote {out}")
    return 0


def _returns_line(result: dict, multi_seed: bool) -> str:
    """``mean ± se`` over all episodes and, for several seeds, ``(per seed: ...)``."""
    text = f"{result['mean']:.1f} ± {result['stderr']:.1f}"
    if multi_seed:
        text += " (per seed: " + ", ".join(f"{s['mean']:.1f} ± {s['stderr']:.1f}" for s in result["per_seed"]) + ")"
    if result["unfinished"]:
        text += f"; {result['unfinished']} episode(s) had not ended after the episode limit"
    return text


def _eval(args: argparse.Namespace) -> int:
    from scg.algorithms import evaluate
    from scg.algorithms.run_files import CONFIG, read_config

    if args.episodes < 2:
        return _fail("scg eval", f"--episodes must be at least 2 (a standard error needs two), got {args.episodes}")
    out = None if args.render is None else Path(args.render)
    if out is not None:
        if out.suffix.lower() != ".gif":
            return _fail("scg eval", f"--render {out}: give a .gif file name, e.g. --render episode.gif")
        if out.is_dir() or not out.parent.is_dir():
            what = "is a folder" if out.is_dir() else f"is in {out.parent}, which is not a folder"
            return _fail("scg eval", f"--render {out} {what}; give a .gif file in an existing folder")
    try:
        recorded = Path(args.run_dir) / CONFIG
        if recorded.is_file() and "sweep" in read_config(args.run_dir):  # params of points x seeds: eval has no labels
            return _fail("scg eval", f"{args.run_dir} is a sweep; scg eval evaluates runs of one config: train the "
                                     "value you want to evaluate as a run of its own (--config FIELD=VALUE)")
        run = evaluate.open_run(args.run_dir)
        if out is not None:
            evaluate.check_render(run)
    except NotImplementedError as err:
        return _fail("scg eval", f"--render: {err}: this environment cannot be drawn; leave out --render")
    except (ValueError, ImportError) as err:  # RunError, ConfigError; an env or its renderer's package missing
        return _fail("scg eval", str(err))
    config = run.config
    print(f"evaluating {config['algo']} on {config['env']} ({run.run_dir}): {config['seeds']} seed(s) x "
          f"{args.episodes} episodes of at most {run.max_steps} steps, --seed {args.seed}", flush=True)
    target = run.run_dir / evaluate.EVAL
    try:
        record = evaluate.evaluate_run(run, num_episodes=args.episodes, seed=args.seed)
    except OSError as err:
        return _fail("scg eval", f"cannot write {err.filename or target}: {err.strerror or err}", _os_code(err))
    multi = config["seeds"] > 1
    print(f"deterministic (mode): {_returns_line(record['deterministic'], multi)}")
    if record["sampled"] is None:
        print(f"sampled:              none ({config['algo']}'s actor is deterministic: its samples are its mode)")
    else:
        print(f"sampled:              {_returns_line(record['sampled'], multi)}")
    print(f"wrote {target}")
    if out is not None:
        try:
            frames = evaluate.render_episode(run, out, seed=args.seed)
        except OSError as err:
            return _fail("scg eval", f"--render {out}: cannot write {err.filename or out}: {err.strerror or err}",
                         _os_code(err))
        print(f"wrote {out}: one deterministic episode of seed {config['seed']}, {frames - 1} steps")
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.replicates < 2:
        return _fail("scg demo", "--replicates must be at least 2")
    import jax

    import scg
    from scg import render, testing
    from scg.testing import examples

    g, _ = examples.readme_graph()  # the README's graph, at the requested theta
    inputs = {"theta": args.theta}
    start = time.perf_counter()
    est = scg.compile(g, example_inputs=inputs)
    print(f"graph: {[n.name for n in g.nodes]}")
    print("estimators: " + ", ".join(f"{k}={v.name}" for k, v in est.resolved_estimators(inputs).items()))
    for w, costs in render.score_terms(est, inputs).items():
        print(f"  score term of {w!r} multiplies Q_{w} = {' + '.join(costs)}")
    draws = est.grad_samples(inputs, jax.random.key(args.seed), num_replicates=args.replicates)
    exact = testing.exact_grad(g, inputs)
    result = testing.z_test(draws, exact)
    elapsed = time.perf_counter() - start
    print(f"d/dtheta E[f] at theta={args.theta}:")
    print(f"  estimate {result.mean[0]:+.5f} ± {result.stderr[0]:.5f}  ({args.replicates} samples)")
    print(f"  exact    {result.exact[0]:+.5f}  (enumeration of z, Gauss-Hermite quadrature over x)")
    print(f"  z = {result.z[0]:+.2f}  -> {'unbiased within 5 sigma' if result.passed else 'MISMATCH'}  [{elapsed:.1f} s]")
    return 0 if result.passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scg", description="Stochastic computation graphs for JAX. Without a command: scg train.")
    sub = parser.add_subparsers(dest="command")

    train = sub.add_parser("train", help="train an algorithm on an environment, writing runs/<name>/",
                           epilog=_CACHE_HINT)
    d = DEFAULTS
    train.add_argument("--algo", help=f"algorithm (scg list; default {d['algo']})")
    train.add_argument("--env", help=f"environment (scg list; default {d['env']})")
    train.add_argument("--seeds", type=int, help=f"seeds, trained in parallel with vmap (default {d['seeds']})")
    train.add_argument("--steps", type=int, help="env steps per seed, rounded up to whole iterations (the first line "
                       f"printed says how many iterations and steps that is; default {d['steps']:,})")
    train.add_argument("--seed", type=int, help="first seed; seed s trains from jax.random.key(s) (default 0)")
    train.add_argument("--chunk", type=int, help="iterations per jitted chunk, where progress "
                       "and checkpoints happen (default 5, or more to hold at least 1,000 env steps per seed)")
    train.add_argument("--config", nargs="+", action="extend", metavar="KEY=VALUE", help="algorithm config overrides")
    train.add_argument("--sweep", action="append", metavar="FIELD=V1,V2,...",
                       help="train every value of a float config field on every seed, in one compiled program and "
                       "one run folder (repeat for a grid over several fields), e.g. --sweep policy_lr=1e-3,3e-3")
    train.add_argument("--name", help="run folder name (default <algo>-<env>-<timestamp>)")
    train.add_argument("--runs-dir", default="runs", help="where run folders go (default runs/)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--devices", type=int, metavar="N",
                       help="devices to split the seeds over, per process: on CPU, N host devices (default: one "
                       "per core, as many as split the seeds and sweep points evenly); on a GPU machine, N GPUs")
    train.add_argument("--env-shards", type=int, metavar="E",
                       help="split each seed's num_envs environments into E shards that average their gradients "
                       "before every optimizer step, each shard on its own device where there are more devices "
                       "than seeds (reinforce, a2c, ppo; E must divide num_envs; default 1)")
    train.add_argument("--coordinator", metavar="HOST:PORT",
                       help="train across processes with jax.distributed: process 0's address (with "
                       "--num-processes and --process-id; process 0 alone writes the run folder)")
    train.add_argument("--num-processes", type=int, metavar="P", help="processes of a distributed run")
    train.add_argument("--process-id", type=int, metavar="I", help="this process's rank, 0..P-1")
    train.add_argument("--log", choices=("jsonl", "tensorboard"), default="jsonl",
                       help="jsonl (default): metrics.jsonl only; tensorboard: TensorBoard event files in the run "
                       "folder too (needs tensorboardX: pip install 'scg-jax[tensorboard]')")
    train.set_defaults(run=_train)

    lst = sub.add_parser("list", help="algorithms with their action kinds, environments with their action spaces")
    lst.set_defaults(run=_list)

    plot = sub.add_parser("plot", help="one figure comparing runs, a panel per environment: mean return over "
                                       "seeds vs env steps, with a band")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("-o", "--output", default="comparison.png", help="PNG to write (default comparison.png)")
    plot.add_argument("--band", choices=("se", "minmax"), default="se",
                      help="shade ± one standard error of the mean over seeds (se, default) or their min-max range")
    plot.set_defaults(run=_plot)

    ev = sub.add_parser("eval", help="run a trained policy for fresh episodes: mean ± standard error of the return, "
                                     "by its mode and sampled; writes eval.json in the run folder")
    ev.add_argument("run_dir", metavar="RUN_DIR")
    ev.add_argument("--episodes", type=int, default=20, help="episodes per seed of the run (default 20)")
    ev.add_argument("--seed", type=int, default=0, help="the evaluation's PRNG seed (default 0)")
    ev.add_argument("--render", metavar="OUT.gif", help="also draw one deterministic episode as an animated GIF")
    ev.set_defaults(run=_eval)

    demo = sub.add_parser("demo", help="compile the README graph and check its gradient against the exact one")
    demo.add_argument("--theta", type=float, default=0.3)
    demo.add_argument("--replicates", type=int, default=100_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["train", *argv]  # the main job: `scg` alone trains the default
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:  # before training started (imports, checks) or outside it: nothing half-written
        print(f"scg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
