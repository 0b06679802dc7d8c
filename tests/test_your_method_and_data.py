"""Bring your own method and your own data: examples/swag_method.py (a method written outside
the package) and a CSV data set written here run through ``uci``, ``uci-table`` and
``reference-scores`` next to the built-in methods, with no edit inside the package."""

from __future__ import annotations

import numpy as np
import pandas as pd

from comparisons.cli.main import main
from tests.common import REPO

SWAG = str(REPO / "examples" / "swag_method.py")


def _csv(path, seed=1, shift=0.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(90, 3))
    y = np.sin(x[:, 0]) + 0.3 * x[:, 1] ** 2 + 0.1 * rng.normal(size=90) + shift
    rows = ["a,b,c,target"] + [",".join(f"{v:.6f}" for v in (*r, t)) for r, t in zip(x, y)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_swag_and_a_csv_data_set_through_the_whole_comparison(tmp_path, capsys):
    data = _csv(tmp_path / "bumps.csv")
    out = tmp_path / "run"
    argv = ["uci", "--data-file", str(data), "--method-file", SWAG,
            "--methods", "mc_dropout,swag", "--dataset", "bumps,yacht", "--splits", "0-1",
            "--epochs-multiplier", "0.05", "--num-samples", "10", "--max-grid", "1",
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    records = pd.read_csv(out / "records.csv")
    test_ll = records[records.metric == "test_ll"]
    assert set(zip(test_ll.dataset, test_ll.method)) == {
        (d, m) for d in ("bumps", "yacht") for m in ("mc_dropout", "swag")}
    assert len(test_ll) == 8 and np.isfinite(test_ll.value).all()
    report = (out / "report.md").read_text()
    assert "| bumps | swag |" in report and "| yacht | mc_dropout |" in report
    # the same command resumes: nothing is computed again
    capsys.readouterr()
    assert main(argv) == 0
    assert "cells: 0 done, 8 skipped" in capsys.readouterr().out
    # the table of the run: swag ranked with the built-in method
    assert main(["uci-table", "--records", str(out), "--out", str(tmp_path / "table")]) == 0
    table = (tmp_path / "table" / "report.md").read_text()
    assert "| dataset | mc_dropout | swag |" in table and "\n| swag | " in table
    # another file under the same name is not mixed with the old one's results
    _csv(data, shift=1.0)
    capsys.readouterr()
    assert main(argv) == 2
    assert "data_files" in capsys.readouterr().err


def test_swag_against_the_hmc_reference(tmp_path):
    out = tmp_path / "ref"
    assert main(["reference-scores", "--method-file", SWAG, "--methods", "swag",
                 "--reference", str(REPO / "docs" / "reference" / "hmc"), "--dataset", "yacht",
                 "--epochs-multiplier", "0.05", "--out", str(out), "--no-cache"]) == 0
    records = pd.read_csv(out / "records.csv")
    swag = records[records.method == "swag"].set_index("metric").value
    assert 0 <= swag["tv_vs_hmc"] <= 1 and np.isfinite(swag["test_ll"])
    assert set(records.method) == {"hmc", "swag"}


def test_swag_records_are_reproducible():
    """The same seed gives the same numbers (the example draws from seeded generators)."""
    from comparisons.datasets.uci import load_uci
    from comparisons.protocols.registry import RunSettings, get_method, load_method_file

    load_method_file(SWAG)
    raw = load_uci("yacht", 0)
    first = get_method("swag").split_predictive(raw, RunSettings(epochs_multiplier=0.05))
    again = get_method("swag").split_predictive(raw, RunSettings(epochs_multiplier=0.05))
    other = get_method("swag").split_predictive(raw, RunSettings(epochs_multiplier=0.05, seed=1))
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[0], other[0])


def test_an_edited_method_file_runs_again(tmp_path, capsys):
    """Fixing a method file (here: std -> var) and rerunning into the same folder recomputed
    nothing; the file's SHA-256 is in the cell ids now."""
    method = tmp_path / "scaled.py"
    body = ("import numpy as np\nfrom comparisons.protocols.registry import register_method, "
            "split_method\n\ndef fit(xt, yt, xs, s):\n    return np.zeros(len(xs)), "
            "np.full(len(xs), {var})\n\nregister_method(split_method('scaled_{k}', fit), "
            "replace=True)\n")
    method.write_text(body.format(var=0.5, k=0))
    argv = ["uci", "--method-file", str(method), "--methods", "scaled_0", "--dataset", "yacht",
            "--splits", "0", "--out", str(tmp_path / "o"), "--no-progress"]
    assert main(argv) == 0
    method2 = tmp_path / "scaled2.py"  # a new file path: the edited method, loaded afresh
    method2.write_text(body.format(var=0.25, k=0))
    capsys.readouterr()
    assert main([*argv[:2], str(method2), *argv[3:]]) == 0
    assert "1 done, 0 skipped" in capsys.readouterr().out


def test_a_pandas_index_column_is_refused(tmp_path):
    from comparisons.datasets.own_data import load_dataset_file

    path = _csv(tmp_path / "indexed.csv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([","+lines[0]] + [f"{k},{r}" for k, r in enumerate(lines[1:])])
                    + "\n")
    import pytest

    with pytest.raises(ValueError, match="its first column has no name: a row index"):
        load_dataset_file(path)
