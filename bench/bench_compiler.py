"""Benchmark of the scg compiler: runtime overhead against hand-written JAX, and compile-time growth.

Part 1 (overhead). Three graphs, each compiled by scg and also written by hand
in JAX (:mod:`bench.handwritten`, the same estimator drawing the same
samples; the gradients are asserted to agree for the same key before anything
is timed):

- ``random100``: a 100-node random graph (inputs, deterministic nodes,
  reparameterised and score-function Normal nodes, Bernoulli nodes, costs);
- ``trajectory50``: the REINFORCE surrogate of a 50-step rollout of a toy MDP
  written as a flat graph (4 nodes per step): ``a_t ~ Categorical(softmax(φ(s_t)θ))``
  (score function), ``s_{t+1}`` from a simulator, cost ``s_{t+1}²`` per step;
  ``--horizon 200`` gives the ~800-node graph, whose unrolled ``grad`` takes
  XLA minutes to compile on 2 CPU cores (see bench/README.md);
- ``temporal200``: the same MDP for 200 steps as a :class:`scg.Temporal` (scanned).

Each is timed with ``num_samples`` 1 and 64, two ways: (i) ``est.grad(...)``
called from Python (including scg's per-call dispatch) and (ii)
``jax.jit(est.grad_fn(example_inputs))`` as inside a user's training step;
the ratio to the hand-written version (jitted) is reported. Programs that differ
only in their names and source locations compile to executables whose speed
differs by a few percent (up to ~4% measured on the unrolled 200-step graph), so
each hand-written function is compiled twice under two function names, like
scg's two entry points; its time is the mean of the two medians, and scg's
pooled time is the mean of its two executables (``ratio_scg_vs_*``). Each
``num_samples`` case starts from a fresh ``scg.compile`` with JAX's caches
cleared, so no case runs beside the executables of the one before.

Part 2 (compile time). For chain-like (the rollout graph) and random graphs of
10 to 1,000 nodes: seconds in ``scg.compile`` (structural analysis), in
planning (``jax.eval_shape`` of the graph), in tracing ``grad`` (``jit(...).lower``)
and in XLA compilation (``.compile()``); the log-log slope of each against the
number of nodes is the growth exponent.

Run ``python bench/bench_compiler.py`` (3-6 minutes on 2 CPU cores) or
``--quick`` (under a minute); results go to ``bench/results/compiler.json``.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scg  # noqa: E402
from scg import dist  # noqa: E402

import _util  # noqa: E402
import handwritten as hw  # noqa: E402

DIM = 4  # size of each node's value in the random graph
# Large flat graphs are what this benchmark measures: scg.compile's warning about their compile time is expected.
warnings.simplefilter("ignore", scg.CompileTimeWarning)

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "compiler.json")


# -- graphs -----------------------------------------------------------------------------------------
def random_spec(num_nodes: int, seed: int = 0, *, num_inputs: int = 2, cost_fraction: float = 0.1):
    """A random DAG as ``[(name, op, parents), ...]`` in declaration (topological) order.

    Parents are drawn mostly among the few preceding nodes (so the graph has
    depth, like a model) and sometimes uniformly from all earlier ones (long
    edges). About ``cost_fraction`` of the nodes are costs; the last node is one.
    """
    rng = np.random.default_rng(seed)
    spec = [(f"theta{i}", "input", ()) for i in range(num_inputs)]
    ops = ["det", "pathwise", "score_normal", "bernoulli"]
    probs = [0.45, 0.2, 0.15, 0.2]
    values = [s[0] for s in spec]  # non-cost nodes, parents for later nodes

    def pick():
        if rng.random() < 0.2:
            return values[rng.integers(len(values))]
        return values[max(0, len(values) - 1 - rng.geometric(0.4) + 1)]

    for i in range(num_inputs, num_nodes):
        if i == num_nodes - 1 or rng.random() < cost_fraction:
            spec.append((f"c{i}", "cost", (values[-1 - min(len(values) - 1, rng.integers(3))],)))
            continue
        op = ops[rng.choice(len(ops), p=probs)]
        parents = tuple(dict.fromkeys(pick() for _ in range(1 + (rng.random() < 0.5))))
        spec.append((f"n{i}", op, parents))
        values.append(f"n{i}")
    return spec


def random_graph(spec) -> scg.Graph:
    g = scg.Graph(f"random{len(spec)}")
    for name, op, parents in spec:
        if op == "input":
            g.input(name)
        elif op == "det":
            g.deterministic(name, hw.det_fn, *parents)
        elif op == "cost":
            g.cost(name, hw.cost_fn, *parents)
        elif op == "pathwise":
            g.stochastic(name, lambda *p: dist.Normal(hw.pathwise_loc(*p), 1.0), *parents, estimator="pathwise")
        elif op == "score_normal":
            fn = lambda *p: dist.Normal(hw.score_normal_loc(*p), hw.SCORE_NORMAL_SCALE)
            g.stochastic(name, fn, *parents, estimator="score")
        elif op == "bernoulli":
            g.stochastic(name, lambda *p: dist.Bernoulli(logits=hw.bernoulli_logits(*p)), *parents, estimator="score")
    return g


def random_inputs(spec):
    return {name: jnp.linspace(-0.5, 0.5, DIM) * (i + 1) for i, (name, op, _) in enumerate(spec) if op == "input"}


def trajectory_graph(horizon: int) -> scg.Graph:
    """A ``horizon``-step rollout as a flat graph: 4 nodes per step (φ_t, a_t, s_{t+1}, c_t) plus θ and s₀."""
    g = scg.Graph(f"trajectory{horizon}")
    theta = g.input("theta")
    s_t = g.input("s0", differentiable=False)  # data: never differentiated (Condition 1)
    for t in range(horizon):
        phi_t = g.deterministic(f"phi{t}", hw.features, s_t)
        a_t = g.stochastic(f"a{t}", lambda th, f: dist.Categorical(logits=hw.policy_logits(th, f)), theta, phi_t,
                           estimator="score")
        s_t = g.simulate(f"s{t + 1}", hw.dynamics, s_t, a_t)
        g.cost(f"c{t}", hw.step_cost, s_t)
    return g


def temporal_trajectory(horizon: int) -> scg.Temporal:
    """The same rollout as one step graph scanned ``horizon`` times (:class:`scg.Temporal`)."""
    step = scg.Graph("mdp_step")
    theta = step.input("theta")
    s_t = step.input("s", differentiable=False)
    phi_t = step.deterministic("phi", hw.features, s_t)
    a_t = step.stochastic("a", lambda th, f: dist.Categorical(logits=hw.policy_logits(th, f)), theta, phi_t,
                          estimator="score")
    s_tp1 = step.simulate("s_next", hw.dynamics, s_t, a_t)
    step.cost("c", hw.step_cost, s_tp1)
    return scg.Temporal(step, carry={"s": "s_next"}, horizon=horizon)


def trajectory_inputs():
    theta = 0.3 * jnp.arange(hw.NUM_FEATURES * hw.NUM_ACTIONS, dtype=jnp.float32).reshape(hw.NUM_FEATURES, hw.NUM_ACTIONS)
    return {"theta": jnp.sin(theta), "s0": jnp.asarray(0.5, jnp.float32)}


def trajectory_indices(order, horizon):
    """``(offset, stride)`` of ``a_t`` and of ``s_{t+1}`` in the compiler's order, checked for every step."""
    pos = {n: i for i, n in enumerate(order)}

    def affine(fmt, shift):
        first = pos[fmt.format(shift)]
        stride = pos[fmt.format(shift + 1)] - first if horizon > 1 else 0
        for t in range(horizon):
            assert pos[fmt.format(t + shift)] == first + stride * t, f"{fmt} is not evenly spaced in the order"
        return first, stride

    return affine("a{}", 0), affine("s{}", 1)


