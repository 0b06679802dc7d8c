r"""The reference trainer: ONE network, a plain :class:`torch.nn.Module`, autograd and
:class:`torch.optim.Adam` (see :mod:`vi_dropout.training.common` for the maths and the
random-number contract it shares with :func:`~vi_dropout.training.batched.train_batched`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from vi_dropout.drop_stream import layer_drop_streams
from vi_dropout.network import Architecture, get_activation
from vi_dropout.training.common import (
    TrainResult,
    check_adversarial_epsilon,
    check_weight_decay,
    gaussian_nll,
    layer_widths,
    output_width,
    per_layer_keep_probs,
)
from vi_dropout.validation import check_finite, check_positive, check_positive_int, check_targets

__all__ = ["DropoutMLP", "train_sequential"]


class DropoutMLP(nn.Module):
    """A plain :class:`torch.nn.Module` MLP with inverted dropout on every layer's input.

    The masks come from the caller as one 0/1 block ``z`` (``B x C``, the layers' input units in
    layer order) so that the random stream is under the caller's control:
    ``mask_i = z[:, cols_i] / keep_prob_i``.

    Example:
        >>> net = DropoutMLP((3, 4, 1), keep_probs=(0.9, 0.9)).double()
        >>> net(torch.zeros(2, 3, dtype=torch.float64), torch.ones(2, 7, dtype=torch.float64)).shape
        torch.Size([2, 1])
    """

    def __init__(self, widths: Sequence[int], keep_probs: Sequence[float], activation="relu"):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.keep_probs = tuple(keep_probs)
        self.act = get_activation(activation)
        self.offsets = [0]
        for w in widths[:-1]:
            self.offsets.append(self.offsets[-1] + w)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = x
        for i, (lin, kp) in enumerate(zip(self.linears, self.keep_probs)):
            if i > 0:
                h = self.act(h)
            mask = z[:, self.offsets[i] : self.offsets[i + 1]] / kp
            h = lin(h * mask)
        return h


def train_sequential(
    x: torch.Tensor,
    y: torch.Tensor,
    keep_prob,
    reg: float,
    seed: int,
    *,
    hidden: Sequence[int] = (50,),
    activation: str = "relu",
    epochs: int = 40,
    batch_size: int = 128,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-7,
    progress: bool = False,
    loss: str = "mse",
    adversarial_epsilon=None,
) -> TrainResult:
    r"""Reference trainer for ONE network: a plain module, autograd and :class:`torch.optim.Adam`.

    Minimises :math:`\frac{1}{|\mathcal{B}|D}\sum_{n\in\mathcal{B}}\|\mathbf{y}_n -
    \hat{\mathbf{y}}_n\|^2 + \lambda\sum_i\|\mathbf{W}_i\|^2` (see the module docstring for the
    maths and the random-number contract), or with ``loss="gaussian_nll"`` the mean Gaussian
    negative log-likelihood of a mean-and-variance head
    (:func:`~vi_dropout.training.common.gaussian_nll`) in place of the squared error; with
    ``adversarial_epsilon`` the data term is that of the minibatch plus that of its fast-gradient-
    sign perturbation (computed here with :func:`torch.autograd.grad`).

    Args:
        x: training inputs, ``N x Q``.
        y: training targets, ``N x D`` (standardised, as in the paper).
        keep_prob: probability of keeping a unit, a number or one per layer (layer ``i``'s input).
        reg: :math:`\lambda \ge 0` (see :func:`weight_decay`).
        seed: seed of this network's generator.
        hidden: hidden widths; activation: hidden activation.
        epochs, batch_size, lr, betas, eps: optimisation settings (Keras 2.2 defaults).
        progress: tqdm bar over epochs.
        loss: ``"mse"`` (``D`` outputs) or ``"gaussian_nll"`` (``2D`` outputs: means, then raw
            variances).
        adversarial_epsilon: ``None`` (no adversarial training) or the FGSM step, a number or
            ``Q`` numbers (one per input column); needs ``keep_prob`` 1 on the inputs.

    Returns:
        :class:`TrainResult` without the leading ``E`` dimension.

    Example:
        >>> x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
        >>> r = train_sequential(x, y, keep_prob=0.9, reg=1e-4, seed=0, hidden=(8,), epochs=2)
        >>> [tuple(w.shape) for w in r.weights], int(r.diverged_epoch)
        ([(8, 3), (1, 8)], -1)
    """
    check_finite(x, "x")
    check_targets(y, "y")
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must be N x Q and N x D, got {tuple(x.shape)}, {tuple(y.shape)}")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    reg = check_weight_decay(reg, "reg")
    widths = layer_widths(x.shape[1], hidden, output_width(loss, y.shape[1]))
    L = len(widths) - 1
    kps = per_layer_keep_probs(keep_prob, L, "keep_prob")
    adv = check_adversarial_epsilon(adversarial_epsilon, x.shape[1])
    if adv is not None:
        if adv.dim() > 1:
            raise ValueError(f"adversarial_epsilon must be a number or {x.shape[1]} numbers, got "
                             f"shape {tuple(adv.shape)}")
        if kps[0] != 1.0:
            raise ValueError("adversarial_epsilon needs keep_prob 1 on the inputs (layer 0), got "
                             f"{kps[0]}")
        adv = adv.to(x.dtype)
    N, D = y.shape
    C = sum(widths[:-1])
    dtype = x.dtype
    g = torch.Generator().manual_seed(int(seed))
    ws, bs = Architecture(widths, activation).init_params(generator=g, dtype=dtype)
    streams = layer_drop_streams(kps, g)
    net = DropoutMLP(widths, kps, activation).to(dtype)
    with torch.no_grad():
        for lin, w, b in zip(net.linears, ws, bs):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=betas, eps=eps)
    losses = torch.full((epochs,), float("nan"), dtype=dtype)
    diverged = -1
    for epoch in tqdm(range(epochs), disable=not progress, desc="train_sequential", leave=False):
        perm = torch.randperm(N, generator=g)
        u = torch.ones(N, C, dtype=dtype)  # the epoch's 0/1 keep indicators
        for i, stream in enumerate(streams):
            drops = stream.take(N * widths[i])
            rows, cols = drops.div(widths[i], rounding_mode="floor"), drops.remainder(widths[i])
            u[rows, cols + net.offsets[i]] = 0.0
        total = 0.0
        for s in range(0, N, batch_size):
            idx = perm[s : s + batch_size]
            data = _data_term(net, x[idx], y[idx], u[s : s + batch_size], loss, adv)
            total_loss = data + reg * sum(lin.weight.square().sum() for lin in net.linears)
            if not torch.isfinite(total_loss):
                diverged = epoch
                break
            opt.zero_grad()
            total_loss.backward()
            opt.step()
            total += total_loss.item() * len(idx) / N
        if diverged >= 0:
            break
        losses[epoch] = total
    return TrainResult(
        [lin.weight.detach().clone() for lin in net.linears],
        [lin.bias.detach().clone() for lin in net.linears],
        losses,
        torch.tensor(diverged),
    )


def _data_term(net, x, y, z, loss, adv):
    """The data term of one minibatch (inputs ``x``, targets ``y``, masks ``z``): the loss of
    ``net``'s outputs, plus that at ``x + adv * sign(grad_x)`` when ``adv`` is not ``None``."""
    fn = nn.functional.mse_loss if loss == "mse" else gaussian_nll
    if adv is None:
        return fn(net(x, z), y)
    x = x.clone().requires_grad_(True)
    clean = fn(net(x, z), y)
    (gx,) = torch.autograd.grad(clean, x, retain_graph=True)
    x_adv = (x + adv * gx.sign()).detach()
    return clean + fn(net(x_adv, z), y)
