"""Declaring a stochastic computation graph (Schulman 2016, Definition 3).

A :class:`Graph` is a builder: each call adds one node and returns a handle
that later nodes name as a parent. Parents may also be given by name (a
string), which allows forward references; the compiler resolves them and
rejects cycles. Nothing is evaluated here: node functions run only inside the
compiled estimator.

Node kinds:

- ``input``: set by the caller; the parameters we differentiate with respect to.
- ``deterministic``: a function of its parents.
- ``stochastic``: distributed conditionally on its parents; its function
  returns a distribution object (see :mod:`scg.dist`).
- ``simulate``: stochastic with an unknown density; its function draws a
  sample from ``(key, *parents)``. No gradient can flow into it (Condition 1).
- ``expectation``: a deterministic node defined as ``E_{a~dist}[f(parents, a)]``,
  estimated with one sampled ``a`` (the relaxed dynamics of RPG, Levy & Ermon
  2018, Eq. 5).
- ``cost``: a deterministic, scalar node whose values are summed into the
  objective ``E[sum of costs]`` that the estimator differentiates. A cost that
  is the log-density of a sampled node (the ``log q(z)`` of an ELBO) is declared
  with :meth:`Graph.log_prob_cost`, which leaves out its mean-zero score term.
- ``loss``: a scalar added to the surrogate and differentiated pathwise only,
  outside the expected cost: no score term credits it (a critic's
  regression loss). In a temporal graph it may read the cost-to-go.

A node may read a stochastic node's *distribution* instead of its value: name
the parent :func:`dist_of` ``(w)`` (the string ``"w.dist"``), e.g. an entropy
bonus ``H[p(·|DEPS_w)]``. The distribution is then computed once, by a
deterministic node ``"w.dist"`` that :attr:`Graph.nodes` inserts between ``w``'s
parents and ``w`` (``w`` draws from it), so the policy network of an
actor-critic step runs once for the action and the entropy alike, forward and
backward. The node reads ``w``'s parents, not ``w``'s draw: it is not
downstream of ``w``, and a cost that reads it is not credited to ``w``.

A :class:`Node` is immutable and built whole before it is added. What is
common to every kind (name, kind, function, parent names, ``differentiable``)
is a field of the node; what only some kinds have is a typed, frozen *spec*
in ``node.spec``, one class per kind:

- :class:`StochasticSpec` ``(estimator, baseline, advantage)`` for ``stochastic``;
- :class:`ExpectationSpec` ``(dist_fn, estimator, exact)`` for ``expectation``;
- :class:`CostSpec` ``(reduce, log_prob_of)`` for ``cost``;
- :class:`LossSpec` ``(target)`` for ``loss``;
- ``None`` for ``input``, ``deterministic`` and ``simulate``.

``node.estimator`` and ``node.baseline`` read the spec (``None`` where the
kind has none). Estimators are values (:mod:`scg.estimators`): a name given
at declaration is looked up once, here, and ``estimator=None`` on a
stochastic node is stored as :data:`scg.estimators.DEFAULT`, resolved per
input signature when the compiler plans.
"""
from __future__ import annotations

import dataclasses
import inspect
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Union

import jax
import jax.numpy as jnp
import numpy as np

from scg import _draw
from scg import estimators as _estimators
from scg.errors import GraphError
from scg.returns import GAE

# The picture a Graph or Temporal shows in Jupyter. Resolving the default estimators needs the compiler,
# a higher layer, so ``scg/__init__.py`` sets this to ``scg.render.to_svg``; until then (``scg.graph``
# imported alone) the nodes are drawn as declared.
resolved_svg: Callable | None = None

DIST = ".dist"  # suffix of the parent name that reads a stochastic node's distribution (dist_of)
KINDS = ("input", "deterministic", "stochastic", "simulate", "expectation", "cost", "loss")


@dataclass(frozen=True)
class StochasticSpec:
    """A stochastic node's estimator (a value, or ``DEFAULT``), baseline (a node name or a built-in
    such as ``scg.baselines.LeaveOneOut()``) and temporal ``advantage`` (``None`` or ``scg.GAE``)."""

    estimator: Any = _estimators.DEFAULT
    baseline: Any = None
    advantage: GAE | None = None


