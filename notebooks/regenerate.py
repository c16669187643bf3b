"""Rebuild every notebook from its ``make_0N.py``, run it headless and save it with its outputs.

Usage (from the repository root or anywhere)::

    python notebooks/regenerate.py              # all notebooks
    python notebooks/regenerate.py 03 05        # those whose name starts with 03 or 05

Each notebook is executed top to bottom in a fresh ``python3`` kernel with
``MPLBACKEND=Agg`` and the repository on ``PYTHONPATH`` (as the test suite runs
them, tests/test_notebooks.py), then written atomically in place, so an
interrupted run leaves every notebook either as it was or fully regenerated.
The wall time of each is printed: the budget is 60 s on an idle 2-core machine.
"""
import importlib.util
import os
import pathlib
import sys
import tempfile
import time

import nbclient
import nbformat

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # _generate

from _generate import build  # noqa: E402


def make_scripts(prefixes=()) -> list[pathlib.Path]:
    """The ``make_0N.py`` scripts (those whose notebook number starts with one of ``prefixes``, if given)."""
    scripts = sorted(HERE.glob("make_*.py"))
    return [s for s in scripts if not prefixes or s.stem.removeprefix("make_").startswith(tuple(prefixes))]


def load(script: pathlib.Path):
    """``(NAME, CELLS)`` of a make script, imported without running its ``__main__`` block."""
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NAME, module.CELLS


def execute(nb: nbformat.NotebookNode, timeout_s: int = 600) -> float:
    """Run ``nb`` in place as the test suite does; its wall time in seconds."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    client = nbclient.NotebookClient(nb, timeout=timeout_s, kernel_name="python3", allow_errors=False,
                                     resources={"metadata": {"path": str(HERE)}})
    t0 = time.perf_counter()
    client.execute()
    return time.perf_counter() - t0


def write_atomic(nb: nbformat.NotebookNode, path: pathlib.Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            nbformat.write(nb, f)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> dict:
    prefixes = sys.argv[1:] if argv is None else argv
    times = {}
    for script in make_scripts(prefixes):
        name, cells = load(script)
        nb = build(cells)
        times[name] = execute(nb)
        write_atomic(nb, HERE / name)
        print(f"{name}: ran in {times[name]:.1f} s, written with outputs")
    return times


if __name__ == "__main__":
    main()
