"""Smoothie (Nachum et al. 2018) Figure 2 (§6.1): Smoothie against DDPG on the bimodal bandit.

Left: the policy mean μ against iteration for Smoothie and DDPG; middle: σ (Smoothie's learned
standard deviation; DDPG's is its fixed exploration noise); right: the reward r(a) and its Gaussian
smoothing Q̃(a; σ) (Eq. 9, closed form) for several σ. Each algorithm runs its
``TUNED["BimodalBandit-v0"]`` config (what ``scg train --algo ... --env BimodalBandit-v0`` applies):
the mean starts on the worse mode (μ₀ = −1), one env step and one update per iteration, 5 seeds.

The paper says (§6.1, [S L299–L301]) DDPG stays at the local optimum while Smoothie escapes, and
that Smoothie's σ first decreases, then increases (a convex region of Q̃), then decreases to near
zero at the global optimum. We record, per seed: the first minimum of σ before μ first crosses 0,
the largest σ after it, the final σ, and whether σ rose by ≥ 5% after its first minimum.

The constants of r(a) are the repo's (``scg.envs.paper.bimodal_bandit``), not the paper's (it gives a
plot only); the hyperparameters are ours (``algorithms/smoothie.py``, ``algorithms/ddpg.py``).

Usage::

    python bench/smoothie_bimodal.py              # 5 seeds, 15,000 iterations (~2 min on 2 shared cores)
    python bench/smoothie_bimodal.py --seeds 2 --iterations 2000

Writes ``bench/results/smoothie_bimodal.json`` and ``bench/results/smoothie_bimodal.png``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _util import environment, write_json_atomic  # noqa: E402

from scg.algorithms import ALGORITHMS, ddpg, make_train, smoothie  # noqa: E402,F401  (registers both)
from scg.algorithms.train import seed_keys  # noqa: E402
from scg.envs.paper.bimodal_bandit import bimodal_reward, smoothed_reward  # noqa: E402
from scg.envs.registry import make  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ENV = "BimodalBandit-v0"


def train(algo: str, seeds: int, iterations: int) -> tuple[dict, dict]:
    """``(config, metrics)``: ``metrics[name]`` is ``[seeds, iterations]``."""
    config = ALGORITHMS[algo].configure(ENV)
    env, env_params = make(ENV)
    init, run = make_train(algo, env, env_params, config)
    _, metrics = run(init(seed_keys(seeds)), iterations)  # the keys of `scg train --seeds n`
    return config.to_dict(), jax.tree_util.tree_map(np.asarray, metrics)


def sigma_shape(mu: np.ndarray, sigma: np.ndarray) -> dict:
    """One seed's σ trajectory: first minimum (before μ first crosses 0), the later maximum, the final σ."""
    first = int(np.flatnonzero(np.isfinite(sigma))[0])  # the metrics are NaN during the warm-up (no update)
    crossed = np.flatnonzero(mu > 0)
    end = int(crossed[0]) if crossed.size else len(sigma)
    i_min = int(np.nanargmin(sigma[: max(end, first + 1)]))
    i_max = i_min + int(np.nanargmax(sigma[i_min:]))
    return {"initial": float(sigma[first]), "first_update_iteration": first, "first_min": float(sigma[i_min]), "first_min_iteration": i_min,
            "later_max": float(sigma[i_max]), "later_max_iteration": i_max, "final": float(sigma[-1]),
            "mu_crosses_zero_iteration": int(crossed[0]) if crossed.size else None,
            "falls_rises_falls": bool(sigma[i_max] >= 1.05 * sigma[i_min] and sigma[-1] < sigma[i_max])}