# -- part 1: per-call overhead ----------------------------------------------------------------------
def assert_same(g_scg, g_hand, what, rtol=2e-4):
    """The two gradients agree to float32 rounding (sums in another order), relative to their scale."""
    worst = 0.0
    for name in g_hand:
        a, b = np.asarray(g_scg[name]), np.asarray(g_hand[name])
        err = float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(b))))
        if not err <= rtol:
            raise AssertionError(f"{what}: scg and hand-written gradients differ for {name!r}: rel. err {err:.2e}\n{a}\n{b}")
        worst = max(worst, err)
    return worst


def hlo_ops(lowered) -> int:
    """Number of StableHLO operations in a lowered function: what XLA has to compile."""
    return sum(1 for line in lowered.as_text().splitlines() if "stablehlo." in line)


def overhead_case(label, graph, inputs, wrt, hand_builders, num_samples_list, *, reps, max_seconds, hand_copies=2):
    """Time ``est.grad`` and ``jit(est.grad_fn)`` against each hand-written surrogate, for each ``num_samples``.

    Two compilations of one program that differ only in names and source
    locations can differ in speed by a few percent (see bench/README.md), so each
    hand-written function is compiled ``hand_copies`` times under distinct
    function names and its time is the mean of the copies' medians; scg's time
    (``ratio_scg_vs_*``) is the mean over its two executables, ``est.grad`` and
    ``jit(grad_fn)``, which run the same program under two names.
    """
    if isinstance(graph, scg.Graph):
        out = {"num_nodes": len(graph), "cases": {}}
    else:  # a scg.Temporal: one step graph, scanned
        out = {"num_nodes_per_step": len(graph.step), "cases": {}}
    key = jax.random.key(42)
    for n in num_samples_list:
        jax.clear_caches()  # release the previous case's executables
        gc.collect()
        est = scg.compile(graph)
        user = jax.jit(est.grad_fn(inputs, num_samples=n, wrt=wrt))
        fns = {"scg_grad": lambda i, k, n=n: est.grad(i, k, num_samples=n, wrt=wrt), "scg_grad_fn_jit": user}
        ops = {"scg": hlo_ops(user.lower(inputs, key))}
        copies = {"scg": ["scg_grad", "scg_grad_fn_jit"]}
        for hand_name, build in hand_builders.items():
            copies[hand_name] = [hand_name] + [f"{hand_name}#{c}" for c in range(1, hand_copies)]
            for c, name in enumerate(copies[hand_name]):
                fns[name] = jax.jit(_named(hw.grad_of(build(est, n), wrt), f"{hand_name}_copy{c}"))
            ops[hand_name] = hlo_ops(fns[hand_name].lower(inputs, key))
        errs, first_call = {}, {}
        reference, first_call["scg_grad"] = _util.timed(fns["scg_grad"], inputs, key)
        for name, fn in fns.items():
            if name != "scg_grad":
                res, first_call[name] = _util.timed(fn, inputs, key)
                errs[name] = assert_same(reference, res, f"{label} n={n} {name}")
        t = _util.interleaved(fns, (inputs, key), reps=reps, max_seconds=max_seconds)
        mean_of = {group: float(np.mean([t[c]["median_s"] for c in names])) for group, names in copies.items()}
        spread = {group: max(t[c]["median_s"] for c in names) / min(t[c]["median_s"] for c in names)
                  for group, names in copies.items()}
        case = {"timings": t, "copies": copies, "mean_of_copies_s": mean_of, "copy_spread": spread,
                "first_call_s": first_call, "max_rel_err_vs_scg_grad": errs, "hlo_ops": ops}
        for hand_name in hand_builders:
            base = mean_of[hand_name]
            case[f"ratio_grad_vs_{hand_name}"] = t["scg_grad"]["median_s"] / base
            case[f"ratio_grad_fn_jit_vs_{hand_name}"] = t["scg_grad_fn_jit"]["median_s"] / base
            case[f"ratio_scg_vs_{hand_name}"] = mean_of["scg"] / base
        out["cases"][f"num_samples={n}"] = case
        _print_case(label, n, case)
    return out


