r"""The rotated-digit experiment (Figure 4 of Gal & Ghahramani, 2016): model uncertainty of a
dropout LeNet as a test digit is rotated away from anything it was trained on.

A test image of the digit 1 is rotated through ``A`` angles (default: 12 angles, 0 to 165
degrees in 15-degree steps, :data:`DEFAULT_ANGLES_DEG` -- a choice made here; the last ones
approach an upside-down 1). For every rotated image :math:`\mathbf{x}_a` we draw :math:`T`
(default 100) MC dropout forward passes (:func:`comparisons.networks.lenet.mc_logits`) and keep

* the softmax INPUTS :math:`\text{logits}_{t,a}` and OUTPUTS
  :math:`p_{t,a} = \operatorname{softmax}(\text{logits}_{t,a})` of the classes with the highest
  MC-averaged probability at any angle (scatter plots, one colour per class, as in the paper);
* the predictive entropy, mutual information and variation ratio of
  :func:`vi_dropout.predict.classification_summary`:

  .. math::
      H_a = -\sum_c \bar{p}_{a,c}\log\bar{p}_{a,c}, \quad
      \mathrm{MI}_a = H_a - \frac{1}{T}\sum_t H(p_{t,a}), \quad
      \mathrm{VR}_a = 1 - \frac{\max_c \#\{t: \arg\max p_{t,a} = c\}}{T};

* next to them standard dropout's single softmax (eval mode; its entropy, but no MI or variation
  ratio: one deterministic pass has none).

Rotation uses :func:`scipy.ndimage.rotate` (bilinear, ``reshape=False``, zero fill, positive
angles counter-clockwise as shown by ``imshow``), clipped to :math:`[0, 1]`.

Example:
    >>> from comparisons.datasets.digits import load_digits_split
    >>> from comparisons.networks.lenet import LeNet, train_lenet
    >>> d = load_digits_split()
    >>> net = LeNet(8, seed=0)
    >>> _ = train_lenet(net, d.x_train, d.y_train, epochs=2, progress=False)
    >>> image, _ = select_digit(d.x_test, d.y_test, digit=1)
    >>> res = run_rotated_digit(net, image, num_samples=20, digit=1)
    >>> res.mc_logits.shape, len(res.angles_deg), len(res.top_classes)
    (torch.Size([20, 12, 10]), 12, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from comparisons.networks.lenet import LeNet, mc_logits, standard_logits
from vi_dropout.predict import ClassificationSummary, classification_summary
from vi_dropout.validation import check_finite, check_positive_int

__all__ = [
    "DEFAULT_ANGLES_DEG",
    "RotatedDigitResult",
    "rotate_image",
    "select_digit",
    "run_rotated_digit",
    "rotated_digit_records",
    "rotated_digit_table",
    "plot_rotated_images",
    "plot_softmax_scatter",
    "plot_uncertainty_vs_angle",
    "plot_rotated_digit_figure",
]

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
class RotatedDigitResult:
    """Everything :func:`run_rotated_digit` computed (``A`` angles, ``T`` samples, ``C`` classes).

    Attributes:
        angles_deg: ``A`` angles in degrees.
        images: ``A x 1 x H x W`` rotated images.
        mc_logits: ``T x A x C`` MC dropout softmax inputs.
        standard_logits: ``A x C`` standard dropout softmax inputs.
        summary: :class:`~vi_dropout.predict.ClassificationSummary` of ``mc_logits``
            (``probs`` ``A x C``; entropy, MI and variation ratio ``A``).
        top_classes: classes shown in the scatter plots (highest MC-averaged probability at
            any angle first).
        digit: the true class of the image (or ``None``).
        seed: seed of the MC masks.
        dataset: name used in the tidy records.
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

    @property
    def records(self) -> list[dict]:
        """Tidy records ``{dataset, method, angle, metric, value}``: :func:`rotated_digit_records`
        with ``self.dataset``."""
        return rotated_digit_records(self, self.dataset)

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


