"""Hand Mass: a point mass on a damped spring held by a hand the agent moves.

The task of Munos (2006, "Policy gradient in continuous time", JMLR 7) used in
the RPG experiments (Levy & Ermon 2018, §Experiments, Table 2, where RPG
reaches -0.026 +- 0.01 after 150 episodes). The mass (position ``x``,
velocity ``v``) hangs on a spring of stiffness ``k`` and damping ``b`` whose
other end is the hand (position ``y``); the agent controls the hand velocity::

    dy/dt = u,        m dv/dt = -k (x - y) - b v,        dx/dt = v

discretised with the explicit δ-step ``s_{t+1} = s_t + δ f(s_t, u_t)`` that RPG
assumes (Levy & Ermon 2018, §"Equivalence in continuous-time systems").
The reward is terminal only (RPG Eq. 3): ``r_T = -((x_T - goal)^2 + v_T^2)``
after ``horizon`` steps, 0 before. Neither paper states the constants; we
chose the defaults of ``HandMassParams`` (m=1, k=2, b=0.2, hand speed 1,
δ=0.1, 20 steps, goal 0, x_0 = y_0 ~ U(-1.5, 1.5), v_0 = 0) so that, measured
over 4,096 episodes (standard errors ~0.001 for good, ~0.015 for random):

* the best achievable return is about -0.03: open-loop trajectory optimisation
  per start state (Adam through the differentiable continuous step, 1,500
  iterations, 512 evenly spaced starts) reaches -0.031, the level RPG
  reports (-0.026);
* the hand-coded ``hand_mass_controller`` below scores -0.055 (discrete,
  rounded) and -0.054 (continuous);
* uniformly random actions score -1.02 (discrete) and -0.89 (continuous
  ``U(-1, 1)``); never moving the hand scores -0.75.

``HandMass-v0`` has three actions (hand left / stay / right at ``hand_speed``);
``HandMassContinuous-v0`` takes ``u / hand_speed`` in ``[-1, 1]`` (clipped), and
its ``step`` is differentiable in the state and the action.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from scg.envs.core import Environment, Timestep
from scg.envs.spaces import Box, Discrete


class HandMassParams(NamedTuple):
    mass: float = 1.0
    stiffness: float = 2.0  # k: natural period 2π sqrt(m/k) ≈ 4.4 s, longer than the 2 s episode
    damping: float = 0.2  # b: decay time 2m/b = 10 s, so the agent must damp the mass itself
    hand_speed: float = 1.0
    dt: float = 0.1
    horizon: int = 20
    goal: float = 0.0
    init_range: float = 1.5  # x_0 = y_0 ~ U(-init_range, init_range), v_0 = 0


class HandMassState(NamedTuple):
    x: jax.Array  # mass position
    y: jax.Array  # hand position
    v: jax.Array  # mass velocity
    t: jax.Array  # steps taken


class HandMass(Environment):
    """Discrete Hand Mass: actions 0, 1, 2 move the hand at -hand_speed, 0, +hand_speed.

    Example:
        >>> env = HandMass(); params = env.default_params
        >>> obs, state = env.reset(jax.random.key(0), params)
        >>> obs, state, r, term, trunc, info = env.step(jax.random.key(1), state, jnp.int32(2), params)
        >>> obs.shape
        (4,)
    """

    name = "HandMass-v0"

    @property
    def default_params(self) -> HandMassParams:
        return HandMassParams()

    def hand_velocity(self, action: jax.Array, params: HandMassParams) -> jax.Array:
        return params.hand_speed * (action.astype(jnp.float32) - 1.0)

    def reset_env(self, key, params):
        x0 = jax.random.uniform(key, (), jnp.float32, -params.init_range, params.init_range)
        state = HandMassState(x=x0, y=x0, v=jnp.zeros_like(x0), t=jnp.int32(0))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        del key  # deterministic dynamics
        u = self.hand_velocity(action, params)
        accel = (-params.stiffness * (state.x - state.y) - params.damping * state.v) / params.mass
        new = HandMassState(
            x=state.x + params.dt * state.v,
            y=state.y + params.dt * u,
            v=state.v + params.dt * accel,
            t=state.t + 1,
        )
        done = self.is_terminal(new, params)
        terminal_reward = self.terminal_reward(jnp.stack([new.x, new.y, new.v]), params)
        reward = jnp.where(done, terminal_reward, jnp.zeros_like(terminal_reward))
        return Timestep(self.get_obs(new, params), new, reward, done, jnp.zeros_like(done), {})

    def terminal_reward(self, obs: jax.Array, params: HandMassParams | None = None) -> jax.Array:
        """``-((x - goal)^2 + v^2)`` of an observation ``(x, y, v, ...)``: the reward paid on the last step,
        a differentiable function of the observation (for the pathwise learners, RPG and SVG(∞))."""
        params = self.default_params if params is None else params
        return -((obs[0] - params.goal) ** 2 + obs[2] ** 2)

    def is_terminal(self, state: HandMassState, params) -> jax.Array:
        """The horizon is reached (the terminal reward has been paid, RPG Eq. 3)."""
        return state.t >= params.horizon

    def get_obs(self, state: HandMassState, params) -> jax.Array:
        """``(x, y, v, t / horizon)``: the time feature makes the finite-horizon task Markov."""
        frac = state.t.astype(state.x.dtype) / params.horizon
        return jnp.stack([state.x, state.y, state.v, frac])

    def observation_space(self, params):
        inf = float("inf")
        return Box.make([-inf, -inf, -inf, 0.0], [inf, inf, inf, 1.0])

    def action_space(self, params):
        return Discrete(3)


class HandMassContinuous(HandMass):
    """Continuous Hand Mass: action ``a`` in ``[-1, 1]``, hand velocity ``hand_speed * clip(a, -1, 1)``.

    An action outside ``[-1, 1]`` is clipped to the hand's top speed (not an
    error, in JAX or through gymnasium), as Pendulum clips its torque.
    """

    name = "HandMassContinuous-v0"

    def hand_velocity(self, action, params):
        return params.hand_speed * jnp.clip(action[0], -1.0, 1.0)

    def action_space(self, params):
        return Box.make(-1.0, 1.0, (1,))


def hand_mass_controller(obs: jax.Array, params: HandMassParams, *, gain: float = 1.0, damp: float = 2.5) -> jax.Array:
    """A hand-coded PD controller (our baseline, not from the papers): hand target ``y* = g + gain (g - x) - damp v``.

    Returns the continuous action ``clip((y* - y) / (hand_speed dt), -1, 1)``;
    round it with ``jnp.round(a) + 1`` for the discrete env.
    """
    x, y, v = obs[0], obs[1], obs[2]
    target = params.goal + gain * (params.goal - x) - damp * v
    return jnp.clip((target - y) / (params.hand_speed * params.dt), -1.0, 1.0)[None]
