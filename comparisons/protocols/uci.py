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

Why one module of this size: the MC dropout protocol: grid search, selection, retraining,
scoring and its cells, one protocol reproduced as published.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from comparisons.datasets.split_specs import parse_splits, split_items  # importable from here too
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
from comparisons.protocols.registry import builtin_method
from comparisons.protocols.settings import TrainingSettings
from comparisons.runner.executors import Cell, CellError, CellGroup
from vi_dropout.infer.elbo import weight_decay
from vi_dropout.predict import mc_predict, standard_dropout_predict
from vi_dropout.summaries import regression_summary
from vi_dropout.training import TrainResult, train_batched
from vi_dropout.validation import check_positive_int

__all__ = [
    "MCDropoutUCISettings",
    "fit_mc_dropout_under_prior",
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
class MCDropoutUCISettings(TrainingSettings):
    """Settings of the protocol (all recorded with every result): the shared
    :class:`~comparisons.protocols.settings.TrainingSettings` and

    Attributes:
        validation_fraction: the share of the training split that scores the grid.
        max_grid: smoke runs: use only the first grid points.
    """

    validation_fraction: float = 0.2
    max_grid: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.max_grid is not None:
            check_positive_int(self.max_grid, "max_grid")


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


def uci_cells(datasets: list[str], splits: str, protocol: MCDropoutUCISettings) -> list[Cell]:
    """One cell per (data set, split) of :func:`uci_splits` (ranges clipped per data set)."""
    return [Cell(name, split, "mc_dropout", asdict(protocol))
            for name, chosen in uci_splits(datasets, splits).items() for split in chosen]


def hyperparameter_grid(split, protocol: MCDropoutUCISettings) -> list[tuple[float, float]]:
    """The (dropout rate, tau) pairs of a split's published grid (first ``protocol.max_grid``).

    Raises a ValueError naming the data set if the grid is empty."""
    grid = [(float(dr), float(tau)) for dr in split.dropout_rates for tau in split.tau_values]
    if not grid:
        raise ValueError(f"the hyper-parameter grid of {split.name} is empty")
    return grid[: protocol.max_grid] if protocol.max_grid else grid


def train_grid(std, grid, epochs: int, protocol: MCDropoutUCISettings, seed0: int, hidden: int):
    """Train one network per (dropout rate, tau) of ``grid`` on the standardised training rows
    of ``std`` in one :func:`~vi_dropout.training.batched.train_batched` call (seeds
    ``seed0 + e``, weight decay from ``protocol.prior_length_scale``).

    Returns ``(TrainResult, keep_probs)``."""
    res, kps = train_grids([std], [grid], epochs, protocol, [seed0], hidden)
    return res, kps[0]


def train_grids(stds, grids, epochs: int, protocol: MCDropoutUCISettings, seed0s, hidden: int):
    """:func:`train_grid` for several splits of one data set in ONE
    :func:`~vi_dropout.training.batched.train_batched` call: networks in the order split, grid
    point; split ``s``'s grid point ``e`` is seeded ``seed0s[s] + e`` and trains on ``stds[s]``
    alone: the network :func:`train_grid` trains for that split, up to float32 rounding (the
    batched products round by batch; bit for bit over short fits, tested, not over thousands of
    epochs).

    Returns ``(TrainResult of all networks, keep_probs per split)``."""
    dtype = getattr(torch, protocol.dtype)
    xs = [torch.tensor(std.x_train, dtype=dtype) for std in stds]
    ys = [torch.tensor(std.y_train, dtype=dtype) for std in stds]
    kps = [[1.0 - dr for dr, _ in grid] for grid in grids]
    regs = [weight_decay(protocol.prior_length_scale, kp, x.shape[0], tau)
            for x, grid, kps_s in zip(xs, grids, kps) for kp, (_, tau) in zip(kps_s, grid)]
    seeds = [seed0 + e for seed0, grid in zip(seed0s, grids) for e in range(len(grid))]
    if len(stds) == 1:  # one split: its data shared by its networks
        x, y = xs[0], ys[0]
    else:
        x = torch.cat([xi.expand(len(g), *xi.shape) for xi, g in zip(xs, grids)])
        y = torch.cat([yi.expand(len(g), *yi.shape) for yi, g in zip(ys, grids)])
    res = train_batched(x, y, keep_prob=[kp for k in kps for kp in k], reg=regs, seeds=seeds,
                        hidden=(hidden,), epochs=epochs, batch_size=protocol.batch_size)
    return res, kps


def network_slice(res, start: int, stop: int):
    """The networks ``start:stop`` of a batched
    :class:`~vi_dropout.training.common.TrainResult`, as a ``TrainResult`` of their own
    (contiguous copies: a strided view can change the rounding of later matrix products)."""
    sl = slice(start, stop)
    return TrainResult(weights=[w[sl].clone(memory_format=torch.contiguous_format)
                                for w in res.weights],
                       biases=[b[sl].clone(memory_format=torch.contiguous_format)
                               for b in res.biases],
                       losses=res.losses[sl].clone(), diverged_epoch=res.diverged_epoch[sl].clone())


def _scalar(value) -> float:
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


def score_networks(res, kps, grid, std, x_eval, y_eval, protocol: MCDropoutUCISettings, seed: int):
    """Per-network :class:`~vi_dropout.summaries.RegressionSummary` on ``(x_eval, y_eval)``
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


def protocol_seed(protocol: MCDropoutUCISettings, split: int) -> int:
    """The base seed of one split: ``seed * 1_000_003 + split * 1_000``.

    From it: grid network ``e`` is initialised with ``seed0 + e``, the validation MC samples
    come from ``seed0 + 1``, the final network from ``seed0 + 500`` and its test MC samples from
    ``seed0 + 501``.

    Example:
        >>> protocol_seed(MCDropoutUCISettings(seed=1), split=2)
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


def select_and_retrain(raw: UCISplit, protocol: MCDropoutUCISettings, progress: bool = False
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
        ...                          MCDropoutUCISettings(epochs_multiplier=0.05, num_samples=5, max_grid=2))
        >>> sel.best_pair[0] in (0.005, 0.01), sel.seed0
        (True, 0)
    """
    out = select_and_retrain_splits([raw], protocol, progress=progress)[0]
    if isinstance(out, str):
        raise RuntimeError(out)
    return out


def select_and_retrain_splits(raws: Sequence[UCISplit], protocol: MCDropoutUCISettings,
                              progress: bool = False) -> list:
    """:func:`select_and_retrain` for several splits of ONE data set as two batched
    computations: every split's grid in one :func:`train_grids` call, then every split's
    selected network in another, in about half the time per split on the 50-unit data sets at
    x100 (``benchmarks/profile_uci_cell.py``). Same seeds and data as alone (each network its
    own generator); the float32 rounding of a batched product depends on the batch, so over
    long training a split's numbers differ from those it gets alone (see
    :func:`mc_dropout_group_key`).

    Returns:
        Per split: its :class:`GridSelection`, or a message (``str``) saying why it failed
        (every grid point or the final training diverged); the other splits are kept.
    """
    if len({(raw.name, raw.n_epochs, raw.n_hidden) for raw in raws}) != 1:
        raise ValueError("select_and_retrain_splits needs splits of one data set, got "
                         f"{sorted({raw.name for raw in raws})}")
    grids = [hyperparameter_grid(raw, protocol) for raw in raws]
    epochs = max(1, int(round(raws[0].n_epochs * protocol.epochs_multiplier)))
    hidden = raws[0].n_hidden
    torch.manual_seed(protocol.seed)
    seed0s = [protocol_seed(protocol, raw.split) for raw in raws]
    if progress:
        print(f"[mc_dropout] grid search: {len(raws)} split(s) x {len(grids[0])} networks x "
              f"{epochs} epochs", flush=True)
    vals = [validation_split(raw, fraction=protocol.validation_fraction) for raw in raws]
    std_vals = [standardize(val) for val in vals]
    res, kps = train_grids(std_vals, grids, epochs, protocol, seed0s, hidden)
    chosen, out, start = [], [None] * len(raws), 0
    for s, (raw, grid) in enumerate(zip(raws, grids)):
        scores = score_networks(network_slice(res, start, start + len(grid)), kps[s], grid,
                                std_vals[s], std_vals[s].x_test, vals[s].y_test, protocol,
                                seed0s[s] + 1)
        start += len(grid)
        valid = [(float(sc.mean_log_likelihood), e) for e, sc in enumerate(scores)
                 if sc is not None]
        if not valid:
            out[s] = f"{raw.name} split {raw.split}: every grid point diverged (NaN loss)"
            continue
        best_ll, best = max(valid)
        diverged = [grid[e] for e, sc in enumerate(scores) if sc is None]
        chosen.append((s, grid[best], best_ll, diverged))
        if progress:
            print(f"[mc_dropout] split {raw.split}: selected dropout rate {grid[best][0]}, tau "
                  f"{grid[best][1]}; retraining on the full training split", flush=True)
    if not chosen:
        return out
    stds = [standardize(raws[s]) for s, *_ in chosen]
    final, kps_full = train_grids(stds, [[pair] for _, pair, _, _ in chosen], epochs, protocol,
                                  [seed0s[s] + 500 for s, *_ in chosen], hidden)
    for j, (s, pair, best_ll, diverged) in enumerate(chosen):
        net = network_slice(final, j, j + 1)
        if int(net.diverged_epoch[0]) >= 0:
            out[s] = (f"{raws[s].name} split {raws[s].split}: the final training diverged "
                      f"(dropout rate {pair[0]}, tau {pair[1]})")
            continue
        out[s] = GridSelection(best_pair=pair, validation_ll=best_ll, diverged=diverged,
                               standardized=stds[j], final=net, keep_prob=kps_full[j][0],
                               seed0=seed0s[s])
    return out


def mc_dropout_group_key(cell, group_splits: int = 5):
    """A :func:`~comparisons.runner.executors.run_cells` ``group_by`` key of this protocol: the
    pending ``mc_dropout`` cells of one data set and settings train together in chunks of
    ``group_splits`` consecutive splits (by split number); ``None`` for other methods, and for
    every cell when ``group_splits`` is 1 (each split alone, the default of
    ``python -m comparisons uci``).

    Grouping is OPT-IN because it changes float32 rounding: a batched product rounds a network
    differently depending on the batch it sits in, and over thousands of epochs that moves some
    splits' networks (at x100, 8 of every 20 splits changed their test LL by up to 0.06 on the
    five small sets, the means by under 0.4 SE). Same seeds and data, equally valid numbers, not
    the same bits: a folder records ``group_size`` per cell and the CLI records the setting.
    """
    if getattr(cell, "method", None) != "mc_dropout" or group_splits == 1:
        return None
    return (cell.dataset, tuple(sorted(dict(cell.config).items())), cell.split // group_splits)


def _cell_records(cell: Cell, protocol: MCDropoutUCISettings, split: UCISplit, sel: GridSelection,
                  wall: float, group_size: int) -> list[dict]:
    """The test metrics of a selected and retrained network (see :func:`run_uci_cell`)."""
    if sel.diverged:
        warnings.warn(
            f"{cell.dataset} split {cell.split}: training diverged (non-finite loss) for "
            + ", ".join(f"dropout rate {dr:g} / tau {tau:g}" for dr, tau in sel.diverged)
            + "; those grid points were stopped and skipped, the others kept",
            RuntimeWarning, stacklevel=3)
    std = sel.standardized
    test = score_networks(sel.final, [sel.keep_prob], [sel.best_pair], std, std.x_test,
                          split.y_test, protocol, sel.test_seed)[0]
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
        "group_size": float(group_size),
    }
    for k, v in metrics.items():
        if not math.isfinite(v):
            raise RuntimeError(f"{cell.dataset} split {cell.split}: metric {k} is not finite ({v})")
    return [dict(base, metric=k, value=v) for k, v in metrics.items()]


def run_uci_cell(cell: Cell | CellGroup):
    """Run the protocol on one (data set, split) cell, or on a
    :class:`~comparisons.runner.executors.CellGroup` of cells of one data set and settings
    (:func:`select_and_retrain_splits`; opt-in, see :func:`mc_dropout_group_key`).

    Metrics: ``rmse`` (MC mean), ``rmse_standard`` (weight averaging), ``test_ll`` (MC mixture),
    ``coverage_95`` (central 95% interval of the moment-matched Gaussian), ``validation_ll``,
    ``best_dropout_rate``, ``best_tau``, ``diverged_grid_points``, ``wall_time_s`` (a group's
    time divided by its size) and ``group_size``; every record also carries
    ``epochs_multiplier`` and ``num_samples``.

    Returns:
        A cell: its tidy records. A group: per cell its records or a
        :class:`~comparisons.runner.executors.CellError` naming the split that failed.

    Example:
        >>> cell = uci_cells(["yacht"], "0", MCDropoutUCISettings(epochs_multiplier=0.05, num_samples=5,
        ...                                             max_grid=1))[0]
        >>> sorted(r["metric"] for r in run_uci_cell(cell))[:2]
        ['best_dropout_rate', 'best_tau']
    """
    group = isinstance(cell, CellGroup)
    cells = list(cell.cells) if group else [cell]
    keys = {None if mc_dropout_group_key(c) is None else mc_dropout_group_key(c)[:2]
            for c in cells}  # one data set and settings (chunks of any size)
    if len(keys) != 1 or None in keys:
        raise ValueError("a group must hold mc_dropout cells of one data set and settings")
    protocol = MCDropoutUCISettings(**dict(cells[0].config))
    t0 = time.perf_counter()
    splits = [load_uci(c.dataset, c.split) for c in cells]
    sels = select_and_retrain_splits(splits, protocol)
    out: list = []
    for c, split, sel in zip(cells, splits, sels):
        if isinstance(sel, str):
            out.append(CellError(f"RuntimeError: {sel}"))
            continue
        try:
            out.append(_cell_records(c, protocol, split, sel, 0.0, len(cells)))
        except RuntimeError as exc:
            out.append(CellError(f"RuntimeError: {exc}", traceback.format_exc()))
    wall = (time.perf_counter() - t0) / len(cells)
    for entry in out:
        if not isinstance(entry, CellError):
            for r in entry:
                if r["metric"] == "wall_time_s":
                    r["value"] = wall
    if group:
        return out
    if isinstance(out[0], CellError):
        raise RuntimeError(out[0].error.removeprefix("RuntimeError: "))
    return out[0]


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
        standard_mean: standard dropout's prediction at the test inputs (weight averaging,
            :func:`~vi_dropout.predict.standard_dropout_predict`), original scale, float64,
            ``(n_test,)``.
        summary: the :class:`vi_dropout.summaries.RegressionSummary` of the test samples.
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
    standard_mean: np.ndarray
    summary: object
    diverged_grid_points: int
    wall_time_s: float

    @property
    def keep_prob(self) -> float:
        """``1 - dropout_rate``."""
        return 1.0 - self.dropout_rate


def fit_mc_dropout(raw: UCISplit, protocol: MCDropoutUCISettings, progress: bool = False) -> DropoutFit:
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
        ...                      MCDropoutUCISettings(epochs_multiplier=0.05, num_samples=20, max_grid=2))
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
        biases=bs, mean=mean, var=var,
        standard_mean=(_scalar(std.y_mean) + _scalar(std.y_std) * standard[:, 0]).numpy(),
        summary=summary,
        diverged_grid_points=len(sel.diverged), wall_time_s=time.perf_counter() - t0,
    )


def fit_mc_dropout_under_prior(raw: UCISplit, prior_length_scale: float, y_std: float,
                               progress: bool = False, **protocol_kwargs
                               ) -> tuple[DropoutFit, MCDropoutUCISettings]:
    r"""MC dropout by the protocol under a given prior :math:`\mathcal{N}(0, l_\text{eff}^{-2})`
    on the standardised scale (the prior an HMC reference or a prior-matched GP uses).

    The protocol's Keras :math:`l` and the derivation's :math:`l_\text{eff}` are related by
    :math:`l_\text{eff} = l\,p\,s_y/\sqrt 2`. The protocol has one :math:`l` for its grid
    while :math:`p` varies over it, so the grid search runs with
    :math:`l = \sqrt 2\, l_\text{eff}/s_y` (exact at :math:`p = 1`), and the selected
    (dropout rate, :math:`\tau`) is retrained with the exact
    :math:`l = \sqrt 2\, l_\text{eff}/(p\, s_y)`: the returned network has weight decay
    :math:`l^2 p/(2N\tau)` for exactly this prior (its biases keep the Keras objective's flat
    prior).

    Args:
        raw: the split on the original scale.
        prior_length_scale: :math:`l_\text{eff}` (standardised scale).
        y_std: :math:`s_y`, the training targets' standard deviation.
        progress: print the stages.
        **protocol_kwargs: other :class:`MCDropoutUCISettings` fields (epochs_multiplier, seed, ...).

    Returns:
        ``(fit, protocol)``: the retrained :class:`DropoutFit` and the protocol it used.
    """
    grid_protocol = MCDropoutUCISettings(**dict(protocol_kwargs, prior_length_scale=math.sqrt(2.0)
                                       * float(prior_length_scale) / float(y_std)))
    drop = fit_mc_dropout(raw, grid_protocol, progress=progress)
    protocol = MCDropoutUCISettings(**dict(protocol_kwargs, prior_length_scale=math.sqrt(2.0)
                                  * float(prior_length_scale) / (drop.keep_prob * float(y_std))))
    chosen = dataclasses.replace(raw, dropout_rates=(drop.dropout_rate,), tau_values=(drop.tau,))
    return fit_mc_dropout(chosen, protocol, progress=progress), protocol


# ------------------------------------------------------------------ the registry entry
def _registry_cells(datasets, splits, settings) -> list[Cell]:
    return uci_cells(list(datasets), splits, MCDropoutUCISettings(
        epochs_multiplier=settings.epochs_multiplier, num_samples=settings.num_samples,
        seed=settings.seed, max_grid=settings.max_grid))


def _registry_group_key(cell, settings):
    return mc_dropout_group_key(cell, settings.group_splits)


METHOD = builtin_method(
    "mc_dropout", _registry_cells, run_uci_cell, group_key=_registry_group_key,
    help="mc_dropout (the protocol: grid search of dropout rate and tau)")