@dataclass(frozen=True)
class ExpectationSpec:
    """An expectation node's distribution ``dist_fn(*parents)``, estimator, and ``exact`` (its value is the
    exact expectation over a finite support; :mod:`scg.estimators.relaxed`)."""

    dist_fn: Callable
    estimator: Any
    exact: bool = False


@dataclass(frozen=True)
class CostSpec:
    """How a non-scalar cost is reduced to a scalar: ``None`` (it must be scalar), ``"sum"`` or ``"mean"``;
    ``log_prob_of``: the stochastic node whose log-density the cost is (:meth:`Graph.log_prob_cost`), or ``None``."""

    reduce: str | None = None
    log_prob_of: str | None = None


@dataclass(frozen=True)
class LossSpec:
    """``target="return"``: the loss function gets the step's cost-to-go ``G_t`` too (temporal graphs)."""

    target: str | None = None


NodeSpec = Union[StochasticSpec, ExpectationSpec, CostSpec, LossSpec, None]
_SPECS = {"stochastic": StochasticSpec, "expectation": ExpectationSpec, "cost": CostSpec, "loss": LossSpec}
_EXPECTATION_OPTIONS = ("exact",)


@dataclass(frozen=True, eq=False)
class Node:
    """One node of a graph. Users hold it as a handle to name it as a parent."""

    name: str
    kind: str
    fn: Callable | None = None
    parents: tuple[str, ...] = ()
    differentiable: bool = True
    spec: NodeSpec = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise GraphError(f"node {self.name!r}: unknown kind {self.kind!r}; one of {KINDS}")
        want = _SPECS.get(self.kind)
        if (self.spec is None) != (want is None) or (want is not None and not isinstance(self.spec, want)):
            need = want.__name__ if want else "None"
            raise GraphError(f"node {self.name!r} ({self.kind}): spec must be {need}, got {self.spec!r}")

    @property
    def estimator(self):
        """The estimator of a stochastic or expectation node (``DEFAULT`` until planned), else ``None``."""
        return getattr(self.spec, "estimator", None)

    @property
    def baseline(self):
        """A stochastic node's baseline (a node name or a built-in), else ``None``."""
        return getattr(self.spec, "baseline", None)

    def with_estimator(self, estimator) -> "Node":
        """A copy of this stochastic or expectation node with another estimator (a value or a name)."""
        if not isinstance(self.spec, (StochasticSpec, ExpectationSpec)):
            raise GraphError(f"node {self.name!r}: a {self.kind} node has no estimator")
        est = _estimators.as_estimator(estimator, self.name, self.kind)
        return dataclasses.replace(self, spec=dataclasses.replace(self.spec, estimator=est))

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.kind})"


def dist_of(node) -> str:
    """The parent name that reads stochastic node ``node``'s distribution ``p(·|DEPS_w)`` rather than its
    draw, e.g. an entropy bonus of a categorical ``a``:
    ``g.loss("bonus", lambda d: 0.01 * jnp.sum(d.probs * jnp.log(d.probs)), scg.dist_of(a))``.
    ``node``: a handle or a name."""
    name = node.name if isinstance(node, Node) else node
    if not isinstance(name, str):
        raise GraphError(f"dist_of: expected a stochastic node's handle or name, got {node!r}")
    return name + DIST


def _log_density(node: str, scale: float) -> Callable:
    """``(q, ẑ) -> scale · Σ log q(ẑ)`` with ``q``'s parameters held constant: the function of
    :meth:`Graph.log_prob_cost`, for stochastic node ``node``."""

    def log_density(dist, value):
        leaves = jax.tree_util.tree_leaves(dist)
        if not leaves or not all(isinstance(x, (jax.Array, np.ndarray, numbers.Number)) for x in leaves):
            raise GraphError(
                f"log_prob_cost of {node!r}: its distribution {type(dist).__name__} is not a pytree of arrays, so its "
                f"parameters cannot be held constant; register the class as a pytree (jax.tree_util."
                f"register_pytree_node, as scg.dist.Distribution subclasses and NumPyro's distributions are)"
            )
        return scale * jnp.sum(jax.lax.stop_gradient(dist).log_prob(value))

    return log_density


