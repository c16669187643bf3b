"""Direct optimisation through Gumbel-max (DirPG), Lorberbom et al. 2020, Eq. 4-10.

For a categorical node with log-probabilities ``log π`` and Gumbel noise ``G``::

    a_opt = argmax_a (log π(a) + G(a))               (a sample of π, Eq. 4-5)
    a_dir = argmax_a (log π(a) + G(a) + ε R(a))       (Eq. 7)
    ĝ     = (∇ log π(a_dir) - ∇ log π(a_opt)) / ε     (Eq. 10)

where ``R(a) = -(costs downstream of the node with its value set to a)``. ``ĝ``
is an unbiased estimate of the gradient of the direct objective
``l(θ, ε) = (1/ε) log Σ_a π(a) exp(ε R(a))`` (Eq. 11, 12), which tends to the
expected reward as ε → 0; ε < 0 gives the risk-averse objective (Eq. 11/14).
The surrogate term is ``-(log π(a_dir) - log π(a_opt)) / ε`` (we minimise
costs), so the compiled gradient is an unbiased estimate of ``-∇_θ l(θ, ε)``
with ``R = -cost``. For the expected cost it is biased by
``-(ε/2) ∇_θ Var[R] + O(ε²)`` (Eq. 14), for either sign of ε.

Here ``R`` is evaluated by enumerating the node's support with the same random
numbers downstream; the search of Algorithm 1 (branching environment states)
belongs to the RL algorithm built on top.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from scg.errors import GraphError
from scg.estimators.base import Estimator, NodeContext


@dataclass(frozen=True)
class Direct(Estimator):
    """``epsilon``: the ε of Eq. 7-10, non-zero; ε < 0 is risk-averse (Eq. 11/14)."""

    name = "direct"
    needs_downstream = True
    unbiased = False  # for the direct objective l(θ, ε) of Eq. 11, not for the expected cost (Eq. 14)

    epsilon: float = 1.0

    def __post_init__(self):
        if not isinstance(self.epsilon, (int, float)) or isinstance(self.epsilon, bool) or self.epsilon == 0:
            raise GraphError(
                f"Direct estimator: epsilon must be a non-zero Python number (its sign picks the risk attitude), "
                f"got {self.epsilon!r}"
            )

    def check(self, node_name, dist):
        if not hasattr(dist, "logits") or getattr(dist, "shape", None) != ():
            raise GraphError(
                f"stochastic node {node_name!r}: estimator 'direct' needs a scalar categorical with logits "
                f"(scg.dist.Categorical over one axis), got {type(dist).__name__}"
            )

    def _gumbel(self, dist, key):
        return jax.random.gumbel(key, dist.logits.shape, dist.logits.dtype)

    def sample(self, dist, key):
        logits = jax.lax.stop_gradient(dist.logits)
        return jnp.argmax(logits + self._gumbel(dist, key)).astype(jnp.int32)

    def terms(self, ctx: NodeContext):
        log_pi = jax.nn.log_softmax(ctx.dist.logits)
        actions = jnp.arange(log_pi.shape[-1], dtype=jnp.int32)
        rewards = -jax.lax.stop_gradient(jax.vmap(ctx.downstream)(actions))
        noisy = jax.lax.stop_gradient(log_pi) + self._gumbel(ctx.dist, ctx.key)
        a_opt = ctx.value
        a_dir = jnp.argmax(noisy + self.epsilon * rewards)
        return jnp.zeros(()), -(log_pi[a_dir] - log_pi[a_opt]) / self.epsilon


def direct(epsilon: float = 1.0) -> Direct:
    """Direct optimisation through Gumbel-max (Lorberbom et al. 2020, Eq. 10) with the given ``ε``."""
    return Direct(epsilon)
