r"""The Mauna Loa CO2 record (``statsmodels.datasets.co2``): weekly, gaps filled, cut into a
training part and a held-out part, standardised with the training part's statistics.

Time :math:`t` is in decimal years; with the training weeks' means and (population) standard
deviations,

.. math::
    x = \frac{t - \bar t_\text{train}}{s_{t,\text{train}}}, \qquad
    y = \frac{\text{CO}_2 - \overline{\text{CO}_2}_\text{train}}{s_{\text{CO}_2,\text{train}}}.

Example:
    >>> data = load_mauna_loa(train_fraction=0.7, extrapolation=1.0)
    >>> data.num_train, data.num_heldout
    (1599, 685)
    >>> x, y = data.xy("train")          # N x 1 standardised tensors
    >>> tuple(x.shape)
    (1599, 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from vi_dropout.validation import check_positive, check_positive_int

__all__ = ["MaunaLoaData", "load_mauna_loa"]


def _decimal_year(index: pd.DatetimeIndex) -> np.ndarray:
    start = pd.to_datetime(index.year.astype(str) + "-01-01")
    end = pd.to_datetime((index.year + 1).astype(str) + "-01-01")
    frac = (index - start) / (end - start)
    return np.asarray(index.year, dtype=float) + np.asarray(frac, dtype=float)


@dataclass(frozen=True)
class MaunaLoaData:
    r"""The weekly Mauna Loa CO2 record with its train / held-out cut and standardisation.

    Attributes:
        time: decimal years, strictly increasing, shape ``(n,)``.
        co2: CO2 concentration in ppm (gaps interpolated), ``(n,)``.
        interpolated: ``True`` where ``co2`` was missing and filled, ``(n,)``.
        num_train: the first ``num_train`` weeks are the training data.
        horizon: last time (decimal year) to predict at.
        time_mean, time_std: :math:`\bar t_\text{train}`, :math:`s_{t,\text{train}}`.
        co2_mean, co2_std: :math:`\overline{\text{CO}_2}_\text{train}`,
            :math:`s_{\text{CO}_2,\text{train}}` (ppm; population standard deviations).
        stride: every ``stride``-th week of the record was kept.

    Example:
        >>> data = load_mauna_loa()
        >>> data.num_train, data.num_heldout, round(data.train_end, 2)
        (1599, 685, 1988.86)
    """

    time: np.ndarray
    co2: np.ndarray
    interpolated: np.ndarray
    num_train: int
    horizon: float
    time_mean: float
    time_std: float
    co2_mean: float
    co2_std: float
    stride: int = 1

    @property
    def num_heldout(self) -> int:
        """Number of weeks after the cut (scored, never trained on)."""
        return len(self.time) - self.num_train

    @property
    def train_end(self) -> float:
        """Time of the last training week: the train / extrapolation boundary."""
        return float(self.time[self.num_train - 1])

    @property
    def train_span(self) -> float:
        """Length of the training period in years."""
        return float(self.time[self.num_train - 1] - self.time[0])

    def standardize_time(self, t) -> np.ndarray:
        """:math:`x = (t - \\bar t_\\text{train}) / s_{t,\\text{train}}` for any array of years."""
        return (np.asarray(t, dtype=float) - self.time_mean) / self.time_std

    def standardize_co2(self, c) -> np.ndarray:
        """:math:`y = (c - \\overline{\\text{CO}_2}) / s_{\\text{CO}_2}` for any ppm array."""
        return (np.asarray(c, dtype=float) - self.co2_mean) / self.co2_std

    def co2_from_standardized(self, y) -> np.ndarray:
        """Inverse of :meth:`standardize_co2` (ppm)."""
        return self.co2_mean + self.co2_std * np.asarray(y, dtype=float)

    def xy(self, part: str = "train", dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised ``(x, y)`` tensors of shape ``N x 1`` for ``part`` in
        ``{"train", "heldout", "all"}``."""
        sl = {"train": slice(0, self.num_train), "heldout": slice(self.num_train, None),
              "all": slice(None)}
        if part not in sl:
            raise ValueError(f"part must be one of {sorted(sl)}, got {part!r}")
        t, c = self.time[sl[part]], self.co2[sl[part]]
        x = torch.as_tensor(self.standardize_time(t), dtype=dtype).unsqueeze(-1)
        y = torch.as_tensor(self.standardize_co2(c), dtype=dtype).unsqueeze(-1)
        return x, y

    def prediction_times(self, grid_step: float = 1.0 / 12.0) -> np.ndarray:
        """Query times: every data week, then an even grid of step about ``grid_step`` years from
        the end of the record to :attr:`horizon` (inclusive); strictly increasing, ``(M,)``."""
        grid_step = check_positive(grid_step, "grid_step")
        last = float(self.time[-1])
        if self.horizon <= last:
            return self.time.copy()
        num = max(1, math.ceil((self.horizon - last) / grid_step))
        extra = np.linspace(last, self.horizon, num + 1)[1:]
        return np.concatenate([self.time, extra])


def load_mauna_loa(
    train_fraction: float = 0.7, extrapolation: float = 1.0, stride: int = 1
) -> MaunaLoaData:
    r"""Load ``statsmodels.datasets.co2`` (offline), fill its gaps, cut and standardise it.

    Missing weeks are filled by linear interpolation in time
    (``Series.interpolate(method="time")``); the record has no missing first or last week.
    After interpolation every ``stride``-th week is kept (``stride = 1``: all 2284). The first
    ``round(train_fraction * n)`` weeks are the training data; the standardisation uses their
    mean and (population) standard deviation only.

    Args:
        train_fraction: share of the weeks used for training, in (0, 1); at least 2 weeks must
            fall on each side of the cut.
        extrapolation: the prediction horizon is the last training time plus
            ``extrapolation`` times the training span (``> 0``).
        stride: keep every ``stride``-th week (``>= 1``).

    Returns:
        :class:`MaunaLoaData`.

    Example:
        >>> d = load_mauna_loa(train_fraction=0.7, extrapolation=1.0)
        >>> len(d.time), int(d.interpolated.sum()), round(d.horizon, 2)
        (2284, 59, 2019.49)
    """
    train_fraction = float(train_fraction)
    if not (0.0 < train_fraction < 1.0):
        raise ValueError(f"train_fraction must lie in (0, 1), got {train_fraction!r}")
    extrapolation = check_positive(extrapolation, "extrapolation")
    stride = check_positive_int(stride, "stride")
    from statsmodels.datasets import co2 as co2_dataset

    series = co2_dataset.load_pandas().data["co2"].astype(float)
    missing = series.isna().to_numpy()
    filled = series.interpolate(method="time", limit_direction="both")
    time_years = _decimal_year(series.index)[::stride]
    values = filled.to_numpy(dtype=float)[::stride]
    missing = missing[::stride]
    n = len(values)
    num_train = int(round(train_fraction * n))
    if num_train < 2 or n - num_train < 2:
        raise ValueError(
            f"train_fraction={train_fraction} with {n} weeks (stride {stride}) leaves "
            f"{num_train} training and {n - num_train} held-out weeks; need >= 2 of each"
        )
    t_tr, c_tr = time_years[:num_train], values[:num_train]
    span = float(t_tr[-1] - t_tr[0])
    return MaunaLoaData(
        time=time_years,
        co2=values,
        interpolated=missing,
        num_train=num_train,
        horizon=float(t_tr[-1] + extrapolation * span),
        time_mean=float(t_tr.mean()),
        time_std=float(t_tr.std()),
        co2_mean=float(c_tr.mean()),
        co2_std=float(c_tr.std()),
        stride=stride,
    )