def _the_distribution(dist):
    """A stochastic node's function once its distribution is a node of its own (``"w.dist"``)."""
    return dist


def with_distribution_nodes(nodes: list[Node]) -> list[Node]:
    """``nodes`` with a deterministic node ``"w.dist"`` before every stochastic ``w`` that some node reads
    by :func:`dist_of`: it computes ``w``'s distribution from ``w``'s parents and ``w`` draws from it."""
    read = {p[: -len(DIST)] for n in nodes for p in n.parents if p.endswith(DIST)}
    if not read:
        return nodes
    by_name = {n.name: n for n in nodes}
    for name in sorted(read):
        if by_name.get(name) is not None and by_name[name].kind == "stochastic":
            continue
        reader = next(n.name for n in nodes if name + DIST in n.parents)
        if name not in by_name:
            raise GraphError(
                f"node {reader!r} reads the distribution of {name!r} ({name + DIST!r}, scg.dist_of), but the graph "
                f"has no node {name!r}; declare the stochastic node {name!r}"
            )
        raise GraphError(
            f"node {reader!r} reads the distribution of {name!r} (scg.dist_of), but {name!r} is a "
            f"{by_name[name].kind} node; only stochastic nodes have a distribution to read"
        )
    out = []
    for n in nodes:
        if n.name in read:
            source = Node(n.name + DIST, "deterministic", n.fn, n.parents)
            out += [source, dataclasses.replace(n, fn=_the_distribution, parents=(source.name,))]
        else:
            out.append(n)
    return out


def _parent_name(graph_name: str, child: str, p) -> str:
    if isinstance(p, Node):
        return p.name
    if isinstance(p, str):
        return p
    raise GraphError(
        f"node {child!r}: parent {p!r} is neither a node handle nor a node name; "
        f"pass the value returned by g.input/g.deterministic/... or its name"
    )


