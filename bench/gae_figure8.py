"""Schulman (2016) Figure 8 (§4.6.3): GAE-TRPO on cart-pole, learning curves over λ and the γ × λ grid.

Setup (§4.6.2, kept): cart-pole with the Barto–Sutton–Anderson physical constants (our
``CartPole-v1`` is gymnasium's, which uses them) with episodes of at most 1,000 steps
(``max_steps_in_episode=1000``); a linear policy (softmax over the two forces, 4×2 weights
+ 2 biases); a value function with one 20-unit ``tanh`` hidden layer; 20 trajectories per
batch (``trpo`` with ``episodic=True``: each iteration resets 20 environments and keeps the
first episode of each); δ = 0.01; the value function fitted by the trust region of Eq. 33–34.

Left panel: mean episode return per iteration at γ = 0.99 for
λ ∈ {0, 0.36, 0.6, 0.84, 0.92, 0.96, 0.98, 0.99, 1}. Right panel: mean return after 20
iterations (the batch collected by θ_20) over a γ × λ grid. Everything is averaged over
``--seeds`` seeds (default 10; the thesis: 21).

What is not the thesis's: the reward (gymnasium's +1 per step, so the return is the episode's
length, up to 1,000; the thesis plots a cost whose definition it does not give), the value
step's size (one step per iteration as in the thesis, with ε = 0.5, which it does not give),
the advantages' standardisation (see ``algorithms/trpo.py``), and the Fisher products on the
whole batch rather than a subsample. γ and λ enter as traced values (the TRPO state's ``hyper``
field, ``state._replace(hyper=...)``), so all (γ, λ, seed) runs of one shape share one
compilation and run ``vmap``ped.

Usage::

    python bench/gae_figure8.py            # full: 10 seeds, 35 iterations, 6 × 9 grid (~20 min on 2 shared cores)
    python bench/gae_figure8.py --quick    # smoke run: 3 seeds, few λ and γ, 6 iterations (~2 min)

Writes ``bench/results/gae_figure8.json`` and ``bench/results/gae_figure8.png``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import environment, write_json_atomic  # noqa: E402

from scg.algorithms import trpo  # noqa: E402
from scg.envs.registry import make  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LAMBDAS = (0.0, 0.36, 0.6, 0.84, 0.92, 0.96, 0.98, 0.99, 1.0)
GAMMAS = (0.9, 0.96, 0.98, 0.99, 0.995, 1.0)
CONFIG = dict(
    episodic=True,
    num_envs=20,  # trajectories per batch
    horizon=1000,  # = the episode limit: every kept trajectory is a whole episode
    hidden=(),  # linear policy
    value_hidden=(20,),
    max_kl=0.01,
    fvp_fraction=1.0,
    value_steps=1,  # one trust-region value step per iteration (Eq. 34), as the thesis
    value_max_kl=0.5,  # its ε (the thesis gives none): a step may close about √(2ε) = 100% of the rms error
)
CHUNK = 7  # iterations per compiled call (curves: a multiple of it; the grid reads iteration 20 of 21)


def make_runner(config: dict):
    """``run(states, gammas, lams) -> (states, metrics)``: CHUNK iterations, ``vmap`` over (γ, λ) pairs and seeds."""
    env, env_params = make("CartPole-v1")
    env_params = env_params._replace(max_steps_in_episode=1000)
    init, update = trpo.make(env, env_params, config)

    def chunk(state, gamma, lam):
        state = state._replace(hyper={"discount": gamma, "gae_lambda": lam})  # in place of the graph's γ, λ
        return jax.lax.scan(lambda s, _: update(s), state, None, length=CHUNK)

    per_seed = jax.vmap(chunk, (0, None, None))
    run = jax.jit(jax.vmap(per_seed, (0, 0, 0)))
    init_all = jax.jit(jax.vmap(jax.vmap(init)))
    return init_all, run


def train(init_all, run, pairs, seeds: int, iterations: int) -> np.ndarray:
    """Mean episode return per (pair, seed, iteration); seed ``s`` starts from ``key(s)`` for every pair."""
    keys = jnp.stack([jax.random.split(jax.random.key(0), seeds)] * len(pairs))
    states = init_all(keys)
    gammas = jnp.asarray([g for g, _ in pairs], jnp.float32)
    lams = jnp.asarray([lam for _, lam in pairs], jnp.float32)
    out = []
    for _ in range(-(-iterations // CHUNK)):
        states, metrics = run(states, gammas, lams)
        out.append(np.asarray(metrics["mean_return"]))
    return np.concatenate(out, axis=-1)[..., :iterations]


def summarise(returns: np.ndarray) -> dict:
    """Mean and standard error over seeds (axis -2)."""
    n = returns.shape[-2]
    return {"mean": returns.mean(-2).tolist(), "stderr": (returns.std(-2, ddof=1) / np.sqrt(n)).tolist()}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    cmap = plt.get_cmap("viridis")
    lams = result["lambdas"]
    for i, lam in enumerate(lams):
        mean, se = np.asarray(result["curves"]["mean"][i]), np.asarray(result["curves"]["stderr"][i])
        x = np.arange(1, mean.size + 1)
        colour = cmap(i / max(1, len(lams) - 1))
        left.plot(x, -mean, color=colour, label=f"λ={lam}")
        left.fill_between(x, -mean - se, -mean + se, color=colour, alpha=0.15)
    left.set_xlabel("policy iteration")
    left.set_ylabel("cost = −(mean episode return)")
    left.set_title(f"cart-pole, γ = {result['curve_gamma']}, {result['seeds']} seeds (± s.e.)")
    left.legend(fontsize=7, ncol=2)
    grid = np.asarray(result["grid"]["mean"])
    image = right.imshow(grid, cmap="gray", aspect="auto", origin="lower")
    right.set_xticks(range(len(lams)), [str(v) for v in lams], rotation=45)
    right.set_yticks(range(len(result["gammas"])), [str(v) for v in result["gammas"]])
    right.set_xlabel("λ")
    right.set_ylabel("γ")
    right.set_title(f"mean return after {result['grid_iteration']} iterations (white: higher)")
    threshold = (grid.min() + grid.max()) / 2  # dark text on the light half of the gray scale, light on the dark
    for (r, c), v in np.ndenumerate(grid):
        right.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=8,
                   color="black" if v > threshold else "white")
    fig.colorbar(image, ax=right)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 seeds, 3 λ, 2 γ, 7 iterations")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=None, help="learning-curve length (default 35)")
    parser.add_argument("--out", default=str(RESULTS / "gae_figure8.json"))
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the JSON at --out; no training")
    args = parser.parse_args(argv)
    if args.replot:
        out = Path(args.out)
        plot(json.loads(out.read_text()), out.with_suffix(".png"))
        print(f"wrote {out.with_suffix('.png')}")
        return 0
    seeds = args.seeds or (3 if args.quick else 10)
    iterations = args.iterations or (CHUNK if args.quick else 5 * CHUNK)
    lambdas = (0.0, 0.96, 1.0) if args.quick else LAMBDAS
    gammas = (0.96, 0.99) if args.quick else GAMMAS
    grid_iteration = 3 if args.quick else 20  # the grid reads the batch collected by θ_grid_iteration
    curve_gamma = 0.99

    start = time.perf_counter()
    init_all, run = make_runner(CONFIG)
    curves = train(init_all, run, [(curve_gamma, lam) for lam in lambdas], seeds, iterations)
    print(f"curves ({len(lambdas)} λ × {seeds} seeds × {iterations} iterations): {time.perf_counter() - start:.0f} s", flush=True)
    shown = sorted({1, min(10, iterations), min(grid_iteration + 1, iterations), iterations})
    for lam, c in zip(lambdas, curves.mean(1)):
        print(f"  λ={lam:<5} mean return at iterations {'/'.join(map(str, shown))}: "
              + " / ".join(f"{c[i - 1]:.0f}" for i in shown))
    grid = np.zeros((len(gammas), len(lambdas), seeds))
    for i, gamma in enumerate(gammas):
        if gamma == curve_gamma and iterations > grid_iteration:
            grid[i] = curves[:, :, grid_iteration]
            continue
        returns = train(init_all, run, [(gamma, lam) for lam in lambdas], seeds, grid_iteration + 1)
        grid[i] = returns[:, :, grid_iteration]
        print(f"grid row γ={gamma}: {np.round(grid[i].mean(-1)).tolist()}  [{time.perf_counter() - start:.0f} s]", flush=True)
    wall = time.perf_counter() - start

    mean_grid = grid.mean(-1)
    best = np.unravel_index(np.argmax(mean_grid), mean_grid.shape)
    at_grid = curves[:, :, min(grid_iteration, iterations - 1)].mean(1)
    result = {
        "environment": environment(),
        "config": {**trpo.TRPOConfig(**CONFIG).to_dict(), "max_steps_in_episode": 1000},
        "seeds": seeds,
        "lambdas": list(lambdas),
        "gammas": list(gammas),
        "curve_gamma": curve_gamma,
        "iterations": iterations,
        "grid_iteration": grid_iteration,
        "curves": summarise(curves),
        "grid": {"mean": mean_grid.tolist(), "stderr": (grid.std(-1, ddof=1) / np.sqrt(seeds)).tolist()},
        "best_lambda_on_curve": lambdas[int(np.argmax(at_grid))],
        "best_grid_cell": {"gamma": gammas[best[0]], "lambda": lambdas[best[1]], "mean_return": float(mean_grid[best])},
        "thesis": "best λ ∈ [0.92, 0.98] at γ = 0.99 (curves); best γ ∈ [0.96, 0.99], λ ∈ [0.92, 0.99] (grid)",
        "wall_s": wall,
    }
    out = Path(args.out)
    write_json_atomic(str(out), result)
    plot(result, out.with_suffix(".png"))
    print(f"best λ at iteration {grid_iteration} (γ={curve_gamma}): {result['best_lambda_on_curve']}; "
          f"best grid cell: {result['best_grid_cell']}  [{wall:.0f} s] -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
