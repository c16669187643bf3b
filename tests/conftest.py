import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("MPLBACKEND", "Agg")


import importlib.util
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # tests/support.py


@pytest.fixture(scope="session")
def learning_bench():
    """``bench/learning.py`` as a module: the full-size learning checks the slow tests share with ``bench/``."""
    path = pathlib.Path(__file__).resolve().parents[1] / "bench" / "learning.py"
    spec = importlib.util.spec_from_file_location("bench_learning", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
