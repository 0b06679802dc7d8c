r"""Train many small dropout MLPs as ONE batched computation (stacked ``E x out x in`` weights),
reproducing :func:`~vi_dropout.training.sequential.train_sequential` network by network (the maths
and the random-number contract are in :mod:`vi_dropout.training.common`).

Only the dropped positions are drawn (about ``1 - keep_prob`` uniforms per mask entry instead of
one): with the UCI grid's drop rates of 0.005 to 0.1 the dense uniforms were most of the training
time.
Benchmark (``benchmarks/bench_train.py``, Boston, the full grid x 20 splits, 400 epochs, 2-core
CPU): about 24x per network over a plain ``nn.Module`` + :class:`torch.optim.Adam` loop.

With ``loss="gaussian_nll"`` (mean-and-variance heads, the members of a deep ensemble) the
backward pass starts from the Gaussian NLL's gradient, with ``adversarial_epsilon`` (the fast
gradient sign method) it also returns the gradient with respect to the inputs, and a second
forward and backward pass at the perturbed inputs is accumulated into the same gradient. Without
any dropout on the hidden layers (``keep_prob=1``) no masks are built or applied (they would all
be ones).

Why one module of this size: the hand-written forward and backward passes of E networks in one
loop (the fast path), kept together so that their shapes and random streams are read in one
place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from vi_dropout.drop_stream import layer_drop_streams
from vi_dropout.network import Architecture, get_activation
from vi_dropout.training.common import (
    MIN_VARIANCE,
    TrainResult,
    check_adversarial_epsilon,
    check_loss,
    check_weight_decay,
    layer_widths,
    output_width,
    per_layer_keep_probs,
)
from vi_dropout.validation import (
    check_finite,
    check_keep_prob,
    check_positive,
    check_positive_int,
    check_targets,
)

__all__ = ["train_batched"]

# Entries held per block of epochs: the gathered inputs and targets plus the hidden masks
# (2^25 floats: 128 MiB in float32).
_MASK_BLOCK_ENTRIES = 2**25

_DERIVATIVES = {
    "tanh": lambda z, a: 1 - a * a,
    "sigmoid": lambda z, a: a * (1 - a),
    "erf": lambda z, a: (2 / math.sqrt(math.pi)) * torch.exp(-z * z),
    "identity": lambda z, a: torch.ones_like(z),
}


def _as_per_net(value, E, name, check):
    if isinstance(value, torch.Tensor):
        value = value.tolist()
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != E:
            raise ValueError(f"{name} must be a number or {E} values (one per network), got {len(value)}")
        return [value[e] if isinstance(value[e], Sequence) else check(value[e], f"{name}[{e}]")
                for e in range(E)]
    return [check(value, name)] * E


def train_batched(
    x: torch.Tensor,
    y: torch.Tensor,
    keep_prob,
    reg,
    seeds: Sequence[int],
    *,
    hidden: Sequence[int] = (50,),
    activation: str = "relu",
    epochs: int = 40,
    batch_size: int = 128,
    lr=1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-7,
    progress: bool = False,
    loss: str = "mse",
    adversarial_epsilon=None,
) -> TrainResult:
    r"""Train ``E`` dropout MLPs as ONE batched computation (stacked ``E x out x in`` weights).

    Same maths, defaults and random-number contract as :func:`train_sequential` (see the module
    docstring), so that ``train_batched(..., seeds=[s_1, ..., s_E])`` reproduces
    ``train_sequential(..., seed=s_e)`` for every ``e`` up to floating-point rounding. The backward
    pass is written by hand (``bmm`` / ``baddbmm``), Adam runs on one flat ``E x P`` parameter
    buffer. Dropout is applied from the drawn drop positions alone: the shuffled inputs
    :math:`\mathbf{x} / \text{keep\_prob}_1` of a block of epochs are gathered once and their
    dropped entries zeroed in place; the hidden layers get 0/1 masks and their
    :math:`1/\text{keep\_prob}_i` is folded into the products with :math:`\mathbf{W}_i` (for
    ReLU, :math:`h > 0` then marks "active and kept", so the backward pass needs no mask).

    Args:
        x: inputs ``E x N x Q`` (each network its own data) or ``N x Q`` (shared).
        y: targets ``E x N x D`` or ``N x D``.
        keep_prob: per network: a number (all networks), ``E`` numbers, or ``E`` per-layer
            sequences.
        reg: :math:`\lambda_e \ge 0`, a number or ``E`` numbers (see :func:`weight_decay`).
        seeds: ``E`` integer seeds, one generator per network.
        hidden, activation, epochs, batch_size, betas, eps: as in :func:`train_sequential`.
        lr: a number or ``E`` numbers.
        progress: tqdm bar over epochs.
        loss: ``"mse"`` (``D`` outputs, the default) or ``"gaussian_nll"`` (``2D`` outputs: means,
            then raw variances; see :func:`~vi_dropout.training.common.gaussian_head`).
        adversarial_epsilon: ``None`` (default: no adversarial training) or the FGSM step, a
            number, ``Q`` numbers (per input column) or ``E x Q`` (per network and column);
            needs ``keep_prob`` 1 on the inputs of every network.

    Returns:
        :class:`TrainResult` with leading ``E`` dims.

    Example:
        >>> x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
        >>> r = train_batched(x, y, keep_prob=[0.9, 0.5], reg=1e-4, seeds=[0, 1], hidden=(8,),
        ...                   epochs=2)
        >>> tuple(r.weights[0].shape), r.losses.shape
        ((2, 8, 3), torch.Size([2, 2]))
    """
    seeds = [int(s) for s in seeds]
    E = len(seeds)
    if E < 1:
        raise ValueError("seeds must hold at least one seed")
    check_finite(x, "x")
    check_targets(y, "y")
    if x.dim() == 2:
        x = x.expand(E, *x.shape)
    if y.dim() == 2:
        y = y.expand(E, *y.shape)
    if x.dim() != 3 or y.dim() != 3 or x.shape[:2] != y.shape[:2] or x.shape[0] != E:
        raise ValueError(
            f"x and y must be E x N x Q and E x N x D (or N x Q, N x D) with E = len(seeds) = {E} "
            f"and the same N for every network, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    spec = _BatchedSpec(
        widths=layer_widths(x.shape[2], hidden, output_width(loss, y.shape[2])),
        activation=activation, num_data=y.shape[1],
        batch_size=check_positive_int(batch_size, "batch_size"), betas=betas, eps=eps,
        loss=check_loss(loss), num_targets=y.shape[2])
    epochs = check_positive_int(epochs, "epochs")
    kps = [
        per_layer_keep_probs(k, spec.num_layers, f"keep_prob[{e}]")
        for e, k in enumerate(_as_per_net(keep_prob, E, "keep_prob", check_keep_prob))
    ]
    regs = _as_per_net(reg, E, "reg", check_weight_decay)
    lrs = _as_per_net(lr, E, "lr", check_positive)
    state = _NetworkState.initial(spec, x, y, kps, regs, lrs, seeds)
    state.adv_eps = _adversarial_steps(adversarial_epsilon, kps, E, spec.num_inputs, x.dtype)
    final = torch.empty(E, spec.layout.size, dtype=x.dtype)
    losses = torch.full((E, epochs), float("nan"), dtype=x.dtype)
    diverged_epoch = torch.full((E,), -1, dtype=torch.long)
    block = _EpochBlock(spec)
    for epoch in tqdm(range(epochs), disable=not progress, desc="train_batched", leave=False):
        if epoch >= block.end:
            block.draw(state, epoch, epochs)
        epoch_loss = _train_epoch(spec, state, block, epoch, final, diverged_epoch)
        if state.num_active == 0:
            break
        losses[state.active, epoch] = epoch_loss
    if state.num_active:
        final[state.active] = spec.layout.net_major(state.theta, state.num_active)
    weights, biases = spec.layout.unpack_rows(final)
    return TrainResult(weights, biases, losses, diverged_epoch)


def _adversarial_steps(adversarial_epsilon, kps, E, Q, dtype):
    """``None`` or the FGSM steps as an ``E x 1 x Q`` tensor, after the checks."""
    adv = check_adversarial_epsilon(adversarial_epsilon, Q)
    if adv is None:
        return None
    if adv.dim() > 2 or (adv.dim() == 2 and adv.shape[0] not in (1, E)):
        raise ValueError(f"adversarial_epsilon must be a number, {Q} numbers or {E} x {Q}, got "
                         f"shape {tuple(adv.shape)}")
    bad = [e for e, k in enumerate(kps) if k[0] != 1.0]
    if bad:
        raise ValueError(f"adversarial_epsilon needs keep_prob 1 on the inputs (layer 0) of every "
                         f"network, got {kps[bad[0]][0]} for network {bad[0]}")
    return adv.to(dtype).expand(E, Q).clone().unsqueeze(1)


class _ParameterLayout:
    """Where each network's parameters sit in ONE flat buffer (Adam is a handful of ops on it).

    Layer-major: ``[W_0 of all nets | b_0 of all nets | W_1 ...]``, so every layer's
    ``E x in x out`` block is contiguous (batched matmuls into a strided block fall back to a loop
    over networks). Weights are stored TRANSPOSED (``E x in x out``): the fast layout for ``bmm``
    on both passes. "Net-major" rows (``E x P``, network ``e``'s parameters in row ``e``) are the
    layout of the result.
    """

    def __init__(self, shapes):
        self.shapes = shapes
        self.size = sum(o * i + o for o, i in shapes)  # P: parameters per network

    def views(self, buf, n):
        """Per-layer ``n x in x out`` weight and ``n x out`` bias views of a layer-major buffer."""
        ws, bs, off = [], [], 0
        for o, i in self.shapes:
            ws.append(buf[off : off + n * o * i].view(n, i, o))
            off += n * o * i
            bs.append(buf[off : off + n * o].view(n, o))
            off += n * o
        return ws, bs

    def net_major(self, buf, n):
        """Layer-major buffer of ``n`` networks -> ``n x P`` rows."""
        ws, bs = self.views(buf, n)
        return torch.cat([t.reshape(n, -1) for wb in zip(ws, bs) for t in wb], 1)

    def layer_major(self, rows):
        """``n x P`` rows -> a new layer-major buffer."""
        n = rows.shape[0]
        buf = torch.empty(n * self.size, dtype=rows.dtype)
        ws, bs = self.views(buf, n)
        off = 0
        for layer, (o, i) in enumerate(self.shapes):
            ws[layer].copy_(rows[:, off : off + o * i].view(n, i, o))
            off += o * i
            bs[layer].copy_(rows[:, off : off + o])
            off += o
        return buf

    def unpack_rows(self, rows):
        """``E x P`` rows -> per-layer ``E x out x in`` weights and ``E x out`` biases."""
        weights, biases, off = [], [], 0
        for o, i in self.shapes:
            weights.append(rows[:, off : off + o * i].view(-1, i, o).transpose(1, 2).contiguous())
            off += o * i
            biases.append(rows[:, off : off + o].clone())
            off += o
        return weights, biases


class _BatchedSpec:
    """What every network of one :func:`train_batched` call shares: widths, activation, sizes."""

    def __init__(self, widths, activation, num_data, batch_size, betas, eps, loss="mse",
                 num_targets=None):
        self.widths = widths
        self.loss = loss
        self.num_layers = len(widths) - 1
        self.activation = activation
        self.act = get_activation(activation)
        self.relu = activation == "relu"
        self.deriv = None if self.relu else _DERIVATIVES[activation]
        self.arch = Architecture(widths, activation)
        self.layout = _ParameterLayout(self.arch.layer_shapes)
        self.num_data = num_data
        self.batch_size = batch_size
        self.betas = betas
        self.eps = eps
        self.num_inputs = widths[0]  # Q
        self.num_outputs = widths[-1] if num_targets is None else num_targets  # D (targets)
        hidden_widths = widths[1:-1]
        self.hidden_columns = sum(hidden_widths)  # columns of the hidden masks (0: no hidden)
        self.hidden_offsets = [0]
        for w in hidden_widths:
            self.hidden_offsets.append(self.hidden_offsets[-1] + w)


class _NetworkState:
    """The networks still training: parameters, Adam moments, generators, drop streams, data.

    1 / keep_prob per network and layer: layer 0's is folded into the inputs (``x / keep_prob``
    is gathered and its drops zeroed in place), layer ``l >= 1``'s into the products with
    ``W_l``, so the hidden masks are plain 0/1 (for ReLU, ``h > 0`` then marks "active and kept").
    """

    def __init__(self, spec, active, theta, m, v, inv_kp, reg, lr, gens, streams, xy):
        self.spec = spec
        self.active = active  # original indices of the networks still training
        self.theta, self.m, self.v = theta, m, v
        self.grad = torch.empty_like(theta)
        self.inv_kp, self.reg, self.lr = inv_kp, reg, lr
        self.gens, self.streams, self.xy = gens, streams, xy
        self.adv_eps = None  # FGSM steps, E x 1 x Q
        self.step = 0
        self._derive()

    @classmethod
    def initial(cls, spec, x, y, kps, regs, lrs, seeds):
        """Draw the initial weights and the per-layer drop streams, in the contract's order."""
        E, dtype, layout = len(seeds), x.dtype, spec.layout
        theta = torch.empty(E * layout.size, dtype=dtype)
        W, B = layout.views(theta, E)
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        streams = []
        for e, g in enumerate(gens):
            w0, b0 = spec.arch.init_params(generator=g, dtype=dtype)
            for layer in range(spec.num_layers):
                W[layer][e] = w0[layer].T
                B[layer][e] = b0[layer]
            streams.append(layer_drop_streams(kps[e], g))
        inv_kp = torch.tensor([[1.0 / kp for kp in k] for k in kps], dtype=dtype)  # E x L
        xy = torch.cat([x * inv_kp[:, 0].view(-1, 1, 1), y], dim=2)  # inputs pre-scaled
        lr = torch.tensor(lrs, dtype=dtype).unsqueeze(1)
        state = cls(spec, torch.arange(E), theta, torch.zeros_like(theta),
                    torch.zeros_like(theta), inv_kp, torch.tensor(regs, dtype=dtype), lr, gens,
                    streams, xy)
        state.same_lr = len(set(lrs)) == 1
        state.lr0 = float(lrs[0])
        return state

    def _derive(self):
        n = len(self.active)
        self.W, self.B = self.spec.layout.views(self.theta, n)
        self.inv_kp3 = [self.inv_kp[:, layer].view(-1, 1, 1)
                        for layer in range(self.spec.num_layers)]
        # any dropout on a hidden layer? (without: no masks, no 1 / keep_prob factors: exact)
        self.hidden_dropout = bool((self.inv_kp[:, 1:] != 1).any())
        self.lr_flat = self.spec.layout.layer_major(self.lr.expand(n, self.spec.layout.size))

    @property
    def num_active(self) -> int:
        return len(self.active)

    def freeze(self, bad, epoch, final, diverged_epoch, block):
        """Write the networks with a non-finite loss (``bad``) to ``final`` at their current
        parameters, record ``epoch`` and train on without them."""
        layout, n_old = self.spec.layout, len(self.active)
        bad_idx = bad.nonzero().squeeze(1)
        keep = (~bad).nonzero().squeeze(1)
        rows_now = layout.net_major(self.theta, n_old)
        final[self.active[bad_idx]] = rows_now[bad_idx]
        diverged_epoch[self.active[bad_idx]] = epoch
        self.active = self.active[keep]
        if not len(self.active):
            return keep
        self.theta = layout.layer_major(rows_now[keep])
        self.m = layout.layer_major(layout.net_major(self.m, n_old)[keep])
        self.v = layout.layer_major(layout.net_major(self.v, n_old)[keep])
        self.grad = torch.empty_like(self.theta)
        self.inv_kp, self.reg, self.lr = self.inv_kp[keep], self.reg[keep], self.lr[keep]
        self.gens = [self.gens[int(k)] for k in keep]
        self.streams = [self.streams[int(k)] for k in keep]
        self.xy = self.xy[keep]
        if self.adv_eps is not None:
            self.adv_eps = self.adv_eps[keep]
        block.keep(keep)
        self._derive()
        return keep

    def adam_step(self):
        """One :class:`torch.optim.Adam` update of every network on the flat buffer."""
        beta1, beta2 = self.spec.betas
        self.step += 1
        bc1 = 1 - beta1**self.step
        bc2_sqrt = math.sqrt(1 - beta2**self.step)
        self.m.lerp_(self.grad, 1 - beta1)
        self.v.mul_(beta2).addcmul_(self.grad, self.grad, value=1 - beta2)
        denom = self.v.sqrt().div_(bc2_sqrt).add_(self.spec.eps)
        if self.same_lr:
            self.theta.addcdiv_(self.m, denom, value=-self.lr0 / bc1)
        else:
            self.theta.sub_(self.m.div(denom).mul_(self.lr_flat).div_(bc1))


