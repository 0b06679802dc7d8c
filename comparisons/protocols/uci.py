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
the paper's Table 1 used x10 (its code trains ``int(n_epochs * 10)`` epochs), its "10x epochs"
results and the grid-search results published with the splits x100; the default here is x10 and
every record carries the multiplier it used.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from comparisons.datasets.uci import (
    StandardizedSplit,
    UCISplit,
    load_uci,
    resolve_uci_name,
    standardize,
    uci_info,
    validation_split,
)
from comparisons.metrics.distances import interval_coverage, moment_match_samples
from comparisons.runner.executors import Cell
from vi_dropout.predict import mc_predict, regression_summary, standard_dropout_predict
from vi_dropout.training import train_batched, weight_decay
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
    "protocol_seed",
    "GridSelection",
    "select_and_retrain",
    "DropoutFit",
    "fit_mc_dropout",
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


def protocol_seed(protocol: UCIProtocol, split: int) -> int:
    """The base seed of one split: ``seed * 1_000_003 + split * 1_000``.

    From it: grid network ``e`` is initialised with ``seed0 + e``, the validation MC samples
    come from ``seed0 + 1``, the final network from ``seed0 + 500`` and its test MC samples from
    ``seed0 + 501``.

    Example:
        >>> protocol_seed(UCIProtocol(seed=1), split=2)
        1002003
    """
    return protocol.seed * 1_000_003 + split * 1_000


@dataclass(frozen=True, eq=False)
class GridSelection:
    """The protocol up to the final network: the selected grid point and the network retrained
    with it on the full training split.

    Attributes:
        best_pair: the selected ``(dropout rate, tau)`` (tau on the original scale).
        validation_ll: its validation log-likelihood.
        diverged: the grid points whose training diverged (skipped).
        standardized: the full training split, standardised.
        final: the :class:`~vi_dropout.training.batched.TrainResult` of the final network (one
            network).
        keep_prob: ``1 - best_pair[0]``.
        seed0: :func:`protocol_seed` of the split.
    """

    best_pair: tuple[float, float]
    validation_ll: float
    diverged: list[tuple[float, float]]
    standardized: StandardizedSplit
    final: object
    keep_prob: float
    seed0: int

    @property
    def test_seed(self) -> int:
        """Seed of the test MC samples, ``seed0 + 501``."""
        return self.seed0 + 501


def select_and_retrain(raw: UCISplit, protocol: UCIProtocol, progress: bool = False
                       ) -> GridSelection:
    r"""Steps 1-2 of the protocol on one split: train the grid on the 80/20 validation split,
    select the (dropout rate, tau) of the best validation log-likelihood, retrain it on the full
    training split.

    .. math::
        (p^\star, \tau^\star) = \arg\max_{(p, \tau)\in\text{grid}}
        \frac{1}{N_\text{val}}\sum_i \log \frac1T \sum_t
        \mathcal N(y_i; \tilde y_{it}, \tau^{-1})

    Seeds from :func:`protocol_seed`; ``torch.manual_seed(protocol.seed)`` is set first.

    Args:
        raw: the split on the original scale; ``raw.split`` enters the seeds.
        protocol: the protocol settings.
        progress: print the stages.

    Returns:
        :class:`GridSelection`.

    Raises:
        RuntimeError: every grid point diverged, or the final training diverged.

    Example:
        >>> sel = select_and_retrain(load_uci("yacht", 0),
        ...                          UCIProtocol(epochs_multiplier=0.05, num_samples=5, max_grid=2))
        >>> sel.best_pair[0] in (0.005, 0.01), sel.seed0
        (True, 0)
    """
    grid = hyperparameter_grid(raw, protocol)
    epochs = max(1, int(round(raw.n_epochs * protocol.epochs_multiplier)))
    torch.manual_seed(protocol.seed)
    seed0 = protocol_seed(protocol, raw.split)
    if progress:
        print(f"[mc_dropout] grid search: {len(grid)} networks x {epochs} epochs", flush=True)
    val = validation_split(raw, fraction=protocol.validation_fraction)
    std_val = standardize(val)
    res, kps = train_grid(std_val, grid, epochs, protocol, seed0, raw.n_hidden)
    scores = score_networks(res, kps, grid, std_val, std_val.x_test, val.y_test, protocol, seed0 + 1)
    valid = [(float(s.mean_log_likelihood), e) for e, s in enumerate(scores) if s is not None]
    if not valid:
        raise RuntimeError(f"{raw.name} split {raw.split}: every grid point diverged (NaN loss)")
    best_ll, best = max(valid)
    best_pair = grid[best]
    if progress:
        print(f"[mc_dropout] selected dropout rate {best_pair[0]}, tau {best_pair[1]}; "
              f"retraining on the full training split", flush=True)
    std = standardize(raw)
    final, kps_full = train_grid(std, [best_pair], epochs, protocol, seed0 + 500, raw.n_hidden)
    if int(final.diverged_epoch[0]) >= 0:
        raise RuntimeError(f"{raw.name} split {raw.split}: the final training diverged "
                           f"(dropout rate {best_pair[0]}, tau {best_pair[1]})")
    return GridSelection(best_pair=best_pair, validation_ll=best_ll,
                         diverged=[grid[e] for e, s in enumerate(scores) if s is None],
                         standardized=std, final=final, keep_prob=kps_full[0], seed0=seed0)