def run_rotated_digit(
    model: LeNet,
    image: torch.Tensor,
    *,
    angles_deg: Sequence[float] = DEFAULT_ANGLES_DEG,
    num_samples: int = 100,
    num_top: int = 3,
    seed: int = 0,
    digit: int | None = None,
    dataset: str = "digits",
) -> RotatedDigitResult:
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
        :class:`RotatedDigitResult`; its ``records`` property gives the tidy records
        ``{dataset, method, angle, metric, value}``.

    Example:
        >>> net = LeNet(8, seed=0)
        >>> res = run_rotated_digit(net, torch.rand(1, 8, 8), angles_deg=[0, 90], num_samples=5)
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
    logits = mc_logits(model, images, T, generator=gen)
    std = standard_logits(model, images)
    summary = classification_summary(logits)
    order = torch.argsort(summary.probs.amax(0), descending=True, stable=True)
    top = tuple(int(c) for c in order[:num_top])
    return RotatedDigitResult(angles, images, logits, std, summary, top,
                              None if digit is None else int(digit), int(seed), str(dataset))


def rotated_digit_records(result: RotatedDigitResult, dataset: str) -> list[dict]:
    """Tidy records ``{dataset, method, angle, metric, value}`` (angle in degrees).

    ``method`` is ``"mc_dropout"`` or ``"standard_dropout"``. Metrics per angle: for both
    ``predictive_entropy`` (nats), ``predicted_class``, ``max_prob`` (probability of the predicted
    class), ``prob_digit`` (of the true class, if known) and ``prob_class_<c>`` for each top class;
    for MC dropout also ``mutual_information`` (nats) and ``variation_ratio``.

    Example:
        >>> net = LeNet(8, seed=0)
        >>> res = run_rotated_digit(net, torch.rand(1, 8, 8), angles_deg=[0], num_samples=4)
        >>> sorted({r["metric"] for r in rotated_digit_records(res, "digits")})[:3]
        ['max_prob', 'mutual_information', 'predicted_class']
    """
    s = result.summary
    recs: list[dict] = []

    def add(method, a, metric, value):
        recs.append({"dataset": dataset, "method": method, "angle": float(result.angles_deg[a]),
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


def rotated_digit_table(result: RotatedDigitResult) -> pd.DataFrame:
    """One row per angle: MC dropout's prediction, its probability, entropy, MI, variation ratio,
    and standard dropout's prediction, probability and entropy.

    Example:
        >>> net = LeNet(8, seed=0)
        >>> res = run_rotated_digit(net, torch.rand(1, 8, 8), angles_deg=[0, 30], num_samples=4)
        >>> list(rotated_digit_table(res).columns)[:3]
        ['angle_deg', 'mc_pred', 'mc_prob']
    """
    s = result.summary
    sp = result.standard_probs
    return pd.DataFrame({
        "angle_deg": result.angles_deg,
        "mc_pred": s.probs.argmax(-1).numpy(),
        "mc_prob": s.probs.amax(-1).double().numpy(),
        "mc_entropy": s.predictive_entropy.double().numpy(),
        "mc_mutual_info": s.mutual_information.double().numpy(),
        "mc_variation_ratio": s.variation_ratio.double().numpy(),
        "std_pred": sp.argmax(-1).numpy(),
        "std_prob": sp.amax(-1).double().numpy(),
        "std_entropy": result.standard_entropy.double().numpy(),
    })


def plot_rotated_images(result: RotatedDigitResult, ax):
    """The rotated images side by side (one column per angle, labelled in degrees) on ``ax``."""
    imgs = result.images[:, 0].double().numpy()
    a, h, w = imgs.shape
    strip = np.ones((h, a * (w + 1) - 1))
    for k in range(a):
        strip[:, k * (w + 1): k * (w + 1) + w] = 1.0 - imgs[k]
    ax.imshow(strip, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([k * (w + 1) + (w - 1) / 2 for k in range(a)])
    ax.set_xticklabels([f"{x:g}°" for x in result.angles_deg], fontsize="small")
    ax.set_yticks([])
    title = "rotated test image"
    if result.digit is not None:
        title += f" of the digit {result.digit}"
    ax.set_title(title)
    return ax


def plot_softmax_scatter(result: RotatedDigitResult, ax, kind: str = "input",
                         classes: Sequence[int] | None = None, dodge: float = 0.12):
    r"""Scatter of the ``T`` MC dropout softmax inputs (``kind="input"``, logits) or outputs
    (``kind="output"``, probabilities) per angle, one colour per class, with standard dropout's
    single value as a dashed line with crosses in the same colour.

    Args:
        result: from :func:`run_rotated_digit`.
        ax: matplotlib axes (returned).
        kind: ``"input"`` or ``"output"``.
        classes: classes to show (default ``result.top_classes``).
        dodge: horizontal offset between classes, as a fraction of the smallest angle step (so
            the clouds do not hide each other; 0 overlays them as in the paper).
    """
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")
    classes = tuple(result.top_classes if classes is None else classes)
    vals = result.mc_logits if kind == "input" else result.mc_probs
    std = result.standard_logits if kind == "input" else result.standard_probs
    angles = result.angles_deg
    step = float(np.min(np.diff(np.sort(angles)))) if len(angles) > 1 else 1.0
    T = vals.shape[0]
    for j, c in enumerate(classes):
        off = (j - (len(classes) - 1) / 2) * dodge * step
        color = f"C{j}"
        xs = np.repeat(angles[None, :] + off, T, axis=0).ravel()
        ax.scatter(xs, vals[:, :, c].double().numpy().ravel(), s=6, alpha=0.25, color=color,
                   linewidths=0, label=f"class {c} (MC, T={T})")
        ax.plot(angles, std[:, c].double().numpy(), "--x", color=color, lw=1.0, ms=6, mew=1.5,
                label=f"class {c} (standard)")
    ax.set_xlabel("rotation angle (degrees)")
    if kind == "input":
        ax.set_ylabel("softmax input (logit)")
        ax.set_title("softmax input scatter")
    else:
        ax.set_ylabel("softmax output (probability)")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title("softmax output scatter")
    ax.legend(fontsize="x-small", ncol=2, markerscale=1.5, loc="best")
    return ax


def plot_uncertainty_vs_angle(result: RotatedDigitResult, ax):
    """Predictive entropy, mutual information and variation ratio of MC dropout vs angle, and the
    entropy of standard dropout's softmax (dashed), on ``ax``."""
    s = result.summary
    a = result.angles_deg
    ax.plot(a, s.predictive_entropy.double().numpy(), "-o", label="MC predictive entropy (nats)")
    ax.plot(a, s.mutual_information.double().numpy(), "-s", label="MC mutual information (nats)")
    ax.plot(a, s.variation_ratio.double().numpy(), "-^", label="MC variation ratio")
    ax.plot(a, result.standard_entropy.double().numpy(), "k--x",
            label="standard dropout entropy (nats)")
    ax.axhline(np.log(result.mc_logits.shape[-1]), color="grey", lw=0.6, ls=":",
               label="max entropy log C")
    ax.set_xlabel("rotation angle (degrees)")
    ax.set_ylabel("uncertainty")
    ax.set_title("uncertainty vs rotation")
    ax.legend(fontsize="x-small")
    return ax


def plot_rotated_digit_figure(result: RotatedDigitResult, fig):
    """The full Figure-4 style panel on ``fig``: the rotated images on top, the softmax input and
    output scatters, and the uncertainty measures vs angle. Returns ``fig``.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> net = LeNet(8, seed=0)
        >>> res = run_rotated_digit(net, torch.rand(1, 8, 8), num_samples=5)
        >>> fig = plot_rotated_digit_figure(res, plt.figure(figsize=(12, 9)))
        >>> len(fig.axes)
        4
    """
    axes = fig.subplot_mosaic([["images", "images"], ["input", "output"], ["unc", "unc"]],
                              height_ratios=[0.9, 3.0, 2.2])
    plot_rotated_images(result, axes["images"])
    plot_softmax_scatter(result, axes["input"], "input")
    plot_softmax_scatter(result, axes["output"], "output")
    plot_uncertainty_vs_angle(result, axes["unc"])
    fig.suptitle(f"Dropout LeNet on a rotated digit: MC dropout (T={result.num_samples}) vs "
                 f"standard dropout")
    fig.tight_layout()
    return fig
