"""How good is the GMM-prior dynamics fit's ``A_t`` on CartPole-v1? (RPG's question 3, "How effective is our
approximation of the dynamics?", Levy & Ermon 2018, seed ``000_d3fdf85e82e3b8b1.txt`` L204 and L164-L172.)

Each iteration rolls out ``m = 10`` CartPole-v1 episodes of at most ``T = 200``
steps (one ``lax.scan`` of ``step_env``; a transition is alive until the step
that terminates, masked after), with ``x`` = the 4-d observation (= the state)
and ``u = 2a - 1`` (force sign), then calls ``update_prior`` + ``fit``
(:mod:`scg.algorithms.dynamics`, defaults: 20-trajectory buffer, ``K ≤ 50``,
10 warm EM steps, ``strength = 1``, ``reg = 1e-6``). At every alive step
``(t, i)`` the fitted ``A_t`` is compared with the true Jacobian
``J = ∂ obs_{t+1} / ∂ s_t`` (``jax.jacfwd`` of ``step_env``) at the visited
state and action: ``err = ||A_t - J||_F / ||J||_F``, median over alive
``(t, i)``. Beside it: per-step least squares (``fit_least_squares``, the
prior-free reference) and the floor of any per-step linear model, ``J̄_t`` =
the mean of the true Jacobians of the alive states at ``t`` (CartPole is
nonlinear, so one ``A_t`` per step cannot match every state's Jacobian).

Two behaviour policies (ours): ``random`` (uniform actions, episodes of ~20
steps) and ``noisy_pd`` (``P(a = 1) = σ(10 (θ + 0.25 θ̇))``: a stochastic
balancing controller; measured mean episode length 188-200 of 200). Timing: the jitted ``update_prior`` +
``fit`` call after compilation; calls that (re)initialise the GMM (the number
of clusters in use grows with the buffer's alive points) run 50 EM steps, the
others 10, so both are reported.

Usage::

    python bench/dynamics_fit.py      # writes bench/results/dynamics_fit.json (< 2 min on 2 CPU cores)
"""
from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from scg.algorithms import dynamics  # noqa: E402
from scg.envs.classic_control import CartPole  # noqa: E402
from scg.envs.classic_control.cartpole import EnvState  # noqa: E402

import _util  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "dynamics_fit.json")
ENV = CartPole()
PARAMS = ENV.default_params
HORIZON, TRAJECTORIES, ITERATIONS, SEEDS = 200, 10, 6, 2


def policy_random(obs, key):
    return jax.random.bernoulli(key).astype(jnp.int32)


def policy_noisy_pd(obs, key):
    return jax.random.bernoulli(key, jax.nn.sigmoid(10.0 * (obs[2] + 0.25 * obs[3]))).astype(jnp.int32)


POLICIES = {"random": policy_random, "noisy_pd": policy_noisy_pd}


def next_obs(state4: jax.Array, action: jax.Array) -> jax.Array:
    """``obs_{t+1}`` as a function of the 4-d state ``s_t`` (the differentiable part of ``step_env``)."""
    state = EnvState(state4[0], state4[1], state4[2], state4[3], jnp.zeros((), jnp.int32))
    return ENV.step_env(None, state, action, PARAMS)[0]


def episodes(policy, key):
    """``m`` episodes from reset, time-major: ``x [T, m, 4]``, ``a [T, m]``, ``x_next``, alive ``mask [T, m]``."""

    def one(key):
        key_reset, key_steps = jax.random.split(key)
        obs, state = ENV.reset_env(key_reset, PARAMS)

        def step(carry, key_t):
            obs, state, alive = carry
            action = policy(obs, key_t)
            obs_next, state_next, _, terminated, _, _ = ENV.step_env(key_t, state, action, PARAMS)
            return (obs_next, state_next, alive * (1.0 - terminated)), (obs, action, obs_next, alive)

        _, out = jax.lax.scan(step, (obs, state, jnp.float32(1.0)), jax.random.split(key_steps, HORIZON))
        return out

    x, a, x_next, mask = jax.vmap(one)(jax.random.split(key, TRAJECTORIES))
    return tuple(jnp.swapaxes(z, 0, 1) for z in (x, a, x_next, mask))


def jacobian_errors(model_a: jax.Array, x, a, mask):
    """``(fit, floor)`` relative Frobenius errors at every ``(t, i)``, and the true Jacobians' alive mask."""
    jac = jax.vmap(jax.vmap(jax.jacfwd(next_obs)))(x, a)  # [T, m, 4, 4]
    norm = jnp.linalg.norm(jac, axis=(-2, -1))
    alive = mask > 0
    mean_jac = jnp.sum(jac * mask[..., None, None], 1) / jnp.maximum(mask.sum(1), 1.0)[:, None, None]
    fit_err = jnp.linalg.norm(model_a[:, None] - jac, axis=(-2, -1)) / norm
    floor_err = jnp.linalg.norm(mean_jac[:, None] - jac, axis=(-2, -1)) / norm
    return fit_err, floor_err, alive


