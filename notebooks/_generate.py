"""What the ``make_0N.py`` scripts share: a list of ``("md" | "code", source)`` cells written as a notebook (no outputs)."""
import pathlib

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook


def build(cells) -> nbformat.NotebookNode:
    nb = new_notebook(metadata={"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                                "language_info": {"name": "python"}})
    nb.cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
    return nb


def write(cells, name: str) -> pathlib.Path:
    """Write ``cells`` to ``notebooks/<name>`` and say so."""
    path = pathlib.Path(__file__).resolve().parent / name
    nbformat.write(build(cells), path)
    print(f"wrote {path}")
    return path
