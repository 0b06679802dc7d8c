r"""Concrete dropout: learn each layer's keep_prob, the jitter :math:`\theta` and the precision
:math:`\tau` by gradient descent on the full negative ELBO, instead of a grid search.

Bernoulli masks have no reparameterisation gradient in their keep_prob. The Concrete (relaxed
Bernoulli) distribution replaces a mask :math:`z \sim \operatorname{Bernoulli}(\pi)` by

.. math::
    \tilde z = \sigma\Big(\frac{\log\pi - \log(1-\pi) + \log u - \log(1-u)}{t}\Big),
    \qquad u \sim \mathcal{U}(0, 1),

which is differentiable in :math:`\pi` and tends in distribution to the Bernoulli mask as the
temperature :math:`t \to 0` (the gradient is biased for :math:`t > 0`; the bias shrinks with
:math:`t` while the variance grows). Here :math:`\pi` is the probability that a unit is KEPT
(``drop_rate = 1 - keep_prob``) and is parametrised by its logit, so it never leaves
:math:`(0, 1)`.

The objective is the per-example negative ELBO of :func:`vi_dropout.objectives.negative_elbo`
(one weight draw per example, local reparameterisation, Gaussian likelihood with all constants)
with the Bernoulli masks replaced by relaxed ones, and with the Proposition 1 KL
(:func:`vi_dropout.kl.kl_large_width`) evaluated at the learned keep_prob:

.. math::
    -\widehat{\mathrm{ELBO}} = \frac{N}{B}\sum_{n=1}^B \Big[\frac{\tau}{2}\|\mathbf{y}_n
        - \hat{\mathbf{y}}_n\|^2 + \frac{D}{2}\log\frac{2\pi}{\tau}\Big]
        + \sum_i \Big(\frac{\pi_i l^2}{2}\|\mathbf{M}_i\|^2 + Q_i\Big[\frac{K_i}{2}\big(l^2\theta^2
        - 1 - \log l^2\theta^2\big) - H(\pi_i)\Big] + \mathrm{KL}_{\text{bias}, i}\Big).

References:
    Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from .distributions import DropoutNormal
from .kl import gaussian_kl_to_prior, kl_large_width
from .network import Architecture
from .objectives import check_data, data_term, local_reparam_forward
from .validation import check_finite, check_positive, check_positive_int

__all__ = [
    "relaxed_bernoulli_mask",
    "ConcreteDropoutObjective",
    "ConcreteFit",
    "fit_concrete",
]

#: a learned keep_prob within this distance of 0 or 1 stops :func:`fit_concrete`.
KEEP_PROB_BOUND = 1e-6
#: a learned tau (or theta) outside ``[TAU_BOUND, 1 / TAU_BOUND]`` stops :func:`fit_concrete`.
TAU_BOUND = 1e-10


def _check_open_unit(value, name: str) -> float:
    """Return ``value`` as a float after checking ``0 < value < 1`` (a learnable keep_prob)."""
    try:
        v = float(value.item() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a real number in (0, 1), got {value!r}") from None
    if not (0.0 < v < 1.0):
        raise ValueError(
            f"{name} must lie in the open interval (0, 1) to be learned (the probability that a "
            f"unit is KEPT; drop_rate = 1 - keep_prob; pass None for a layer without dropout), "
            f"got {value!r}"
        )
    return v


def relaxed_bernoulli_mask(keep_prob_logit, shape, temperature,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Concrete (relaxed Bernoulli) masks, differentiable in the keep_prob logit.

    .. math::
        \tilde z = \sigma\Big(\frac{\operatorname{logit}\pi + \log u - \log(1-u)}{t}\Big),
        \qquad u \sim \mathcal{U}(0, 1),\quad \operatorname{logit}\pi = \log\pi - \log(1-\pi).

    As :math:`t \to 0`, :math:`\tilde z \to \mathbb{1}[\operatorname{logit}\pi + \log u -
    \log(1-u) > 0]`, which is :math:`\operatorname{Bernoulli}(\pi)`.

    Args:
        keep_prob_logit: :math:`\operatorname{logit}\pi` of the probability that a unit is KEPT,
            a float or a tensor broadcastable to ``shape`` (e.g. a scalar per layer).
        shape: shape of the masks, e.g. ``N x in`` or ``S x N x in``.
        temperature: :math:`t > 0`.
        generator: optional ``torch.Generator`` for the uniforms (common random numbers).

    Returns:
        Masks in :math:`(0, 1)` of shape ``shape`` (the dtype of ``keep_prob_logit`` if it is a
        floating tensor, else float64).

    References:
        Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017, eq. (5);
        Maddison, Mnih & Teh (2017); Jang, Gu & Poole (2017).
    """
    t = check_positive(temperature, "temperature")
    logit = torch.as_tensor(keep_prob_logit)
    if not logit.is_floating_point():
        logit = logit.to(torch.float64)
    u = torch.rand(tuple(shape), dtype=logit.dtype, device=logit.device, generator=generator)
    tiny = torch.finfo(logit.dtype).tiny
    u = u.clamp(tiny, 1.0 - torch.finfo(logit.dtype).eps)
    return torch.sigmoid((logit + torch.log(u) - torch.log1p(-u)) / t)