class _EpochBlock:
    """The shuffled data (``x / keep_prob``, ``y``) and hidden masks for a block of epochs.

    Network-major (``E x epochs x N x columns``), with one stream call per (network, layer). Each
    generator draws only its shuffles after the start and the streams do not depend on how they
    are cut, so this equals per-epoch draws (the block length is provably irrelevant).
    """

    def __init__(self, spec):
        self.spec = spec
        self.start = self.end = 0
        self.xy = self.masks = None
        self.use_masks = False
        self._mask_buf = None  # one buffer for every block: fresh ones cost more in page faults

    def draw(self, state, epoch, epochs):
        spec, N = self.spec, self.spec.num_data
        Ea = state.num_active
        self.use_masks = bool(spec.hidden_columns) and state.hidden_dropout
        Ch = spec.hidden_columns if self.use_masks else 0
        QD = spec.num_inputs + spec.num_outputs
        per_epoch = Ea * N * max(Ch + QD, 1)
        block_len = max(1, min(epochs - epoch, _MASK_BLOCK_ENTRIES // per_epoch))
        self.start, self.end = epoch, epoch + block_len
        perm = torch.empty(Ea, block_len, N, dtype=torch.long)
        for e in range(Ea):
            for k in range(block_len):
                torch.randperm(N, generator=state.gens[e], out=perm[e, k])
        rows = perm.add_(torch.arange(0, Ea * N, N).view(-1, 1, 1)).view(-1)
        self.xy = state.xy.view(Ea * N, QD).index_select(0, rows).view(Ea, block_len, N, QD)
        flat_masks = None
        if Ch:
            shape = (Ea, block_len, N, Ch)  # later blocks are never longer than the first
            if self._mask_buf is None or self._mask_buf.numel() < math.prod(shape):
                self._mask_buf = torch.empty(shape, dtype=state.xy.dtype)
            self.masks = self._mask_buf.view(-1)[: math.prod(shape)].view(shape).fill_(1.0)
            flat_masks = self.masks.view(-1)
        else:
            self.masks = None
        flat_xy = self.xy.view(-1)
        for e in range(Ea):
            for layer, stream in enumerate(state.streams[e]):
                # Drop d = (k N + r) w + c of a layer of width w sits at (k N + r) * cols
                # + offset + c in a block with ``cols`` columns: increasing in d, so each fill
                # walks its network's slab in order.
                w = spec.widths[layer]
                d = stream.take(block_len * N * w)
                if not d.numel():
                    continue
                if layer == 0:
                    q = d.div(w, rounding_mode="floor").mul_(QD - w).add_(d)
                    flat_xy.index_fill_(0, q.add_(e * block_len * N * QD), 0.0)
                else:
                    q = d.div(w, rounding_mode="floor").mul_(Ch - w).add_(d) if Ch != w else d
                    q = q.add(spec.hidden_offsets[layer - 1] + e * block_len * N * Ch)
                    flat_masks.index_fill_(0, q, 0.0)

    def epoch(self, epoch):
        """``(xy, masks)`` of one epoch: ``E x N x (Q + D)`` and ``E x N x C`` (or None)."""
        kb = epoch - self.start
        return self.xy[:, kb], (self.masks[:, kb] if self.masks is not None else None)

    def keep(self, keep):
        self.xy = self.xy[keep]
        if self.masks is not None:
            self.masks = self.masks[keep]


def _train_epoch(spec, state, block, epoch, final, diverged_epoch):
    """One pass over the shuffled data in minibatches; returns the epoch losses of the networks
    still active at its end (``|B| / N``-weighted minibatch losses)."""
    xys, masks = block.epoch(epoch)
    epoch_loss = torch.zeros(state.num_active, dtype=xys.dtype)
    N, Q = spec.num_data, spec.num_inputs
    s = 0
    while s < N:
        e_ = min(s + spec.batch_size, N)
        nb = e_ - s
        loss, finish = _minibatch(spec, state, xys[:, s:e_, :Q], xys[:, s:e_, Q:],
                                  None if masks is None else masks[:, s:e_], nb)
        bad = ~torch.isfinite(loss)
        if bool(bad.any()):
            keep = state.freeze(bad, epoch, final, diverged_epoch, block)
            if state.num_active == 0:
                break
            xys, masks = block.epoch(epoch)
            epoch_loss = epoch_loss[keep]
            continue  # redo this minibatch for the remaining networks
        epoch_loss += loss * (nb / N)
        finish()
        state.adam_step()
        s = e_
    return epoch_loss


def _minibatch(spec, state, x, y, masks, nb):
    """The loss of every active network on one minibatch (``E``) and a function that writes its
    gradient to ``state.grad`` (call it only when every loss is finite)."""
    out, hs, Ds = _forward(spec, state, x, masks)
    wsq = sum(w.square().sum((1, 2)) for w in state.W)
    if spec.loss == "mse" and state.adv_eps is None:
        diff = out.sub_(y)
        loss = diff.square().sum((1, 2)) / (nb * spec.num_outputs) + state.reg * wsq
        return loss, lambda: _backward(spec, state, diff.mul_(2.0 / (nb * spec.num_outputs)),
                                       hs, Ds)
    data, gout = _data_loss_and_grad(spec, out, y, nb)
    if state.adv_eps is None:
        return data + state.reg * wsq, lambda: _backward(spec, state, gout, hs, Ds)
    loss = data + state.reg * wsq
    if not bool(torch.isfinite(loss).all()):
        return loss, None
    # FGSM: the clean pass's gradient (parameters and inputs), then the perturbed pass's
    gx = _backward(spec, state, gout, hs, Ds, input_grad=True)
    x_adv = torch.addcmul(x, state.adv_eps, gx.sign_())
    out2, hs2, Ds2 = _forward(spec, state, x_adv, masks)
    data2, gout2 = _data_loss_and_grad(spec, out2, y, nb)
    return loss + data2, lambda: _backward(spec, state, gout2, hs2, Ds2, accumulate=True)


def _data_loss_and_grad(spec, out, y, nb):
    r"""Data term of the loss of each network (``E``) and its gradient with respect to the
    outputs ``out`` (``E x B x D`` or ``E x B x 2D``).

    Gaussian heads: with :math:`c = 1 / (|\mathcal{B}| D)`, :math:`\delta = \mu - y` and
    :math:`\sigma^2 = \operatorname{softplus}(r) + 10^{-6}`,

    .. math::
        \frac{\partial \ell}{\partial \mu} = c\,\frac{\delta}{\sigma^2}, \qquad
        \frac{\partial \ell}{\partial r} = \frac{c}{2 \sigma^2}
        \Big(1 - \frac{\delta^2}{\sigma^2}\Big) \operatorname{sigmoid}(r).
    """
    D = spec.num_outputs
    c = 1.0 / (nb * D)
    if spec.loss == "mse":
        diff = out - y
        return diff.square().sum((1, 2)) / (nb * D), diff.mul_(2.0 / (nb * D))
    mu, raw = out[..., :D], out[..., D:]
    var = torch.nn.functional.softplus(raw).add_(MIN_VARIANCE)
    delta = mu - y
    d2v = delta.square().div_(var)
    data = (var.log().add_(d2v)).sum((1, 2)).mul_(0.5 * c).add_(0.5 * math.log(2 * math.pi))
    g_mu = delta.div_(var).mul_(c)
    g_var = torch.sub(1.0, d2v).div_(var).mul_(0.5 * c)
    g_raw = torch.ops.aten.softplus_backward(g_var, raw, 1.0, 20.0)
    return data, torch.cat([g_mu, g_raw], dim=2)


def _forward(spec, state, h, masks):
    """Forward pass of a minibatch ``h`` (``E x B x Q``, already ``x / keep_prob_1`` with drops
    zeroed); returns the outputs and the inputs ``hs`` (and derivatives ``Ds``) of each layer.
    Without hidden dropout (``masks`` None) the 1 / keep_prob factors (all 1) are skipped."""
    W, B, inv_kp3, shapes = state.W, state.B, state.inv_kp3, spec.layout.shapes
    L, offsets = spec.num_layers, spec.hidden_offsets
    scaled = masks is not None
    hs, Ds = [h], []
    for layer in range(L):
        if layer == 0 or not scaled:
            Wl = W[layer]
        elif shapes[layer][0] == 1:
            Wl = W[layer]  # scaled after the reduction below
        else:
            Wl = W[layer] * inv_kp3[layer]
        if shapes[layer][0] == 1:  # one output: a weighted sum beats a K=1 bmm
            z = torch.mul(h, Wl.transpose(1, 2)).sum(2, keepdim=True)
            if layer > 0 and scaled:
                z.mul_(inv_kp3[layer])
            z += B[layer].unsqueeze(1)
        else:
            z = torch.baddbmm(B[layer].unsqueeze(1), h, Wl)
        if layer < L - 1:
            mk = masks[:, :, offsets[layer] : offsets[layer + 1]] if scaled else None
            if spec.relu:
                # 0/1 mask: h > 0 exactly where the ReLU is active and the unit kept.
                h = z.relu_() if mk is None else z.relu_().mul_(mk)
            else:
                a = spec.act(z)
                Ds.append(spec.deriv(z, a) if mk is None else spec.deriv(z, a).mul_(mk))
                h = a if mk is None else a.mul_(mk)
            hs.append(h)
        else:
            h = z
    return h, hs, Ds


def _backward(spec, state, gout, hs, Ds, *, accumulate=False, input_grad=False):
    """Backward pass by hand into ``state.grad``, from ``gout`` = d loss / d output. For layer
    ``l >= 1`` the input is ``h_l / keep_prob_l``: the gradient reaching it is scaled once
    (``gs``), then used with the unscaled ``W_l``.

    ``accumulate``: add the data term's gradient to ``state.grad`` (no weight decay) instead of
    overwriting it; ``input_grad``: also return d loss / d input (``E x B x Q``)."""
    W, inv_kp3 = state.W, state.inv_kp3
    gW, gB = spec.layout.views(state.grad, state.num_active)
    reg2 = (2 * state.reg).view(-1, 1, 1)
    # 1 / keep_prob = 1 on every hidden layer: skip the (exact) products; if masks of an earlier
    # block are still applied in _forward, the networks left all have keep_prob 1 there too
    scaled = state.hidden_dropout
    for layer in reversed(range(spec.num_layers)):
        if accumulate:
            gB[layer] += gout.sum(1)
        else:
            torch.mul(W[layer], reg2, out=gW[layer])
            torch.sum(gout, 1, out=gB[layer])
        gs = gout * inv_kp3[layer] if layer > 0 and scaled else gout
        if gs.shape[-1] == 1:
            # a one-term product: broadcasting is exact & faster than a K=1 bmm
            gW[layer] += torch.bmm(gs.transpose(1, 2), hs[layer]).transpose(1, 2)
        else:
            gW[layer].baddbmm_(hs[layer].transpose(1, 2), gs)
        if layer > 0 or input_grad:
            if gs.shape[-1] == 1:
                gout = gs * W[layer].transpose(1, 2)
            else:
                gout = torch.bmm(gs, W[layer].transpose(1, 2))
            if layer == 0:
                return gout
            if spec.relu:
                gout = torch.ops.aten.threshold_backward(gout, hs[layer], 0)
            else:
                gout.mul_(Ds[layer - 1])
    return None
