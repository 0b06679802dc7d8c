"""A data set of your own: read from .npz or .csv, its splits drawn or given, its grid defaulted,
registered for load_uci; every malformed file is one named error."""

from __future__ import annotations

import re

import numpy as np
import pytest

from comparisons.datasets.own_data import DEFAULT_SPLITS, DEFAULT_TAU_SNR, load_dataset_file
from comparisons.datasets.uci import load_uci, resolve_uci_name, uci_info


def _data(n=80, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, x @ np.arange(1, d + 1) + 0.1 * rng.normal(size=n)


def test_npz_without_splits_gets_the_standard_kind_of_splits(tmp_path):
    x, y = _data()
    path = tmp_path / "own_lin.npz"
    np.savez(path, x=x, y=y)
    assert load_dataset_file(path) == "own_lin" == resolve_uci_name("own_lin")
    info = uci_info("own_lin")
    assert info.n_splits == DEFAULT_SPLITS and info.rows == 80 and info.n_features == 3
    assert set(info.test_sizes) == {8} and set(info.train_sizes) == {72}
    np.testing.assert_allclose(np.asarray(info.tau_values) * np.var(y), DEFAULT_TAU_SNR)
    split = load_uci("own_lin", 4)
    rows = np.vstack([split.x_train, split.x_test])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, x))  # every row once, in one part
    again = load_uci("own_lin", 4)
    np.testing.assert_array_equal(again.x_test, split.x_test)  # the same split every time
    assert not np.array_equal(load_uci("own_lin", 5).x_test, split.x_test)


def test_given_splits_and_grid_are_kept(tmp_path):
    x, y = _data(30)
    path = tmp_path / "own_given.npz"
    np.savez(path, x=x, y=y, train_0=np.arange(20), test_0=np.arange(20, 30),
             train_1=np.arange(10, 30), test_1=np.arange(10), dropout_rates=[0.1],
             tau_values=[1.0, 2.0])
    load_dataset_file(path)
    info = uci_info("own_given")
    assert info.n_splits == 2 and info.dropout_rates == (0.1,) and info.tau_values == (1.0, 2.0)
    np.testing.assert_array_equal(load_uci("own_given", 1).x_test, x[:10])


def test_csv_reads_the_last_column_as_the_target(tmp_path):
    x, y = _data(40, 2)
    path = tmp_path / "own_csv.csv"
    lines = ["u,v,target"] + [f"{float(a)!r},{float(b)!r},{float(t)!r}"
                              for (a, b), t in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    load_dataset_file(path)
    split = load_uci("own_csv", 0)
    both = np.vstack([np.hstack([split.x_train, split.y_train]),
                      np.hstack([split.x_test, split.y_test])])
    assert sorted(map(tuple, both)) == sorted(map(tuple, np.hstack([x, y[:, None]])))


@pytest.mark.parametrize("write, match", [
    (lambda p: np.savez(p, x=np.zeros((20, 2))), r"lacks the array\(s\) \['y'\]"),
    (lambda p: np.savez(p, x=np.zeros(20), y=np.zeros(20)), "x must be N x D"),
    (lambda p: np.savez(p, x=np.zeros((20, 2)), y=np.zeros(19)), "one target per row"),
    (lambda p: np.savez(p, x=np.zeros((5, 2)), y=np.arange(5.0)), "at least 10 rows"),
    (lambda p: np.savez(p, x=np.full((20, 2), np.nan), y=np.arange(20.0)), "x holds NaN"),
    (lambda p: np.savez(p, x=np.zeros((20, 2)), y=np.ones(20)), "y is constant"),
    (lambda p: np.savez(p, x=np.zeros((20, 2)), y=np.arange(20.0), train_0=np.arange(10)),
     "has train_0 but no test_0"),
    (lambda p: np.savez(p, x=np.zeros((20, 2)), y=np.arange(20.0), train_0=np.arange(12),
                        test_0=np.arange(10, 20)), "train_0 and test_0 share rows"),
    (lambda p: np.savez(p, x=np.zeros((20, 2)), y=np.arange(20.0), train_0=np.arange(10),
                        test_0=np.arange(10, 21)), r"distinct row indices in 0..19"),
    (lambda p: np.savez(p, x=np.zeros((20, 2)), y=np.arange(20.0), dropout_rates=[1.5]),
     r"dropout_rates must be a non-empty list of numbers in \(0.0, 1.0\)"),
    (lambda p: p.write_bytes(b"not a zip"), "is not a readable .npz"),
])
def test_a_malformed_npz_is_named(tmp_path, write, match):
    path = tmp_path / "own_bad.npz"
    write(path)
    with pytest.raises(ValueError, match=re.escape(f"data file {path}: ") + ".*" + match):
        load_dataset_file(path)


@pytest.mark.parametrize("text, match", [
    ("a,b\n1,2,3\n", "line 2 has 3 fields, the header 2"),
    ("a,b\n1,x\n", "line 2 holds a value that is not a number"),
    ("a\n1\n2\n", "needs at least one input column and the target"),
    ("a,b\n", "expected a header line and numeric rows"),
])
def test_a_malformed_csv_is_named(tmp_path, text, match):
    path = tmp_path / "own_badcsv.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_dataset_file(path)


def test_names_that_are_taken_or_invalid(tmp_path):
    x, y = _data()
    np.savez(tmp_path / "yacht.npz", x=x, y=y)
    with pytest.raises(ValueError, match="'yacht' is a standard UCI data set"):
        load_dataset_file(tmp_path / "yacht.npz")
    np.savez(tmp_path / "own_twice.npz", x=x, y=y)
    load_dataset_file(tmp_path / "own_twice.npz")
    load_dataset_file(tmp_path / "own_twice.npz")  # the same data again: fine
    np.savez(tmp_path / "own_twice.npz", x=x, y=y + 1)  # the same file, new contents: replaced
    load_dataset_file(tmp_path / "own_twice.npz")
    np.testing.assert_allclose(np.vstack([load_uci("own_twice", 0).y_train,
                                          load_uci("own_twice", 0).y_test]).sum(),
                               (y + 1).sum())
    (tmp_path / "elsewhere").mkdir()
    np.savez(tmp_path / "elsewhere" / "own_twice.npz", x=x, y=y)
    with pytest.raises(ValueError, match="'own_twice' is already registered from another file"):
        load_dataset_file(tmp_path / "elsewhere" / "own_twice.npz")
    with pytest.raises(ValueError, match="its name '9lives' must start with a letter"):
        load_dataset_file(tmp_path / "own_twice.npz", name="9lives")
    with pytest.raises(ValueError, match="expected a .npz or .csv file"):
        load_dataset_file(tmp_path / "data.txt")
