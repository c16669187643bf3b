"""Every notebook in ``notebooks/`` runs headless, top to bottom, without a cell error.

Notebooks assert their own claims (z-tests against exact gradients), so a run
that finishes is a passing check. Budget: < 60 s per notebook on 2 CPU cores.
"""
import os
import pathlib

import ipykernel.kernelspec
import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 300  # a hung cell fails the test instead of stalling CI


def _ensure_python3_kernel() -> None:
    """jupyter_client maps "python3" to this interpreter's ipykernel; install the spec if it is missing."""
    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        ipykernel.kernelspec.install(user=True)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    _ensure_python3_kernel()
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:  # name the notebook; nbclient's message has the traceback
        pytest.fail(f"{path.name}: a cell failed\n{e}", pytrace=False)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: {errors[0]['ename']}: {errors[0]['evalue']}"


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks under {ROOT / 'notebooks'}"


def _regenerate_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("regenerate", ROOT / "notebooks" / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebooks_are_their_make_scripts_run_with_outputs():
    """Each notebook is what ``notebooks/regenerate.py`` writes: its make script's cells, run, outputs kept."""
    regenerate = _regenerate_module()
    scripts = regenerate.make_scripts()
    names = {regenerate.load(s)[0] for s in scripts}
    assert names == {p.name for p in NOTEBOOKS}, "every notebook has a make_0N.py and every make_0N.py a notebook"
    for script in scripts:
        name, cells = regenerate.load(script)
        nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
        assert [c.source for c in nb.cells] == [src for _, src in cells], (
            f"{name} differs from {script.name}: run python notebooks/regenerate.py {name[:2]}")
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(c.execution_count is not None for c in code), f"{name} is committed without outputs"
        assert not [o for c in code for o in c.outputs if o.output_type == "error"], f"{name} has an error output"
