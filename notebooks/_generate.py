"""What the ``make_0N.py`` scripts share: a list of ``("md" | "code", source)`` cells built into a notebook.

``write`` saves the sources alone; ``regenerate.py`` builds every notebook, runs it and saves it with its
outputs (what is committed, so a notebook reads on a code host without running it). Cell ids are
numbered, so regenerating changes only what changed.
"""
import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def build(cells) -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                "language_info": {"name": "python"}})
    nb.cells = [new_markdown_cell(src, id=f"cell-{i:02d}") if kind == "md" else new_code_cell(src, id=f"cell-{i:02d}")
                for i, (kind, src) in enumerate(cells)]
    return nb


def write(cells, name: str) -> pathlib.Path:
    """Write ``cells`` (sources, no outputs) to ``notebooks/<name>`` and say so."""
    path = pathlib.Path(__file__).resolve().parent / name
    nbformat.write(build(cells), path)
    print(f"wrote {path}")
    return path
