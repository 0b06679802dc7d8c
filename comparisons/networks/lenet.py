r"""A LeNet-style CNN with dropout before its last fully connected layer, and its trainer.

Architecture (Caffe's LeNet with ReLUs, as used for the MC dropout MNIST experiments)::

    conv(k x k, 20) - ReLU - maxpool 2 - conv(k x k, 50) - ReLU - maxpool 2
        - flatten - FC 500 - ReLU - Dropout(1 - keep_prob) - FC num_classes

with ``k = 5``. Images smaller than 16 pixels (scikit-learn's 8x8 digits) use "same" padding
(8 -> 8 -> 4 -> 4 -> 2), larger ones none (MNIST: 28 -> 24 -> 12 -> 8 -> 4), so one class covers
both. Dropout is :class:`torch.nn.Dropout`, i.e. *inverted* dropout: a kept unit is scaled by
:math:`1/\text{keep\_prob}` (``nn.Dropout`` is handed the drop rate ``1 - keep_prob``).

Only the input of the last layer is dropped, so everything before it is a deterministic function
:math:`\mathbf{h}(\mathbf{x})` of the image (:meth:`LeNet.features`). :class:`LeNet` has the
last-layer form of :func:`vi_dropout.predict.mc_predict` (``features``, ``dropout``, ``head``,
``keep_prob``), so MC dropout, ``mc_predict(x, net, T=T)``, computes :math:`\mathbf{h}` once
and samples only the masks of the last layer:

.. math::
    \text{logits}_t(\mathbf{x}) = \mathbf{W}\big(\mathbf{z}_t \odot \mathbf{h}(\mathbf{x})\big)
    / \text{keep\_prob} + \mathbf{b}, \qquad z_{t,j} \sim \operatorname{Bernoulli}(\text{keep\_prob}),

which has exactly the distribution of ``T`` stochastic forward passes of the network in training
mode, at the cost of one pass plus ``T`` small matrix products. Standard dropout
(:func:`standard_logits`) replaces :math:`\mathbf{z}_t / \text{keep\_prob}` by its mean, 1.

Training: :func:`train_lenet` (dropout SGD: Adam on the cross-entropy with dropout active);
the other job, SVI on the network's Pyro model
(:func:`comparisons.experiments.rotated_digit.train_converted_lenet`), shares its minibatch
loop, :func:`run_minibatch_epochs`.

Example:
    >>> import torch
    >>> from vi_dropout.predict import mc_predict
    >>> net = LeNet(image_size=8, seed=0)
    >>> x = torch.rand(4, 1, 8, 8)
    >>> mc_predict(x, net, T=10, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([10, 4, 10])
    >>> standard_logits(net, x).shape
    torch.Size([4, 10])
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from vi_dropout.validation import (
    check_finite,
    check_has_rows,
    check_keep_prob,
    check_positive,
    check_positive_int,
)

__all__ = [
    "LeNet",
    "TrainHistory",
    "train_lenet",
    "run_minibatch_epochs",
    "lenet_features",
    "standard_logits",
]


class LeNet(nn.Module):
    r"""LeNet-style CNN for square grey-level (or ``in_channels``) images, dropout before the last FC.

    Args:
        image_size: side length of the input images (8 for scikit-learn digits, 28 for MNIST).
        num_classes: number of output logits ``C``.
        in_channels: image channels.
        conv_channels: output channels of the two convolutions.
        kernel_size: odd convolution kernel size ``k``.
        hidden_units: width of the fully connected hidden layer (the dropped layer's input).
        keep_prob: probability that a hidden unit is KEPT, in (0, 1] (``nn.Dropout`` is handed
            ``p = 1 - keep_prob``).
        seed: if given, the initial weights are drawn from ``torch.manual_seed(seed)`` inside
            :func:`torch.random.fork_rng` (the global RNG is left untouched).

    Shapes: input ``N x in_channels x image_size x image_size``, output ``N x C`` logits.

    Example:
        >>> net = LeNet(image_size=28, seed=0)
        >>> net(torch.zeros(2, 1, 28, 28)).shape, net.keep_prob
        (torch.Size([2, 10]), 0.5)
    """

    def __init__(
        self,
        image_size: int = 8,
        num_classes: int = 10,
        *,
        in_channels: int = 1,
        conv_channels: tuple[int, int] = (20, 50),
        kernel_size: int = 5,
        hidden_units: int = 500,
        keep_prob: float = 0.5,
        seed: int | None = None,
    ):
        super().__init__()
        self.image_size = check_positive_int(image_size, "image_size")
        self.num_classes = check_positive_int(num_classes, "num_classes")
        self.in_channels = check_positive_int(in_channels, "in_channels")
        if len(tuple(conv_channels)) != 2:
            raise ValueError(f"conv_channels must be two integers, got {conv_channels!r}")
        c1, c2 = (check_positive_int(c, f"conv_channels[{i}]") for i, c in enumerate(conv_channels))
        k = check_positive_int(kernel_size, "kernel_size")
        if k % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {kernel_size!r}")
        self.hidden_units = check_positive_int(hidden_units, "hidden_units")
        self.keep_prob = check_keep_prob(keep_prob)
        padding = k // 2 if self.image_size < 16 else 0
        side = self.image_size
        for stage in (1, 2):
            side = side + 2 * padding - k + 1
            if side < 2:
                raise ValueError(
                    f"image_size={image_size} is too small for kernel_size={k}: the feature map "
                    f"before pooling {stage} would be {side} x {side} (need >= 2)")
            side //= 2
        self.flat_features = c2 * side * side
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(int(seed))
            self.body = nn.Sequential(
                nn.Conv2d(self.in_channels, c1, k, padding=padding), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, k, padding=padding), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(self.flat_features, self.hidden_units), nn.ReLU(),
            )
            self.dropout = nn.Dropout(1.0 - self.keep_prob)  # torch takes the DROP rate
            self.head = nn.Linear(self.hidden_units, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        r"""The deterministic part :math:`\mathbf{h}(\mathbf{x})` of the network.

        ``N x 1 x H x W`` -> ``N x hidden_units``; ``ValueError`` for images of another size.
        """
        _check_image_shape(self, x)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``N x C``; stochastic in training mode (``nn.Dropout``), standard dropout in eval."""
        return self.head(self.dropout(self.body(x)))


def _check_images(model: LeNet, x: torch.Tensor, name: str = "x") -> None:
    check_finite(x, name)
    _check_image_shape(model, x, name)


def _check_image_shape(model: LeNet, x: torch.Tensor, name: str = "x") -> None:
    want = (model.in_channels, model.image_size, model.image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != want:
        raise ValueError(f"{name} must have shape N x {want[0]} x {want[1]} x {want[2]} for this "
                         f"LeNet, got {tuple(x.shape)}")


@dataclass(frozen=True)
class TrainHistory:
    """What a LeNet trainer did (:func:`train_lenet`, or
    :func:`comparisons.experiments.rotated_digit.train_converted_lenet`).

    Attributes:
        epoch_losses: mean training cross-entropy (with dropout active) per epoch.
        wall_time_s: seconds spent training.
        epochs, batch_size, lr, weight_decay, seed: the settings used.
        num_data: training images.
    """

    epoch_losses: tuple[float, ...]
    wall_time_s: float
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    seed: int
    num_data: int


def train_lenet(
    model: LeNet,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int = 50,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 5e-4,
    seed: int = 0,
    progress: bool = True,
) -> TrainHistory:
    r"""Train ``model`` in place by dropout SGD: Adam on shuffled minibatches of the cross-entropy.

    Minimises, per minibatch :math:`\mathcal{B}` (dropout active),

    .. math::
        \frac{1}{|\mathcal{B}|}\sum_{n \in \mathcal{B}} -\log \operatorname{softmax}
        (\text{logits}(\mathbf{x}_n))_{y_n}
        \;+\; \frac{\text{weight\_decay}}{2}\,\|\boldsymbol{\omega}\|^2,

    (torch's ``weight_decay`` adds ``weight_decay * w`` to the gradient, i.e. half of it is the
    coefficient of :math:`\|\boldsymbol{\omega}\|^2`; Caffe's LeNet uses ``5e-4``.) Shuffling
    uses a generator seeded with ``seed``; the dropout masks use torch's global RNG seeded with
    ``seed`` inside :func:`torch.random.fork_rng`, so a run is reproducible and leaves the global
    RNG as it was. The loop is :func:`run_minibatch_epochs`.

    The other LeNet trainer, :func:`comparisons.experiments.rotated_digit.train_converted_lenet`,
    is a different job on the same loop: ``pyro.infer.SVI`` on the per-example ELBO of the
    converted network (a guide over every layer's weights, a KL term in place of
    ``weight_decay``, masks from Pyro's objective), its means loaded back into the module.

    Args:
        model: a :class:`LeNet` (its parameters are updated).
        x: ``N x 1 x H x W`` images; y: ``N`` integer labels in ``0..C-1``.
        epochs: passes over the data (``>= 1``).
        batch_size: minibatch size (``>= 1``; the last batch of an epoch may be smaller).
        lr: Adam learning rate (``> 0``).
        weight_decay: torch ``weight_decay`` (``>= 0``).
        seed: seed of the shuffling and of the dropout masks.
        progress: show a tqdm bar over epochs.

    Returns:
        :class:`TrainHistory`. The model is left in eval mode.

    Example:
        >>> from comparisons.datasets.digits import load_digits_split
        >>> d = load_digits_split()
        >>> net = LeNet(8, seed=0)
        >>> hist = train_lenet(net, d.x_train, d.y_train, epochs=1, progress=False)
        >>> len(hist.epoch_losses)
        1
    """
    _check_images(model, x)
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be a 1-D tensor of {x.shape[0]} labels (one per image), got "
                         f"{type(y).__name__} of shape {tuple(getattr(y, 'shape', ()))}")
    if y.is_floating_point() or y.is_complex():
        raise ValueError(f"y must hold integer labels, got dtype {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= model.num_classes):
        raise ValueError(f"y must lie in 0..{model.num_classes - 1}, got labels in "
                         f"{int(y.min())}..{int(y.max())}")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    if not (float(weight_decay) >= 0.0) or not math.isfinite(float(weight_decay)):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    n = check_has_rows(x.shape[0], "x", x.shape)
    x = x.to(model.head.weight.dtype)
    y = y.long()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=float(weight_decay))

    def step(idx: torch.Tensor) -> float:
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.detach().item()

    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        losses, seconds = run_minibatch_epochs(n, step, epochs=epochs, batch_size=batch_size,
                                               seed=seed, progress=progress, desc="train LeNet")
    model.eval()
    return TrainHistory(losses, seconds, epochs, batch_size, lr, float(weight_decay), int(seed), n)


def run_minibatch_epochs(
    num_data: int,
    step: Callable[[torch.Tensor], float],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    progress: bool = False,
    desc: str = "train",
) -> tuple[tuple[float, ...], float]:
    r"""The minibatch loop of the LeNet trainers: ``epochs`` passes over shuffled minibatches.

    Each epoch draws ``torch.randperm(num_data)`` from a generator seeded with ``seed`` (one
    generator for the whole run), cuts it in order into minibatches of ``batch_size`` rows (the
    last one may be smaller) and calls ``step(idx)`` on each: the caller's training step on rows
    ``idx``, returning that minibatch's loss :math:`\ell_b`. The epoch's loss is the
    row-weighted mean

    .. math::
        L_e = \frac{1}{N}\sum_b |\mathcal{B}_b|\,\ell_b.

    Args:
        num_data: ``N >= 1`` rows.
        step: the training step, ``idx`` (``|B|`` row indices) -> the minibatch's loss.
        epochs, batch_size: ``>= 1``.
        seed: seed of the shuffling.
        progress: tqdm bar over epochs (``desc``: its label).

    Returns:
        ``(epoch losses, seconds)``.

    Example:
        >>> seen = []
        >>> losses, _ = run_minibatch_epochs(5, lambda idx: seen.append(len(idx)) or 1.0,
        ...                                  epochs=2, batch_size=2, seed=0)
        >>> losses, seen
        ((1.0, 1.0), [2, 2, 1, 2, 2, 1])
    """
    num_data = check_positive_int(num_data, "num_data")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    shuffle = torch.Generator().manual_seed(int(seed))
    losses = []
    t0 = time.perf_counter()
    bar = tqdm(range(epochs), disable=not progress, desc=desc, leave=False)
    for _ in bar:
        perm = torch.randperm(num_data, generator=shuffle)
        total = 0.0
        for s in range(0, num_data, batch_size):
            idx = perm[s: s + batch_size]
            total += step(idx) * len(idx)
        losses.append(total / num_data)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return tuple(losses), time.perf_counter() - t0


@torch.no_grad()
def lenet_features(model: LeNet, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    r"""The deterministic hidden features :math:`\mathbf{h}(\mathbf{x})`, ``N x hidden_units``,
    computed in eval mode in batches of ``batch_size`` images.

    Example:
        >>> lenet_features(LeNet(8, seed=0), torch.zeros(3, 1, 8, 8)).shape
        torch.Size([3, 500])
    """
    _check_images(model, x)
    batch_size = check_positive_int(batch_size, "batch_size")
    x = x.to(model.head.weight.dtype)
    was_training = model.training
    model.eval()
    try:
        parts = [model.features(x[s: s + batch_size]) for s in range(0, x.shape[0], batch_size)]
    finally:
        model.train(was_training)
    if not parts:
        return x.new_zeros(0, model.hidden_units)
    return torch.cat(parts)


@torch.no_grad()
def standard_logits(model: LeNet, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    r"""Standard dropout ("weight averaging") logits ``N x C``: the network in eval mode,

    .. math::
        \text{logits}_n = \mathbf{W}\,\mathbf{h}(\mathbf{x}_n) + \mathbf{b}
        \quad (E[z / \text{keep\_prob}] = 1 \text{ for inverted dropout}).

    Example:
        >>> standard_logits(LeNet(8, seed=0), torch.zeros(5, 1, 8, 8)).shape
        torch.Size([5, 10])
    """
    h = lenet_features(model, x, batch_size)
    return model.head(h)