def _named(fn, name):
    """``fn`` under another function name: the program's names and source locations differ, as between
    scg's ``est.grad`` and ``jit(grad_fn)``, so XLA compiles another executable of the same computation."""
    def call(inputs, key):
        return fn(inputs, key)

    call.__name__ = call.__qualname__ = name
    return call


def _print_case(label, n, case):
    t = case["timings"]
    parts = ", ".join(f"{k} {v['median_s'] * 1e6:.0f}us" for k, v in t.items())
    ratios = ", ".join(f"{k[6:]} {v:.3f}" for k, v in case.items() if k.startswith("ratio_"))
    print(f"[overhead] {label} num_samples={n}: {parts}\n           ratios: {ratios}; hlo ops {case['hlo_ops']}", flush=True)


def part1(cfg, cases=("random", "trajectory", "temporal")):
    results = {}
    spec = random_spec(cfg["random_nodes"], seed=0)

    def random_hand(est, n):
        return hw.random_graph_surrogate(spec, est.analysis.position, n)

    label = f"random{cfg['random_nodes']}"
    if "random" in cases:
        results[label] = overhead_case(
            label, random_graph(spec), random_inputs(spec), tuple(s[0] for s in spec if s[1] == "input"),
            {"hand": random_hand}, cfg["num_samples"], reps=cfg["reps"], max_seconds=cfg["max_seconds"])
        results[label]["ops"] = {op: sum(s[1] == op for s in spec)
                                 for op in ("input", "det", "pathwise", "score_normal", "bernoulli", "cost")}

    horizon = cfg["horizon"]

    def traj_hand(unrolled):
        def build(est, n):
            a_idx, s_idx = trajectory_indices(est.analysis.order, horizon)
            return hw.trajectory_surrogate(horizon, n, a_index=a_idx, s_index=s_idx, unrolled=unrolled)
        return build

    label = f"trajectory{horizon}"
    if "trajectory" in cases:
        results[label] = overhead_case(
            label, trajectory_graph(horizon), trajectory_inputs(), ("theta",),
            {"hand": traj_hand(True), "hand_scan": traj_hand(False)}, cfg["num_samples"],
            reps=cfg["reps"], max_seconds=cfg["max_seconds"])
        results[label]["horizon"] = horizon

    # The same rollout as a scanned step graph: compile time independent of the horizon.
    horizon = cfg["temporal_horizon"]

    def temporal_hand(est, n):
        pos = est.analysis.position  # positions in the step graph
        return hw.temporal_trajectory_surrogate(horizon, n, a_pos=pos["a"], s_pos=pos["s_next"])

    label = f"temporal{horizon}"
    inputs = trajectory_inputs()
    inputs = {"theta": inputs["theta"], "s": inputs["s0"]}
    if "temporal" in cases:
        results[label] = overhead_case(
            label, temporal_trajectory(horizon), inputs, ("theta",), {"hand_scan": temporal_hand}, cfg["num_samples"],
            reps=cfg["reps"], max_seconds=cfg["max_seconds"])
        results[label]["horizon"] = horizon
    when = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg_end": list(os.getloadavg())}
    return {label: entry | when for label, entry in results.items()}


