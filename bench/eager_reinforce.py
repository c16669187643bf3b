"""REINFORCE with a learned baseline written the usual eager way: a gymnasium loop on the host, jitted pieces per call.

The same algorithm, networks, optimizers and sizes as ``scg.algorithms.reinforce``
and :mod:`handwritten_reinforce` (Schulman 2016, Eq. 44), organised as most
tutorials and many codebases do:

- ``gymnasium.make_vec("CartPole-v1", N, vectorization_mode="sync")`` with
  same-step autoreset is stepped in a Python loop; each step calls a jitted
  policy on the current observations and copies the actions to the host;
- the returns ``G_t`` (same episode/bootstrap rules as :mod:`scg.returns`) are
  a NumPy reverse loop over time;
- the policy step is one jitted ``jax.grad`` of the surrogate plus Adam; the
  value refit is a Python loop of ``value_epochs`` jitted Adam steps.

Example::

    agent = EagerReinforce({"num_envs": 64}, seed=0)
    metrics = agent.iteration()
"""
from __future__ import annotations

import os
import sys
from collections import deque

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import handwritten_reinforce as hw  # noqa: E402  (the same networks and initialisation)


class EagerReinforce:
    """Host-side training loop; ``iteration()`` collects ``num_envs × horizon`` steps and updates once."""

    def __init__(self, config: dict | None = None, *, seed: int = 0, env_id: str = "CartPole-v1"):
        self.config = c = {**hw.DEFAULT_CONFIG, **(config or {})}
        mode = gymnasium.vector.AutoresetMode.SAME_STEP  # the last obs of a finished episode is info["final_obs"]
        self.env = gymnasium.make_vec(env_id, c["num_envs"], vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode})
        self.obs, _ = self.env.reset(seed=seed)
        n_obs, n_act = self.env.single_observation_space.shape[0], int(self.env.single_action_space.n)
        k_pi, k_v, self.key = jax.random.split(jax.random.key(seed), 3)
        self.theta = {"net": hw.mlp_init(k_pi, [n_obs, *c["hidden"], n_act], last_scale=0.01)}
        self.phi = hw.mlp_init(k_v, [n_obs, *c["hidden"], 1])
        self.policy_opt, self.value_opt = optax.adam(c["policy_lr"]), optax.adam(c["value_lr"])
        self.policy_state, self.value_state = self.policy_opt.init(self.theta), self.value_opt.init(self.phi)
        self.running = np.zeros(c["num_envs"])
        self.recent = deque(maxlen=hw.WINDOW)
        self.episodes = 0

        self._act = jax.jit(lambda theta, obs, key: jax.random.categorical(key, hw.logits_fn(theta, obs)))
        self._value = jax.jit(hw.value_fn)

        def policy_step(theta, opt_state, obs, action, adv):
            def surrogate(theta):
                logp = jax.nn.log_softmax(hw.logits_fn(theta, obs))
                return -jnp.sum(jnp.take_along_axis(logp, action[..., None], -1)[..., 0] * adv) / obs.shape[1]

            grads = jax.grad(surrogate)(theta)
            updates, opt_state = self.policy_opt.update(grads, opt_state, theta)
            return optax.apply_updates(theta, updates), opt_state, optax.global_norm(grads)

        def value_step(phi, opt_state, obs, targets):
            loss, grads = jax.value_and_grad(lambda p: 0.5 * jnp.mean((hw.value_fn(p, obs) - targets) ** 2))(phi)
            updates, opt_state = self.value_opt.update(grads, opt_state, phi)
            return optax.apply_updates(phi, updates), opt_state, loss

        self._policy_step, self._value_step = jax.jit(policy_step), jax.jit(value_step)

    def collect(self):
        """``horizon`` host steps of all envs: ``[T, N, ...]`` NumPy arrays."""
        obs, act, rew, term, trunc, final = [], [], [], [], [], []
        for _ in range(self.config["horizon"]):
            self.key, k = jax.random.split(self.key)
            a = np.asarray(self._act(self.theta, self.obs, k))
            next_obs, r, te, tr, info = self.env.step(a)
            f = next_obs.copy()
            if "_final_obs" in info:  # envs that ended this step: their true last observation
                idx = np.flatnonzero(info["_final_obs"])
                f[idx] = np.stack([info["final_obs"][i] for i in idx])
            obs.append(self.obs), act.append(a), rew.append(r), term.append(te), trunc.append(tr), final.append(f)
            self._count(r, te | tr)
            self.obs = next_obs
        return tuple(np.asarray(x) for x in (obs, act, rew, term, trunc, final))

    def _count(self, r, done):
        self.running += r
        for i in np.flatnonzero(done):
            self.recent.append(self.running[i])
            self.episodes += 1
        self.running[done] = 0.0

    def returns(self, rew, term, trunc, v_final):
        """``G_t`` by a reverse NumPy loop (same rules as ``scg.returns``)."""
        gamma, g = self.config["discount"], np.zeros_like(v_final)
        out = np.zeros_like(v_final)
        for t in reversed(range(len(rew))):
            follow = v_final[t] if t == len(rew) - 1 else np.where(trunc[t], v_final[t], g)
            g = rew[t] + gamma * (1.0 - term[t]) * follow
            out[t] = g
        return out

    def iteration(self) -> dict:
        obs, act, rew, term, trunc, final = self.collect()
        v_final = np.asarray(self._value(self.phi, final))
        g = self.returns(rew.astype(np.float32), term, trunc, v_final)
        adv = g - np.asarray(self._value(self.phi, obs))
        self.theta, self.policy_state, grad_norm = self._policy_step(self.theta, self.policy_state, obs, act, adv)
        flat_obs, flat_g = obs.reshape(-1, obs.shape[-1]), g.reshape(-1)
        for _ in range(self.config["value_epochs"]):
            self.phi, self.value_state, loss = self._value_step(self.phi, self.value_state, flat_obs, flat_g)
        return {
            "env_steps": float(obs.shape[0] * obs.shape[1]),
            "mean_return": float(np.mean(self.recent)) if self.recent else float("nan"),
            "episodes": float(self.episodes),
            "loss": float(loss),
            "grad_norm": float(grad_norm),
        }

    def close(self):
        self.env.close()
