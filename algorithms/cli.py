"""The ``scg`` command.

``scg`` alone is ``scg train`` with its defaults: REINFORCE on CartPole-v1,
written to ``runs/<algo>-<env>-<timestamp>/`` (see :mod:`scg.algorithms.run_files` for
the files). ``scg train --algo A --env E --seeds N --steps S`` trains anything
in ``scg.algorithms.ALGORITHMS`` on any environment of ``scg.envs.registry``;
``scg train --resume runs/<name>`` continues an interrupted run; ``scg list``
shows the choices; ``scg plot runs/a runs/b -o out.png`` compares runs.
``scg demo`` compiles the README's graph, estimates its gradient and prints it
next to the exact gradient computed by enumeration and quadrature, with the
z-score of the difference.

Bad options are one line on stderr naming the valid choices, exit code 2, and
nothing is written.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEFAULTS = dict(algo="reinforce", env="CartPole-v1", seeds=4, steps=160_000, seed=0, chunk=5)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2), as for the checks the command makes itself."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _parse_overrides(items: list[str]) -> dict:
    """``key=value`` pairs; values are JSON where they parse (``hidden=[32,32]``, ``policy_lr=0.003``), else text
    (``surrogate=clip``); a value that starts like a JSON list, object or string must parse."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--config takes key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError as err:
            if value.lstrip().startswith(("[", "{", '"')):
                raise ValueError(f"--config {item}: not valid JSON ({err.msg} at character {err.pos})") from None
            out[key] = value
    return out


def _new_run(args: argparse.Namespace) -> tuple[Path, dict]:
    from scg.algorithms import run_config

    opt = {k: DEFAULTS[k] if getattr(args, k) is None else getattr(args, k) for k in DEFAULTS}
    config = run_config.resolve(
        opt["algo"], opt["env"], seeds=opt["seeds"], steps=opt["steps"], seed=opt["seed"], chunk=opt["chunk"],
        overrides=_parse_overrides(args.config or []),
    )
    name = args.name or f"{config['algo']}-{config['env']}-{time.strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or name in ("", ".", ".."):
        raise ValueError(f"--name must be a plain folder name, got {name!r}")
    run_dir = Path(args.runs_dir) / name
    if run_dir.exists():
        raise ValueError(f"{run_dir} exists; continue it with --resume {run_dir} or choose another --name")
    return run_dir, {"name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **config}


def _resumed_run(args: argparse.Namespace) -> tuple[Path, dict]:
    from scg.algorithms import run_config
    from scg.algorithms.run_files import CONFIG

    run_dir = Path(args.resume)
    if not (run_dir / CONFIG).is_file():
        raise ValueError(f"--resume {run_dir}: not a run directory (no {CONFIG})")
    config = json.loads((run_dir / CONFIG).read_text())
    for option in ("algo", "env", "seeds", "seed", "chunk", "name", "config"):
        if getattr(args, option) is not None:
            raise ValueError(f"--resume continues {run_dir} as it was configured; --{option} cannot change")
    steps = config["steps"] if args.steps is None else args.steps
    run_config.resolve(  # the saved run must still be valid (its algorithm registered, --steps positive)
        config["algo"], config["env"], seeds=config["seeds"], steps=steps, seed=config["seed"], chunk=config["chunk"],
        overrides=config["algorithm_config"],
    )
    return run_dir, {**config, "steps": steps}


def _train(args: argparse.Namespace) -> int:
    from scg.algorithms import driver
    from scg.algorithms.run_files import CONFIG, CURVE, METRICS, PARAMS, write_json

    try:  # every check, before anything is written
        run_dir, config = _resumed_run(args) if args.resume else _new_run(args)
    except ValueError as err:  # scg.algorithms.config.ConfigError among them
        return _fail("scg train", str(err))
    run_dir.mkdir(parents=True, exist_ok=bool(args.resume))  # only now is anything written
    write_json(run_dir / CONFIG, config)  # on --resume, --steps may have grown
    print(f"{'resuming' if args.resume else 'training'} {config['algo']} on {config['env']}: "
          f"{config['seeds']} seed(s), {config['steps']:,} env steps -> {run_dir}")
    result = driver.train(run_dir, config, resume=bool(args.resume), progress=not args.quiet)
    steps = min(result["env_steps"])
    if result["interrupted"]:
        print(f"interrupted: metrics and checkpoint kept at iteration {result['iteration']} ({steps:,.0f} env steps) "
              f"in {run_dir}\nresume with: scg train --resume {run_dir}")
        return 130
    final = [r for r in result["final_mean_return"] if r is not None]
    per_seed = ", ".join(f"{r:.1f}" for r in final)
    print("final mean return (last 20 episodes): "
          + (f"{sum(final) / len(final):.1f} (per seed: {per_seed})" if final else "no episode finished"))
    files = ", ".join(str(run_dir / f) for f in (CONFIG, METRICS, PARAMS, CURVE))
    print(f"{steps:,.0f} env steps, {result['iteration']} iterations, {result['wall_time']:.1f} s; wrote {files}")
    return 0


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
    from scg.algorithms.plots import plot_runs
    from scg.algorithms.run_files import CONFIG, METRICS

    for run_dir in map(Path, args.runs):
        if not (run_dir / CONFIG).is_file() or not (run_dir / METRICS).is_file():
            return _fail("scg plot", f"{run_dir} is not a run directory (needs {CONFIG} and {METRICS})")
    out = plot_runs(args.runs, args.output)
    print(f"wrote {out}")
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

    train = sub.add_parser("train", help="train an algorithm on an environment, writing runs/<name>/")
    d = DEFAULTS
    train.add_argument("--algo", help=f"algorithm (scg list; default {d['algo']})")
    train.add_argument("--env", help=f"environment (scg list; default {d['env']})")
    train.add_argument("--seeds", type=int, help=f"seeds, trained in parallel with vmap (default {d['seeds']})")
    train.add_argument("--steps", type=int, help=f"env steps per seed, up to whole iterations (default {d['steps']:,})")
    train.add_argument("--seed", type=int, help="first seed; seed s trains from jax.random.key(s) (default 0)")
    train.add_argument("--chunk", type=int, help=f"iterations per jitted chunk (default {d['chunk']})")
    train.add_argument("--config", nargs="+", action="extend", metavar="KEY=VALUE", help="algorithm config overrides")
    train.add_argument("--name", help="run folder name (default <algo>-<env>-<timestamp>)")
    train.add_argument("--runs-dir", default="runs", help="where run folders go (default runs/)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train)

    lst = sub.add_parser("list", help="algorithms with their action kinds, environments with their action spaces")
    lst.set_defaults(run=_list)

    plot = sub.add_parser("plot", help="one figure comparing runs: mean return ± std over seeds vs env steps")
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("-o", "--output", default="comparison.png", help="PNG to write (default comparison.png)")
    plot.set_defaults(run=_plot)

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
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