# -- part 2: compile time against graph size ----------------------------------------------------------
def _best(fn, repeats: int):
    """``(result, seconds)``: the fastest of ``repeats`` calls, each after a garbage collection.

    The structural phases are deterministic Python work of milliseconds, where one
    collection pause or a neighbour's burst on a shared machine would be most of a sample.
    """
    best, out = float("inf"), None
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def compile_phases(graph, inputs, wrt, *, xla: bool):
    """Seconds in each phase of compiling ``grad`` for a fresh graph (first call, nothing cached)."""
    key = jax.random.key(0)
    ests, t_compile = [], float("inf")
    for _ in range(3):
        est, t = _best(lambda: scg.compile(graph), 1)
        ests.append(est)
        t_compile = min(t_compile, t)
    t_plan = min(_best(lambda: e._plan(inputs), 1)[1] for e in ests)  # each a fresh CompiledGraph
    lowered, t_lower = _best(lambda: jax.jit(est.grad_fn(inputs, wrt=wrt)).lower(inputs, key), 2)
    row = {"compile_s": t_compile, "plan_s": t_plan, "trace_lower_s": t_lower, "hlo_ops": hlo_ops(lowered)}
    if xla:
        gc.collect()
        t0 = time.perf_counter()
        compiled = lowered.compile()
        row["xla_compile_s"] = time.perf_counter() - t0
        _, row["first_run_s"] = _util.timed(compiled, inputs, key)
    return est, row


