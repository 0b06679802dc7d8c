r"""The MC dropout UCI protocol on the standard splits (Gal & Ghahramani 2016, updated grid search).

Per split: hold out the last 20% of the training rows as validation; train one network per
(dropout rate, tau) of the published grid on the remaining 80% (all of them at once with
:func:`vi_dropout.train_batched`); score each by validation log-likelihood with ``T`` MC samples;
retrain on the full training split with the best pair; report test RMSE of the MC mean, RMSE of
standard dropout (weight averaging) and test log-likelihood, all on the original target scale.

Defaults reproduce the published Keras 2.2 code: one hidden ReLU layer (50 units, 100 for
protein), Glorot-uniform weights, zero biases, Adam (lr 1e-3, eps 1e-7), minibatches of 128,
mean squared error (no 1/2), L2 ``reg ||W||^2`` on weights only with
``reg = l^2 keep_prob / (2 N tau)``, ``l = 1e-2``, inverted dropout on the input and the hidden
layer. Epochs are the data set's base epochs (40; 20 for protein) times ``epochs_multiplier``:
the paper used x1, the grid-search results published with the splits used x100 (their text says
x10); the default here is x10 and every record carries the multiplier it used.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from comparisons.datasets.uci import (
    load_uci,
    resolve_uci_name,
    standardize,
    uci_info,
    validation_split,
)
from comparisons.runner.executors import Cell
from vi_dropout.predict import mc_predict, regression_summary, standard_dropout_predict
from vi_dropout.training.batched import train_batched, weight_decay
from vi_dropout.validation import check_positive, check_positive_int

__all__ = [
    "UCIProtocol",
    "uci_cells",
    "run_uci_cell",
    "parse_splits",
    "split_items",
    "uci_splits",
    "hyperparameter_grid",
    "train_grid",
    "score_networks",
]


@dataclass(frozen=True)
class UCIProtocol:
    """Settings of the protocol (all recorded with every result)."""

    epochs_multiplier: float = 10
    num_samples: int = 10_000
    prior_length_scale: float = 1e-2
    validation_fraction: float = 0.2
    batch_size: int = 128
    seed: int = 0
    dtype: str = "float32"
    max_grid: int | None = None  # smoke runs: use only the first grid points

    def __post_init__(self):
        check_positive(self.epochs_multiplier, "epochs_multiplier")
        check_positive_int(self.num_samples, "num_samples")
        check_positive(self.prior_length_scale, "prior_length_scale")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.max_grid is not None:
            check_positive_int(self.max_grid, "max_grid")


def split_items(spec: str) -> list[tuple[str, int, int, bool]]:
    """The parts of a split spec as ``(text, first, last, is_range)``: ``"0-4,7"`` ->
    ``[("0-4", 0, 4, True), ("7", 7, 7, False)]``. Checks the syntax only (no data set).

    Raises:
        ValueError: not of the form ``'0-19'``, ``'0,3,5'`` or ``'all'``, a negative split or an
            empty range such as ``'5-2'``, naming the part.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"splits must look like '0-19' or '0,3,5' or 'all', got {spec!r}")
    if spec.strip() == "all":
        return []
    items = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-"))
            else:
                lo = hi = int(part)
        except ValueError:
            raise ValueError(f"splits must look like '0-19' or '0,3,5' or 'all', got {spec!r}") \
                from None
        if lo < 0:
            raise ValueError(f"splits must be integers >= 0, got {part!r} in {spec!r}")
        if lo > hi:
            raise ValueError(f"split range {part!r} is empty (its start is after its end); "
                             f"write it as '{hi}-{lo}'")
        items.append((part, lo, hi, "-" in part))
    return items


