r"""The settings of the Mauna Loa CO2 extrapolation (:mod:`comparisons.experiments.mauna_loa`):
:class:`MaunaLoaSettings` and the paper-size :data:`PAPER_LIKE_SETTINGS`.

Light (NumPy only, no torch or GPyTorch), so that ``python -m comparisons mauna-loa --help``
takes its defaults from here without loading the experiment; the experiment module re-exports
both names.

Example:
    >>> MaunaLoaSettings(iterations=20, hidden_layers=1, hidden_units=16).hidden
    (16,)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from comparisons.training.stopping import StoppingRule
from vi_dropout.validation import check_keep_prob, check_positive, check_positive_int

__all__ = ["NET_DTYPES", "MaunaLoaSettings", "PAPER_LIKE_SETTINGS"]

#: the networks' dtypes (:attr:`MaunaLoaSettings.net_dtype`)
NET_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class MaunaLoaSettings:
    r"""Settings of :func:`~comparisons.experiments.mauna_loa.run` (validated on construction):
    the networks (panels a, c, d), the GPs (panels b, e), the data and the outputs.

    Attributes:
        iterations: minibatch steps per network, the step budget when a stopping rule is set
            (``>= 1``; small default, see :data:`PAPER_LIKE_SETTINGS`).
        num_samples: ``T``, MC dropout function draws (``>= 1``; see
            :func:`vi_dropout.predict.mc_predict`, ``shared_masks=True``).
        hidden_layers, hidden_units: depth and width (the paper: 4 and 1024).
        keep_prob: probability that a hidden unit is KEPT, in (0, 1] (``nn.Dropout``'s
            ``p`` would be ``1 - keep_prob``).
        input_keep_prob: keep probability of the 1-D time input (default 1: not dropped).
        batch_size, lr: minibatch size and Adam learning rate.
        tau: model precision :math:`\tau` on the standardised scale (adds :math:`1/\tau` to the
            MC predictive variance and sets :math:`\lambda` together with ``prior_length_scale``).
        prior_length_scale: :math:`l` in :math:`\lambda = l^2\,\text{keep\_prob} / (2N\tau)`.
        net_dtype: ``"float32"`` (about 2x faster on a CPU) or ``"float64"``.
        stop_window, stop_tolerance: the
            :class:`~comparisons.training.stopping.StoppingRule`
            (``stop_window=None``: none; ``iterations`` is then the number of steps, otherwise
            the step budget).
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:N"``): where the networks are trained and their
            MC draws made (the GPs stay on the CPU). CPU and CUDA runs draw different random
            streams (see :func:`~comparisons.training.dropout_regressor.fit_dropout_regressor`).
        fused_adam: Adam's fused kernel (faster, other rounding: see
            :func:`~comparisons.training.dropout_regressor.fit_dropout_regressor`).
        gp_iterations, gp_lr: Adam steps and learning rate on the exact marginal likelihood.
        gp_stride: the GPs condition on every ``gp_stride``-th training week (the exact GP costs
            :math:`O(N^3)` per step: 800 points take ~0.15 s, 1600 points ~1.2 s on one busy
            thread).
        gp_init_noise: initial noise variance (standardised scale).
        se_init_lengthscales: the SE fit starts from the one of these lengthscales with the
            highest initial marginal likelihood (the likelihood surface has a long-lengthscale
            "trend + noise" mode and a short-lengthscale mode that also fits the seasons).
        train_fraction, extrapolation, data_stride: see
            :func:`comparisons.datasets.mauna_loa.load_mauna_loa`.
        grid_step: spacing in years of the query grid beyond the end of the record.
        seed: one seed for everything (network ``i`` uses ``seed + i``).
    """

    iterations: int = 500
    num_samples: int = 50
    hidden_layers: int = 4
    hidden_units: int = 1024
    keep_prob: float = 0.8
    input_keep_prob: float = 1.0
    batch_size: int = 128
    lr: float = 1e-3
    tau: float = 100.0
    prior_length_scale: float = 1.0
    net_dtype: str = "float32"
    stop_window: int | None = None
    stop_tolerance: float = 0.01
    device: str = "cpu"
    fused_adam: bool = False
    gp_iterations: int = 100
    gp_lr: float = 0.05
    gp_stride: int = 2
    gp_init_noise: float = 1e-2
    se_init_lengthscales: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    train_fraction: float = 0.7
    extrapolation: float = 1.0
    data_stride: int = 1
    grid_step: float = 1.0 / 12.0
    seed: int = 0

    def __post_init__(self):
        for name in ("iterations", "num_samples", "hidden_layers", "hidden_units", "batch_size",
                     "gp_iterations", "gp_stride", "data_stride"):
            check_positive_int(getattr(self, name), name)
        check_keep_prob(self.keep_prob, "keep_prob")
        check_keep_prob(self.input_keep_prob, "input_keep_prob")
        for name in ("lr", "tau", "prior_length_scale", "gp_lr", "gp_init_noise", "extrapolation",
                     "grid_step"):
            check_positive(getattr(self, name), name)
        if self.net_dtype not in NET_DTYPES:
            raise ValueError(f"net_dtype must be one of {sorted(NET_DTYPES)}, got {self.net_dtype!r}")
        if self.stop_window is not None:
            check_positive_int(self.stop_window, "stop_window")
        if not isinstance(self.fused_adam, bool):
            raise ValueError(f"fused_adam must be True or False, got {self.fused_adam!r}")
        StoppingRule(1, self.stop_tolerance)  # checks the tolerance
        dev = self.device
        if not isinstance(dev, str) or not (dev in ("cpu", "cuda") or (
                dev.startswith("cuda:") and dev[5:].isdigit())):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {dev!r}")
        lengthscales = tuple(self.se_init_lengthscales)
        if not lengthscales:
            raise ValueError("se_init_lengthscales must hold at least one lengthscale, got ()")
        for i, ls in enumerate(lengthscales):
            check_positive(ls, f"se_init_lengthscales[{i}]")
        object.__setattr__(self, "se_init_lengthscales", lengthscales)
        if not (0.0 < float(self.train_fraction) < 1.0):
            raise ValueError(f"train_fraction must lie in (0, 1), got {self.train_fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    @property
    def layer_keep_probs(self) -> tuple[float, ...]:
        """Keep probability of each weight layer's input: ``input_keep_prob`` for the first,
        ``keep_prob`` for the others (``hidden_layers + 1`` entries)."""
        return (float(self.input_keep_prob),) + (float(self.keep_prob),) * self.hidden_layers

    @property
    def hidden(self) -> tuple[int, ...]:
        """Hidden widths, ``(hidden_units,) * hidden_layers``."""
        return (int(self.hidden_units),) * int(self.hidden_layers)

    @property
    def stopping_rule(self) -> StoppingRule | None:
        """The :class:`~comparisons.training.stopping.StoppingRule` of ``stop_window``
    and ``stop_tolerance`` (or ``None``)."""
        if self.stop_window is None:
            return None
        return StoppingRule(int(self.stop_window), float(self.stop_tolerance))


#: The paper-size run: 4 x 1024 units, keep_prob 0.8, T = 1000 and 10^6 minibatch steps (our
#: order-of-magnitude reading of a long Caffe run, not the paper's exact solver settings; Adam
#: is used here), GPs on all training weeks. About 0.08 s per step on one CPU thread: ~22 h of
#: training per network, ~2 days in all.
PAPER_LIKE_SETTINGS = MaunaLoaSettings(iterations=1_000_000, num_samples=1000, gp_stride=1,
                                       gp_iterations=200)
