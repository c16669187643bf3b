"""scg: a stochastic computation graph compiler for JAX (Schulman 2016, Ch. 5).

The public surface is what this module re-exports; ``scg._program`` and every
``_``-prefixed module are internal (docs/design.md, "Layers").
"""
from scg import baselines
from scg import dist
from scg import estimators
from scg import render
from scg import testing
from scg import trust_region
from scg.compiler import Batch
from scg.compiler import CompiledGraph
from scg.compiler import compile
from scg.errors import CompileTimeWarning
from scg.errors import GraphError
from scg.graph import Graph
from scg.graph import Node
from scg.graph import dist_of
from scg.returns import GAE
from scg.temporal import Temporal

from scg import graph as _graph  # noqa: E402

_graph.resolved_svg = render.to_svg  # a plain `g` in Jupyter shows the estimators the compiler will choose

__all__ = [
    "Batch",
    "CompileTimeWarning",
    "CompiledGraph",
    "GAE",
    "Graph",
    "GraphError",
    "Node",
    "Temporal",
    "baselines",
    "compile",
    "dist_of",
    "dist",
    "estimators",
    "render",
    "testing",
    "trust_region",
]
__version__ = "0.1.0"