def hand_phases(est, horizon, inputs, *, xla: bool):
    """The hand-written unrolled rollout's trace and XLA compile, for comparison with the compiler's."""
    key = jax.random.key(0)
    a_idx, s_idx = trajectory_indices(est.analysis.order, horizon)
    grad = hw.grad_of(hw.trajectory_surrogate(horizon, 1, a_index=a_idx, s_index=s_idx), ("theta",))
    lowered, t_lower = _best(lambda: jax.jit(_named(grad, "hand_rollout")).lower(inputs, key), 2)  # a fresh jit: no cache
    row = {"hand_trace_lower_s": t_lower, "hand_hlo_ops": hlo_ops(lowered)}
    if xla:
        gc.collect()
        t0 = time.perf_counter()
        lowered.compile()
        row["hand_xla_compile_s"] = time.perf_counter() - t0
    return row


def part2(cfg):
    out = {}
    for family in ("chain", "random"):
        rows = []
        for n in cfg["sizes"]:
            xla = n <= cfg["xla_max_nodes"][family]
            if family == "chain":
                horizon = max(1, (n - 2) // 4)
                graph, inputs = trajectory_graph(horizon), trajectory_inputs()
                est, row = compile_phases(graph, inputs, ("theta",), xla=xla)
                row.update(hand_phases(est, horizon, inputs, xla=xla and n <= cfg["hand_xla_max_nodes"]))
            else:
                spec = random_spec(n, seed=1)
                graph, inputs = random_graph(spec), random_inputs(spec)
                _, row = compile_phases(graph, inputs, None, xla=xla)
            row = {"num_nodes": len(graph), **row}
            rows.append(row)
            print(f"[compile] {family} n={len(graph)}: " + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "num_nodes"), flush=True)
        out[family] = {"rows": rows, **_exponents(rows)}
        print(f"[compile] {family} growth exponents: " + ", ".join(
            f"{k} {v['exponent']:.2f} (n={v['sizes'][0]}..{v['sizes'][-1]})" for k, v in out[family]["exponents"].items()), flush=True)
    return out


def _exponents(rows):
    """Log-log slope of each phase against the number of nodes, over the sizes where it was measured.

    Graphs under 50 nodes are left out while at least three larger ones remain: there the
    time is a constant (Python and XLA set-up), not a function of the size.
    """
    fits = {}
    for k in dict.fromkeys(k for r in rows for k in r if k.endswith("_s") or k.endswith("hlo_ops")):
        pts = [(r["num_nodes"], r[k]) for r in rows if k in r]
        while len(pts) > 3 and pts[0][0] < 50:
            pts = pts[1:]
        if k == "first_run_s" or len(pts) < 2:
            continue
        fits[k] = {"exponent": _util.loglog_slope([p[0] for p in pts], [max(p[1], 1e-6) for p in pts]),
                   "sizes": [p[0] for p in pts]}
    return {"exponents": fits}


CONFIGS = {
    # XLA's CPU compile time of an unrolled program grows faster than linearly (see README): it is
    # measured up to 300 nodes, the rest of compilation up to 1,000.
    "full": {"random_nodes": 100, "horizon": 50, "temporal_horizon": 200, "num_samples": (1, 64), "reps": 1000,
             "max_seconds": 12.0, "sizes": (10, 30, 100, 300, 1000), "xla_max_nodes": {"chain": 300, "random": 300},
             "hand_xla_max_nodes": 300},
    "quick": {"random_nodes": 20, "horizon": 5, "temporal_horizon": 20, "num_samples": (1, 64), "reps": 20,
              "max_seconds": 0.5, "sizes": (10, 30, 100), "xla_max_nodes": {"chain": 10, "random": 10},
              "hand_xla_max_nodes": 10},
}