def iteration_fn():
    """One jitted RPG-style dynamics step: ``update_prior`` then ``fit`` (and the least-squares reference)."""

    def run(prior, key, x, u, x_next, mask):
        prior, log_liks = dynamics.update_prior(prior, key, x, u, x_next, mask)
        return prior, log_liks, dynamics.fit(prior, x, u, x_next, mask)

    return jax.jit(run)


def run_policy(name: str, policy, seed: int, step) -> dict:
    rollout = jax.jit(lambda key: episodes(policy, key))
    errors = jax.jit(jacobian_errors)
    least_squares = jax.jit(dynamics.fit_least_squares)
    prior = dynamics.init_prior(jax.random.key(seed), horizon=HORIZON, dim_x=4, dim_u=1)
    key = jax.random.key(seed)
    rows, warm_times, restart_times = [], [], []
    for it in range(ITERATIONS):
        key, key_roll, key_em = jax.random.split(key, 3)
        x, a, x_next, mask = rollout(key_roll)
        u = (2.0 * a - 1.0).astype(jnp.float32)[..., None]
        if it == 0:  # compile on a copy so the timed first call is a real one (same shapes, nothing carried over)
            jax.block_until_ready(step(prior, key_em, x, u, x_next, mask))
        before = int(prior.num_active)
        t0 = time.perf_counter()
        prior, log_liks, model = jax.block_until_ready(step(prior, key_em, x, u, x_next, mask))
        seconds = time.perf_counter() - t0
        restarted = it == 0 or int(prior.num_active) != before
        (restart_times if restarted else warm_times).append(seconds)
        fit_err, floor_err, alive = errors(model.A, x, a, mask)
        ls_err, _, _ = errors(least_squares(x, u, x_next, mask).A, x, a, mask)
        pick = np.asarray(alive)
        lls = np.asarray(log_liks)
        rows.append({
            "iteration": it,
            "alive_points_batch": int(pick.sum()),
            "mean_episode_length": float(pick.sum() / TRAJECTORIES),
            "buffer_alive_points": int(prior.mask.sum()),
            "clusters_in_use": int(prior.num_active),
            "gmm_restarted": bool(restarted),
            "median_rel_jacobian_error_fit": float(np.median(np.asarray(fit_err)[pick])),
            "p90_rel_jacobian_error_fit": float(np.percentile(np.asarray(fit_err)[pick], 90)),
            "median_rel_jacobian_error_least_squares": float(np.median(np.asarray(ls_err)[pick])),
            "median_rel_jacobian_error_floor_mean_jacobian": float(np.median(np.asarray(floor_err)[pick])),
            "em_log_lik_first_last": [float(lls[0]), float(lls[-1])],
            # the guard lets float32 rounding through: steps may lower the LL by ≤ 1e-6·Σ|log p(y_n)|
            "em_largest_step_decrease_rel": float(max(0.0, -np.diff(lls.astype(np.float64)).min(initial=0.0))
                                                  / abs(float(lls[-1]))),
            "seconds_update_prior_plus_fit": seconds,
        })
    return {"policy": name, "seed": seed, "iterations": rows,
            "seconds_warm": _util.summary(warm_times) if warm_times else None,
            "seconds_restart": _util.summary(restart_times) if restart_times else None}


def main() -> dict:
    start = time.perf_counter()
    env_info = _util.environment()
    step = iteration_fn()
    runs = [run_policy(name, policy, seed, step) for name, policy in POLICIES.items() for seed in range(SEEDS)]
    summary = {}
    for name in POLICIES:
        last = [r["iterations"][-1] for r in runs if r["policy"] == name]
        keys = ("median_rel_jacobian_error_fit", "median_rel_jacobian_error_least_squares",
                "median_rel_jacobian_error_floor_mean_jacobian")
        summary[name] = {k: [row[k] for row in last] for k in keys}
        warm = [t for r in runs if r["policy"] == name for t in
                [row["seconds_update_prior_plus_fit"] for row in r["iterations"] if not row["gmm_restarted"]]]
        summary[name]["median_seconds_warm_call"] = float(np.median(warm)) if warm else None
    out = {
        "config": {"env": ENV.name, "horizon": HORIZON, "trajectories_per_iteration": TRAJECTORIES,
                   "iterations": ITERATIONS, "seeds": SEEDS, "x": "observation (x, x_dot, theta, theta_dot)",
                   "u": "2a - 1", "prior": "init_prior defaults (max_trajectories=20, K <= 50)",
                   "update_prior": "iterations=10, first_iterations=50", "fit": "strength=1.0, reg=1e-6",
                   "error": "||A_t - J(s_t^i, a_t^i)||_F / ||J||_F over alive (t, i); J = jacfwd of step_env"},
        "summary_last_iteration": summary,
        "runs": runs,
        "environment": env_info,
        "total_seconds": time.perf_counter() - start,
    }
    _util.write_json_atomic(RESULTS, out)
    return out


if __name__ == "__main__":
    result = main()
    for name, s in result["summary_last_iteration"].items():
        print(name, s)
    print(f"total {result['total_seconds']:.1f} s -> {RESULTS}")