class Graph:
    """A stochastic computation graph under construction.

    Example:
        >>> import jax.numpy as jnp
        >>> from scg import Graph, dist
        >>> g = Graph()
        >>> theta = g.input("theta")
        >>> x = g.stochastic("x", lambda t: dist.Normal(t, 1.0), theta)
        >>> f = g.cost("f", lambda x: x**2, x)
        >>> [n.name for n in g.nodes]
        ['theta', 'x', 'f']
    """

    def __init__(self, name: str = "graph"):
        self.name = name
        self._nodes: dict[str, Node] = {}
        self._frozen = False  # a snapshot held by a compiled graph (_snapshot) takes no more nodes

    # -- declaration --------------------------------------------------------
    def input(self, name: str, *, differentiable: bool = True) -> Node:
        """An input node (Definition 3.1), set at call time.

        Gradients are taken with respect to floating-point inputs. Declare data
        that is never differentiated (observations, an environment's seed) with
        ``differentiable=False``: it is then exempt from Condition 1 and from
        the default ``wrt``.
        """
        return self._add(Node(name, "input", differentiable=differentiable))

    def deterministic(self, name: str, fn: Callable, *parents, differentiable: bool = True) -> Node:
        """A deterministic node ``fn(*parents)``.

        Set ``differentiable=False`` for a function with no usable Jacobian (a
        simulator, a step function); the compiler then checks Condition 1 (no
        input may reach it through a differentiable path).
        """
        return self._add(self._fn_node(name, "deterministic", fn, parents, differentiable=differentiable))

    def stochastic(self, name: str, fn: Callable, *parents, estimator=None, baseline=None, advantage=None) -> Node:
        """A stochastic node ``w ~ fn(*parents)``; ``fn`` returns a distribution.

        Args:
            estimator: an estimator value (``scg.estimators.score()``,
                ``scg.estimators.direct(epsilon=0.5)``, ...) or its registered name
                (``"score"``, ``"pathwise"``, ...). ``None`` (:data:`scg.estimators.DEFAULT`)
                is resolved when the compiler plans: pathwise for a reparameterisable
                distribution, else score (:func:`scg.estimators.resolve_default`).
            baseline: a node (handle or name) whose value is subtracted from
                ``Q_w`` in the score term (Theorem 2: it must not be influenced
                by this node), or a built-in such as ``scg.baselines.LeaveOneOut()``.
            advantage: how a score node inside :class:`scg.Temporal` is credited:
                ``None`` for ``Q̂_t - b_t`` (Eq. 44 with a baseline), or
                ``scg.GAE(lam)`` for generalized advantage estimation (Eq. 26; needs
                ``baseline`` to be a node estimating the cost-to-go).
        """
        if advantage is not None:
            if not isinstance(advantage, GAE):
                raise GraphError(f"node {name!r}: advantage must be None or scg.GAE(lam), got {advantage!r}")
            if baseline is None or not isinstance(baseline, (Node, str)):
                raise GraphError(
                    f"node {name!r}: advantage={advantage!r} needs baseline= a node estimating the cost-to-go "
                    f"(-V(s_t) for rewards): the TD residuals of Eq. 26 are formed from it"
                )
        if isinstance(baseline, Node):
            baseline = baseline.name
        est = _estimators.as_estimator(estimator, name, "stochastic")
        spec = StochasticSpec(est, baseline, advantage)
        return self._add(self._fn_node(name, "stochastic", fn, parents, spec=spec))

    def simulate(self, name: str, fn: Callable, *parents) -> Node:
        """A stochastic node with unknown density: ``fn(key, *parents)`` returns a sample.

        Useful for an environment simulator. No input may deterministically
        influence it (Condition 1), since its likelihood cannot be differentiated.
        """
        return self._add(self._fn_node(name, "simulate", fn, parents, differentiable=False))

    def expectation(self, name: str, fn: Callable, dist_fn: Callable, *parents, estimator="relaxed", **options) -> Node:
        """A deterministic node ``E_{a ~ dist_fn(*parents)}[fn(*parents, a)]`` (RPG relaxed dynamics).

        Its gradient is estimated with one sampled ``a``: pathwise through
        ``parents`` and score function through ``a`` (Levy & Ermon 2018,
        Theorem 3 / Eq. 8).

        Args:
            estimator: ``"relaxed"`` (default), or an estimator value with ``expect(ctx)``.
            exact: (keyword) if True the node's value is the exact expectation over a
                finite support, the gradient still from one sample (:mod:`scg.estimators.relaxed`).
                Any other keyword is a GraphError.
        """
        unknown = sorted(set(options) - set(_EXPECTATION_OPTIONS))
        if unknown:
            raise GraphError(
                f"expectation node {name!r}: unknown option(s) {unknown}; g.expectation takes "
                f"{list(_EXPECTATION_OPTIONS)} (see scg.estimators.relaxed)"
            )
        if not callable(dist_fn):
            raise GraphError(f"expectation node {name!r}: dist_fn must be a function of the parents, got {dist_fn!r}")
        exact = options.get("exact", False)
        if not isinstance(exact, bool):
            raise GraphError(f"expectation node {name!r}: exact must be True or False, got {exact!r}")
        spec = ExpectationSpec(dist_fn, _estimators.as_estimator(estimator, name, "expectation"), exact)
        return self._add(self._fn_node(name, "expectation", fn, parents, spec=spec))

    def cost(self, name: str, fn: Callable, *parents, reduce: str | None = None) -> Node:
        """A cost node ``fn(*parents)``; it must be a scalar, or ``reduce`` it (``"sum"`` or ``"mean"``)."""
        if reduce not in (None, "sum", "mean"):
            raise GraphError(f"cost {name!r}: reduce must be None, 'sum' or 'mean', got {reduce!r}")
        return self._add(self._fn_node(name, "cost", fn, parents, spec=CostSpec(reduce)))

    def log_prob_cost(self, name: str, node, *, scale: float = 1.0) -> Node:
        """A cost ``scale · log q(ẑ)``: the log-density of stochastic node ``node`` at its own draw, summed over
        its elements, without the mean-zero term ``scale · ∇_φ log q(z; φ)`` at fixed ``z``.

        The ELBO's ``E_q[log q(z; φ)]`` (a cost ``log q(ẑ) - log p(x, ẑ)``, to minimise) written as
        ``g.cost(name, lambda d, z: jnp.sum(d.log_prob(z)), scg.dist_of(z), z)`` is differentiated
        through both of its arguments. The gradient through the distribution's parameters at a fixed
        draw, the score of ``q``, has expectation zero, ``E_{z~q}[∇_φ log q(z; φ)] = ∇_φ ∫ q = 0``, so it
        adds only variance. This cost holds ``q``'s parameters constant (``stop_gradient``) and keeps the
        rest: for a reparameterised ``z`` the path through ``ẑ = g(φ, ε)``, Roeder, Wu & Duvenaud's
        "sticking the landing" estimator (2017, §2), whose variance vanishes where ``q`` is the exact
        posterior; for a score-function ``z`` the cost's value in ``Q̂`` (where NumPyro's
        ``TraceGraph_ELBO`` stops the gradient of a non-reparameterised guide site's ``log q`` too).
        The expected cost and its gradient are unchanged: still unbiased (given unbiased estimators), with
        ``ẑ`` drawn from ``q`` at the current parameters; a value recorded through ``observed=`` must
        be such a draw. Upstream nodes that ``q``'s parameters read are conditioned on, so the term
        is dropped through them too, still with mean zero.

        A method rather than an option of :meth:`cost`: which term to drop is known only for the
        density of the node's own draw, so the node declares that, not a function. It reads
        ``node``'s distribution through :func:`dist_of` (computed once, shared with ``node``'s draw).
        The dropped term is not mean-zero in second derivatives: ``mode="dice"`` (and so ``hvp``)
        refuses the graph, naming this cost.

        Args:
            name: the cost node's name.
            node: a stochastic node (handle or name) whose distribution has ``log_prob``; it must be a
                pytree (every :mod:`scg.dist` distribution and NumPyro's are) for ``stop_gradient``.
            scale: a constant factor: ``1`` for the ELBO's ``+log q`` (minimised), ``β`` for a weighted
                KL, ``-β`` for an entropy bonus ``-β H[q]`` written as a cost.

        Example:
            >>> import jax, jax.numpy as jnp, scg
            >>> from scg import dist
            >>> g = scg.Graph("elbo")
            >>> mu = g.input("mu")
            >>> z = g.stochastic("z", lambda m: dist.Normal(m, 1.0), mu)
            >>> _ = g.log_prob_cost("log_q", z)
            >>> _ = g.cost("log_p", lambda z: 0.5 * z**2, z)  # -log N(z; 0, 1) up to a constant
            >>> grad = scg.compile(g).grad({"mu": 0.0}, jax.random.key(0), num_samples=4)["mu"]
        """
        target = node.name if isinstance(node, Node) else node
        if not isinstance(target, str):
            raise GraphError(f"log_prob_cost {name!r}: node must be a stochastic node's handle or name, got {node!r}")
        if isinstance(node, Node) and node.kind != "stochastic":
            raise GraphError(
                f"log_prob_cost {name!r}: {target!r} is a {node.kind} node; only a stochastic node has the "
                f"density of its draw (declare it with g.stochastic)"
            )
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not abs(float(scale)) < float("inf"):
            raise GraphError(f"log_prob_cost {name!r}: scale must be a finite Python number, got {scale!r}")
        fn = _log_density(target, float(scale))
        spec = CostSpec(None, log_prob_of=target)
        return self._add(self._fn_node(name, "cost", fn, (dist_of(target), target), spec=spec))

    def loss(self, name: str, fn: Callable, *parents, target: str | None = None) -> Node:
        """A scalar loss ``fn(*parents)`` added to the surrogate but not to the expected cost.

        Its gradient is taken pathwise only and no score-function term is
        credited with it: use it for an auxiliary regression, such as fitting
        a critic inside the same graph (A2C). With ``target="return"`` (temporal
        graphs only), ``fn`` gets one more argument: the discounted,
        bootstrapped cost-to-go ``G_t`` of its step (:mod:`scg.returns`), as a
        constant. No node may depend on a loss.
        """
        if target not in (None, "return"):
            raise GraphError(f"loss {name!r}: target must be None or 'return', got {target!r}")
        return self._add(self._fn_node(name, "loss", fn, parents, spec=LossSpec(target)))

    # -- access -------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        """The nodes the compiler sees: as declared, plus a ``"w.dist"`` node per distribution read by
        :func:`dist_of` (:func:`with_distribution_nodes`)."""
        return with_distribution_nodes(list(self._nodes.values()))

    def __getitem__(self, name: str) -> Node:
        found = {n.name: n for n in self.nodes}.get(name)
        if found is None:
            raise GraphError(f"no node named {name!r} in graph {self.name!r}; nodes: {[n.name for n in self.nodes]}")
        return found

    def __contains__(self, name: str) -> bool:
        return name in self._nodes or (name.endswith(DIST) and any(n.name == name for n in self.nodes))

    def __len__(self) -> int:
        return len(self.nodes)

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self)} nodes)"

    def _repr_svg_(self) -> str:
        """Jupyter's picture: :func:`scg.render.to_svg` (estimators resolved) once ``scg`` is imported."""
        if resolved_svg is not None:
            return resolved_svg(self)
        return _draw.svg(self.name, _draw.describe(self.nodes))  # as declared

    # -- internals ----------------------------------------------------------
    def _fn_node(self, name, kind, fn, parents, **kw) -> Node:
        if not callable(fn):
            raise GraphError(f"node {name!r}: expected a function of its parents, got {type(fn).__name__}")
        names = tuple(_parent_name(self.name, name, p) for p in parents)
        spec = kw.get("spec")
        check_arity(name, kind, fn, call_arguments(kind, spec, names))
        if kind == "expectation":
            check_arity(name, kind, spec.dist_fn, names, role="dist_fn")
        return Node(name, kind, fn, names, **kw)

    def _snapshot(self) -> "Graph":
        """A frozen copy of the graph as declared now: what :func:`scg.compile` keeps, so that declaring more
        nodes on this graph later changes nothing already compiled. Nodes are immutable, so they are shared."""
        if self._frozen:
            return self
        copy = Graph(self.name)
        copy._nodes = dict(self._nodes)
        copy._frozen = True
        return copy

    def _with_estimators(self, estimators: dict) -> "Graph":
        """A frozen copy whose nodes named in ``estimators`` take those estimators (the planner's resolved
        defaults). Copied from the nodes as declared, so the ``"w.dist"`` nodes of :func:`dist_of` are
        derived again by :attr:`nodes`, not re-added under names that are not identifiers."""
        copy = Graph(self.name)
        copy._nodes = {n: node.with_estimator(estimators[n]) if n in estimators else node for n, node in self._nodes.items()}
        copy._frozen = True
        return copy

    def _add(self, node: Node) -> Node:
        if self._frozen:
            raise GraphError(
                f"graph {self.name!r} is the snapshot a compiled graph holds and takes no new nodes (here "
                f"{node.name!r}); declare it on the graph you compiled and call scg.compile again"
            )
        if not isinstance(node.name, str) or not node.name.isidentifier():
            raise GraphError(f"node name {node.name!r} must be a Python identifier (it keys dicts and traces)")
        if node.name in self._nodes:
            raise GraphError(f"duplicate node name {node.name!r}: every node needs a unique name")
        self._nodes[node.name] = node
        return node