def report(result) -> str:
    """Markdown tables of a results JSON (``--report``): the medians and ratios, then the growth exponents."""
    lines = ["| graph | num_samples | est.grad (us) | jit(grad_fn) (us) | hand-written (us) | grad / hand | "
             "jit(grad_fn) / hand | scg / hand | spread of copies (scg; hand) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, entry in result.get("overhead", {}).items():
        for case_name, case in entry["cases"].items():
            t = case["timings"]
            for hand in (k for k in t if k.startswith("hand") and "#" not in k):
                base = case.get("mean_of_copies_s", {}).get(hand, t[hand]["median_s"])
                scg_ratio = case.get(f"ratio_scg_vs_{hand}")
                spread = case.get("copy_spread")
                lines.append(
                    f"| {label} | {case_name.split('=')[1]} | {t['scg_grad']['median_s'] * 1e6:.0f} | "
                    f"{t['scg_grad_fn_jit']['median_s'] * 1e6:.0f} | {base * 1e6:.0f} ({hand}) | "
                    f"{case[f'ratio_grad_vs_{hand}']:.3f} | {case[f'ratio_grad_fn_jit_vs_{hand}']:.3f} | "
                    + (f"{scg_ratio:.3f} | " if scg_ratio is not None else "- | ")
                    + (f"{spread['scg']:.3f}; {spread[hand]:.3f} |" if spread else "- |"))
    lines += ["", "| family | nodes | scg.compile (s) | plan (s) | trace+lower (s) | XLA compile (s) | HLO ops | "
              "hand trace+lower (s) | hand XLA (s) | hand HLO ops |", "|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda r, k, f="{:.3f}": f.format(r[k]) if k in r else "-"
    for family, entry in result.get("compile_time", {}).items():
        for r in entry["rows"]:
            lines.append(f"| {family} | {r['num_nodes']} | {fmt(r, 'compile_s')} | {fmt(r, 'plan_s')} | "
                         f"{fmt(r, 'trace_lower_s')} | {fmt(r, 'xla_compile_s', '{:.1f}')} | {fmt(r, 'hlo_ops', '{}')} | "
                         f"{fmt(r, 'hand_trace_lower_s')} | {fmt(r, 'hand_xla_compile_s', '{:.1f}')} | {fmt(r, 'hand_hlo_ops', '{}')} |")
    lines += ["", "| family | phase | exponent | sizes |", "|---|---|---|---|"]
    for family, entry in result.get("compile_time", {}).items():
        for k, v in entry["exponents"].items():
            lines.append(f"| {family} | {k} | {v['exponent']:.2f} | {v['sizes'][0]}..{v['sizes'][-1]} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small graphs, few repetitions (< 1 min)")
    parser.add_argument("--out", default=RESULTS, help=f"output JSON (default {RESULTS})")
    parser.add_argument("--part", choices=("all", "overhead", "compile"), default="all")
    parser.add_argument("--report", action="store_true", help="print the tables of an existing --out file and exit")
    parser.add_argument("--horizon", type=int, default=None,
                        help="rollout length of the trajectory graph in part 1 (default 50; 200 takes ~15 min "
                             "on 2 CPU cores, mostly XLA compiling the unrolled gradients)")
    parser.add_argument("--xla-max-nodes", type=int, default=None,
                        help="in part 2, run XLA's compile up to this many nodes (default 300; 1,000 makes part 2 "
                             "take ~13 min on 2 CPU cores)")
    parser.add_argument("--cases", nargs="+", choices=("random", "trajectory", "temporal"),
                        default=("random", "trajectory", "temporal"), help="which graphs part 1 times")
    args = parser.parse_args(argv)
    if args.report:
        with open(args.out) as f:
            print(report(json.load(f)))
        return None
    cfg = dict(CONFIGS["quick" if args.quick else "full"])
    if args.horizon is not None:
        cfg["horizon"] = args.horizon
    if args.xla_max_nodes is not None:
        cfg["xla_max_nodes"] = {"chain": args.xla_max_nodes, "random": args.xla_max_nodes}
        cfg["hand_xla_max_nodes"] = args.xla_max_nodes
    start = time.perf_counter()
    config = {**_util.environment(), **cfg, "cases": list(args.cases)}
    result = {"benchmark": "compiler", "quick": args.quick, "config": config}
    partial = args.part != "all" or set(args.cases) != {"random", "trajectory", "temporal"}
    if partial and os.path.exists(args.out):  # a partial run updates its own entries of an existing file
        with open(args.out) as f:
            result = json.load(f)
        result.setdefault("partial_runs", []).append(config)
    if args.part in ("all", "overhead"):
        result["overhead"] = result.get("overhead", {}) | part1(cfg, args.cases)
    if args.part in ("all", "compile"):
        result["compile_time"] = part2(cfg)
    result["wall_s"] = time.perf_counter() - start
    result["config"]["loadavg_end"] = list(os.getloadavg())
    _util.write_json_atomic(args.out, result)
    print(f"wrote {args.out} in {result['wall_s']:.1f}s")
    return result


if __name__ == "__main__":
    main()
