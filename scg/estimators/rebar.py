"""REBAR for a Bernoulli node; Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein 2017 (NeurIPS), Eq. 6 and §3.3
(outside the seeds; its text is not among them, so the equation and section numbers are as we read
the arXiv version, not checked against a seed).

For ``b ~ Bernoulli(p)``, ``p = σ(φ)``, write ``b = H(z)`` with the logistic
variable ``z = φ + log u' − log(1 − u')``, ``u' ~ U(0, 1)``, and let ``z̃ ~ p(z | b)``
be a second, conditional, reparameterised draw. With the relaxed control variate
``c(z) = η f(σ_λ(z))``, ``σ_λ(z) = σ(z / λ)`` (the Concrete relaxation at
temperature ``λ``)::

    ĝ = [f(b) − c(z̃)] ∇_φ log p(b) + ∇_φ c(z) − ∇_φ c(z̃)                  (Eq. 6)

Unbiased for any ``η`` and ``λ``: ``∇E[c(z)] = E[c(z̃) ∇ log p(b)] + E[∇ c(z̃)]``
(the two ways of differentiating ``E_b E_{z|b}[c]``), so the last two terms
cancel the control variate's mean. ``η`` and ``λ`` are tuned online (§3.3) by
the gradient of ``‖ĝ‖²`` (the variance's, as ``E ĝ`` does not depend on them),
which the compiler hands to :meth:`REBAR.update_state` (``trains_state``): one
Adam step per call.

The conditional draw (Tucker et al. 2017, appendix, the binary case): ``b = 1``
exactly when ``u' > 1 − p``, so given ``b`` the noise is uniform on ``(1 − p, 1)``
or on ``(0, 1 − p)``; from a fresh ``v ~ U(0, 1)``::

    u'' = 1 − p (1 − v)  if b = 1,   u'' = v (1 − p)  if b = 0,    z̃ = φ + log u'' − log(1 − u'')

(computed in log space from ``log σ(±φ)``), differentiable in ``φ`` with ``v``
held. The node's noise ``u`` is ARM's (:mod:`scg.estimators.arm`, ``b = 1[u < p]``,
read again in ``terms`` from the node's key, or redrawn given a recorded value),
and ``u' = 1 − u``, so ``z = φ + log(1 − u) − log u`` gives ``H(z) = b`` exactly.

In the surrogate: ``f(b)`` is the stopped sum of downstream costs (``ctx.downstream``);
``c`` evaluates them at the relaxed value through ``ctx.frozen_downstream``, so it
sends gradient only through ``z`` and ``z̃`` into ``φ`` (and whatever ``φ`` depends
on), to any order, and the variance gradient sees its full dependence on ``η``
and ``λ``. ``E = sg_φ(f(b) − c(z̃))·log p(b) + c(z) − c(z̃)`` enters as ``extra =
E − sg(E)`` (value 0); ``sg_φ`` stops the gradient into the graph but keeps the
one into ``η, λ``. The downstream costs must accept values in ``[0, 1]``.
``η`` and ``λ`` are one scalar each per node (shared by its elements). Surrogate
mode only (``any_order = False``), no importance-ratio form.

The conditioning matters for the variance, not for the bias: a ``z̃`` drawn
independently of ``b`` is still unbiased (``c(z̃)`` is then uncorrelated with
``∇ log p(b)``), but measured 2.9x noisier; ``z̃ = z`` or a ``z̃`` held constant
in ``φ`` is biased. Checked in ``tests/scg/test_rebar_relax.py``: unbiased at
the initial and the trained state (max |z| ≤ 1.9), and on a D = 3 graph the
variance of the ``φ``-gradient is 0.21x the score function's at the initial
``λ = 0.5, η = 1``, 0.16x after 400 Adam steps (0.74x of its initial).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from scg.errors import GraphError
from scg.estimators.arm import bernoulli_draw, bernoulli_noise, check_bernoulli, uniform_noise
from scg.estimators.base import Estimator, NodeContext, StateUpdate, total_log_prob


def _open_unit(u: jax.Array) -> jax.Array:
    """``u`` kept inside ``(0, 1)``, so that the logs below are finite (a draw of exactly 0 is possible)."""
    eps = jnp.finfo(u.dtype).eps
    return jnp.clip(u, jnp.finfo(u.dtype).tiny, 1.0 - eps)


def logistic_sample(logits: jax.Array, u: jax.Array) -> jax.Array:
    """``z = φ + log(1 − u) − log u``: logistic, reparameterised, with ``H(z) = 1[u < σ(φ)]``."""
    u = _open_unit(u)
    return logits + jnp.log1p(-u) - jnp.log(u)


def concrete(params: dict, z: jax.Array) -> jax.Array:
    """``σ_λ(z) = σ(z / λ)``, with ``λ = exp(params["log_temperature"])``."""
    return jax.nn.sigmoid(z * jnp.exp(-params["log_temperature"]))


def conditional_sample(logits: jax.Array, b: jax.Array, v: jax.Array) -> jax.Array:
    """``z̃ ~ p(z | H(z) = b)`` from ``v ~ U(0, 1)``, reparameterised in ``φ`` (Tucker et al. 2017, binary case)."""
    v = _open_unit(v)
    log_p, log_q = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    tail_one = log_p + jnp.log1p(-v)  # log(1 − u'') for b = 1
    tail_zero = jnp.log(v) + log_q  # log u'' for b = 0
    log_u = jnp.where(b > 0.5, jnp.log1p(-jnp.exp(tail_one)), tail_zero)
    log_1mu = jnp.where(b > 0.5, tail_one, jnp.log1p(-jnp.exp(tail_zero)))
    return logits + log_u - log_1mu


@dataclass(frozen=True)
class REBAR(Estimator):
    """``init_temperature`` (λ > 0) and ``init_eta`` (η) start the control variate; ``lr``: Adam's step size."""

    name = "rebar"
    needs_downstream = True
    trains_state = True

    init_temperature: float = 0.5
    init_eta: float = 1.0
    lr: float = 1e-3

    def __post_init__(self):
        for field in ("init_temperature", "lr"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise GraphError(f"{type(self).__name__} estimator: {field} must be a positive number, got {value!r}")
        if isinstance(self.init_eta, bool) or not isinstance(self.init_eta, (int, float)):
            raise GraphError(f"{type(self).__name__} estimator: init_eta must be a number, got {self.init_eta!r}")

    def check(self, node_name, dist):
        check_bernoulli(self.name, node_name, dist)

    def sample(self, dist, key):
        return bernoulli_draw(dist, uniform_noise(dist, key))

    def optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.lr)

    def init_params(self, value_aval, key: jax.Array) -> dict:
        return {"log_temperature": jnp.log(jnp.asarray(self.init_temperature, jnp.float32)),
                "eta": jnp.asarray(self.init_eta, jnp.float32)}

    def init_state(self, node_name, value_aval, key):
        params = self.init_params(value_aval, key)
        return {"params": params, "opt_state": self.optimizer().init(params)}

    def update_state(self, state, batch: StateUpdate):
        updates, opt_state = self.optimizer().update(batch.variance_grad, state["opt_state"], state["params"])
        return {**state, "params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}

    def control_variate(self, params: dict, f, z: jax.Array) -> jax.Array:
        """``c(z) = η f(σ(z / λ))``; :class:`scg.estimators.relax.RELAX` adds its network."""
        return params["eta"] * f(concrete(params, z))

    def partner(self, logits, u, b, v):
        """``z̃`` given the node's draw; the wrong variants of the tests override it."""
        return conditional_sample(logits, b, v)

    def terms(self, ctx: NodeContext):
        params, logits = ctx.state["params"], ctx.dist.logits
        u = bernoulli_noise(ctx.dist, ctx.value, ctx.key)
        v = uniform_noise(ctx.dist, jax.random.fold_in(ctx.key, 1))
        b = jax.lax.stop_gradient(ctx.value)
        z, z_tilde = logistic_sample(logits, u), self.partner(logits, u, b, v)
        c = lambda z: self.control_variate(params, ctx.frozen_downstream, z)  # noqa: E731
        weight = jax.lax.stop_gradient(ctx.downstream(b)) - c(jax.lax.stop_gradient(z_tilde))  # sg_φ, not sg_{η,λ}
        estimate = weight * total_log_prob(ctx.dist, b) + c(z) - c(z_tilde)
        return jnp.zeros(()), estimate - jax.lax.stop_gradient(estimate)  # evaluates to 0


def rebar(init_temperature: float = 0.5, init_eta: float = 1.0, lr: float = 1e-3) -> REBAR:
    """REBAR for a Bernoulli node (Tucker et al. 2017, Eq. 6), ``η`` and ``λ`` trained on the variance (§3.3)."""
    return REBAR(init_temperature, init_eta, lr)
