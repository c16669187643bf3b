"""The ``scg`` command.

``scg`` (or ``scg demo``) compiles the README's graph, estimates its gradient
and prints it next to the exact gradient computed by enumeration and
quadrature, with the z-score of the difference.
"""
from __future__ import annotations

import argparse
import sys
import time


def _demo(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp

    import scg
    from scg import dist, testing

    g = scg.Graph("readme")
    theta = g.input("theta")
    x = g.stochastic("x", lambda theta: dist.Normal(theta, 1.0), theta)
    z = g.stochastic("z", lambda x: dist.Bernoulli(logits=x), x)
    y = g.deterministic("y", lambda x, z: jnp.sin(x) + z, x, z)
    g.cost("f", lambda y, theta: (y - theta) ** 2, y, theta)

    inputs = {"theta": args.theta}
    start = time.perf_counter()
    est = scg.compile(g, example_inputs=inputs)
    plan = est.plan(inputs)
    print(f"graph: {[n.name for n in g.nodes]}")
    print("estimators: " + ", ".join(f"{k}={v.name}" for k, v in plan.analysis.estimators.items()))
    for w in plan.analysis.score_nodes():
        print(f"  score term of {w!r} multiplies Q_{w} = {' + '.join(plan.analysis.downstream_costs[w])}")
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
    parser = argparse.ArgumentParser(prog="scg", description="Stochastic computation graphs for JAX.")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="compile the README graph and check its gradient against the exact one")
    demo.add_argument("--theta", type=float, default=0.3)
    demo.add_argument("--replicates", type=int, default=100_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["demo", *argv]
    args = parser.parse_args(argv)
    if args.replicates < 2:
        parser.error("--replicates must be at least 2")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