def parse_splits(spec: str, n_splits: int, *, clip_ranges: bool = False) -> list[int]:
    """``"0-19"``, ``"0,3,5"`` or ``"all"`` -> split indices, checked against ``n_splits``.

    With ``clip_ranges``, a range is clipped to the data set's splits (``"0-19"`` on a data set
    with 5 splits gives 0..4); a listed split beyond them is still an error.

    Example:
        >>> parse_splits("0-19", 5, clip_ranges=True)
        [0, 1, 2, 3, 4]
    """
    if isinstance(spec, str) and spec.strip() == "all":
        return list(range(n_splits))
    out: list[int] = []
    for _, lo, hi, is_range in split_items(spec):
        out.extend(range(lo, (min(hi, n_splits - 1) if clip_ranges and is_range else hi) + 1))
    bad = [s for s in out if not 0 <= s < n_splits]
    if bad:
        raise ValueError(f"splits {bad} are out of range: this data set has splits 0..{n_splits - 1}")
    return sorted(set(out))


def uci_splits(datasets: list[str], splits: str) -> dict[str, list[int]]:
    """The splits of each data set (canonical names) for a spec shared by several data sets.

    Ranges are clipped to each data set's splits (the default ``"0-19"`` gives protein its 5); a
    listed split runs on the data sets that have it (a data set with none of the listed splits is
    left out). A part of the spec that names no split of ANY selected data set is an error.

    Example:
        >>> {k: len(v) for k, v in uci_splits(["yacht", "protein"], "0-19").items()}
        {'yacht': 20, 'protein-tertiary-structure': 5}
    """
    names = [resolve_uci_name(name) for name in datasets]
    if not names:
        raise ValueError("no data set selected")
    counts = {name: uci_info(name).n_splits for name in names}
    items = split_items(splits)
    largest = max(counts.values())
    missing = [part for part, lo, _, _ in items if lo >= largest]
    if missing:
        have = ", ".join(f"{name} 0..{n - 1}" for name, n in counts.items())
        raise ValueError(f"splits {', '.join(missing)} do not exist in any selected data set "
                         f"(available: {have})")
    out = {}
    for name, n in counts.items():
        chosen = sorted({s for _, lo, hi, _ in items for s in range(lo, min(hi, n - 1) + 1)}) \
            if items else list(range(n))
        if chosen:
            out[name] = chosen
    return out


def uci_cells(datasets: list[str], splits: str, protocol: UCIProtocol) -> list[Cell]:
    """One cell per (data set, split) of :func:`uci_splits` (ranges clipped per data set)."""
    return [Cell(name, split, "mc_dropout", asdict(protocol))
            for name, chosen in uci_splits(datasets, splits).items() for split in chosen]


def hyperparameter_grid(split, protocol: UCIProtocol) -> list[tuple[float, float]]:
    """The (dropout rate, tau) pairs of a split's published grid (first ``protocol.max_grid``).

    Raises a ValueError naming the data set if the grid is empty."""
    grid = [(float(dr), float(tau)) for dr in split.dropout_rates for tau in split.tau_values]
    if not grid:
        raise ValueError(f"the hyper-parameter grid of {split.name} is empty")
    return grid[: protocol.max_grid] if protocol.max_grid else grid


def train_grid(std, grid, epochs: int, protocol: UCIProtocol, seed0: int, hidden: int):
    """Train one network per (dropout rate, tau) of ``grid`` on the standardised training rows
    of ``std`` in one :func:`~vi_dropout.training.batched.train_batched` call (seeds
    ``seed0 + e``, weight decay from ``protocol.prior_length_scale``).

    Returns ``(TrainResult, keep_probs)``."""
    dtype = getattr(torch, protocol.dtype)
    x = torch.tensor(std.x_train, dtype=dtype)
    y = torch.tensor(std.y_train, dtype=dtype)
    n = x.shape[0]
    kps = [1.0 - dr for dr, _ in grid]
    regs = [weight_decay(protocol.prior_length_scale, kp, n, tau) for kp, (_, tau) in zip(kps, grid)]
    res = train_batched(x, y, keep_prob=kps, reg=regs, seeds=[seed0 + e for e in range(len(grid))],
                        hidden=(hidden,), epochs=epochs, batch_size=protocol.batch_size)
    return res, kps


