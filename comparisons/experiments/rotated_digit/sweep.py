r"""The rotations of one test digit and what MC dropout and standard dropout say about them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from comparisons.networks.lenet import (
    LeNet,
    standard_logits,
)
from vi_dropout.predict import mc_predict
from vi_dropout.summaries import ClassificationSummary, classification_summary
from vi_dropout.validation import check_finite, check_positive_int

__all__ = ['DEFAULT_ANGLES_DEG', 'RotationSweep', 'rotate_image', 'select_digit', 'sweep_rotations', 'rotated_digit_records']


#: 12 angles in degrees, 0 to 165 in 15-degree steps.
DEFAULT_ANGLES_DEG: tuple[float, ...] = tuple(15.0 * k for k in range(12))


def _check_angles(angles_deg) -> np.ndarray:
    a = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"angles_deg must be a non-empty sequence of finite numbers (degrees), "
                         f"got {angles_deg!r}")
    return a


def rotate_image(image: torch.Tensor, angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
                 order: int = 1) -> torch.Tensor:
    """Rotate one image by each angle: ``C x H x W`` (or ``H x W``) -> ``A x C x H x W``.

    Args:
        image: the image, values in [0, 1].
        angles_deg: ``A`` angles in degrees (counter-clockwise as displayed).
        order: spline order of :func:`scipy.ndimage.rotate` (1 = bilinear).

    Returns:
        ``A x C x H x W`` rotated copies, same dtype, clipped to [0, 1], zero outside.

    Example:
        >>> img = torch.zeros(1, 5, 5); img[0, 0, 2] = 1.0   # a dot at the top
        >>> rotate_image(img, [0, 90])[1, 0, 2, 0].item()    # now on the left
        1.0
    """
    from scipy.ndimage import rotate

    check_finite(image, "image")
    if image.dim() == 2:
        image = image.unsqueeze(0)
    if image.dim() != 3:
        raise ValueError(f"image must have shape C x H x W or H x W, got {tuple(image.shape)}")
    angles = _check_angles(angles_deg)
    arr = image.detach().cpu().double().numpy()
    out = np.stack([
        np.clip(rotate(arr, float(a), axes=(2, 1), reshape=False, order=order, mode="constant",
                       cval=0.0), 0.0, 1.0)
        for a in angles
    ])
    return torch.as_tensor(out, dtype=image.dtype)


def select_digit(x: torch.Tensor, y: torch.Tensor, digit: int = 1,
                 index: int = 0) -> tuple[torch.Tensor, int]:
    """The ``index``-th image of class ``digit`` in ``(x, y)`` (e.g. the test split).

    Args:
        x: ``N x C x H x W`` images; y: ``N`` labels.
        digit: the class wanted; index: which occurrence (0 = first).

    Returns:
        ``(image C x H x W, row of x)``.

    Example:
        >>> img, row = select_digit(torch.zeros(3, 1, 8, 8), torch.tensor([0, 1, 1]), 1, index=1)
        >>> row
        2
    """
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"y must be a 1-D label tensor with one label per image of x "
                         f"({x.shape[0]}), got shape {tuple(getattr(y, 'shape', ()))}")
    rows = torch.nonzero(y == int(digit)).flatten()
    if not (isinstance(index, int) and index >= 0):
        raise ValueError(f"index must be an integer >= 0, got {index!r}")
    if index >= len(rows):
        raise ValueError(f"index must be < {len(rows)} (the number of images of digit {digit} "
                         f"in y), got {index}")
    r = int(rows[index])
    return x[r], r


@dataclass(frozen=True)
class RotationSweep:
    """Everything :func:`sweep_rotations` computed (``A`` angles, ``T`` samples, ``C`` classes).

    Attributes:
        angles_deg: ``A`` angles in degrees.
        images: ``A x 1 x H x W`` rotated images.
        mc_logits: ``T x A x C`` MC dropout softmax inputs.
        standard_logits: ``A x C`` standard dropout softmax inputs.
        summary: :class:`~vi_dropout.summaries.ClassificationSummary` of ``mc_logits``
            (``probs`` ``A x C``; entropy, MI and variation ratio ``A``).
        top_classes: classes shown in the scatter plots (highest MC-averaged probability at
            any angle first).
        digit: the true class of the image (or ``None``).
        seed: seed of the MC masks.
        dataset: name used in the tidy records.
        method_prefix: put in front of the record methods (``"pyro_"`` for the network trained
            through the per-example ELBO; empty for the plain ``nn.Dropout`` network).
    """

    angles_deg: np.ndarray
    images: torch.Tensor
    mc_logits: torch.Tensor
    standard_logits: torch.Tensor
    summary: ClassificationSummary
    top_classes: tuple[int, ...]
    digit: int | None
    seed: int
    dataset: str = "digits"
    method_prefix: str = ""

    @property
    def records(self) -> list[dict]:
        """Tidy records ``{dataset, method, split = angle, metric, value}``:
        :func:`rotated_digit_records` with ``self.dataset`` (methods prefixed with
        ``self.method_prefix``)."""
        recs = rotated_digit_records(self, self.dataset)
        if self.method_prefix:
            for r in recs:
                r["method"] = self.method_prefix + r["method"]
        return recs

    @property
    def num_samples(self) -> int:
        """``T``."""
        return int(self.mc_logits.shape[0])

    @property
    def mc_probs(self) -> torch.Tensor:
        """``T x A x C`` softmax outputs of the MC samples."""
        return torch.softmax(self.mc_logits, -1)

    @property
    def standard_probs(self) -> torch.Tensor:
        """``A x C`` standard dropout softmax."""
        return torch.softmax(self.standard_logits, -1)

    @property
    def standard_entropy(self) -> torch.Tensor:
        """``A`` entropy (nats) of the standard dropout softmax."""
        p = self.standard_probs
        return -torch.special.xlogy(p, p).sum(-1)


def sweep_rotations(
    model: LeNet,
    image: torch.Tensor,
    *,
    angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
    num_samples: int = 100,
    num_top: int = 3,
    seed: int = 0,
    digit: int | None = None,
    dataset: str = "digits",
) -> RotationSweep:
    r"""Rotate ``image`` through ``angles_deg`` and collect MC and standard dropout predictions.

    Args:
        model: trained :class:`~comparisons.networks.lenet.LeNet` (sized for ``image``).
        image: ``1 x H x W`` (or ``H x W``) image in [0, 1].
        angles_deg: ``A`` angles in degrees.
        num_samples: ``T >= 1`` MC dropout samples per angle.
        num_top: how many classes to keep for the scatter plots (``1..C``): those with the
            largest :math:`\max_a \bar{p}_{a,c}`.
        seed: seed of the generator of the dropout masks.
        digit: the image's true class (used for the ``prob_digit`` records).
        dataset: the ``dataset`` field of the tidy records.

    Returns:
        :class:`RotationSweep`; its ``records`` property gives the tidy records
        ``{dataset, method, split = angle, metric, value}``.

    Example:
        >>> net = LeNet(8, seed=0)
        >>> res = sweep_rotations(net, torch.rand(1, 8, 8), angles_deg=[0, 90], num_samples=5)
        >>> res.summary.predictive_entropy.shape
        torch.Size([2])
    """
    T = check_positive_int(num_samples, "num_samples")
    num_top = check_positive_int(num_top, "num_top")
    if num_top > model.num_classes:
        raise ValueError(f"num_top must be <= {model.num_classes} (the number of classes), "
                         f"got {num_top}")
    angles = _check_angles(angles_deg)
    images = rotate_image(image, angles)
    gen = torch.Generator().manual_seed(int(seed))
    logits = mc_predict(images, model, T=T, generator=gen)
    std = standard_logits(model, images)
    summary = classification_summary(logits)
    order = torch.argsort(summary.probs.amax(0), descending=True, stable=True)
    top = tuple(int(c) for c in order[:num_top])
    return RotationSweep(angles, images, logits, std, summary, top,
                              None if digit is None else int(digit), int(seed), str(dataset))


def rotated_digit_records(result: RotationSweep, dataset: str) -> list[dict]:
    """Tidy records ``{dataset, method, split, metric, value}`` with the angle in degrees as
    ``split``.

    ``method`` is ``"mc_dropout"`` or ``"standard_dropout"``. Metrics per angle: for both
    ``predictive_entropy`` (nats), ``predicted_class``, ``max_prob`` (probability of the predicted
    class), ``prob_digit`` (of the true class, if known) and ``prob_class_<c>`` for each top class;
    for MC dropout also ``mutual_information`` (nats) and ``variation_ratio``.

    Example:
        >>> net = LeNet(8, seed=0)
        >>> res = sweep_rotations(net, torch.rand(1, 8, 8), angles_deg=[0], num_samples=4)
        >>> sorted({r["metric"] for r in rotated_digit_records(res, "digits")})[:3]
        ['max_prob', 'mutual_information', 'predicted_class']
    """
    s = result.summary
    recs: list[dict] = []

    def add(method, a, metric, value):
        recs.append({"dataset": dataset, "method": method, "split": float(result.angles_deg[a]),
                     "metric": metric, "value": float(value)})

    per_method = {
        "mc_dropout": (s.probs, s.predictive_entropy),
        "standard_dropout": (result.standard_probs, result.standard_entropy),
    }
    for a in range(len(result.angles_deg)):
        for method, (probs, entropy) in per_method.items():
            add(method, a, "predictive_entropy", entropy[a])
            if method == "mc_dropout":
                add(method, a, "mutual_information", s.mutual_information[a])
                add(method, a, "variation_ratio", s.variation_ratio[a])
            add(method, a, "predicted_class", int(probs[a].argmax()))
            add(method, a, "max_prob", probs[a].max())
            if result.digit is not None:
                add(method, a, "prob_digit", probs[a, result.digit])
            for c in result.top_classes:
                add(method, a, f"prob_class_{c}", probs[a, c])
    return recs
