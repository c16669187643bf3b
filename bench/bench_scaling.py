"""Env steps per second on 1 and 2 devices, on 1 and 2 processes, and the default job's wall time (issue 18).

Cases, each the chunked training of ``scg.algorithms.make_train`` as ``scg train`` runs it:

- ``ppo_4x16``: PPO on CartPole-v1, purejaxrl's configuration (``purejaxrl_parity.scg_config``), 4 seeds x 16 envs;
- ``ppo_1x1024``: the same, 1 seed x 1,024 envs;
- ``reinforce_default``: the default job (``scg`` with no arguments: REINFORCE, CartPole-v1, 4 seeds).

Parts:

1. ``devices``: one process exposing 2 XLA:CPU host devices (:func:`scg.algorithms.parallel.use_cpu_devices`),
   the run compiled on a mesh of 1 device and on a mesh of 2 (its members split), timed interleaved in that
   process (``_util.interleaved``: one chunk of ``iterations`` iterations per sample). A run of one member
   splits its environments instead: 2 env shards (``make_train(..., env_shards=2)``, ``scg train --env-shards
   2``) on 1 and on 2 devices, beside the machine's ceiling for that split (half the envs on one device alone,
   and on each of 2 devices at once).
2. ``processes``: two processes of one device each through ``jax.distributed`` (gloo on 127.0.0.1), each timing
   ``rounds`` chunks including the gather of the metrics that ``scg train`` makes after every chunk, against one
   process of one device doing the same (timed before and after the pairs; the ratio is against their mean).
   Two pairs: free to use every core, and each pinned to its own half of the cores (``os.sched_setaffinity``,
   as one would place two processes on one machine; XLA's worker threads of two processes otherwise compete).
3. ``host``: the host path (gymnasium vector envs) on 1 and 2 worker processes, from ``bench_host_parallel.py``.
4. ``default_job``: wall time of ``scg --devices 1 --quiet`` against ``scg --quiet`` (every core), fresh processes,
   alternated, ``--repeats`` each.

Usage::

    python bench/bench_scaling.py               # ~6 min on an idle 2-core machine
    python bench/bench_scaling.py --quick       # a smoke run (~2 min)
    python bench/bench_scaling.py --part devices processes
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "scaling.json")
CASES = ("ppo_4x16", "ppo_1x1024", "reinforce_default")
PARTS = ("devices", "processes", "host", "default_job")


def case_config(case: str):
    """``(algo, seeds, config)`` of a case."""
    from scg.algorithms import run_config

    if case == "reinforce_default":
        resolved = run_config.resolve("reinforce", "CartPole-v1", seeds=4, steps=160_000)
        return "reinforce", 4, resolved["algorithm_config"]
    sys.path.insert(0, HERE)
    import purejaxrl_parity

    seeds, envs = {"ppo_4x16": (4, 16), "ppo_1x1024": (1, 1024)}[case]
    return "ppo", seeds, purejaxrl_parity.scg_config(envs)


def iterations_of(case: str, quick: bool) -> int:
    return {"ppo_4x16": 10, "ppo_1x1024": 2, "reinforce_default": 5}[case] // (2 if quick else 1) or 1


def worker_devices(case: str, quick: bool) -> dict:
    from scg.algorithms import parallel

    parallel.use_cpu_devices(2)
    import jax
    import numpy as np

    import _util
    from scg.algorithms.train import make_train, seed_keys
    from scg.envs import registry

    algo, seeds, config = case_config(case)
    env, params = registry.make("CartPole-v1")
    n = iterations_of(case, quick)
    fns, steps = {}, {}
    for d in (1, 2):
        if seeds % d:
            continue
        mesh = parallel.member_mesh(seeds, d)
        init, run = make_train(algo, env, params, config, mesh=mesh)
        states = init(seed_keys(seeds))
        states, metrics = run(states, n)  # compile; the timed calls start from a trained state
        steps[f"{d}_devices"] = float(np.asarray(metrics["env_steps"]).sum())
        fns[f"{d}_devices"] = (lambda run, states: lambda: run(states, n))(run, states)
    if seeds == 1:  # one member: its environments in 2 shards (scg train --env-shards 2), on 1 and on 2 devices
        for d in (1, 2):
            mesh = parallel.run_mesh(1, 2, d)
            init, run = make_train(algo, env, params, config, mesh=mesh, env_shards=2)
            states, metrics = run(init(parallel.Placement(mesh).put(seed_keys(1), replicated=True)), n)
            steps[f"{d}_devices_env_shards_2"] = float(np.asarray(metrics["env_steps"]).sum())
            fns[f"{d}_devices_env_shards_2"] = (lambda run, states: lambda: run(states, n))(run, states)
        spec = str(jax.tree_util.tree_leaves(states)[0].sharding.spec)
        # The machine's ceiling: half the envs on one device alone, and the same on each of 2 devices at once
        # (2 members split, nothing shared): the second is slower only by what the devices contend for.
        half = {**config, "num_envs": config["num_envs"] // 2}
        for name, members, d in (("half_envs_1_member_1_device", 1, 1), ("half_envs_2_members_2_devices", 2, 2)):
            init, run = make_train(algo, env, params, half, mesh=parallel.member_mesh(members, d))
            states_half, metrics = run(init(seed_keys(members)), n)
            steps[name] = float(np.asarray(metrics["env_steps"]).sum())
            fns[name] = (lambda run, states: lambda: run(states, n))(run, states_half)
    reps, seconds = (6, 20) if quick else (30, 60)
    timing = _util.interleaved(fns, (), reps=reps, warmup=1, max_seconds=seconds)
    out = {"algo": algo, "seeds": seeds, "config": config, "iterations_per_call": n, "timing": timing,
           "env_steps_per_s": {k: steps[k] / timing[k]["median_s"] for k in fns}}
    base = out["env_steps_per_s"]["1_devices"]
    out["speedup_over_1_device"] = {k: v / base for k, v in out["env_steps_per_s"].items()}
    if seeds == 1:
        t = {k: v["median_s"] for k, v in timing.items()}
        out["contention_2_devices"] = t["half_envs_2_members_2_devices"] / t["half_envs_1_member_1_device"]
        out["ceiling_speedup_2_devices"] = t["1_devices"] / t["half_envs_2_members_2_devices"]
        out["note"] = ("one member's 1,024 envs in 2 shards that average their gradients (make_train env_shards=2; "
                       f"state sharding {spec}). half_envs_*: 512 envs per device, alone and on both devices at "
                       "once with nothing shared; contention_2_devices is their time ratio, and "
                       "ceiling_speedup_2_devices = time(1 device, 1,024 envs) / time(512 envs on each of 2 "
                       "devices at once), the most any split of the environments over 2 devices can give here")
    return out


def worker_processes(case: str, quick: bool, process_id: int, num_processes: int, port: int, pin: int = 0) -> dict:
    from scg.algorithms import parallel

    if pin and num_processes > 1:  # each process of the pair on its own share of this machine's cores
        cores = sorted(os.sched_getaffinity(0))
        share = len(cores) // num_processes
        os.sched_setaffinity(0, cores[process_id * share:(process_id + 1) * share])
    parallel.use_cpu_devices(1)
    if num_processes > 1:
        parallel.init_distributed(f"127.0.0.1:{port}", num_processes, process_id)
    import jax
    import numpy as np

    from scg.algorithms.train import make_train, seed_keys
    from scg.envs import registry

    algo, seeds, config = case_config(case)
    env, params = registry.make("CartPole-v1")
    n = iterations_of(case, quick)
    mesh = parallel.member_mesh(seeds)
    placement = parallel.Placement(mesh)
    init, run = make_train(algo, env, params, config, mesh=mesh)
    states = init(placement.put(seed_keys(seeds), replicated=True))

    def chunk(states):
        states, metrics = run(states, n)
        return states, placement.gather(metrics)  # what scg train reads after every chunk

    states, metrics = chunk(states)
    steps = float(np.asarray(metrics["env_steps"]).sum())
    times = []
    for _ in range(6 if quick else 20):
        t0 = time.perf_counter()
        states, metrics = chunk(states)
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return {"processes": num_processes, "devices": jax.device_count(), "iterations_per_call": n,
            "median_s": median, "p25_s": float(np.percentile(times, 25)), "p75_s": float(np.percentile(times, 75)),
            "env_steps_per_s": steps / median}


def _worker_command(*args) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--worker", *map(str, args)]


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = os.pathsep.join([HERE, ROOT, env.get("PYTHONPATH", "")])
    return env


def _run_worker(*args, timeout=900) -> dict:
    done = subprocess.run(_worker_command(*args), capture_output=True, text=True, timeout=timeout, env=_clean_env())
    if done.returncode:
        raise RuntimeError(f"worker {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pair(case: str, q: int, pin: int) -> list[dict]:
    port = _free_port()
    procs = [subprocess.Popen(_worker_command("processes", case, q, i, 2, port, pin), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_clean_env()) for i in (0, 1)]
    outs = [p.communicate(timeout=900) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"distributed workers failed:\n{outs[0][1][-2000:]}\n{outs[1][1][-2000:]}")
    return [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]


def part_processes(case: str, quick: bool) -> dict:
    q = int(quick)
    before = _run_worker("processes", case, q, 0, 1, 0)
    pair, pinned = _pair(case, q, 0), _pair(case, q, 1)
    after = _run_worker("processes", case, q, 0, 1, 0)
    one = (before["env_steps_per_s"] + after["env_steps_per_s"]) / 2
    return {"one_process_before": before, "one_process_after": after, "two_processes": pair,
            "two_processes_pinned": pinned, "speedup_two_processes": pair[0]["env_steps_per_s"] / one,
            "speedup_two_processes_pinned": pinned[0]["env_steps_per_s"] / one}


def part_default_job(repeats: int) -> dict:
    walls = {"devices_1": [], "every_core": []}
    with tempfile.TemporaryDirectory() as runs:
        for r in range(repeats):
            for name, extra in (("devices_1", ["--devices", "1"]), ("every_core", [])):
                t0 = time.perf_counter()
                done = subprocess.run([sys.executable, "-m", "scg", "train", "--quiet", "--runs-dir", runs,
                                       "--name", f"{name}-{r}", *extra], capture_output=True, text=True,
                                      env=_clean_env(), timeout=900)
                walls[name].append(time.perf_counter() - t0)
                if done.returncode:
                    raise RuntimeError(f"scg {extra} failed:\n{done.stderr[-2000:]}")
                summary = done.stdout.strip().splitlines()
                walls.setdefault(f"{name}_final", []).append(summary[-2])
                walls.setdefault(f"{name}_training_s", []).append(float(summary[-1].split(" s;")[0].split()[-1]))
    import numpy as np

    out = {k: v for k, v in walls.items()}
    for name in ("devices_1", "every_core"):
        out[f"{name}_median_wall_s"] = float(np.median(walls[name]))
        out[f"{name}_median_training_s"] = float(np.median(walls[f"{name}_training_s"]))
    out["wall_ratio"] = out["devices_1_median_wall_s"] / out["every_core_median_wall_s"]
    return out


def part_host(quick: bool) -> dict:
    sys.path.insert(0, HERE)
    try:
        import bench_host_parallel
    except ImportError as err:
        return {"skipped": f"bench_host_parallel.py not importable: {err}"}
    return bench_host_parallel.measure(workers_list=(1, 2), repeats=3 if quick else 5)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="default-job runs per setting")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:  # a subprocess: prints one JSON line
        kind, case, quick, *rest = args.worker
        result = (worker_devices(case, bool(int(quick))) if kind == "devices"
                  else worker_processes(case, bool(int(quick)), *map(int, rest)))
        print(json.dumps(result))
        return result

    sys.path.insert(0, HERE)
    import _util

    results = {"configuration": {**_util.environment(), "quick": args.quick, "parts": args.part,
                                 "cases": args.cases}}
    if os.path.exists(args.out) and set(args.part) != set(PARTS):
        with open(args.out) as f:
            results = {**json.load(f), "configuration_partial": results["configuration"]}
    for part in args.part:
        print(f"part {part} ...", flush=True)
        if part == "devices":  # a case not rerun keeps its earlier figures
            results.setdefault("devices", {}).update(
                {c: _run_worker("devices", c, int(args.quick)) for c in args.cases})
        elif part == "processes":
            results.setdefault("processes", {}).update(
                {c: part_processes(c, args.quick) for c in args.cases if c != "ppo_1x1024"})
        elif part == "host":
            results["host"] = part_host(args.quick)
        elif part == "default_job":
            results["default_job"] = part_default_job(1 if args.quick else args.repeats)
        print(json.dumps(results[part], indent=1, default=str)[:3000], flush=True)
    results["loadavg_end"] = list(os.getloadavg())
    _util.write_json_atomic(args.out, results)
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