def _scalar(value) -> float:
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def score_networks(res, kps, grid, std, x_eval, y_eval, protocol: UCIProtocol, seed: int):
    """Per-network :class:`~vi_dropout.predict.RegressionSummary` on ``(x_eval, y_eval)``
    (original target scale; ``T = protocol.num_samples`` MC samples from one generator seeded
    with ``seed``); ``None`` for a network that diverged in training."""
    dtype = getattr(torch, protocol.dtype)
    x = torch.tensor(x_eval, dtype=dtype)
    y = torch.tensor(y_eval, dtype=torch.float64)
    out = []
    gen = torch.Generator().manual_seed(seed)
    for e, ((_, tau), kp) in enumerate(zip(grid, kps)):
        ws = [w[e] for w in res.weights]
        bs = [b[e] for b in res.biases]
        if int(res.diverged_epoch[e]) >= 0:
            out.append(None)
            continue
        samples = mc_predict(x, ws, bs, kp, protocol.num_samples, inverted=True, generator=gen)
        standard = standard_dropout_predict(x, ws, bs, kp, inverted=True)
        out.append(regression_summary(samples.double(), y, tau, _scalar(std.y_mean),
                                      _scalar(std.y_std), standard.double()))
    return out


def run_uci_cell(cell: Cell) -> list[dict]:
    """Run the protocol on one (data set, split) cell; returns tidy records."""
    protocol = UCIProtocol(**dict(cell.config))
    t0 = time.perf_counter()
    split = load_uci(cell.dataset, cell.split)
    grid = hyperparameter_grid(split, protocol)
    epochs = max(1, int(round(split.n_epochs * protocol.epochs_multiplier)))
    torch.manual_seed(protocol.seed)
    seed0 = protocol.seed * 1_000_003 + cell.split * 1_000

    # 1. grid search on the 80/20 validation split
    val = validation_split(split, fraction=protocol.validation_fraction)
    std_val = standardize(val)
    res, kps = train_grid(std_val, grid, epochs, protocol, seed0, split.n_hidden)
    scores = score_networks(res, kps, grid, std_val, std_val.x_test, val.y_test, protocol, seed0 + 1)
    valid = [(float(s.mean_log_likelihood), e) for e, s in enumerate(scores) if s is not None]
    diverged = [grid[e] for e, s in enumerate(scores) if s is None]
    if not valid:
        raise RuntimeError(f"{cell.dataset} split {cell.split}: every grid point diverged (NaN loss)")
    if diverged:
        warnings.warn(
            f"{cell.dataset} split {cell.split}: training diverged (non-finite loss) for "
            + ", ".join(f"dropout rate {dr:g} / tau {tau:g}" for dr, tau in diverged)
            + "; those grid points were stopped and skipped, the others kept",
            RuntimeWarning, stacklevel=2)
    best_ll, best = max(valid)
    best_pair = grid[best]

    # 2. retrain on the full training split with the best pair; test
    std = standardize(split)
    res_full, kps_full = train_grid(std, [best_pair], epochs, protocol, seed0 + 500, split.n_hidden)
    test = score_networks(res_full, kps_full, [best_pair], std, std.x_test, split.y_test, protocol,
                   seed0 + 501)[0]
    if test is None:
        raise RuntimeError(f"{cell.dataset} split {cell.split}: the final training diverged "
                           f"(dropout rate {best_pair[0]}, tau {best_pair[1]})")
    wall = time.perf_counter() - t0
    base = {"dataset": cell.dataset, "method": "mc_dropout", "split": cell.split,
            "epochs_multiplier": protocol.epochs_multiplier, "num_samples": protocol.num_samples}
    metrics = {
        "rmse": float(test.rmse), "rmse_standard": float(test.rmse_standard),
        "test_ll": float(test.mean_log_likelihood), "validation_ll": best_ll,
        "best_dropout_rate": best_pair[0], "best_tau": best_pair[1],
        "diverged_grid_points": float(len(diverged)), "wall_time_s": wall,
    }
    for k, v in metrics.items():
        if not math.isfinite(v):
            raise RuntimeError(f"{cell.dataset} split {cell.split}: metric {k} is not finite ({v})")
    return [dict(base, metric=k, value=v) for k, v in metrics.items()]


