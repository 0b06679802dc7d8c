"""Integrity of the packaged UCI archives and the loader's contract."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from comparisons.datasets.uci import (
    UCI_ALIASES,
    UCI_DATASETS,
    UCIDataError,
    load_uci,
    resolve_uci_name,
    standardize,
    uci_info,
    validation_split,
)

# README table: rows, inputs, splits, train / test sizes of split 0.
EXPECTED = {
    "bostonHousing": (506, 13, 20, 455, 51),
    "concrete": (1030, 8, 20, 927, 103),
    "energy": (768, 8, 20, 691, 77),
    "kin8nm": (8192, 8, 20, 7373, 819),
    "naval-propulsion-plant": (11934, 16, 20, 10741, 1193),
    "power-plant": (9568, 4, 20, 8611, 957),
    "protein-tertiary-structure": (45730, 9, 5, 41157, 4573),
    "wine-quality-red": (1599, 11, 20, 1439, 160),
    "yacht": (308, 6, 20, 277, 31),
}

DATA_DIR = Path(files("comparisons.datasets.data").joinpath("uci_manifest.json")).parent


def _raw(name: str) -> dict[str, np.ndarray]:
    with np.load(DATA_DIR / f"{name}.npz") as npz:
        return {k: npz[k] for k in npz.files}


def test_nine_canonical_names():
    assert UCI_DATASETS == tuple(EXPECTED)
    assert set(UCI_ALIASES.values()) <= set(UCI_DATASETS)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_sizes_and_split_zero(name):
    rows, d, n_splits, n_train, n_test = EXPECTED[name]
    info = uci_info(name)
    assert (info.rows, info.n_features, info.n_splits) == (rows, d, n_splits)
    assert (info.train_sizes[0], info.test_sizes[0]) == (n_train, n_test)
    s = load_uci(name, 0)
    assert s.name == name and s.split == 0 and s.n_splits == n_splits
    assert s.x_train.shape == (n_train, d) and s.y_train.shape == (n_train, 1)
    assert s.x_test.shape == (n_test, d) and s.y_test.shape == (n_test, 1)
    for a in (s.x_train, s.y_train, s.x_test, s.y_test):
        assert a.dtype == np.float64 and not a.flags.writeable and np.isfinite(a).all()
    assert s.n_hidden == (100 if name.startswith("protein") else 50)
    assert s.n_epochs == (20 if name.startswith("protein") else 40)
    assert s.dropout_rates == (0.005, 0.01, 0.05, 0.1)
    assert len(s.tau_values) == 3


@pytest.mark.parametrize("name", list(EXPECTED))
def test_every_split_disjoint_and_covering(name):
    rows = EXPECTED[name][0]
    raw = _raw(name)
    info = uci_info(name)
    for k in range(info.n_splits):
        train, test = raw[f"train_{k}"].astype(np.int64), raw[f"test_{k}"].astype(np.int64)
        assert np.intersect1d(train, test).size == 0
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(rows))
        assert (train.size, test.size) == (info.train_sizes[k], info.test_sizes[k])


def test_split_rows_match_the_source_table():
    """x/y of a split are the indexed rows and columns of the stored table."""
    raw = _raw("yacht")
    s = load_uci("yacht", 7)
    train = raw["train_7"].astype(np.int64)
    np.testing.assert_array_equal(s.x_train, raw["data"][train][:, raw["features"]])
    np.testing.assert_array_equal(s.y_test[:, 0],
                                  raw["data"][raw["test_7"].astype(np.int64), raw["target"][0]])
    # first row of the original boston data.txt
    boston = _raw("bostonHousing")["data"]
    assert boston[0, 0] == 0.00632 and boston[0, -1] == 24.0


def test_manifest_hashes_match_files():
    manifest = json.loads((DATA_DIR / "uci_manifest.json").read_text())["datasets"]
    assert set(manifest) == set(UCI_DATASETS)
    total = 0
    for entry in manifest.values():
        blob = (DATA_DIR / entry["file"]).read_bytes()
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"]
        total += len(blob)
    assert total < 10_000_000


def test_aliases_and_bad_names():
    assert resolve_uci_name("boston") == "bostonHousing"
    assert resolve_uci_name("Wine") == "wine-quality-red"
    assert resolve_uci_name("naval") == "naval-propulsion-plant"
    assert resolve_uci_name("power") == "power-plant"
    assert resolve_uci_name("protein") == "protein-tertiary-structure"
    assert load_uci("wine", 1).name == "wine-quality-red"
    with pytest.raises(ValueError, match="unknown UCI data set 'mnist'.*bostonHousing.*yacht"):
        load_uci("mnist", 0)


def test_bad_splits():
    with pytest.raises(ValueError, match=r"0\.\.4"):
        load_uci("protein", 5)
    with pytest.raises(ValueError, match=r"0\.\.19"):
        load_uci("yacht", -1)
    with pytest.raises(TypeError, match="integer"):
        load_uci("yacht", 1.0)
    with pytest.raises(TypeError, match="integer"):
        load_uci("yacht", "0")
    assert load_uci("yacht", np.int64(19)).split == 19


def _copy_data(tmp_path: Path) -> Path:
    dest = tmp_path / "data"
    dest.mkdir()
    for p in DATA_DIR.iterdir():
        if p.suffix in (".npz", ".json"):
            shutil.copy(p, dest / p.name)
    return dest


def test_corrupt_file_refused(tmp_path):
    data_dir = _copy_data(tmp_path)
    target = data_dir / "yacht.npz"
    blob = bytearray(target.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    target.write_bytes(bytes(blob))
    expected = uci_info("yacht").sha256
    with pytest.raises(UCIDataError) as err:
        load_uci("yacht", 0, data_dir=data_dir)
    msg = str(err.value)
    assert "corrupt" in msg and "yacht.npz" in msg and expected in msg
    assert "build_uci_archive.py" in msg
    # the untouched copy of another data set still loads from the same folder
    assert load_uci("energy", 0, data_dir=data_dir).x_train.shape == (691, 8)


def test_missing_file_and_manifest_refused(tmp_path):
    data_dir = _copy_data(tmp_path)
    (data_dir / "concrete.npz").unlink()
    with pytest.raises(UCIDataError, match=r"missing: .*concrete\.npz.*expected SHA-256"):
        load_uci("concrete", 0, data_dir=data_dir)
    (data_dir / "uci_manifest.json").unlink()
    with pytest.raises(UCIDataError, match="manifest not found"):
        load_uci("yacht", 0, data_dir=data_dir)


def test_packaged_loader_reads_through_importlib_resources(monkeypatch):
    """The default location is files('comparisons.datasets.data'); pointing it elsewhere is honoured."""
    import comparisons.datasets.uci as mod

    calls = []
    real = mod.files

    def spy(pkg):
        calls.append(pkg)
        return real(pkg)

    monkeypatch.setattr(mod, "files", spy)
    load_uci("yacht", 0)
    assert calls == ["comparisons.datasets.data"]


def test_standardize_statistics():
    s = load_uci("bostonHousing", 2)
    z = standardize(s)
    np.testing.assert_allclose(z.x_mean, s.x_train.mean(0))
    np.testing.assert_allclose(z.x_std, s.x_train.std(0))
    np.testing.assert_allclose(z.x_train.mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.x_train.std(0), 1.0, atol=1e-12)
    assert z.y_mean == pytest.approx(float(s.y_train.mean()))
    assert z.y_std == pytest.approx(float(s.y_train.std()))
    np.testing.assert_allclose(z.y_test * z.y_std + z.y_mean, s.y_test, atol=1e-12)
    np.testing.assert_allclose(z.x_test, (s.x_test - z.x_mean) / z.x_std)
    # test rows do not enter the statistics
    assert not np.allclose(z.x_test.mean(0), 0.0, atol=1e-3)


def test_standardize_constant_column_has_unit_std():
    s = load_uci("yacht", 0)
    x_train = np.array(s.x_train)
    x_train[:, 2] = 4.0
    from dataclasses import replace

    z = standardize(replace(s, x_train=x_train))
    assert z.x_std[2] == 1.0
    np.testing.assert_array_equal(z.x_train[:, 2], 0.0)
    assert np.isfinite(z.x_test).all()


def test_validation_split_takes_the_last_20_percent():
    s = load_uci("bostonHousing", 0)
    v = validation_split(s)
    n_fit = int(0.8 * 455)
    assert v.holdout == "validation" and (v.x_train.shape[0], v.x_test.shape[0]) == (364, 91)
    np.testing.assert_array_equal(v.x_train, s.x_train[:n_fit])
    np.testing.assert_array_equal(v.x_test, s.x_train[n_fit:])
    np.testing.assert_array_equal(v.y_test, s.y_train[n_fit:])
    assert validation_split(s, 0.5).x_test.shape[0] == 455 - int(0.5 * 455)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        validation_split(s, 1.5)
    # standardising a validation split uses only the first 80%
    assert standardize(v).x_mean == pytest.approx(s.x_train[:n_fit].mean(0))


def test_archive_is_plain_npz_without_pickles():
    blob = (DATA_DIR / "energy.npz").read_bytes()
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        assert npz["data"].dtype == np.float64
        assert int(npz["n_splits"]) == 20