class ConcreteDropoutObjective(torch.nn.Module):
    r"""The per-example negative ELBO of the MC dropout family with LEARNED keep_probs,
    :math:`\theta` and :math:`\tau`, through relaxed Bernoulli masks.

    .. math::
        -\widehat{\mathrm{ELBO}}(\mathbf{M}, \pi, \theta, \tau) = \frac{N}{B}\sum_{n=1}^B
        -\log\mathcal{N}\big(\mathbf{y}_n; f(\mathbf{x}_n; \mathbf{W}_n(\tilde{\mathbf{z}}_n)),
        \tau^{-1}\mathbf{I}\big) + \sum_i \big[\text{Prop. 1}(\mathbf{M}_i, \pi_i, \theta)
        + \mathrm{KL}(\mathcal{N}(\mathbf{m}_{b,i}, \theta^2)\,\|\,\mathcal{N}(0, l^{-2}))\big]

    Parameters (all ``torch.nn.Parameter``): the means ``weights[i]`` (``out x in``) and
    ``biases[i]`` (``out``) in the seed convention (kept units are not rescaled); one keep_prob
    logit per layer whose input is dropped; ``log_scale`` (:math:`\log\theta`) and ``log_tau``
    (:math:`\log\tau`), each a parameter when learned and a buffer otherwise.

    Args:
        architecture: the MLP (:class:`~vi_dropout.network.Architecture`).
        keep_probs: initial keep_prob per layer (or one value for all layers), each in the open
            interval ``(0, 1)``; an entry ``None`` means no dropout on that layer's input (mask of
            ones, no entropy term, :math:`\pi = 1` in the KL).
        scale: initial :math:`\theta > 0`; tau: initial :math:`\tau > 0`.
        prior_length_scale: :math:`l` of the prior :math:`\mathcal{N}(0, l^{-2})`.
        learn_scale, learn_tau: whether :math:`\theta` and :math:`\tau` are learned.
        weights, biases: optional initial means (default: Glorot from ``generator``).

    References:
        Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017.
    """

    def __init__(self, architecture: Architecture, keep_probs=0.9, scale=1e-2, tau=1.0,
                 prior_length_scale=1.0, *, learn_scale: bool = True, learn_tau: bool = True,
                 weights: Sequence[torch.Tensor] | None = None,
                 biases: Sequence[torch.Tensor] | None = None,
                 generator: torch.Generator | None = None, dtype=torch.float64):
        super().__init__()
        self.architecture = architecture
        n_layers = architecture.num_layers
        if isinstance(keep_probs, Sequence) and not isinstance(keep_probs, str):
            if len(keep_probs) != n_layers:
                raise ValueError(
                    f"keep_probs must be a number or a sequence of {n_layers} entries (one per "
                    f"layer), got a sequence of length {len(keep_probs)}"
                )
            kps = list(keep_probs)
            names = [f"keep_probs[{i}]" for i in range(n_layers)]
        else:
            kps = [keep_probs] * n_layers
            names = ["keep_probs"] * n_layers
        kps = [None if kp is None else _check_open_unit(kp, nm) for kp, nm in zip(kps, names)]
        self.dropped_layers = tuple(i for i, kp in enumerate(kps) if kp is not None)
        self.keep_prob_logits = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.tensor(math.log(kp) - math.log1p(-kp), dtype=dtype))
             for kp in kps if kp is not None]
        )
        self.prior_length_scale = check_positive(prior_length_scale, "prior_length_scale")
        log_scale = torch.tensor(math.log(check_positive(scale, "scale")), dtype=dtype)
        log_tau = torch.tensor(math.log(check_positive(tau, "tau")), dtype=dtype)
        if learn_scale:
            self.log_scale = torch.nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        if learn_tau:
            self.log_tau = torch.nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)
        if weights is None or biases is None:
            w0, b0 = architecture.init_params(generator=generator, dtype=dtype)
            weights = w0 if weights is None else weights
            biases = b0 if biases is None else biases
        shapes = architecture.layer_shapes
        if len(weights) != n_layers or len(biases) != n_layers:
            raise ValueError(f"weights and biases must have {n_layers} entries (one per layer)")
        for i, ((out, inp), w, b) in enumerate(zip(shapes, weights, biases)):
            if tuple(w.shape) != (out, inp) or tuple(b.shape) != (out,):
                raise ValueError(
                    f"layer {i}: expected weights[{i}] of shape {(out, inp)} and biases[{i}] of "
                    f"shape {(out,)}, got {tuple(w.shape)} and {tuple(b.shape)}"
                )
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.as_tensor(w, dtype=dtype).detach().clone()) for w in weights]
        )
        self.biases = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.as_tensor(b, dtype=dtype).detach().clone()) for b in biases]
        )

    # --- the learned quantities ----------------------------------------------------------------
    def keep_prob_logit(self, layer: int) -> torch.Tensor | None:
        """The keep_prob logit of layer ``layer`` (``None`` if its input is not dropped)."""
        if layer not in self.dropped_layers:
            return None
        return self.keep_prob_logits[self.dropped_layers.index(layer)]

    @property
    def keep_probs(self) -> tuple[torch.Tensor, ...]:
        """Per-layer keep_prob :math:`\\sigma(\\text{logit})` (1 for layers without dropout)."""
        one = self.log_scale.new_ones(())
        return tuple(one if self.keep_prob_logit(i) is None else
                     torch.sigmoid(self.keep_prob_logit(i))
                     for i in range(self.architecture.num_layers))

    @property
    def scale(self) -> torch.Tensor:
        r""":math:`\theta = \exp(\log\theta)`."""
        return self.log_scale.exp()

    @property
    def tau(self) -> torch.Tensor:
        r""":math:`\tau = \exp(\log\tau)`."""
        return self.log_tau.exp()

    # --- masks and KL --------------------------------------------------------------------------
    def sample_masks(self, num_rows: int, temperature, sample_shape=(),
                     generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Relaxed masks on every layer's input, each ``sample_shape x N x in`` (ones where
        the layer's input is not dropped), drawn in layer order from ``generator``."""
        n = check_positive_int(num_rows, "num_rows")
        lead = tuple(sample_shape)
        masks = []
        for i, (_, inp) in enumerate(self.architecture.layer_shapes):
            logit = self.keep_prob_logit(i)
            if logit is None:
                masks.append(self.log_scale.new_ones(lead + (n, inp)))
            else:
                masks.append(relaxed_bernoulli_mask(logit, lead + (n, inp), temperature,
                                                    generator=generator))
        return masks

    def kl(self) -> torch.Tensor:
        r"""Proposition 1 for every weight matrix at the learned keep_prob, plus the exact
        Gaussian KL of every bias (:func:`~vi_dropout.kl.kl_large_width`,
        :func:`~vi_dropout.kl.gaussian_kl_to_prior`)."""
        scale = self.scale
        total = scale.new_zeros(())
        for w, b, kp in zip(self.weights, self.biases, self.keep_probs):
            q = DropoutNormal(w, kp, scale)
            total = total + kl_large_width(q, self.prior_length_scale)
            total = total + gaussian_kl_to_prior(b, scale, self.prior_length_scale)
        return total

    # --- the objective -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor, *, temperature=0.1,
                masks: Sequence[torch.Tensor] | None = None,
                noise: Sequence[torch.Tensor] | None = None, num_data: int | None = None,
                sample_shape=(), generator: torch.Generator | None = None) -> torch.Tensor:
        r"""The negative ELBO estimate, of shape ``sample_shape`` (a scalar by default).

        .. math::
            N\Big[\frac{\tau}{2B}\sum_n\|\mathbf{y}_n - \hat{\mathbf{y}}_n\|^2
            + \frac{D}{2}\log\frac{2\pi}{\tau}\Big] + \mathrm{KL}

        Args:
            x: ``B x Q`` inputs; y: ``B x D`` targets; ``num_data`` is the full ``N``
                (default ``B``).
            temperature: :math:`t > 0` of the relaxed masks (unused when ``masks`` is given).
            masks: optional per-layer masks ``... x B x in`` (e.g. exact Bernoulli masks to
                enumerate); their leading dims set ``sample_shape``.
            noise: optional per-layer standard normals ``... x B x out`` for the local
                reparameterisation (zeros give the :math:`\theta`-free forward pass).
            sample_shape: leading shape of independent draws when ``masks`` is None.
        """
        check_data(x, y, self.architecture)
        b = x.shape[-2]
        n = b if num_data is None else check_positive_int(num_data, "num_data")
        if masks is None:
            masks = self.sample_masks(b, temperature, sample_shape, generator)
        elif len(masks) != self.architecture.num_layers:
            raise ValueError(f"masks must have {self.architecture.num_layers} entries (one per "
                             f"layer), got {len(masks)}")
        lead = torch.broadcast_shapes(*(m.shape[:-2] for m in masks))
        if noise is None:
            noise = [torch.randn(lead + (b, out), dtype=x.dtype, generator=generator)
                     for out, _ in self.architecture.layer_shapes]
        out = local_reparam_forward(x, list(self.weights), list(self.biases), masks, self.scale,
                                     self.architecture.activation, noise)
        tau = self.tau
        d = out.shape[-1]
        nll = tau * data_term(y, out, "gaussian") + 0.5 * d * torch.log(2 * math.pi / tau)
        return n * nll + self.kl()