def run_uci_cell(cell: Cell) -> list[dict]:
    """Run the protocol on one (data set, split) cell; returns tidy records.

    Metrics: ``rmse`` (MC mean), ``rmse_standard`` (weight averaging), ``test_ll`` (MC mixture),
    ``coverage_95`` (central 95% interval of the moment-matched Gaussian), ``validation_ll``, ``best_dropout_rate``, ``best_tau``, ``diverged_grid_points``,
    ``wall_time_s``; every record also carries ``epochs_multiplier`` and ``num_samples``.

    Example:
        >>> cell = uci_cells(["yacht"], "0", UCIProtocol(epochs_multiplier=0.05, num_samples=5,
        ...                                             max_grid=1))[0]
        >>> sorted(r["metric"] for r in run_uci_cell(cell))[:2]
        ['best_dropout_rate', 'best_tau']
    """
    protocol = UCIProtocol(**dict(cell.config))
    t0 = time.perf_counter()
    split = load_uci(cell.dataset, cell.split)
    sel = select_and_retrain(split, protocol)
    if sel.diverged:
        warnings.warn(
            f"{cell.dataset} split {cell.split}: training diverged (non-finite loss) for "
            + ", ".join(f"dropout rate {dr:g} / tau {tau:g}" for dr, tau in sel.diverged)
            + "; those grid points were stopped and skipped, the others kept",
            RuntimeWarning, stacklevel=2)
    std = sel.standardized
    test = score_networks(sel.final, [sel.keep_prob], [sel.best_pair], std, std.x_test,
                          split.y_test, protocol, sel.test_seed)[0]
    wall = time.perf_counter() - t0
    base = {"dataset": cell.dataset, "method": "mc_dropout", "split": cell.split,
            "epochs_multiplier": protocol.epochs_multiplier, "num_samples": protocol.num_samples}
    metrics = {
        "rmse": float(test.rmse), "rmse_standard": float(test.rmse_standard),
        "test_ll": float(test.mean_log_likelihood),
        # the moment-matched Gaussian's central 95% interval (mean, 1/tau + MC variance)
        "coverage_95": float(interval_coverage(test.mean, test.variance, split.y_test)),
        "validation_ll": sel.validation_ll,
        "best_dropout_rate": sel.best_pair[0], "best_tau": sel.best_pair[1],
        "diverged_grid_points": float(len(sel.diverged)), "wall_time_s": wall,
    }
    for k, v in metrics.items():
        if not math.isfinite(v):
            raise RuntimeError(f"{cell.dataset} split {cell.split}: metric {k} is not finite ({v})")
    return [dict(base, metric=k, value=v) for k, v in metrics.items()]


