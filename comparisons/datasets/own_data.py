r"""A regression data set of your own, run through the UCI protocol like the nine standard ones.

:func:`load_dataset_file` reads a ``.npz`` or ``.csv`` file and registers it under a name:
after that, :func:`~comparisons.datasets.uci.load_uci`, :func:`~comparisons.datasets.uci.uci_info`
and every method of the UCI comparison take it like ``yacht``. On the command line::

    python -m comparisons uci --data-file my_data.npz --dataset my_data --splits 0-19 \
        --methods mc_dropout,gp --out runs/mine

What the file holds:

- ``.npz``: ``x`` (``N x D``) and ``y`` (``N`` or ``N x 1``), numeric and finite; optionally
  the splits as ``train_0``, ``test_0``, ``train_1``, ... (0-based row indices, each split's
  train and test disjoint), and the MC dropout grid as ``dropout_rates`` and ``tau_values``;
- ``.csv``: a header line, then numeric rows; the LAST column is the target ``y``.

Without splits, :data:`DEFAULT_SPLITS` random 90 % / 10 % train / test splits are drawn as the
standard UCI splits were (a permutation per split from ``numpy.random.default_rng(seed)``,
``seed = 0``). Without a grid, the dropout rates are the paper's (0.005, 0.01, 0.05, 0.1) and the
precisions

.. math::
    \tau \in \{2, 8, 32, 128\} / \widehat{\operatorname{Var}}(y),

a signal-to-noise range that brackets the published grids of the nine data sets
(:math:`\tau\,\widehat{\operatorname{Var}}(y)` from about 2 for wine to about 170 for yacht).
The network has 50 hidden units and the protocol's 40 base epochs. The file's SHA-256 is
recorded with the data set: ``uci`` puts it in the settings of its results folder, so a changed
file is never mixed with results of the old one.

Example:
    >>> import numpy as np, tempfile, os
    >>> rng = np.random.default_rng(0)
    >>> path = os.path.join(tempfile.mkdtemp(), "toy_line.npz")
    >>> x = rng.normal(size=(60, 2)); np.savez(path, x=x, y=x[:, 0] + 0.1 * rng.normal(size=60))
    >>> load_dataset_file(path)
    'toy_line'
    >>> from comparisons.datasets.uci import load_uci
    >>> load_uci("toy_line", 3).x_test.shape
    (6, 2)
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from pathlib import Path

import numpy as np

from comparisons.datasets.uci import register_dataset

__all__ = ["DEFAULT_DROPOUT_RATES", "DEFAULT_SPLITS", "DEFAULT_TAU_SNR", "load_dataset_file"]

#: random train / test splits drawn when the file has none (as the standard UCI splits)
DEFAULT_SPLITS = 20
#: the fraction of test rows of a drawn split
TEST_FRACTION = 0.1
#: the paper's dropout rates
DEFAULT_DROPOUT_RATES = (0.005, 0.01, 0.05, 0.1)
#: tau * Var(y) of the default precision grid
DEFAULT_TAU_SNR = (2.0, 8.0, 32.0, 128.0)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def _fail(path, why: str) -> ValueError:
    return ValueError(f"data file {path}: {why}")


def _read_csv(path: Path, blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        rows = list(csv.reader(io.StringIO(blob.decode("utf-8"))))
    except UnicodeDecodeError:
        raise _fail(path, "is not UTF-8 text") from None
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise _fail(path, "expected a header line and numeric rows, the target in the last "
                          "column")
    width = len(rows[0])
    if not rows[0][0].strip():
        raise _fail(path, "its first column has no name: a row index (pandas writes one unless "
                          "to_csv(..., index=False)); save it without the index")
    if width < 2:
        raise _fail(path, f"needs at least one input column and the target, got {width} column")
    values = []
    for k, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            raise _fail(path, f"line {k} has {len(row)} fields, the header {width}")
        try:
            values.append([float(v) for v in row])
        except ValueError:
            raise _fail(path, f"line {k} holds a value that is not a number: {row}") from None
    table = np.asarray(values, dtype=np.float64)
    return table[:, :-1], table[:, -1:]


def _read_npz(path: Path, blob: bytes) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file: named in one line
        raise _fail(path, f"is not a readable .npz ({type(exc).__name__}: {exc})") from None
    missing = [k for k in ("x", "y") if k not in arrays]
    if missing:
        raise _fail(path, f"lacks the array(s) {missing}; it holds {sorted(arrays)}")
    return arrays


def _splits(path: Path, arrays: dict, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    given = sorted(int(k[6:]) for k in arrays if re.fullmatch(r"train_\d+", k))
    if not given and not any(re.fullmatch(r"test_\d+", k) for k in arrays):
        rng = np.random.default_rng(seed)
        n_test = max(1, int(round(TEST_FRACTION * n)))
        out = []
        for _ in range(DEFAULT_SPLITS):
            perm = rng.permutation(n)
            out.append((np.sort(perm[n_test:]), np.sort(perm[:n_test])))
        return out
    if given != list(range(len(given))):
        raise _fail(path, f"the splits must be train_0 .. train_K (and test_0 .. test_K), got "
                          f"train_{given}")
    out = []
    for k in given:
        if f"test_{k}" not in arrays:
            raise _fail(path, f"has train_{k} but no test_{k}")
        train, test = (np.asarray(arrays[f"{kind}_{k}"]) for kind in ("train", "test"))
        for kind, idx in (("train", train), ("test", test)):
            if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer):
                raise _fail(path, f"{kind}_{k} must be a non-empty 1-D array of row indices, "
                                  f"got dtype {idx.dtype} shape {idx.shape}")
            if idx.min() < 0 or idx.max() >= n or len(np.unique(idx)) != idx.size:
                raise _fail(path, f"{kind}_{k} must hold distinct row indices in 0..{n - 1}")
        if np.intersect1d(train, test).size:
            raise _fail(path, f"train_{k} and test_{k} share rows")
        out.append((train.astype(np.int64), test.astype(np.int64)))
    return out


def _grid(path: Path, arrays: dict, key: str, default, low: float, high: float | None):
    if key not in arrays:
        return tuple(default)
    values = np.asarray(arrays[key], dtype=np.float64).reshape(-1)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= low) or (
            high is not None and np.any(values >= high)):
        bound = f"in ({low}, {high})" if high is not None else f"> {low}"
        raise _fail(path, f"{key} must be a non-empty list of numbers {bound}, got {values}")
    return tuple(float(v) for v in values)


def load_dataset_file(path: str | os.PathLike, *, name: str | None = None, seed: int = 0) -> str:
    """Read a regression data set of your own and register it (see the module docstring).

    Args:
        path: a ``.npz`` (``x``, ``y``, optional ``train_K`` / ``test_K``, ``dropout_rates``,
            ``tau_values``) or ``.csv`` (header; the last column is the target) file.
        name: the data set's name (default: the file's stem); letters, digits, ``_.-``, not a
            standard UCI name.
        seed: seed of the drawn splits when the file has none.

    Returns:
        The registered name.

    Raises:
        ValueError: the file is missing, of another kind, unreadable or malformed (each named
            with what is wrong), or the name is taken by another data set.
    """
    path = Path(path)
    if path.suffix.lower() not in (".npz", ".csv"):
        raise _fail(path, "expected a .npz or .csv file")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None
    name = path.stem if name is None else name
    if not isinstance(name, str) or not _NAME.match(name):
        raise _fail(path, f"its name {name!r} must start with a letter and hold only letters, "
                          "digits and _.- (64 characters at most); pass another name")
    if path.suffix.lower() == ".csv":
        x, y = _read_csv(path, blob)
        arrays: dict[str, np.ndarray] = {}
    else:
        arrays = _read_npz(path, blob)
        x, y = arrays["x"], arrays["y"]
    try:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(path, "x and y must be numeric") from None
    if x.ndim != 2 or x.shape[1] < 1:
        raise _fail(path, f"x must be N x D (D >= 1), got shape {x.shape}")
    if y.ndim == 1:
        y = y[:, None]
    if y.shape != (x.shape[0], 1):
        raise _fail(path, f"y must hold one target per row of x ({x.shape[0]}), got shape "
                          f"{y.shape}")
    if x.shape[0] < 10:
        raise _fail(path, f"needs at least 10 rows, got {x.shape[0]}")
    for label, a in (("x", x), ("y", y)):
        if not np.all(np.isfinite(a)):
            raise _fail(path, f"{label} holds NaN or infinite values")
    splits = _splits(path, arrays, x.shape[0], seed)
    var_y = float(np.var(y))
    if var_y <= 0:
        raise _fail(path, "y is constant: nothing to regress")
    rates = _grid(path, arrays, "dropout_rates", DEFAULT_DROPOUT_RATES, 0.0, 1.0)
    taus = _grid(path, arrays, "tau_values", [s / var_y for s in DEFAULT_TAU_SNR], 0.0, None)
    archive = {"data": np.hstack([x, y]), "features": np.arange(x.shape[1]),
               "target": np.array([x.shape[1]]), "n_splits": np.array(len(splits)),
               "n_hidden": np.array(50), "n_epochs": np.array(40),
               "dropout_rates": np.asarray(rates), "tau_values": np.asarray(taus)}
    for k, (train, test) in enumerate(splits):
        archive[f"train_{k}"], archive[f"test_{k}"] = train, test
    register_dataset(name, archive, sha256=hashlib.sha256(blob).hexdigest(), source=str(path))
    return name
