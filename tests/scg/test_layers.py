"""Layers import downward only: no import cycle among the modules of ``scg/``, and no upward import.

The layers of ``scg/``, bottom to top, are :data:`LAYERS`; a module imports only modules of layers below
its own, or of its own package in its layer (``scg.estimators.score`` imports ``scg.estimators.base``).

Every ``import``/``from … import`` in a module counts, wherever it stands (an import inside a function
hides a cycle from Python's loader, not from the design). ``from package import name`` counts as an
import of ``package.name`` when that is a module, else of ``package``. The folders ``algorithms/`` and
``envs/`` are the packages ``scg.algorithms`` and ``scg.envs`` (pyproject.toml's package-dir).
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
FOLDERS = {"scg": "scg", "algorithms": "scg.algorithms", "envs": "scg.envs"}


def module_files() -> dict[str, pathlib.Path]:
    modules = {}
    for folder, package in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((package, *parts))] = path
    return modules


def imports_of(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import scg.dist.x` where only scg.dist is a module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    known = set(files)
    return {name: imports_of(name, path, known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (cycle := visit(w)):
                return cycle
        state[v] = 2
        stack.pop()
        return None

    for v in sorted(graph):
        if v not in state and (cycle := visit(v)):
            return cycle
    return None


# Bottom to top. An entry names a module or a package (all its modules); a module belongs to its longest entry.
LAYERS = (
    ("scg.errors", "scg._order", "scg._program"),  # scg._program: the package's (empty) __init__
    ("scg.dist", "scg.returns", "scg._draw", "scg.gumbel"),
    ("scg.estimators", "scg.search"),  # scg.search: the top-down Gumbel search over trees (DirPG)
    ("scg.graph",),
    ("scg.temporal",),  # the declaration Temporal
    ("scg._program.analysis",),
    ("scg._program.state",),
    ("scg._program.forward",),
    ("scg._program.surrogate",),
    ("scg._program.flat",),
    ("scg._program.temporal",),
    ("scg._program.plan",),
    ("scg.compiler",),
    ("scg.render", "scg.baselines", "scg.trust_region"),
    ("scg.testing",),  # the test kit: scg.testing, .oracle, .examples, .random_graphs
    ("scg",),  # scg/__init__.py
)


def layer_of(module: str) -> tuple[int, str] | None:
    """``(rank, entry)`` of the longest :data:`LAYERS` entry that is ``module`` or a package above it."""
    found = [(len(e), rank, e) for rank, entries in enumerate(LAYERS) for e in entries
             if module == e or module.startswith(e + ".")]
    return max(found)[1:] if found else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import that does not go to a lower layer (or within its own package's layer), as text."""
    bad = []
    for m, deps in sorted(graph.items()):
        (rank, entry) = layer_of(m)
        for d in sorted(deps):
            d_rank, d_entry = layer_of(d)
            if d_rank > rank or (d_rank == rank and d_entry != entry):
                bad.append(f"{m} (layer {rank}) imports {d} (layer {d_rank})")
    return bad


def _is_core(m: str) -> bool:
    # scg/__main__.py (``python -m scg``) is the command's entry point: it sits above everything, as the command does.
    return m.startswith("scg") and not m.startswith(("scg.algorithms", "scg.envs")) and m != "scg.__main__"


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "p.py"
    pkg.write_text("def f():\n    from scg import dist\n    import scg.graph\nfrom . import errors\n")
    found = imports_of("scg.compiler", pkg, {"scg", "scg.dist", "scg.graph", "scg.errors", "scg.compiler"})
    assert found == {"scg.dist", "scg.graph", "scg.errors"}


def _core_graph() -> dict[str, set[str]]:
    return {m: {d for d in deps if _is_core(d)} for m, deps in import_graph().items() if _is_core(m)}


def test_the_real_import_graph_is_seen():
    core = _core_graph()
    assert {"scg._program.analysis", "scg.graph"} <= core["scg.compiler"]
    core["scg.graph"] = core["scg.graph"] | {"scg.render"}  # the old Graph._repr_svg_ import
    cycle = find_cycle(core)
    assert cycle is not None and {"scg.graph", "scg.render"} <= set(cycle)


def test_no_import_cycle_in_the_compiler():
    cycle = find_cycle(_core_graph())
    assert cycle is None, "import cycle among scg modules: " + " -> ".join(cycle)


def test_every_module_of_scg_has_a_layer():
    assert [m for m in _core_graph() if layer_of(m) is None] == []


def test_imports_go_down_the_layers():
    assert upward_imports(_core_graph()) == []


def test_the_layer_check_finds_an_upward_import():
    assert upward_imports({"scg.graph": {"scg.compiler"}, "scg.compiler": {"scg.graph"}}) == [
        "scg.graph (layer 3) imports scg.compiler (layer 12)"]
    assert upward_imports({"scg.estimators.score": {"scg.estimators.base", "scg.errors"}}) == []
    assert upward_imports({"scg.dist": {"scg.returns"}}) == ["scg.dist (layer 1) imports scg.returns (layer 1)"]


@pytest.mark.parametrize("layer", ["scg.algorithms", "scg.envs"])
def test_the_compiler_does_not_import_what_sits_above_it(layer):
    graph = import_graph()
    upward = {m: sorted(d for d in deps if d.startswith(layer)) for m, deps in graph.items() if _is_core(m)}
    upward = {m: d for m, d in upward.items() if d}
    assert not upward, f"scg/ imports {layer}: {upward}"


def test_environments_do_not_import_algorithms():
    graph = import_graph()
    upward = {m: sorted(d for d in deps if d.startswith("scg.algorithms")) for m, deps in graph.items()
              if m.startswith("scg.envs")}
    assert not {m: d for m, d in upward.items() if d}


def test_no_import_cycle_among_algorithms_and_envs():
    graph = import_graph()
    upper = {m: {d for d in deps if not _is_core(d)} for m, deps in graph.items() if not _is_core(m)}
    cycle = find_cycle(upper)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
