r"""A 1-D toy regression problem with a gap and extrapolation regions, for pictures of predictive
uncertainty (MC dropout vs GPs).

The data are noisy draws of

.. math::
    f(x) = x \sin x, \qquad y = f(x) + \varepsilon, \quad \varepsilon \sim \mathcal{N}(0, s^2),

with training inputs drawn uniformly on two intervals (default :math:`[-4, -1] \cup [0.5, 3.5]`,
so :math:`(-1, 0.5)` is a gap) and test inputs on an evenly spaced grid over a wider range
(default :math:`[-7, 7]`), so that interpolation inside the gap and extrapolation on both sides
can be seen. Inputs and targets are standardised with the training mean and population std
(as :func:`comparisons.datasets.uci.standardize` does for the UCI sets), so the same code paths
(protocol, GP fitting) run on it.

Example:
    >>> data = load_toy1d(num_train=100, seed=0)
    >>> data.x_train.shape, data.y_train.shape, data.x_test.shape
    ((100, 1), (100, 1), (281, 1))
    >>> sorted(set(data.test_region.tolist()))
    ['extrapolation', 'gap', 'train']
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from comparisons.datasets.uci import UCISplit, standardize

__all__ = [
    "TOY1D_NAME",
    "TOY1D_TRAIN_INTERVALS",
    "TOY1D_TEST_RANGE",
    "TOY1D_DROPOUT_RATES",
    "TOY1D_TAU_VALUES",
    "TOY1D_N_HIDDEN",
    "TOY1D_BASE_EPOCHS",
    "Toy1DData",
    "toy1d_function",
    "load_toy1d",
]

TOY1D_NAME = "toy1d"
TOY1D_TRAIN_INTERVALS: tuple[tuple[float, float], ...] = ((-4.0, -1.0), (0.5, 3.5))
TOY1D_TEST_RANGE: tuple[float, float] = (-7.0, 7.0)
# Grid of the MC dropout protocol on the toy (same dropout rates as the UCI sets; tau around the
# true noise precision 1 / 0.3^2 = 11.1 on the original scale).
TOY1D_DROPOUT_RATES: tuple[float, ...] = (0.005, 0.01, 0.05, 0.1)
TOY1D_TAU_VALUES: tuple[float, ...] = (2.5, 5.0, 10.0, 20.0)
TOY1D_N_HIDDEN = 50
# Base epochs (times the protocol's epochs multiplier). The toy has ~200 points, i.e. two
# minibatches per epoch, so it needs many more epochs than the UCI sets (40): x10 gives 10,000
# epochs (20,000 Adam steps), where the training loss has levelled off.
TOY1D_BASE_EPOCHS = 1000

_DTYPES = {"float32": np.float32, "float64": np.float64}


def toy1d_function(x: np.ndarray) -> np.ndarray:
    r"""The noise-free toy function :math:`f(x) = x \sin x` (elementwise, any shape)."""
    x = np.asarray(x, dtype=np.float64)
    return x * np.sin(x)


@dataclass(frozen=True, eq=False)
class Toy1DData:
    """A standardised 1-D toy split; field names follow
    :class:`comparisons.datasets.uci.StandardizedSplit`, plus what the pictures need.

    Attributes:
        x_train: standardised training inputs, ``(num_train, 1)``.
        y_train: standardised training targets, ``(num_train, 1)``.
        x_test: standardised test inputs on an increasing grid, ``(num_test, 1)``.
        y_test: standardised noisy test targets, ``(num_test, 1)``.
        x_mean, x_std: training input mean and std, ``(1,)`` each.
        y_mean, y_std: training target mean and std (floats).
        source: the raw (original-scale, float64) data as a
            :class:`~comparisons.datasets.uci.UCISplit` named ``"toy1d"`` with the toy's protocol
            grid (``dropout_rates``, ``tau_values``, ``n_hidden``, ``n_epochs``), so
            :func:`~comparisons.datasets.uci.validation_split` and
            :func:`~comparisons.datasets.uci.standardize` apply to it.
        f_test: noise-free :math:`f` at the test inputs, original scale, ``(num_test,)``.
        x_test_raw: test inputs on the original scale, ``(num_test,)``.
        test_region: per test point ``"train"`` (inside a training interval), ``"gap"``
            (between two training intervals) or ``"extrapolation"`` (outside all of them),
            ``(num_test,)`` array of str.
        train_intervals: the training intervals on the original x scale.
        train_intervals_std: the same intervals on the standardised x scale.
        train_bounds: ``(low, high)`` of the training region (outermost interval ends), original
            scale.
        noise_std: the noise standard deviation :math:`s` (original scale).
        seed: the seed the data were drawn with.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: float
    y_std: float
    source: UCISplit
    f_test: np.ndarray
    x_test_raw: np.ndarray
    test_region: np.ndarray
    train_intervals: tuple[tuple[float, float], ...]
    train_intervals_std: tuple[tuple[float, float], ...]
    train_bounds: tuple[float, float]
    noise_std: float
    seed: int

    name = TOY1D_NAME

    def region_mask(self, region: str) -> np.ndarray:
        """Boolean mask of the test points in ``region`` (``"train"``, ``"gap"``,
        ``"extrapolation"``)."""
        if region not in ("train", "gap", "extrapolation"):
            raise ValueError(
                f"region must be 'train', 'gap' or 'extrapolation', got {region!r}"
            )
        return self.test_region == region


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r} "
                         f"({type(value).__name__})")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_dtype(dtype) -> type:
    if isinstance(dtype, str):
        key = dtype
    elif str(dtype).startswith("torch."):  # torch dtypes print as "torch.float64"
        key = str(dtype).removeprefix("torch.")
    else:
        try:
            key = np.dtype(dtype).name
        except TypeError:
            key = None
    if key not in _DTYPES:
        raise ValueError(
            f"dtype must be float32 or float64 (a string, numpy or torch dtype), got {dtype!r}"
        )
    return _DTYPES[str(key)]