class ConcreteFit(NamedTuple):
    """What :func:`fit_concrete` learned (detached float tensors) and its loss trace."""

    keep_probs: tuple[torch.Tensor, ...]
    scale: torch.Tensor
    tau: torch.Tensor
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    losses: torch.Tensor
    objective: ConcreteDropoutObjective


@torch.no_grad()
def _check_learned(objective: ConcreteDropoutObjective, step: int) -> None:
    for i in objective.dropped_layers:
        kp = float(torch.sigmoid(objective.keep_prob_logit(i)))
        logit = float(objective.keep_prob_logit(i))
        if not math.isfinite(logit) or kp < KEEP_PROB_BOUND or kp > 1.0 - KEEP_PROB_BOUND:
            raise ValueError(
                f"keep_probs[{i}] left the open interval (0, 1) at step {step}: keep_prob = "
                f"{kp!r} (logit {logit!r}) is within {KEEP_PROB_BOUND} of a bound or not finite"
            )
    for name, log_value in (("tau", objective.log_tau), ("scale", objective.log_scale)):
        v = float(log_value.exp())
        if not math.isfinite(v) or not (TAU_BOUND < v < 1.0 / TAU_BOUND):
            raise ValueError(
                f"{name} left ({TAU_BOUND}, {1.0 / TAU_BOUND}) at step {step}: {name} = {v!r}"
            )


