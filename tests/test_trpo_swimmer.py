"""The Swimmer bench's figure (``bench/trpo_swimmer.py``) from results written by hand: no MuJoCo, no training.
Several seeds are drawn as their mean with a band of ± one standard error, over the iterations all of them reached.
Budget: < 5 s."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import trpo_swimmer as bench  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def run(seed, returns):
    return {"seed": seed, "rows": [{"iteration": i + 1, "env_steps": 50_000 * (i + 1), "batch_return": r}
                                   for i, r in enumerate(returns)]}


def test_curves_of_seeds_that_reached_different_iterations():
    runs = [run(0, [0.0, 10.0, 20.0]), run(1, [2.0, 14.0]), run(2, [4.0, 30.0, 40.0, 50.0])]
    x, returns = bench.curves(runs)
    assert x.tolist() == [50_000.0, 100_000.0]  # the two iterations every seed reached
    np.testing.assert_array_equal(returns, [[0.0, 2.0, 4.0], [10.0, 14.0, 30.0]])
    with pytest.raises(ValueError, match=r"seed\(s\) \[1\] have no iteration"):
        bench.curves([run(0, [1.0]), run(1, [])])


def test_one_seed_result_is_one_run():
    old = {"seed": 3, "rows": run(3, [1.0, 2.0])["rows"], "final_return": 2.0}
    assert bench.seed_runs(old) == [run(3, [1.0, 2.0])]


def test_replot_draws_the_band_of_several_seeds(tmp_path):
    out = tmp_path / "trpo_swimmer.json"
    out.write_text(json.dumps({"runs": [run(0, [0.0, 10.0, 20.0]), run(1, [2.0, 14.0, 26.0]), run(2, [4.0, 30.0, 29.0])]}))
    assert bench.main(["--replot", "--out", str(out)]) == 0
    assert out.with_suffix(".png").read_bytes()[:8] == PNG