def _check_intervals(intervals) -> tuple[tuple[float, float], ...]:
    try:
        out = tuple((float(lo), float(hi)) for lo, hi in intervals)
    except (TypeError, ValueError):
        raise ValueError(
            f"train_intervals must be a sequence of (low, high) pairs, got {intervals!r}"
        ) from None
    if not out:
        raise ValueError("train_intervals must hold at least one (low, high) pair, got none")
    for lo, hi in out:
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(
                f"train_intervals must be finite pairs with low < high, got {intervals!r}"
            )
    out = tuple(sorted(out))
    for (_, hi), (lo, _) in zip(out[:-1], out[1:]):
        if lo < hi:
            raise ValueError(f"train_intervals must not overlap, got {intervals!r}")
    return out


def _regions(x: np.ndarray, intervals) -> np.ndarray:
    inside = np.zeros(x.shape, dtype=bool)
    for lo, hi in intervals:
        inside |= (x >= lo) & (x <= hi)
    outside = (x < intervals[0][0]) | (x > intervals[-1][1])
    return np.where(inside, "train", np.where(outside, "extrapolation", "gap"))


def load_toy1d(
    num_train: int = 200,
    seed: int = 0,
    dtype="float64",
    *,
    noise_std: float = 0.3,
    num_test: int = 281,
    train_intervals=TOY1D_TRAIN_INTERVALS,
    test_range: tuple[float, float] = TOY1D_TEST_RANGE,
) -> Toy1DData:
    r"""Draw the 1-D toy problem :math:`y = x\sin x + \varepsilon` (see the module docstring).

    Training inputs are uniform on the union of ``train_intervals`` (each point picks an
    interval with probability proportional to its length) and are NOT sorted, so the protocol's
    validation split (the last 20% of the rows) is a random subset. Test inputs form an even grid
    over ``test_range`` with noisy targets (independent noise), so a test log-likelihood can be
    computed; ``f_test`` holds the noise-free values.

    Args:
        num_train: training points, ``>= 10``.
        seed: integer ``>= 0``; the only source of randomness (``numpy.random.default_rng``).
        dtype: ``"float32"`` / ``"float64"`` (or the numpy / torch dtype) of the standardised
            arrays; ``source`` stays float64.
        noise_std: :math:`s > 0`, noise standard deviation on the original scale.
        num_test: grid points, ``>= 2``.
        train_intervals: non-overlapping ``(low, high)`` pairs.
        test_range: ``(low, high)`` of the test grid; must contain every training interval.

    Returns:
        :class:`Toy1DData`.

    Raises:
        ValueError: an argument out of range (the message names it and shows what arrived).

    Example:
        >>> d = load_toy1d(50, seed=1)
        >>> round(float(d.x_train.mean()), 12), round(float(d.y_train.std()), 12)
        (0.0, 1.0)
        >>> d.train_bounds
        (-4.0, 3.5)
    """
    num_train = _check_int(num_train, "num_train", 10)
    seed = _check_int(seed, "seed", 0)
    num_test = _check_int(num_test, "num_test", 2)
    np_dtype = _check_dtype(dtype)
    if isinstance(noise_std, bool) or not isinstance(noise_std, numbers.Real) or not (
        np.isfinite(noise_std) and noise_std > 0
    ):
        raise ValueError(f"noise_std must be a finite number > 0, got {noise_std!r}")
    intervals = _check_intervals(train_intervals)
    try:
        t_lo, t_hi = (float(v) for v in test_range)
    except (TypeError, ValueError):
        raise ValueError(f"test_range must be a (low, high) pair, got {test_range!r}") from None
    if not (np.isfinite(t_lo) and np.isfinite(t_hi) and t_lo < t_hi):
        raise ValueError(f"test_range must be finite with low < high, got {test_range!r}")
    if t_lo > intervals[0][0] or t_hi < intervals[-1][1]:
        raise ValueError(
            f"test_range {test_range!r} must contain every training interval {intervals!r}"
        )

    rng = np.random.default_rng(seed)
    lengths = np.array([hi - lo for lo, hi in intervals])
    which = rng.choice(len(intervals), size=num_train, p=lengths / lengths.sum())
    lows = np.array([lo for lo, _ in intervals])[which]
    x = lows + lengths[which] * rng.random(num_train)
    y = toy1d_function(x) + noise_std * rng.standard_normal(num_train)
    x_test = np.linspace(t_lo, t_hi, num_test)
    f_test = toy1d_function(x_test)
    y_test = f_test + noise_std * rng.standard_normal(num_test)

    def ro(a: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a, dtype=np.float64)
        a.setflags(write=False)
        return a

    source = UCISplit(
        name=TOY1D_NAME,
        split=seed,
        x_train=ro(x[:, None]),
        y_train=ro(y[:, None]),
        x_test=ro(x_test[:, None]),
        y_test=ro(y_test[:, None]),
        n_hidden=TOY1D_N_HIDDEN,
        n_epochs=TOY1D_BASE_EPOCHS,
        dropout_rates=TOY1D_DROPOUT_RATES,
        tau_values=TOY1D_TAU_VALUES,
        n_splits=1,
    )
    std = standardize(source)
    xm, xs = float(std.x_mean[0]), float(std.x_std[0])
    return Toy1DData(
        x_train=std.x_train.astype(np_dtype),
        y_train=std.y_train.astype(np_dtype),
        x_test=std.x_test.astype(np_dtype),
        y_test=std.y_test.astype(np_dtype),
        x_mean=std.x_mean,
        x_std=std.x_std,
        y_mean=std.y_mean,
        y_std=std.y_std,
        source=source,
        f_test=ro(f_test),
        x_test_raw=ro(x_test),
        test_region=_regions(x_test, intervals),
        train_intervals=intervals,
        train_intervals_std=tuple(((lo - xm) / xs, (hi - xm) / xs) for lo, hi in intervals),
        train_bounds=(intervals[0][0], intervals[-1][1]),
        noise_std=float(noise_std),
        seed=seed,
    )
