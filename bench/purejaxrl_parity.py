"""PPO on CartPole-v1 against purejaxrl's ``ppo.py``: the hand-written reference and ``scg.algorithms.ppo``, per core.

purejaxrl (github.com/luchris429/purejaxrl, ``purejaxrl/ppo.py`` and ``wrappers.py``) is run
as published, with the configuration of its ``__main__`` (gymnax ``CartPole-v1``, 128 steps,
4 epochs × 4 minibatches, γ 0.99, λ 0.95, clip 0.2, c_H 0.01, c_v 0.5, 64×64 tanh, lr 2.5e-4
annealed linearly to 0, max grad norm 0.5), ``DEBUG`` off. Two shims, for API drift only,
neither touching its algorithm (recorded in the JSON, ``purejaxrl.shims``):

- ``wrappers.py`` imports ``brax`` and ``navix`` at the top for wrappers ``ppo.py`` does not use:
  where they are not installed, empty stand-in modules are registered before the import;
- gymnax ≥ 1.0 returns ``(obs, state, reward, terminated, truncated, info)`` from ``step``, the
  0.0.x versions purejaxrl was written for ``(obs, state, reward, done, info)``: ``gymnax.make``,
  as ``ppo.py`` sees it, returns the environment behind an adapter giving the old 5-tuple with
  ``done = terminated | truncated`` (what gymnax 0.0.x's ``done`` was).

Compared, each built with the same configuration at ``num_envs`` ∈ {4, 16, 64, 256}:

``purejaxrl``
    ``jax.jit(make_train(config))(rng)``, its whole output (train state and per-step metrics).
``handwritten``
    ``bench/handwritten_ppo.py`` on our CartPole (``scg.envs.registry.make("CartPole-v1")``), with
    purejaxrl's options (``anneal_lr`` over the call's iterations, ``clip_value_loss``), as
    ``make_run``: init and a ``lax.scan`` over iterations in one ``jit``, one seed, like purejaxrl.
``handwritten_gymnax``
    the same reference on gymnax's CartPole (its ``step`` does the auto-reset): the environments'
    speed apart from the algorithms'.
``handwritten_vmap1``
    ``handwritten`` under ``jax.vmap`` over a batch of one seed, as ``make_train`` runs every
    algorithm: the cost of that ``vmap`` alone.
``scg_make``
    ``scg.algorithms.ppo.make`` (its ``init``, ``update``) in the same init-and-scan ``jit`` as
    ``handwritten``, with ``scg.algorithms.ppo``'s defaults for the three options purejaxrl
    differs in (``scg_config``): a constant lr 2.5e-4, the plain value loss, the default init
    (all cheap: a scalar, a few elementwise ops, the starting parameters).
``scg_make_train``
    ``scg.algorithms.make_train("ppo", ...)``'s ``run_all`` (vmapped over one seed), as ``scg
    train`` runs it.
``scg_make_train_parity``
    the same with purejaxrl's choices for those options (``scg_config_parity``): lr annealed to 0
    over the call's iterations, the clipped value loss, the orthogonal init.

Timed calls: a fixed number of iterations per size, the same for every variant (default
``max(2, min(20, 320 // num_envs))``: 20 at 4 and 16 envs, 5 at 64, 2 at 256); purejaxrl's
``TOTAL_TIMESTEPS = iterations × num_envs × 128`` so its ``NUM_UPDATES`` is that number, and the
reference anneals over the same number of updates. Each variant is compiled apart
(``jax.jit(f).lower(key).compile()``, times recorded), then all are timed interleaved in one
process, in a shuffled order each round (the rules of ``_util.interleaved``; the samples are kept so
that each round's ``variant / purejaxrl`` ratio can be reported too: ``paired_ratio``, its median
and quartiles over rounds, which cancels load that hits one round). Medians in seconds.

``--part full``: the whole of purejaxrl's run, 500k steps at 4 envs (976 iterations, one call),
purejaxrl against the reference and ``scg_make``, a few seeds interleaved: its wall time and the
mean return of the last 20 finished episodes at the end (a learning check of the configuration).

Usage::

    python bench/purejaxrl_parity.py                      # all sizes + full run, ~8 min on 2 shared cores
    python bench/purejaxrl_parity.py --sizes 4 16         # some sizes (~3.5 min for two; merged into the results file)
    python bench/purejaxrl_parity.py --part full          # the 500k-step run alone
    python bench/purejaxrl_parity.py --quick              # smoke test: 4 envs, 3 iterations, few rounds
    python bench/purejaxrl_parity.py --purejaxrl DIR      # where ppo.py and wrappers.py lie (default /tmp/purejaxrl)

Writes ``bench/results/purejaxrl_parity.json`` atomically.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import os
import random
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from scg.algorithms import make_train, ppo  # noqa: E402
from scg.envs import registry  # noqa: E402
from scg.envs.core import Timestep  # noqa: E402
from scg.envs.wrappers import AutoReset  # noqa: E402

import _util  # noqa: E402
import handwritten_ppo as hw  # noqa: E402

RESULTS = os.path.join(HERE, "results", "purejaxrl_parity.json")
DEFAULT_DIR = "/tmp/purejaxrl"
MIRROR = "/work/.mirror/luchris429+purejaxrl/repo"
HORIZON = 128
FULL_TIMESTEPS = 500_000
SIZES = (4, 16, 64, 256)
VARIANTS = ("purejaxrl", "handwritten", "handwritten_gymnax", "handwritten_vmap1", "scg_make", "scg_make_train",
            "scg_make_train_parity")

# purejaxrl/ppo.py's __main__ configuration (DEBUG off: its callback prints every episode).
PUREJAXRL_CONFIG = {
    "LR": 2.5e-4, "NUM_ENVS": 4, "NUM_STEPS": HORIZON, "TOTAL_TIMESTEPS": FULL_TIMESTEPS, "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4, "GAMMA": 0.99, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.01, "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5, "ACTIVATION": "tanh", "ENV_NAME": "CartPole-v1", "ANNEAL_LR": True, "DEBUG": False,
}


def log(*args):
    print(*args, flush=True)


def how_to_get(directory: str) -> str:
    return (
        f"purejaxrl's ppo.py and wrappers.py are needed in {directory} (--purejaxrl DIR). Get them with\n"
        f"    mkdir -p {directory}\n"
        f"    git -C {MIRROR} show HEAD:purejaxrl/ppo.py > {directory}/ppo.py\n"
        f"    git -C {MIRROR} show HEAD:purejaxrl/wrappers.py > {directory}/wrappers.py\n"
        "(or from https://github.com/luchris429/purejaxrl, folder purejaxrl/), and its dependencies with\n"
        "    pip install flax distrax seaborn && pip install --no-deps gymnax\n"
        "(--no-deps: gymnax 1.0.1 pins gymnasium<1.4, and the project's tests use gymnasium 1.4.0)"
    )


# -- purejaxrl, loaded as published ------------------------------------------------------------------------
class _Gymnax5Tuple:
    """A gymnax ≥ 1.0 environment with the 0.0.x ``step`` purejaxrl expects: ``done = terminated | truncated``."""

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, jnp.logical_or(terminated, truncated), info


def _gymnax_returns_six(gymnax) -> bool:
    env, params = gymnax.make("CartPole-v1")
    _, state = env.reset(jax.random.PRNGKey(0), params)
    return len(jax.eval_shape(env.step, jax.random.PRNGKey(0), state, 0, params)) == 6


def _version(dist: str):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_purejaxrl(directory: str):
    """purejaxrl's ``ppo`` module from ``directory`` (unmodified), with the shims of the module docstring; ``(module, shims)``."""
    for name in ("ppo.py", "wrappers.py"):
        if not os.path.isfile(os.path.join(directory, name)):
            raise SystemExit(f"{os.path.join(directory, name)} not found.\n{how_to_get(directory)}")
    try:
        import distrax  # noqa: F401
        import flax  # noqa: F401
        import gymnax
    except ImportError as err:
        raise SystemExit(f"purejaxrl needs gymnax, flax and distrax ({err}).\n{how_to_get(directory)}") from err
    shims = []
    for mod in ("brax", "navix"):
        if importlib.util.find_spec(mod) is None:
            shims.append(f"stand-in module for {mod} (imported by wrappers.py for wrappers ppo.py does not use)")
            if mod == "brax":
                training = types.ModuleType("brax.envs.wrappers.training")
                training.EpisodeWrapper = training.AutoResetWrapper = object
                sys.modules.update({"brax": types.ModuleType("brax"), "brax.envs": types.ModuleType("brax.envs"),
                                    "brax.envs.wrappers": types.ModuleType("brax.envs.wrappers"),
                                    "brax.envs.wrappers.training": training})
                sys.modules["brax"].envs = sys.modules["brax.envs"]
            else:
                sys.modules["navix"] = types.ModuleType("navix")
    if "wrappers" in sys.modules and not getattr(sys.modules["wrappers"], "__file__", "").startswith(directory):
        raise SystemExit(f"another module named 'wrappers' is already imported: {sys.modules['wrappers']}")
    sys.path.insert(0, directory)
    try:
        spec = importlib.util.spec_from_file_location("purejaxrl_ppo", os.path.join(directory, "ppo.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(directory)
    if _gymnax_returns_six(gymnax):
        shims.append(f"gymnax {_version('gymnax')} step returns 6 values: gymnax.make seen by "
                     "ppo.py wraps the env to return the 0.0.x 5-tuple, done = terminated | truncated")

        def make_5tuple(env_id, **kwargs):
            env, params = gymnax.make(env_id, **kwargs)
            return _Gymnax5Tuple(env), params

        module.gymnax = types.SimpleNamespace(make=make_5tuple)
    return module, shims


class GymnaxAutoReset(AutoReset):
    """gymnax's CartPole (its ``step`` resets ended episodes itself) behind the ``AutoReset`` interface the reference uses."""

    def __init__(self, env, params):
        self.env, self.name, self._params = env, env.name, params

    @property
    def default_params(self):
        return self._params

    def reset(self, key, params=None):
        return self.env.reset(key, self._params if params is None else params)

    def step(self, key, state, action, params=None):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        return Timestep(obs, state, reward, terminated, truncated, {"final_obs": info["final_observation"]})


# -- configurations ----------------------------------------------------------------------------------------
def scg_config(num_envs: int) -> dict:
    """purejaxrl's configuration in ``scg.algorithms.ppo``'s keys, with that algorithm's defaults for the options
    purejaxrl differs in (constant lr, plain value loss, default init): the configuration of the committed table."""
    c = PUREJAXRL_CONFIG
    return dict(num_envs=num_envs, horizon=c["NUM_STEPS"], discount=c["GAMMA"], gae_lambda=c["GAE_LAMBDA"],
                hidden=(64, 64), lr=c["LR"], epochs=c["UPDATE_EPOCHS"], num_minibatches=c["NUM_MINIBATCHES"],
                clip_eps=c["CLIP_EPS"], vf_coef=c["VF_COEF"], ent_coef=c["ENT_COEF"], max_grad_norm=c["MAX_GRAD_NORM"])


def scg_config_parity(num_envs: int, num_updates: int) -> dict:
    """``scg_config`` with purejaxrl's choices for those options: lr annealed to 0 over ``num_updates`` iterations
    (its ``NUM_UPDATES``), the clipped value loss, orthogonal init (gain √2 hidden, 0.01 policy head, 1 value head)."""
    return {**scg_config(num_envs), "anneal_lr_iterations": num_updates, "clip_value_loss": True, "init": "orthogonal"}


def reference_config(num_envs: int, num_updates: int) -> dict:
    """purejaxrl's configuration for ``handwritten_ppo``: ``scg_config`` plus lr annealing over ``num_updates`` and value clipping."""
    return {**scg_config(num_envs), "anneal_lr": True, "num_updates": num_updates, "clip_value_loss": True}


def build_variants(pj, names, num_envs: int, iterations: int, total_timesteps: int | None = None) -> dict:
    """``{name: (fn, lower_args, call_args)}``: ``jax.jit(fn).lower(*lower_args).compile()(*call_args)`` runs it.

    ``fn`` maps a raw PRNG key (``jax.random.PRNGKey``) to the run's whole output, except ``scg_make_train``
    (already jitted, static iteration count: ``run_all(states, iterations)``). ``total_timesteps`` defaults
    to one call's.
    """
    total = total_timesteps or iterations * num_envs * HORIZON
    ours, ours_params = registry.make("CartPole-v1")
    out = {}
    wrap = jax.random.wrap_key_data
    key = jax.random.PRNGKey(0)
    for name in names:
        if name == "purejaxrl":
            out[name] = (pj.make_train({**PUREJAXRL_CONFIG, "NUM_ENVS": num_envs, "TOTAL_TIMESTEPS": total}), (key,), (key,))
        elif name in ("handwritten", "handwritten_vmap1", "handwritten_gymnax"):
            if name == "handwritten_gymnax":
                import gymnax

                genv, gparams = gymnax.make("CartPole-v1")
                env, params = GymnaxAutoReset(genv, gparams), gparams
            else:
                env, params = ours, ours_params
            run = hw.make_run(env, params, reference_config(num_envs, iterations), iterations)
            if name == "handwritten_vmap1":
                out[name] = ((lambda r: lambda keys: jax.vmap(lambda k: r(wrap(k)))(keys))(run), (key[None],), (key[None],))
            else:
                out[name] = ((lambda r: lambda k: r(wrap(k)))(run), (key,), (key,))
        elif name == "scg_make":
            init, update = ppo.make(ours, ours_params, scg_config(num_envs))

            def run_scg(k, init=init, update=update):
                return jax.lax.scan(lambda s, _: update(s), init(wrap(k)), None, length=iterations)

            out[name] = (run_scg, (key,), (key,))
        elif name in ("scg_make_train", "scg_make_train_parity"):
            config = scg_config_parity(num_envs, iterations) if name.endswith("_parity") else scg_config(num_envs)
            init_all, run_all = make_train("ppo", ours, ours_params, config)
            states = jax.block_until_ready(init_all(jax.random.split(jax.random.key(0), 1)))
            out[name] = (run_all, (states, iterations), (states,))
        else:
            raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    return out


def compile_variant(fn, args) -> tuple:
    """``(compiled, {"trace_s", "xla_compile_s"})`` of ``jax.jit(fn)`` (or of ``fn`` itself if already jitted) at ``args``."""
    t0 = time.perf_counter()
    lowered = (fn if hasattr(fn, "lower") else jax.jit(fn)).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    return compiled, {"trace_s": t1 - t0, "xla_compile_s": t2 - t1}


# -- timing ------------------------------------------------------------------------------------------------
def interleaved_samples(fns: dict, args: dict, *, reps: int, max_seconds: float, warmup: int = 2, seed: int = 0):
    """``_util.interleaved``'s procedure (warm-up, shuffled order each round, ≥ 10 rounds), keeping every sample.

    ``args[name]`` are the arguments of ``fns[name]``. Returns ``{name: [seconds per round]}``.
    """
    for name, fn in fns.items():
        for _ in range(warmup):
            _util.call_time(fn, *args[name])
    rng = random.Random(seed)
    names, samples = list(fns), {name: [] for name in fns}
    start = time.perf_counter()
    for r in range(reps):
        rng.shuffle(names)
        for name in names:
            samples[name].append(_util.call_time(fns[name], *args[name]))
        if r >= 10 and time.perf_counter() - start > max_seconds:
            break
    return samples


def paired_ratio(samples: list, base: list) -> dict:
    r = np.asarray(samples) / np.asarray(base)
    return {"median": float(np.median(r)), "p25": float(np.percentile(r, 25)), "p75": float(np.percentile(r, 75))}


def time_size(pj, names, num_envs: int, iterations: int, reps: int, max_seconds: float) -> dict:
    """Compile every variant at ``num_envs``, time them interleaved; medians, ratios over purejaxrl."""
    fns, args, compile_times = {}, {}, {}
    for name, (fn, lower_args, call_args) in build_variants(pj, names, num_envs, iterations).items():
        compiled, compile_times[name] = compile_variant(fn, lower_args)
        fns[name], args[name] = compiled, call_args
        log(f"  compiled {name}: {compile_times[name]['xla_compile_s']:.1f} s")
    samples = interleaved_samples(fns, args, reps=reps, max_seconds=max_seconds)
    steps = num_envs * HORIZON * iterations
    out = {"num_envs": num_envs, "iterations_per_call": iterations, "env_steps_per_call": steps,
           "loadavg_end": list(os.getloadavg()), "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "variants": {}}
    for name in names:
        s = _util.summary(samples[name])
        out["variants"][name] = {**s, **compile_times[name], "steps_per_s": steps / s["median_s"]}
    base = out["variants"]["purejaxrl"]["median_s"]
    out["ratio_over_purejaxrl"] = {n: out["variants"][n]["median_s"] / base for n in names}
    out["paired_ratio_over_purejaxrl"] = {n: paired_ratio(samples[n], samples["purejaxrl"]) for n in names}
    return out


# -- the whole 500k-step run -------------------------------------------------------------------------------
def last_returns_purejaxrl(metrics, window: int = 20) -> float:
    """Mean return of the last ``window`` finished episodes, from purejaxrl's per-step ``info`` (``[U, T, N]``)."""
    done = np.asarray(metrics["returned_episode"]).reshape(-1)
    returns = np.asarray(metrics["returned_episode_returns"]).reshape(-1)[done]
    return float(returns[-window:].mean()) if returns.size else float("nan")


def full_run(pj, seeds: int, names=("purejaxrl", "handwritten", "scg_make")) -> dict:
    """purejaxrl's whole run (500k steps, 4 envs): wall time per call over ``seeds`` seeds, interleaved, and final returns."""
    num_envs = PUREJAXRL_CONFIG["NUM_ENVS"]
    iterations = FULL_TIMESTEPS // HORIZON // num_envs
    fns, compile_times = {}, {}
    for name, (fn, lower_args, _) in build_variants(pj, names, num_envs, iterations, FULL_TIMESTEPS).items():
        fns[name], compile_times[name] = compile_variant(fn, lower_args)
        log(f"  compiled {name}: {compile_times[name]['xla_compile_s']:.1f} s")
    times = {n: [] for n in names}
    returns = {n: [] for n in names}
    order = list(names)
    rng = random.Random(0)
    for seed in range(seeds):
        rng.shuffle(order)
        for name in order:
            key = jax.random.PRNGKey(seed)
            t0 = time.perf_counter()
            out = jax.block_until_ready(fns[name](key))
            times[name].append(time.perf_counter() - t0)
            if name == "purejaxrl":
                returns[name].append(last_returns_purejaxrl(out["metrics"]))
            else:
                returns[name].append(float(out[1]["mean_return"][-1]))
    res = {"num_envs": num_envs, "total_timesteps": FULL_TIMESTEPS, "iterations": iterations, "seeds": seeds,
           "note": "the first call per variant includes no compilation (compiled apart); one call = the whole run",
           "variants": {n: {**_util.summary(times[n]), **compile_times[n], "wall_s": times[n],
                            "final_mean_return_last20": returns[n]} for n in names}}
    base = res["variants"]["purejaxrl"]["median_s"]
    res["ratio_over_purejaxrl"] = {n: res["variants"][n]["median_s"] / base for n in names}
    res["paired_ratio_over_purejaxrl"] = {n: paired_ratio(times[n], times["purejaxrl"]) for n in names}
    return res


# -- main --------------------------------------------------------------------------------------------------
def default_iterations(num_envs: int) -> int:
    return max(2, min(20, 320 // num_envs))


def load_existing(path: str) -> dict:
    import json

    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return {}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--purejaxrl", default=DEFAULT_DIR, help="folder holding purejaxrl's ppo.py and wrappers.py")
    ap.add_argument("--sizes", type=int, nargs="*", help=f"num_envs values (default {' '.join(map(str, SIZES))})")
    ap.add_argument("--iterations", type=int, help="iterations per timed call, every size (default max(2, min(20, 320 // num_envs)))")
    ap.add_argument("--variants", nargs="*", choices=VARIANTS, help="default: all (purejaxrl is always timed)")
    ap.add_argument("--part", choices=("sizes", "full", "all"), default="all")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the full run")
    ap.add_argument("--max-seconds", type=float, default=75.0, help="timing budget per size")
    ap.add_argument("--quick", action="store_true", help="smoke test: 4 envs, 3 iterations, few rounds, no full run")
    ap.add_argument("--out", default=RESULTS)
    args = ap.parse_args(argv)
    pj, shims = load_purejaxrl(args.purejaxrl)
    names = ["purejaxrl"] + [n for n in (args.variants or VARIANTS) if n != "purejaxrl"]
    sizes = tuple(args.sizes or ((4,) if args.quick else SIZES))
    part = "sizes" if args.quick else args.part
    start = time.perf_counter()
    results = load_existing(args.out)
    results["config"] = {
        "purejaxrl": {"dir": os.path.abspath(args.purejaxrl), "config": PUREJAXRL_CONFIG, "shims": shims,
                      "versions": {m: _version(m) for m in ("gymnax", "flax", "distrax", "optax", "gymnasium")}},
        "scg_ppo_config": scg_config(0) | {"num_envs": "per size"},
        "scg_ppo_parity_config": scg_config_parity(0, 0) | {"num_envs": "per size", "anneal_lr_iterations": "iterations per call"},
        "reference_config": reference_config(0, 0) | {"num_envs": "per size", "num_updates": "iterations per call"},
        "horizon": HORIZON, "variants": names, "quick": args.quick,
        "timing": "each variant compiled apart (lower().compile()); timed interleaved, shuffled each round, "
                  "1 call + block_until_ready per sample; medians; paired_ratio = per-round ratio to purejaxrl",
        **_util.environment(),
        "note": "2 CPU cores shared with other processes: read medians with p25/p75 and the paired ratios",
    }
    results.setdefault("sizes", {})
    if part in ("sizes", "all"):
        for n in sizes:
            iters = args.iterations or (3 if args.quick else default_iterations(n))
            log(f"[sizes] {n} envs x {HORIZON} steps, {iters} iterations per call")
            r = time_size(pj, names, n, iters, reps=5 if args.quick else 1000,
                          max_seconds=10 if args.quick else args.max_seconds)
            results["sizes"][str(n)] = r
            for name in names:
                v, p = r["variants"][name], r["paired_ratio_over_purejaxrl"][name]
                log(f"  {name:20s} {1e3 * v['median_s']:9.1f} ms  {v['steps_per_s']:9.0f} steps/s  "
                    f"ratio {r['ratio_over_purejaxrl'][name]:.3f}  paired {p['median']:.3f} [{p['p25']:.3f}, {p['p75']:.3f}]  "
                    f"({v['reps']} rounds)")
            _util.write_json_atomic(args.out, results)  # partial results survive an interrupted run
    if part in ("full", "all"):
        log(f"[full] purejaxrl's whole run: {FULL_TIMESTEPS} steps, 4 envs, {args.seeds} seeds")
        fr = full_run(pj, args.seeds)
        results["full_run"] = fr
        for name, v in fr["variants"].items():
            log(f"  {name:20s} {v['median_s']:.2f} s  ratio {fr['ratio_over_purejaxrl'][name]:.3f}  "
                f"final returns {[round(x, 1) for x in v['final_mean_return_last20']]}")
    results["summary"] = {
        "ratio_over_purejaxrl": {k: v["ratio_over_purejaxrl"] for k, v in sorted(results["sizes"].items(), key=lambda kv: int(kv[0]))},
        "paired_ratio_median": {k: {n: p["median"] for n, p in v["paired_ratio_over_purejaxrl"].items()}
                                for k, v in sorted(results["sizes"].items(), key=lambda kv: int(kv[0]))},
        "full_run_ratio": results.get("full_run", {}).get("ratio_over_purejaxrl"),
        "last_invocation_wall_s": time.perf_counter() - start,
        "loadavg_end": list(os.getloadavg()),
    }
    _util.write_json_atomic(args.out, results)
    log(f"wrote {args.out} in {results['summary']['last_invocation_wall_s']:.0f} s")
    return results


if __name__ == "__main__":
    main()