def plot(path: Path, sm: dict, dd: dict, noise_std: float, env_params) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for k in range(sm["mu_mean"].shape[0]):
        axes[0].plot(sm["mu_mean"][k], color="C0", alpha=0.7, label="Smoothie" if k == 0 else None)
        axes[0].plot(dd["mu_mean"][k], color="C1", alpha=0.7, label="DDPG" if k == 0 else None)
        axes[1].plot(sm["sigma_mean"][k], color="C0", alpha=0.7, label="Smoothie σ" if k == 0 else None)
    axes[1].axhline(noise_std, color="C1", label="DDPG exploration σ (fixed)")
    axes[0].set(xlabel="iteration", ylabel="policy mean μ", title="mean")
    axes[1].set(xlabel="iteration", ylabel="policy std σ", title="standard deviation", yscale="log")
    a = jnp.linspace(-3, 3, 601)
    axes[2].plot(a, jax.vmap(lambda x: bimodal_reward(x, env_params))(a), color="k", lw=2, label="r(a)")
    for s in (0.25, 0.5, 1.0, 1.5, 2.0):
        axes[2].plot(a, jax.vmap(lambda x: smoothed_reward(x, s, env_params))(a), label=f"Q̃(a; σ={s})")
    axes[2].set(xlabel="a", title="reward and its smoothing (Eq. 9)")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=smoothie.BIMODAL_ITERATIONS)
    args = parser.parse_args(argv)
    env_info = environment()
    t0 = time.perf_counter()
    sm_config, sm = train("smoothie", args.seeds, args.iterations)
    t_sm = time.perf_counter() - t0
    dd_config, dd = train("ddpg", args.seeds, args.iterations)
    t_dd = time.perf_counter() - t0 - t_sm
    _, env_params = make(ENV)
    per_seed = []
    for k in range(args.seeds):
        mu, sigma = sm["mu_mean"][k], sm["sigma_mean"][k]
        per_seed.append({"seed": k, "smoothie_final_mu": float(mu[-1]), "smoothie_final_sigma": float(sigma[-1]),
                         "smoothie_escaped": bool(abs(mu[-1] - 1) < 0.1 and sigma[-1] < 0.3),
                         "smoothie_sigma": sigma_shape(mu, sigma),
                         "ddpg_final_mu": float(dd["mu_mean"][k][-1]),
                         "ddpg_stuck": bool(abs(dd["mu_mean"][k][-1] + 1) < 0.3)})
    every = max(1, args.iterations // 250)
    result = {
        "environment": env_info, "env": ENV, "seeds": args.seeds, "iterations": args.iterations,
        "configs": {"smoothie": sm_config, "ddpg": dd_config},
        "wall_s": {"smoothie": round(t_sm, 2), "ddpg": round(t_dd, 2)},
        "smoothie_escaped": sum(p["smoothie_escaped"] for p in per_seed),
        "ddpg_stuck": sum(p["ddpg_stuck"] for p in per_seed),
        "sigma_falls_rises_falls": sum(p["smoothie_sigma"]["falls_rises_falls"] for p in per_seed),
        "per_seed": per_seed,
        "trajectories_every": every,
        "trajectories": {"smoothie_mu": sm["mu_mean"][:, ::every].round(4).tolist(),
                         "smoothie_sigma": sm["sigma_mean"][:, ::every].round(4).tolist(),
                         "ddpg_mu": dd["mu_mean"][:, ::every].round(4).tolist()},
    }
    RESULTS.mkdir(exist_ok=True)
    write_json_atomic(str(RESULTS / "smoothie_bimodal.json"), result)
    plot(RESULTS / "smoothie_bimodal.png", sm, dd, dd_config["noise_std"], env_params)
    print(f"smoothie escaped {result['smoothie_escaped']}/{args.seeds}, ddpg stuck {result['ddpg_stuck']}/{args.seeds}, "
          f"σ falls-rises-falls {result['sigma_falls_rises_falls']}/{args.seeds}")
    for p in per_seed:
        s = p["smoothie_sigma"]
        print(f"seed {p['seed']}: smoothie μ {p['smoothie_final_mu']:.3f} σ {p['smoothie_final_sigma']:.3f} "
              f"(σ {s['initial']:.2f} → min {s['first_min']:.2f}@{s['first_min_iteration']} → max "
              f"{s['later_max']:.2f}@{s['later_max_iteration']} → {s['final']:.3f}); ddpg μ {p['ddpg_final_mu']:.3f}")
    return result


if __name__ == "__main__":
    main()