@dataclass(frozen=True, eq=False)
class DropoutFit:
    """MC dropout trained by the UCI protocol, and its test predictions (original scale).

    Attributes:
        dropout_rate: the selected grid point's drop rate.
        tau: the selected grid point's tau (original scale).
        validation_ll: its validation log-likelihood.
        weights: the final network's weights (inverted-dropout convention, float32/64 per
            protocol).
        biases: its biases.
        mean: moment-matched predictive mean at the test inputs, original scale, float64,
            ``(n_test,)``.
        var: moment-matched predictive variance (``1/tau`` + MC variance), likewise.
        summary: the :class:`vi_dropout.predict.RegressionSummary` of the test samples.
        diverged_grid_points: grid points whose training diverged.
        wall_time_s: grid search + retraining + prediction.
    """

    dropout_rate: float
    tau: float
    validation_ll: float
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    mean: np.ndarray
    var: np.ndarray
    summary: object
    diverged_grid_points: int
    wall_time_s: float

    @property
    def keep_prob(self) -> float:
        """``1 - dropout_rate``."""
        return 1.0 - self.dropout_rate


def fit_mc_dropout(raw: UCISplit, protocol: UCIProtocol, progress: bool = False) -> DropoutFit:
    r"""Run the protocol on ``raw`` (as :func:`run_uci_cell`) and keep the final network and its
    test predictions.

    Same grid, seeds, training and MC sample streams as ``run_uci_cell`` (both go through
    :func:`select_and_retrain`), so ``rmse``, ``rmse_standard`` and ``test_ll`` are identical
    (the tests check this). The test predictive is moment-matched:
    :math:`\mu = \overline{\tilde y_t}`, :math:`\sigma^2 = 1/\tau + \widehat{\operatorname{Var}}
    (\tilde y_t)` (:func:`comparisons.metrics.distances.moment_match_samples`).

    Args:
        raw: a split on the original scale (``load_uci(...)`` or ``load_toy1d(...).source``);
            ``raw.split`` enters the seeds.
        protocol: the protocol settings.
        progress: print the stages.

    Returns:
        :class:`DropoutFit`.

    Example:
        >>> fit = fit_mc_dropout(load_uci("yacht", 0),
        ...                      UCIProtocol(epochs_multiplier=0.05, num_samples=20, max_grid=2))
        >>> fit.mean.shape, fit.var.shape, fit.dropout_rate in (0.005, 0.01)
        ((31,), (31,), True)
    """
    t0 = time.perf_counter()
    sel = select_and_retrain(raw, protocol, progress=progress)
    std, tau = sel.standardized, sel.best_pair[1]
    # The test samples: exactly the stream of score_networks for one network.
    dtype = getattr(torch, protocol.dtype)
    ws = [w[0] for w in sel.final.weights]
    bs = [b[0] for b in sel.final.biases]
    x = torch.tensor(std.x_test, dtype=dtype)
    gen = torch.Generator().manual_seed(sel.test_seed)
    samples = mc_predict(x, ws, bs, sel.keep_prob, protocol.num_samples, inverted=True,
                         generator=gen).double()
    standard = standard_dropout_predict(x, ws, bs, sel.keep_prob, inverted=True).double()
    y_test = torch.tensor(raw.y_test, dtype=torch.float64)
    summary = regression_summary(samples, y_test, tau, std.y_mean, std.y_std, standard)
    mean, var = moment_match_samples(samples[..., 0], noise_var=1.0 / tau,
                                     y_mean=std.y_mean, y_std=std.y_std)
    return DropoutFit(
        dropout_rate=sel.best_pair[0], tau=tau, validation_ll=sel.validation_ll, weights=ws,
        biases=bs, mean=mean, var=var, summary=summary,
        diverged_grid_points=len(sel.diverged), wall_time_s=time.perf_counter() - t0,
    )