def fit_concrete(x: torch.Tensor, y: torch.Tensor, hidden: Sequence[int] = (50,), *,
                 activation: str = "relu", keep_probs=0.9, scale=1e-2, tau=1.0,
                 prior_length_scale=1.0, learn_scale: bool = True, learn_tau: bool = True,
                 steps: int = 1000, lr: float = 1e-2, temperature=0.1, num_samples: int = 1,
                 seed: int = 0) -> ConcreteFit:
    r"""Fit the means, keep_probs, :math:`\theta` and :math:`\tau` with Adam on the full-batch
    per-example negative ELBO through relaxed masks (:class:`ConcreteDropoutObjective`).

    .. math::
        \min_{\mathbf{M}, \operatorname{logit}\pi, \log\theta, \log\tau}
        \frac{1}{S}\sum_{s=1}^S -\widehat{\mathrm{ELBO}}_s

    Args:
        x: ``N x Q`` inputs; y: ``N x D`` targets.
        hidden: hidden widths (``()`` for a linear model).
        keep_probs: initial keep_prob per layer or one for all, in ``(0, 1)``; ``None`` entries
            mean no dropout on that layer's input.
        scale, tau: initial :math:`\theta`, :math:`\tau` (learned unless ``learn_scale`` /
            ``learn_tau`` is False).
        steps: Adam steps; lr: Adam step size; temperature: :math:`t > 0` of the masks.
        num_samples: :math:`S`, independent mask and noise draws per example per step.
        seed: seeds the initial means and every draw.

    Returns:
        A :class:`ConcreteFit`. Raises ``ValueError`` naming the parameter if a learned keep_prob
        comes within ``1e-6`` of 0 or 1 or a learned :math:`\tau` or :math:`\theta` becomes
        non-finite or leaves ``[1e-10, 1e10]``.

    References:
        Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017.
    """
    check_finite(x, "x")
    if x.dim() != 2:
        raise ValueError(f"x must have shape N x Q, got {tuple(x.shape)}")
    check_data(x, y)
    steps = check_positive_int(steps, "steps")
    lr = check_positive(lr, "lr")
    temperature = check_positive(temperature, "temperature")
    num_samples = check_positive_int(num_samples, "num_samples")
    hidden = tuple(check_positive_int(h, f"hidden[{i}]") for i, h in enumerate(hidden))
    arch = Architecture((x.shape[-1], *hidden, y.shape[-1]), activation=activation)
    gen = torch.Generator().manual_seed(int(seed))
    objective = ConcreteDropoutObjective(
        arch, keep_probs, scale, tau, prior_length_scale, learn_scale=learn_scale,
        learn_tau=learn_tau, generator=gen, dtype=x.dtype,
    )
    opt = torch.optim.Adam(objective.parameters(), lr=lr)
    losses = torch.empty(steps, dtype=x.dtype)
    for step in range(steps):
        opt.zero_grad()
        loss = objective(x, y, temperature=temperature, sample_shape=(num_samples,),
                         generator=gen).mean()
        if not torch.isfinite(loss):
            _check_learned(objective, step)
            raise ValueError(f"the negative ELBO became non-finite at step {step}")
        loss.backward()
        opt.step()
        losses[step] = loss.detach()
        _check_learned(objective, step + 1)
    with torch.no_grad():
        return ConcreteFit(
            keep_probs=tuple(kp.detach().clone() for kp in objective.keep_probs),
            scale=objective.scale.detach().clone(),
            tau=objective.tau.detach().clone(),
            weights=[w.detach().clone() for w in objective.weights],
            biases=[b.detach().clone() for b in objective.biases],
            losses=losses,
            objective=objective,
        )