def call_arguments(kind: str, spec, parents: tuple[str, ...]) -> tuple[str, ...]:
    """What a node's function is called with, in order, named for messages: the parents, plus the key of a
    ``simulate`` node (first), the draw ``a`` of an expectation and the cost to go of a ``target="return"`` loss."""
    if kind == "simulate":
        return ("key", *parents)
    if kind == "expectation":
        return (*parents, "a")
    if kind == "loss" and spec is not None and spec.target == "return":
        return (*parents, "G_t")
    return parents


def check_arity(name: str, kind: str, fn: Callable, arguments: tuple[str, ...], *, role: str = "function") -> None:
    """Raise GraphError if ``fn`` cannot take ``len(arguments)`` positional arguments.

    Checked at declaration so that a missing or extra parent names the node rather than failing inside a
    trace. Callables whose signature cannot be read (builtins, C extensions) pass; the compiler names the
    node if calling them fails while tracing (:mod:`scg._program.forward`).
    """
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*arguments)
    except TypeError as err:
        label = getattr(fn, "__name__", type(fn).__name__)
        raise GraphError(
            f"{kind} node {name!r}: its {role} {label}{sig} cannot be called with the {len(arguments)} "
            f"positional argument(s) the node passes ({', '.join(arguments) or 'none'}): {err}. Make it take "
            f"one positional parameter per argument, in that order (or *args)"
        ) from None
